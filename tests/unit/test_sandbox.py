"""The Movable Ink sandbox, exercised over real HTTP with plain `requests`."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fides_movable_ink import contract
from fides_movable_ink.sandbox import (
    REDACTED,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    ClientRecord,
    Sandbox,
)

TIMEOUT = 5


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(processing_time=0.3) as box:
        yield box


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def get_token(box: Sandbox, http: requests.Session, **form: str) -> requests.Response:
    fields = contract.token_form(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET) | form
    return http.post(box.url + contract.TOKEN_PATH, data=fields, timeout=TIMEOUT)


def auth(box: Sandbox, http: requests.Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {get_token(box, http).json()['access_token']}"}


def submit(box: Sandbox, http: requests.Session, headers: dict[str, str], mi_u: str = "u1",
           **overrides: str) -> requests.Response:
    body = contract.submit_body(brand="acme", mi_u=mi_u, reference="pri_1") | overrides
    return http.post(box.url + contract.DSR_PATH, json=body, headers=headers, timeout=TIMEOUT)


def status(box: Sandbox, http: requests.Session, headers: dict[str, str], request_id: str,
           **kwargs: object) -> requests.Response:
    kwargs.setdefault("timeout", TIMEOUT)
    return http.get(box.url + contract.status_path(request_id), headers=headers, **kwargs)


def wait_terminal(box: Sandbox, http: requests.Session, headers: dict[str, str], request_id: str) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        seen.append(status(box, http, headers, request_id).json()[contract.FIELD_STATUS])
        if seen[-1] in contract.TERMINAL_STATUSES:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"never terminal: {seen}")


# -- token -------------------------------------------------------------------


def test_sandbox_binds_loopback_only(sandbox: Sandbox) -> None:
    assert sandbox.url == f"http://127.0.0.1:{sandbox.port}"
    with pytest.raises(ValueError):
        Sandbox(host="0.0.0.0")


def test_token_ok(sandbox: Sandbox, http: requests.Session) -> None:
    response = get_token(sandbox, http)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == contract.TOKEN_SCOPE
    assert body["access_token"] != get_token(sandbox, http).json()["access_token"]


@pytest.mark.parametrize("form", [{"client_secret": "wrong"}, {"client_id": "nobody"}])
def test_token_bad_client(sandbox: Sandbox, http: requests.Session, form: dict[str, str]) -> None:
    response = get_token(sandbox, http, **form)
    assert response.status_code == 401
    assert response.json()["error"] == contract.TOKEN_ERROR_INVALID_CLIENT


def test_token_bad_grant_type_and_json_body(sandbox: Sandbox, http: requests.Session) -> None:
    assert get_token(sandbox, http, grant_type="password").status_code == 400
    fields = contract.token_form(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET)
    assert http.post(sandbox.url + contract.TOKEN_PATH, json=fields, timeout=TIMEOUT).status_code == 400


def test_token_bad_scope(sandbox: Sandbox, http: requests.Session) -> None:
    response = get_token(sandbox, http, scope="admin")
    assert response.status_code == 400
    assert response.json()["error"] == contract.TOKEN_ERROR_INVALID_SCOPE


def test_client_without_dsr_scope(http: requests.Session) -> None:
    clients = {"reader": ClientRecord("pw", ("read",))}
    with Sandbox(clients=clients) as box:
        url = box.url + contract.TOKEN_PATH
        asked = http.post(url, data=contract.token_form("reader", "pw"), timeout=TIMEOUT)
        assert asked.status_code == 400
        assert asked.json()["error"] == contract.TOKEN_ERROR_INVALID_SCOPE
        # Asking for no scope grants the client's own, and the DSR API refuses that token.
        form = {k: v for k, v in contract.token_form("reader", "pw").items() if k != "scope"}
        token = http.post(url, data=form, timeout=TIMEOUT).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert status(box, http, headers, contract.CONNECTION_PROBE_ID).status_code == 403


def test_token_expires(http: requests.Session) -> None:
    with Sandbox(token_lifetime=1) as box:
        headers = auth(box, http)
        assert status(box, http, headers, contract.CONNECTION_PROBE_ID).status_code == 404
        time.sleep(1.05)
        response = status(box, http, headers, contract.CONNECTION_PROBE_ID)
        assert response.status_code == 401
        assert response.json()["error_description"] == "token expired"


def test_missing_unknown_and_revoked_tokens(sandbox: Sandbox, http: requests.Session) -> None:
    assert status(sandbox, http, {}, "x").status_code == 401
    assert status(sandbox, http, {"Authorization": "Bearer nope"}, "x").status_code == 401
    headers = auth(sandbox, http)
    assert submit(sandbox, http, headers).status_code == 201
    sandbox.revoke_tokens()
    assert submit(sandbox, http, headers).status_code == 401
    assert submit(sandbox, http, auth(sandbox, http)).status_code == 201


# -- submit and status ---------------------------------------------------------


def test_submit_and_progress_to_completed(sandbox: Sandbox, http: requests.Session) -> None:
    headers = auth(sandbox, http)
    response = submit(sandbox, http, headers)
    assert response.status_code == 201
    body = response.json()
    assert body[contract.FIELD_STATUS] == contract.DeletionStatus.PENDING
    request_id = body[contract.FIELD_ID]
    assert isinstance(request_id, str) and request_id.startswith("dsr_")

    seen = wait_terminal(sandbox, http, headers, request_id)
    assert seen[0] == contract.DeletionStatus.PENDING
    assert contract.DeletionStatus.PROCESSING in seen
    assert seen[-1] == contract.DeletionStatus.COMPLETED

    [record] = sandbox.deletions()
    assert (record.id, record.mi_u, record.brand, record.reference) == (request_id, "u1", "acme", "pri_1")
    assert record.status == contract.DeletionStatus.COMPLETED
    assert record.completed_at == pytest.approx(record.submitted_at + 0.3)
    assert record.completed_at is not None and record.first_observed_terminal_at is not None
    assert record.first_observed_terminal_at >= record.completed_at


def test_failed_deletions_and_recover(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.set_processing_time(0)
    headers = auth(sandbox, http)
    sandbox.fail_mi_u("u1", error="no such user")
    failed_id = submit(sandbox, http, headers, mi_u="u1").json()[contract.FIELD_ID]
    ok_id = submit(sandbox, http, headers, mi_u="u2").json()[contract.FIELD_ID]
    body = status(sandbox, http, headers, failed_id).json()
    assert body[contract.FIELD_STATUS] == contract.DeletionStatus.FAILED
    assert body[contract.FIELD_ERROR] == "no such user"
    assert status(sandbox, http, headers, ok_id).json()[contract.FIELD_STATUS] == "completed"

    sandbox.recover()
    again_id = submit(sandbox, http, headers, mi_u="u1").json()[contract.FIELD_ID]
    assert status(sandbox, http, headers, again_id).json()[contract.FIELD_STATUS] == "completed"
    assert status(sandbox, http, headers, failed_id).json()[contract.FIELD_STATUS] == "failed"

    sandbox.fail_all("down")
    all_id = submit(sandbox, http, headers, mi_u="u3").json()[contract.FIELD_ID]
    assert status(sandbox, http, headers, all_id).json()[contract.FIELD_ERROR] == "down"


def test_unknown_ids_are_404(sandbox: Sandbox, http: requests.Session) -> None:
    headers = auth(sandbox, http)
    for request_id in (contract.CONNECTION_PROBE_ID, "dsr_missing", "a/b c"):
        response = status(sandbox, http, headers, request_id)
        assert response.status_code == 404
        assert "error" in response.json()
    assert status(sandbox, http, headers, "a/b c").status_code == 404
    assert sandbox.requests("status")[-1].path == contract.status_path("a/b c")


def test_submit_validation(http: requests.Session) -> None:
    with Sandbox(brand="acme") as box:
        headers = auth(box, http)
        url = box.url + contract.DSR_PATH
        bad_json = http.post(url, data=b"{not json", headers=headers, timeout=TIMEOUT)
        assert bad_json.status_code == 400 and "error" in bad_json.json()
        body = contract.submit_body("acme", "u1", "pri_1")
        missing = {k: v for k, v in body.items() if k != "mi_u"}
        assert http.post(url, json=missing, headers=headers, timeout=TIMEOUT).status_code == 400
        assert submit(box, http, headers, mi_u=" ").status_code == 400
        assert submit(box, http, headers, request_type="access").status_code == 400
        assert submit(box, http, headers, brand="other").status_code == 400
        assert submit(box, http, headers).status_code == 201


# -- faults ------------------------------------------------------------------


def test_server_errors(sandbox: Sandbox, http: requests.Session) -> None:
    headers = auth(sandbox, http)
    sandbox.server_errors(2, status=502, kinds=["status"])
    assert submit(sandbox, http, headers).status_code == 201  # submit is not a "status" call
    assert [status(sandbox, http, headers, "x").status_code for _ in range(3)] == [502, 502, 404]
    sandbox.server_errors(1, kinds=["token"])
    assert get_token(sandbox, http).status_code == 503
    assert get_token(sandbox, http).status_code == 200


def test_rate_limit(sandbox: Sandbox, http: requests.Session) -> None:
    headers = auth(sandbox, http)
    sandbox.rate_limit(1, retry_after=3)
    limited = submit(sandbox, http, headers)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert submit(sandbox, http, headers).status_code == 201
    assert len(sandbox.deletions()) == 1


def test_drop_connections(sandbox: Sandbox, http: requests.Session) -> None:
    headers = auth(sandbox, http)
    sandbox.drop_connections(1)
    with pytest.raises(requests.ConnectionError):
        submit(sandbox, http, headers)
    assert sandbox.deletions() == []
    assert sandbox.requests("submit")[-1].status is None
    # After processing: the deletion exists although the answer was lost.
    sandbox.drop_connections(1, kinds=["submit"], after_processing=True)
    with pytest.raises(requests.ConnectionError):
        submit(sandbox, http, headers)
    assert len(sandbox.deletions()) == 1
    assert submit(sandbox, http, headers).status_code == 201


def test_malformed_json(sandbox: Sandbox, http: requests.Session) -> None:
    headers = auth(sandbox, http)
    sandbox.malformed_json(1)
    response = submit(sandbox, http, headers)
    assert response.status_code == 201
    with pytest.raises(ValueError):
        response.json()
    assert submit(sandbox, http, headers).json()[contract.FIELD_STATUS] == "pending"


def test_slow_responses(sandbox: Sandbox, http: requests.Session) -> None:
    headers = auth(sandbox, http)
    sandbox.slow_responses(2, delay=0.3)
    started = time.monotonic()
    assert status(sandbox, http, headers, "x").status_code == 404
    assert time.monotonic() - started >= 0.3
    with pytest.raises(requests.Timeout):
        status(sandbox, http, headers, "x", timeout=0.1)


def test_processing_time_applies_to_new_deletions(sandbox: Sandbox, http: requests.Session) -> None:
    headers = auth(sandbox, http)
    sandbox.set_processing_time(60)
    slow_id = submit(sandbox, http, headers).json()[contract.FIELD_ID]
    sandbox.set_processing_time(0)
    fast_id = submit(sandbox, http, headers).json()[contract.FIELD_ID]
    assert status(sandbox, http, headers, slow_id).json()[contract.FIELD_STATUS] == "pending"
    assert status(sandbox, http, headers, fast_id).json()[contract.FIELD_STATUS] == "completed"


# -- records and admin API -----------------------------------------------------


def test_records_redact_secrets(sandbox: Sandbox, http: requests.Session) -> None:
    token = get_token(sandbox, http).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    request_id = submit(sandbox, http, headers).json()[contract.FIELD_ID]
    status(sandbox, http, headers, request_id)
    http.get(sandbox.url + "/elsewhere", timeout=TIMEOUT)

    records = sandbox.requests()
    assert [r.kind for r in records] == ["token", "submit", "status", "other"]
    assert [r.status for r in records] == [200, 201, 200, 404]
    assert records[0].body["client_secret"] == REDACTED
    assert records[0].body["client_id"] == SANDBOX_CLIENT_ID
    assert records[1].body == contract.submit_body("acme", "u1", "pri_1")
    assert records[1].token_id and records[1].token_id == records[2].token_id
    dumped = json.dumps([r.__dict__ for r in records])
    assert SANDBOX_CLIENT_SECRET not in dumped and token not in dumped
    assert sandbox.requests("status") == [records[2]]


def test_admin_api(sandbox: Sandbox, http: requests.Session) -> None:
    admin = sandbox.url + "/_sandbox/"
    headers = auth(sandbox, http)
    fault = {"fault": "server_errors", "n": 1, "status": 500, "kinds": ["submit"]}
    assert http.post(admin + "faults", json=fault, timeout=TIMEOUT).status_code == 200
    assert submit(sandbox, http, headers).status_code == 500
    assert http.post(admin + "faults", json={"fault": "fail_mi_u", "mi_u": "u1", "error": "gone"},
                     timeout=TIMEOUT).status_code == 200
    assert http.post(admin + "faults", json={"fault": "set_processing_time", "seconds": 0},
                     timeout=TIMEOUT).status_code == 200
    request_id = submit(sandbox, http, headers).json()[contract.FIELD_ID]
    assert status(sandbox, http, headers, request_id).json()[contract.FIELD_ERROR] == "gone"

    recorded = http.get(admin + "requests", timeout=TIMEOUT).json()["requests"]
    assert [r["kind"] for r in recorded] == ["token", "submit", "submit", "status"]
    assert http.get(admin + "requests?kind=status", timeout=TIMEOUT).json()["requests"][0]["status"] == 200
    [deletion] = http.get(admin + "deletions", timeout=TIMEOUT).json()["deletions"]
    assert deletion["id"] == request_id and deletion["status"] == "failed"

    for bad in ({"fault": "nope"}, {"fault": "server_errors", "n": 0}, {"fault": "rate_limit", "bogus": 1}, {}):
        assert http.post(admin + "faults", json=bad, timeout=TIMEOUT).status_code == 400
    assert http.post(admin + "reset", timeout=TIMEOUT).status_code == 200
    assert sandbox.requests() == [] and sandbox.deletions() == []
    assert submit(sandbox, http, headers).status_code == 201  # tokens survive a reset


def test_main_serves_until_sigterm() -> None:
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = os.environ | {"PYTHONPATH": src}
    process = subprocess.Popen(
        [sys.executable, "-m", "fides_movable_ink.sandbox", "--port", "0", "--client-id", "me",
         "--client-secret", "pw", "--processing-time", "0"],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        response = requests.post(url + contract.TOKEN_PATH, data=contract.token_form("me", "pw"), timeout=TIMEOUT)
        assert response.status_code == 200
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0
