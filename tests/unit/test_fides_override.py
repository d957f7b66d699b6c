"""The Fides overrides with requests-mock behind them, without a Fides server."""

from types import SimpleNamespace
from typing import Any, Iterator

import pytest
import requests_mock as rm
from fides.api.common_exceptions import ConnectionException, FidesopsException
from loguru import logger

from fides_movable_ink import contract, fides_override

BASE = "https://app.movableink.com"
SUBMIT_URL = BASE + contract.DSR_PATH
TOKEN_URL = BASE + contract.TOKEN_PATH
SECRETS = {
    "domain": "app.movableink.com",
    "brand": "Acme",
    "client_id": "client-abc",
    "client_secret": "s3cret-value",
    "max_wait_seconds": "2",
    "poll_interval_seconds": "0.01",
}
POLICY = SimpleNamespace(key="default_erasure_policy")
PRIVACY_REQUEST = SimpleNamespace(id="pri_42")
CLIENT: Any = SimpleNamespace(uri=BASE)


@pytest.fixture(autouse=True)
def no_fides_token_store(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Stands in for Fides' OAuth2 strategy (exercised for real by the end-to-end tests)."""
    asked: list[bool] = []

    def token_source(client: Any) -> Any:
        def token(renew: bool) -> str:
            asked.append(renew)
            return "access-token-xyz"

        return token

    monkeypatch.setattr(fides_override, "_fides_token_source", token_source)
    monkeypatch.setattr(fides_override, "deny_unsafe_hosts", lambda host: host)
    return asked


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    yield lines
    logger.remove(sink)


def row(mi_u: Any, targeted: bool = True) -> dict[str, Any]:
    """What Fides passes per row: param values plus the fields the policy masks."""
    return {
        "mi_u": mi_u,
        "masked_object_fields": {"mi_u": "masked"} if targeted else {},
        "all_object_fields": {"mi_u": mi_u},
        "privacy_request_id": PRIVACY_REQUEST.id,
    }


def delete(rows: list[dict[str, Any]], secrets: dict[str, Any] = SECRETS) -> int:
    return fides_override.movable_ink_user_delete(CLIENT, rows, POLICY, PRIVACY_REQUEST, secrets)  # type: ignore[arg-type]


def test_confirmed_deletions_are_counted(requests_mock: rm.Mocker, log_lines: list[str]) -> None:
    requests_mock.post(SUBMIT_URL, [{"json": {"id": "r1", "status": "pending"}, "status_code": 201},
                                    {"json": {"id": "r2", "status": "pending"}, "status_code": 201}])
    requests_mock.get(BASE + contract.status_path("r1"), json={"id": "r1", "status": "completed"})
    requests_mock.get(BASE + contract.status_path("r2"), json={"id": "r2", "status": "completed"})

    assert delete([row("mi-1"), row("mi-2"), row("mi-1")]) == 2

    bodies = [r.json() for r in requests_mock.request_history if r.method == "POST"]
    assert [b["mi_u"] for b in bodies] == ["mi-1", "mi-2"]
    assert all(b["reference"] == "pri_42" and b["brand"] == "Acme" for b in bodies)
    logged = "".join(log_lines)
    assert "r1" in logged and "completed" in logged
    for secret in ("access-token-xyz", "s3cret-value", "mi-1", "mi-2"):
        assert secret not in logged


def test_policy_that_does_not_target_the_dataset_sends_nothing(requests_mock: rm.Mocker, log_lines: list[str]) -> None:
    assert delete([row("mi-1", targeted=False)]) == 0
    assert requests_mock.call_count == 0
    assert any("targets no data category" in line for line in log_lines)


def test_rows_without_an_mi_u_are_skipped(requests_mock: rm.Mocker, log_lines: list[str]) -> None:
    requests_mock.post(SUBMIT_URL, json={"id": "r1", "status": "pending"}, status_code=201)
    requests_mock.get(BASE + contract.status_path("r1"), json={"id": "r1", "status": "completed"})

    assert delete([row(None), row(""), row("mi-1")]) == 1
    assert sum(r.method == "POST" for r in requests_mock.request_history) == 1
    assert any("Skipping 2 Movable Ink row(s) without an mi_u" in line for line in log_lines)


def test_only_rows_without_mi_u_send_nothing(requests_mock: rm.Mocker) -> None:
    assert delete([row(None)]) == 0
    assert requests_mock.call_count == 0


def test_any_failure_raises_naming_every_request_id_and_status(requests_mock: rm.Mocker) -> None:
    requests_mock.post(SUBMIT_URL, [{"json": {"id": "r1", "status": "pending"}, "status_code": 201},
                                    {"json": {"id": "r2", "status": "pending"}, "status_code": 201}])
    requests_mock.get(BASE + contract.status_path("r1"), json={"id": "r1", "status": "completed"})
    requests_mock.get(BASE + contract.status_path("r2"), json={"id": "r2", "status": "failed", "error": "locked"})

    with pytest.raises(FidesopsException) as raised:
        delete([row("mi-1"), row("mi-2")])

    message = str(raised.value)
    assert "confirmed 1 of 2" in message
    assert "request r1" in message and "completed" in message
    assert "request r2" in message and "failed (locked)" in message
    assert "retry this privacy request" in message
    assert "mi-1" not in message and "mi-2" not in message


def test_missing_brand_names_the_form_field(requests_mock: rm.Mocker) -> None:
    with pytest.raises(ConnectionException, match="no Brand: set it in the system's Integrations tab"):
        delete([row("mi-1")], {**SECRETS, "brand": ""})


def test_bad_wait_setting_is_named(requests_mock: rm.Mocker) -> None:
    with pytest.raises(ConnectionException, match="max_wait_seconds must be a positive number"):
        delete([row("mi-1")], {**SECRETS, "max_wait_seconds": "soon"})


def test_connection_test_succeeds_with_a_dsr_token(requests_mock: rm.Mocker) -> None:
    requests_mock.post(TOKEN_URL, json={"access_token": "t1", "token_type": "Bearer", "expires_in": 3600})
    requests_mock.get(BASE + contract.status_path(contract.CONNECTION_PROBE_ID), status_code=404, json={})

    fides_override.movable_ink_test_connection(CLIENT, SECRETS)

    assert requests_mock.last_request.headers["Authorization"] == "Bearer t1"


@pytest.mark.parametrize(
    "token_answer, probe_status, message",
    [
        ({"status_code": 401, "json": {"error": "invalid_client"}}, 404, "refused the credentials"),
        ({"status_code": 400, "json": {"error": "invalid_scope"}}, 404, "did not grant the 'dsr' scope"),
        ({"status_code": 200, "json": {"access_token": "t1"}}, 403, "lacks the 'dsr' scope"),
    ],
)
def test_connection_test_says_what_is_wrong(
    requests_mock: rm.Mocker, token_answer: dict[str, Any], probe_status: int, message: str
) -> None:
    requests_mock.post(TOKEN_URL, **token_answer)
    requests_mock.get(BASE + contract.status_path(contract.CONNECTION_PROBE_ID), status_code=probe_status, json={})

    with pytest.raises(ConnectionException, match=message):
        fides_override.movable_ink_test_connection(CLIENT, SECRETS)


def test_connection_test_names_an_unreachable_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fides_movable_ink.client.time.sleep", lambda seconds: None)
    unreachable: Any = SimpleNamespace(uri="http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(ConnectionException, match=r"Could not reach Movable Ink at http://127.0.0.1:9"):
        fides_override.movable_ink_test_connection(unreachable, SECRETS)
