"""The Fides overrides with requests-mock behind them, without a Fides server."""

import json
from types import SimpleNamespace
from typing import Any, Iterator, cast
from urllib.parse import quote, urlsplit

import pytest
import requests_mock as rm
from fides.api.common_exceptions import ConnectionException, FidesopsException
from fides.api.schemas.saas.saas_config import SaaSConfig
from fides.api.service.connectors.saas.authenticated_client import AuthenticatedClient
from fides.api.util.saas_util import load_config_from_string
from fides.config import CONFIG
from fides.config.security_settings import DomainValidationMode
from loguru import logger

from fides_movable_ink import contract, fides_override, templates
from tests.hostile_values import HOSTILE_MI_US

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


def fides_client(monkeypatch: pytest.MonkeyPatch, uri: str = BASE, mode: str = "enabled") -> AuthenticatedClient:
    """Fides' own client for an instance of our template, under the given domain validation mode."""
    monkeypatch.setattr(CONFIG, "dev_mode", False)
    monkeypatch.setattr(CONFIG.security, "domain_validation_mode", DomainValidationMode(mode))
    monkeypatch.delenv("FIDES__SECURITY__DOMAIN_VALIDATION_MODE", raising=False)
    text = templates.config_file().read_text(encoding="utf-8").replace("<instance_fides_key>", "movable_ink")
    config = SaaSConfig(**load_config_from_string(text))
    configuration: Any = SimpleNamespace(get_saas_config=lambda: config)
    return AuthenticatedClient(uri, configuration, config.client_config)


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> AuthenticatedClient:
    """app.movableink.com with Fides' default: domain validation enabled."""
    return fides_client(monkeypatch)


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


def delete(client: Any, rows: list[dict[str, Any]], secrets: dict[str, Any] = SECRETS) -> int:
    # register() types every override as the union of all override results.
    return cast(int, fides_override.movable_ink_user_delete(client, rows, POLICY, PRIVACY_REQUEST, secrets))


def read(client: Any, input_data: dict[str, list[Any]]) -> list[dict[str, Any]]:
    rows = fides_override.movable_ink_user_read(client, SimpleNamespace(), POLICY, PRIVACY_REQUEST, input_data, SECRETS)
    return cast(list[dict[str, Any]], rows)


def test_confirmed_deletions_are_counted(
    client: AuthenticatedClient, requests_mock: rm.Mocker, log_lines: list[str]
) -> None:
    requests_mock.post(SUBMIT_URL, [{"json": {"id": "r1", "status": "pending"}, "status_code": 201},
                                    {"json": {"id": "r2", "status": "pending"}, "status_code": 201}])
    requests_mock.get(BASE + contract.status_path("r1"), json={"id": "r1", "status": "completed"})
    requests_mock.get(BASE + contract.status_path("r2"), json={"id": "r2", "status": "completed"})

    assert delete(client, [row("mi-1"), row("mi-2"), row("mi-1")]) == 2

    bodies = [r.json() for r in requests_mock.request_history if r.method == "POST"]
    assert [b["mi_u"] for b in bodies] == ["mi-1", "mi-2"]
    assert all(b["reference"] == "pri_42" and b["brand"] == "Acme" for b in bodies)
    logged = "".join(log_lines)
    assert "r1" in logged and "completed" in logged
    for secret in ("access-token-xyz", "s3cret-value", "mi-1", "mi-2"):
        assert secret not in logged


def test_policy_that_does_not_target_the_dataset_sends_nothing(
    client: AuthenticatedClient, requests_mock: rm.Mocker, log_lines: list[str]
) -> None:
    assert delete(client, [row("mi-1", targeted=False)]) == 0
    assert requests_mock.call_count == 0
    assert any("targets no data category" in line for line in log_lines)


def test_rows_without_an_mi_u_are_skipped(
    client: AuthenticatedClient, requests_mock: rm.Mocker, log_lines: list[str]
) -> None:
    requests_mock.post(SUBMIT_URL, json={"id": "r1", "status": "pending"}, status_code=201)
    requests_mock.get(BASE + contract.status_path("r1"), json={"id": "r1", "status": "completed"})

    assert delete(client, [row(None), row(""), row("mi-1")]) == 1
    assert sum(r.method == "POST" for r in requests_mock.request_history) == 1
    assert any("Skipping 2 Movable Ink row(s) without an mi_u" in line for line in log_lines)


def test_only_rows_without_mi_u_send_nothing(client: AuthenticatedClient, requests_mock: rm.Mocker) -> None:
    assert delete(client, [row(None)]) == 0
    assert requests_mock.call_count == 0


