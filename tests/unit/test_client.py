"""MovableInkClient against requests-mock: wire format, polling, retries, errors."""

import json
import time
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import requests_mock as rm

from fides_movable_ink import contract
from fides_movable_ink.client import (
    CredentialsRefused,
    DomainUnreachable,
    MovableInkClient,
    PollPolicy,
    ScopeMissing,
    fetch_token,
    fingerprint,
)

BASE = "https://app.movableink.com"
SUBMIT_URL = BASE + contract.DSR_PATH
FAST = PollPolicy(max_wait=2.0, first_interval=0.01, max_interval=0.02)


def status_url(request_id: str) -> str:
    return BASE + contract.status_path(request_id)


class Tokens:
    """A token source that counts how often it was asked, and for renewal."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def __call__(self, renew: bool) -> str:
        self.calls.append(renew)
        return f"token-{len(self.calls)}"


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def status(value: str, **extra: Any) -> dict[str, Any]:
    return {"json": {"id": "x", "status": value, **extra}, "status_code": 200}


def make_client(tokens: Tokens | None = None, sleep: Any = None) -> MovableInkClient:
    kwargs = {"sleep": sleep} if sleep is not None else {}
    return MovableInkClient(BASE, "Acme", tokens or Tokens(), **kwargs)


def test_happy_path_posts_contract_body_and_polls_until_completed(requests_mock: rm.Mocker) -> None:
    requests_mock.post(SUBMIT_URL, json={"id": "dsr-1", "status": "pending"}, status_code=202)
    requests_mock.get(status_url("dsr-1"), [status("pending"), status("processing"), status("completed")])
    tokens = Tokens()

    [deletion] = make_client(tokens).delete_users(["mi-1"], reference="pri_123", policy=FAST)

    assert deletion.confirmed and deletion.request_id == "dsr-1" and deletion.status_calls == 3
    post = requests_mock.request_history[0]
    assert post.json() == {"request_type": "delete", "brand": "Acme", "mi_u": "mi-1", "reference": "pri_123"}
    assert post.headers["Authorization"] == "Bearer token-1"
    assert tokens.calls == [False]


def test_several_mi_u_are_submitted_first_then_polled_together(requests_mock: rm.Mocker) -> None:
    requests_mock.post(SUBMIT_URL, [{"json": {"id": "a", "status": "pending"}, "status_code": 201},
                                    {"json": {"id": "b", "status": "pending"}, "status_code": 201}])
    requests_mock.get(status_url("a"), [status("processing"), status("completed")])
    requests_mock.get(status_url("b"), [status("completed")])

    deletions = make_client().delete_users(["mi-a", "mi-b"], reference="pri", policy=FAST)

    assert [d.status for d in deletions] == ["completed", "completed"]
    calls = [(r.method, r.path) for r in requests_mock.request_history]
    assert calls[:2] == [("POST", contract.DSR_PATH)] * 2
    # Round one asks about both; round two only about the one still processing.
    assert calls[2:] == [("GET", contract.status_path("a")), ("GET", contract.status_path("b")),
                         ("GET", contract.status_path("a"))]


def test_a_repeated_mi_u_is_sent_once(requests_mock: rm.Mocker) -> None:
    requests_mock.post(SUBMIT_URL, json={"id": "a", "status": "pending"}, status_code=201)
    requests_mock.get(status_url("a"), [status("completed")])

    deletions = make_client().delete_users(["mi-a", "mi-a", "mi-a"], reference="pri", policy=FAST)

    assert len(deletions) == 1
    assert sum(r.method == "POST" for r in requests_mock.request_history) == 1


def test_failed_deletion_carries_movable_inks_error(requests_mock: rm.Mocker) -> None:
    requests_mock.post(SUBMIT_URL, json={"id": "a", "status": "pending"}, status_code=201)
    requests_mock.get(status_url("a"), [status("failed", error="user locked")])

    [deletion] = make_client().delete_users(["mi-a"], reference="pri", policy=FAST)

    assert deletion.status == "failed" and deletion.error == "user locked"
    assert "request a" in deletion.describe() and "failed (user locked)" in deletion.describe()
    assert "mi-a" not in deletion.describe() and fingerprint("mi-a") in deletion.describe()


def test_deletion_not_final_within_max_wait_times_out(requests_mock: rm.Mocker) -> None:
    requests_mock.post(SUBMIT_URL, json={"id": "a", "status": "pending"}, status_code=201)
    requests_mock.get(status_url("a"), json={"id": "a", "status": "processing"})

    policy = PollPolicy(max_wait=0.3, first_interval=0.02, max_interval=0.05)
    [deletion] = make_client().delete_users(["mi-a"], reference="pri", policy=policy)

    assert deletion.status == "timed out"
    assert "still 'processing'" in (deletion.error or "")
    assert 2 <= deletion.status_calls <= 15


def test_429_waits_retry_after_then_repeats(requests_mock: rm.Mocker) -> None:
    requests_mock.post(SUBMIT_URL, [{"status_code": 429, "headers": {"Retry-After": "7"}, "json": {}},
                                    {"status_code": 201, "json": {"id": "a", "status": "pending"}}])
    sleeps = Sleeps()

    request_id, _ = make_client(sleep=sleeps).submit_deletion("mi-a", "pri")

    assert request_id == "a"
    assert sleeps == [7.0]


def test_5xx_then_success_is_repeated_with_backoff(requests_mock: rm.Mocker) -> None:
    requests_mock.get(status_url("a"), [{"status_code": 503, "text": "busy"}, {"status_code": 502, "text": "bad"},
                                        status("completed")])
    sleeps = Sleeps()

    assert make_client(sleep=sleeps).get_status("a") == ("completed", None)
    assert len(sleeps) == 2 and all(0 < s <= 30 for s in sleeps)


def test_5xx_that_persists_names_movable_inks_answer(requests_mock: rm.Mocker) -> None:
    requests_mock.post(SUBMIT_URL, status_code=500, text="database on fire")

    [deletion] = make_client(sleep=Sleeps()).delete_users(["mi-a"], reference="pri", policy=FAST)

    assert deletion.request_id is None and deletion.status == "not submitted"
    assert "HTTP 500" in (deletion.error or "") and "database on fire" in (deletion.error or "")
    assert requests_mock.call_count == 5  # bounded


def test_dropped_connections_end_as_unreachable_domain(requests_mock: rm.Mocker) -> None:
    requests_mock.post(SUBMIT_URL, exc=requests.ConnectionError("reset"))
    with pytest.raises(DomainUnreachable, match="app.movableink.com"):
        make_client(sleep=Sleeps()).submit_deletion("mi-a", "pri")
    assert requests_mock.call_count == 5


def test_401_mid_poll_gets_a_new_token_and_repeats_the_call(requests_mock: rm.Mocker) -> None:
    requests_mock.post(SUBMIT_URL, json={"id": "a", "status": "pending"}, status_code=201)
    requests_mock.get(status_url("a"), [status("processing"), {"status_code": 401, "json": {}}, status("completed")])
    tokens = Tokens()

    [deletion] = make_client(tokens).delete_users(["mi-a"], reference="pri", policy=FAST)

    assert deletion.confirmed
    assert tokens.calls == [False, True]
    assert requests_mock.request_history[-1].headers["Authorization"] == "Bearer token-2"


def test_401_with_a_fresh_token_is_refused_credentials_and_stops(requests_mock: rm.Mocker) -> None:
    requests_mock.post(SUBMIT_URL, status_code=401, json={})

    deletions = make_client().delete_users(["mi-a", "mi-b"], reference="pri", policy=FAST)

    assert all(d.request_id is None for d in deletions)
    assert all("refused a newly issued token" in (d.error or "") for d in deletions)
    assert requests_mock.call_count == 2  # one call and its repeat; mi-b was not tried


def test_403_names_the_missing_scope(requests_mock: rm.Mocker) -> None:
    requests_mock.get(status_url(contract.CONNECTION_PROBE_ID), status_code=403, json={})
    with pytest.raises(ScopeMissing, match="'dsr' scope"):
        make_client().check_access()


def test_other_4xx_shows_movable_inks_answer_with_the_mi_u_scrubbed(requests_mock: rm.Mocker) -> None:
    requests_mock.post(SUBMIT_URL, status_code=422, json={"error": "unknown mi_u weird-id"})

    [deletion] = make_client().delete_users(["weird-id"], reference="pri", policy=FAST)

    assert "HTTP 422" in (deletion.error or "")
    assert "weird-id" not in (deletion.error or "") and fingerprint("weird-id") in (deletion.error or "")


def test_malformed_status_answer_is_asked_again_next_round(requests_mock: rm.Mocker) -> None:
    requests_mock.post(SUBMIT_URL, json={"id": "a", "status": "pending"}, status_code=201)
    requests_mock.get(status_url("a"), [{"status_code": 200, "text": "<html>oops"}, status("completed")])

    [deletion] = make_client().delete_users(["mi-a"], reference="pri", policy=FAST)

    assert deletion.confirmed and deletion.error is None


def test_mi_u_with_quotes_and_slashes_is_json_encoded_and_status_ids_are_one_path_segment(
    requests_mock: rm.Mocker,
) -> None:
    requests_mock.post(SUBMIT_URL, json={"id": "../x y", "status": "pending"}, status_code=201)
    requests_mock.get(BASE + contract.DSR_PATH + "/..%2Fx%20y", json={"id": "../x y", "status": "completed"})
    mi_u = 'a"b\\c/../ü'

    [deletion] = make_client().delete_users([mi_u], reference="pri", policy=FAST)

    assert deletion.confirmed
    assert json.loads(requests_mock.request_history[0].body)["mi_u"] == mi_u


def test_fetch_token_sends_the_form_and_names_each_failure(requests_mock: rm.Mocker) -> None:
    url = BASE + contract.TOKEN_PATH
    requests_mock.post(url, json={"access_token": "t", "token_type": "Bearer", "expires_in": 3600, "scope": "dsr"})
    assert fetch_token(BASE, "id", "secret") == "t"
    assert parse_qs(requests_mock.last_request.text) == {"grant_type": ["client_credentials"], "client_id": ["id"],
                                                         "client_secret": ["secret"], "scope": ["dsr"]}

    requests_mock.post(url, status_code=401, json={"error": "invalid_client", "error_description": "bad secret"})
    with pytest.raises(CredentialsRefused, match="refused the credentials.*bad secret"):
        fetch_token(BASE, "id", "wrong")

    requests_mock.post(url, status_code=400, json={"error": "invalid_scope"})
    with pytest.raises(ScopeMissing, match="'dsr' scope"):
        fetch_token(BASE, "id", "secret")

    requests_mock.post(url, exc=requests.ConnectionError("no route"))
    with pytest.raises(DomainUnreachable, match="Could not reach Movable Ink at https://app.movableink.com"):
        fetch_token(BASE, "id", "secret", sleep=Sleeps())


def test_an_mi_u_echoed_json_escaped_is_scrubbed_too(requests_mock: rm.Mocker) -> None:
    mi_u = 'quo"te\\ü'
    requests_mock.post(SUBMIT_URL, status_code=400, text=json.dumps({"error": f"bad mi_u {mi_u}"}))

    [deletion] = make_client().delete_users([mi_u], reference="pri", policy=FAST)

    assert "HTTP 400" in (deletion.error or "") and fingerprint(mi_u) in (deletion.error or "")
    assert json.dumps(mi_u)[1:-1] not in (deletion.error or "") and "quo" not in (deletion.error or "")


def test_slow_status_answers_cannot_stretch_the_maximum_wait() -> None:
    """Against the real sandbox over HTTP: every status answer takes 5 s, the wait allowed is 1.5 s."""
    from fides_movable_ink.sandbox import Sandbox

    with Sandbox(processing_time=0.2) as sandbox:
        sandbox.slow_responses(20, delay=5.0, kinds=["status"])
        client = MovableInkClient(sandbox.url, "Acme", lambda renew: fetch_token(sandbox.url, "sandbox-client", "sandbox-secret"))
        started = time.monotonic()

        [deletion] = client.delete_users(["mi-slow"], "pri", PollPolicy(max_wait=1.5, first_interval=0.1, max_interval=0.2))

        took = time.monotonic() - started
    assert deletion.status == "timed out" and "after waiting 1.5 s" in (deletion.error or "")
    assert took < 3.5, f"the wait took {took:.1f} s for a maximum of 1.5 s"