def test_any_failure_raises_naming_every_request_id_and_status(
    client: AuthenticatedClient, requests_mock: rm.Mocker
) -> None:
    requests_mock.post(SUBMIT_URL, [{"json": {"id": "r1", "status": "pending"}, "status_code": 201},
                                    {"json": {"id": "r2", "status": "pending"}, "status_code": 201}])
    requests_mock.get(BASE + contract.status_path("r1"), json={"id": "r1", "status": "completed"})
    requests_mock.get(BASE + contract.status_path("r2"), json={"id": "r2", "status": "failed", "error": "locked"})

    with pytest.raises(FidesopsException) as raised:
        delete(client, [row("mi-1"), row("mi-2")])

    message = str(raised.value)
    assert "confirmed 1 of 2" in message
    assert "request r1" in message and "completed" in message
    assert "request r2" in message and "failed (locked)" in message
    assert "retry this privacy request" in message
    assert "mi-1" not in message and "mi-2" not in message


def test_missing_brand_names_the_form_field(client: AuthenticatedClient, requests_mock: rm.Mocker) -> None:
    with pytest.raises(ConnectionException, match="no Brand: set it in the system's Integrations tab"):
        delete(client, [row("mi-1")], {**SECRETS, "brand": ""})
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("name, label", [("client_id", "Client ID"), ("client_secret", "Client Secret")])
def test_missing_credentials_fail_test_connection_naming_the_field(
    client: AuthenticatedClient, requests_mock: rm.Mocker, name: str, label: str
) -> None:
    secrets = {key: value for key, value in SECRETS.items() if key != name}
    with pytest.raises(ConnectionException, match=f"no {label}: set it in the system's Integrations tab"):
        fides_override.movable_ink_test_connection(client, secrets)
    assert requests_mock.call_count == 0


def test_bad_wait_setting_is_named(client: AuthenticatedClient, requests_mock: rm.Mocker) -> None:
    with pytest.raises(ConnectionException, match="max_wait_seconds must be a positive number"):
        delete(client, [row("mi-1")], {**SECRETS, "max_wait_seconds": "soon"})


def test_connection_test_succeeds_with_a_dsr_token(client: AuthenticatedClient, requests_mock: rm.Mocker) -> None:
    requests_mock.post(TOKEN_URL, json={"access_token": "t1", "token_type": "Bearer", "expires_in": 3600})
    requests_mock.get(BASE + contract.status_path(contract.CONNECTION_PROBE_ID), status_code=404, json={})

    fides_override.movable_ink_test_connection(client, SECRETS)

    assert requests_mock.last_request is not None
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
    client: AuthenticatedClient,
    requests_mock: rm.Mocker,
    token_answer: dict[str, Any],
    probe_status: int,
    message: str,
) -> None:
    requests_mock.post(TOKEN_URL, **token_answer)
    requests_mock.get(BASE + contract.status_path(contract.CONNECTION_PROBE_ID), status_code=probe_status, json={})

    with pytest.raises(ConnectionException, match=message):
        fides_override.movable_ink_test_connection(client, SECRETS)


def test_connection_test_names_an_unreachable_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fides_movable_ink.client.time.sleep", lambda seconds: None)
    # The discard port: nothing listens. Validation disabled, as for the sandbox.
    unreachable = fides_client(monkeypatch, "http://127.0.0.1:9", mode="disabled")
    with pytest.raises(ConnectionException, match=r"Could not reach Movable Ink at http://127.0.0.1:9"):
        fides_override.movable_ink_test_connection(unreachable, SECRETS)


# -- hostile and messy input ---------------------------------------------------------------------


def test_read_returns_one_row_per_distinct_value_exactly_as_stored(
    client: AuthenticatedClient, requests_mock: rm.Mocker, log_lines: list[str]
) -> None:
    values = [None, *HOSTILE_MI_US, "", HOSTILE_MI_US[0], "   ", None, HOSTILE_MI_US[-1]]

    rows = read(client, {"mi_u": values, "email": ["jane@example.com"]})

    assert rows == [{"mi_u": value} for value in HOSTILE_MI_US]
    assert requests_mock.call_count == 0  # the read calls nothing
    assert any("Skipping 4 Movable Ink mapping value(s) without an mi_u" in line for line in log_lines)
    logged = "".join(log_lines)
    assert "jane@example.com" not in logged
    assert not [value for value in HOSTILE_MI_US if value in logged]


@pytest.mark.parametrize("input_data", [{}, {"mi_u": []}, {"mi_u": [None, ""]}])
def test_read_without_values_returns_no_row(client: AuthenticatedClient, input_data: dict[str, list[Any]]) -> None:
    assert read(client, input_data) == []


def test_delete_sends_hostile_values_as_json_and_polls_by_request_id_only(
    client: AuthenticatedClient, requests_mock: rm.Mocker, log_lines: list[str]
) -> None:
    # Request ids chosen to need encoding too: a status URL is built from the id alone.
    ids = [f"dsr/{n}?x" for n in range(len(HOSTILE_MI_US))]
    requests_mock.post(SUBMIT_URL, [{"json": {"id": i, "status": "pending"}, "status_code": 202} for i in ids])
    for request_id in ids:
        requests_mock.get(BASE + contract.status_path(request_id), json={"id": request_id, "status": "completed"})
    rows = [row(value) for value in [*HOSTILE_MI_US, HOSTILE_MI_US[1], None, ""]]

    assert delete(client, rows) == len(HOSTILE_MI_US)

    posts = [r for r in requests_mock.request_history if r.method == "POST"]
    assert [r.url for r in posts] == [SUBMIT_URL] * len(HOSTILE_MI_US)
    assert all(r.headers["Content-Type"] == "application/json" for r in posts)
    assert [json.loads(r.body)["mi_u"] for r in posts] == HOSTILE_MI_US
    gets = [r for r in requests_mock.request_history if r.method == "GET"]
    assert gets and {urlsplit(r.url).path for r in gets} == {
        f"{contract.DSR_PATH}/{quote(i, safe='')}" for i in ids
    }
    assert all(urlsplit(r.url).query == "" for r in gets)
    logged = "".join(log_lines)
    assert not [value for value in HOSTILE_MI_US if value in logged]


@pytest.mark.parametrize(
    "uri, message",
    [
        ("https://https://app.movableink.com", "host name only"),  # Domain given with a scheme
        ("https://app.movableink.com/api", "host name only"),  # Domain given with a path
        ("https://app.movableink.com?x=1", "host name only"),
        ("https://app.movableink.com:99999", "host name only"),
        ("https://evil.example.com", r"'evil.example.com' is not one of the allowed hosts \[app.movableink.com, "
                                     r"\*.movableink.com\], so the client secret is not sent there"),
        ("https://app.movableink.com.evil.example.com", "not one of the allowed hosts"),
        ("https://127.0.0.1:8765", "'127.0.0.1:8765' is not one of the allowed hosts"),
    ],
)
def test_a_domain_fides_would_refuse_gets_no_call_and_names_the_domain(
    monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker, uri: str, message: str
) -> None:
    client = fides_client(monkeypatch, uri, mode="enabled")
    with pytest.raises(ConnectionException, match=message) as raised:
        fides_override.movable_ink_test_connection(client, SECRETS)
    assert "Domain" in str(raised.value)
    with pytest.raises(ConnectionException, match=message):
        delete(client, [row("mi-1")])
    assert requests_mock.call_count == 0  # neither the secret nor a token went anywhere


def test_a_domain_with_credentials_is_refused_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker
) -> None:
    client = fides_client(monkeypatch, "https://user:pw-123@app.movableink.com", mode="enabled")
    with pytest.raises(ConnectionException, match="without a user name or password") as raised:
        fides_override.movable_ink_test_connection(client, SECRETS)
    assert "pw-123" not in str(raised.value)
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("mode", ["enabled", "monitor"])
def test_any_movable_ink_host_is_accepted(monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker, mode: str) -> None:
    eu = "https://eu.movableink.com"
    requests_mock.post(eu + contract.TOKEN_PATH, json={"access_token": "t1"})
    requests_mock.get(eu + contract.status_path(contract.CONNECTION_PROBE_ID), status_code=404, json={})

    fides_override.movable_ink_test_connection(fides_client(monkeypatch, eu, mode=mode), SECRETS)

    assert requests_mock.call_count == 2


@pytest.mark.parametrize("mode", ["monitor", "disabled"])
def test_the_domain_check_follows_fides_validation_mode(
    monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker, mode: str
) -> None:
    # Only `enabled` blocks, as for Fides' own requests; the sandbox relies on `disabled`.
    other = "https://other.example.com"
    requests_mock.post(other + contract.TOKEN_PATH, json={"access_token": "t1"})
    requests_mock.get(other + contract.status_path(contract.CONNECTION_PROBE_ID), status_code=404, json={})

    fides_override.movable_ink_test_connection(fides_client(monkeypatch, other, mode=mode), SECRETS)

    assert requests_mock.call_count == 2
