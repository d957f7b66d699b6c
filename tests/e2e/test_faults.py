"""Movable Ink misbehaving during live privacy requests in a real Fides.

Each fault ends one of two ways: the privacy request completes with every deletion
confirmed, or it ends in error with a message naming the Movable Ink request ids and
what to do.
"""

import threading
import time
from collections import Counter
from datetime import datetime

import pytest

from fides_movable_ink.devstack.stack import CONNECTION_KEY, Stack
from fides_movable_ink.sandbox import Sandbox

pytestmark = pytest.mark.e2e


def erase(stack: Stack, email: str) -> tuple[str, str]:
    request_id = stack.api.submit_erasure(email)
    return request_id, stack.api.wait_for(request_id, timeout=120)


def assert_all_confirmed(sandbox: Sandbox, mi_u: str) -> None:
    deletions = [d for d in sandbox.deletions() if d.mi_u == mi_u]
    assert deletions and all(d.status == "completed" for d in deletions)
    assert any(d.first_observed_terminal_at is not None for d in deletions)


def error_message(stack: Stack, request_id: str) -> str:
    return " ".join(str(e.get("message") or "") for e in stack.api.execution_log(request_id) if e["status"] == "error")


@pytest.fixture
def sandbox(fresh: Stack) -> Sandbox:
    assert fresh.sandbox is not None
    return fresh.sandbox


def test_5xx_burst_is_retried_and_completes(fresh: Stack, sandbox: Sandbox) -> None:
    fresh.seed("burst@example.com", "mi-burst")
    sandbox.server_errors(3, status=503, kinds=["submit", "status"])

    _, status = erase(fresh, "burst@example.com")

    assert status == "complete"
    assert Counter(r.status for r in sandbox.requests("submit"))[503] >= 1
    assert len([d for d in sandbox.deletions() if d.mi_u == "mi-burst"]) == 1  # a 503 creates nothing
    assert_all_confirmed(sandbox, "mi-burst")


def test_429_waits_retry_after_then_completes(fresh: Stack, sandbox: Sandbox) -> None:
    fresh.seed("limited@example.com", "mi-limited")
    sandbox.rate_limit(1, retry_after=2, kinds=["submit"])

    _, status = erase(fresh, "limited@example.com")

    assert status == "complete"
    limited, accepted = sandbox.requests("submit")
    assert (limited.status, accepted.status) == (429, 201)
    assert accepted.at - limited.at >= 1.9, "the connector waited Retry-After before repeating"
    assert_all_confirmed(sandbox, "mi-limited")


def test_token_revoked_mid_poll_gets_a_new_token_and_completes(fresh: Stack, sandbox: Sandbox) -> None:
    fresh.seed("revoked@example.com", "mi-revoked")
    sandbox.set_processing_time(4.0)
    outcome: dict[str, tuple[str, str]] = {}
    runner = threading.Thread(target=lambda: outcome.update(result=erase(fresh, "revoked@example.com")))
    runner.start()
    deadline = time.monotonic() + 60
    while not sandbox.requests("status") and time.monotonic() < deadline:
        time.sleep(0.05)
    sandbox.revoke_tokens()
    runner.join(timeout=150)

    assert outcome["result"][1] == "complete"
    statuses = [r.status for r in sandbox.requests("status")]
    assert 401 in statuses and statuses[-1] == 200
    assert len(sandbox.requests("token")) == 1, "exactly one new token after the revocation"
    assert_all_confirmed(sandbox, "mi-revoked")
    assert fresh.api.test_connection(CONNECTION_KEY)["test_status"] == "succeeded"


def test_dropped_connections_are_retried_and_complete(fresh: Stack, sandbox: Sandbox) -> None:
    fresh.seed("dropped@example.com", "mi-dropped")
    sandbox.drop_connections(2, kinds=["submit", "status"])

    _, status = erase(fresh, "dropped@example.com")

    assert status == "complete"
    assert any(r.status is None for r in sandbox.requests())  # the sandbox really dropped them
    assert_all_confirmed(sandbox, "mi-dropped")


def test_lost_answer_to_a_post_means_a_second_harmless_deletion(fresh: Stack, sandbox: Sandbox) -> None:
    fresh.seed("lost@example.com", "mi-lost")
    sandbox.drop_connections(1, kinds=["submit"], after_processing=True)

    _, status = erase(fresh, "lost@example.com")

    assert status == "complete"
    deletions = [d for d in sandbox.deletions() if d.mi_u == "mi-lost"]
    assert len(deletions) == 2, "the POST whose answer was lost is repeated"
    assert all(d.status == "completed" for d in deletions)


def test_malformed_status_answer_is_asked_again_and_completes(fresh: Stack, sandbox: Sandbox) -> None:
    fresh.seed("garbled@example.com", "mi-garbled")
    sandbox.malformed_json(1, kinds=["status"])

    _, status = erase(fresh, "garbled@example.com")

    assert status == "complete"
    assert_all_confirmed(sandbox, "mi-garbled")


def test_malformed_answer_to_the_post_errors_naming_the_fix_then_retry_completes(fresh: Stack, sandbox: Sandbox) -> None:
    fresh.seed("garbled-post@example.com", "mi-garbled-post")
    sandbox.malformed_json(1, kinds=["submit"])

    request_id, status = erase(fresh, "garbled-post@example.com")

    assert status == "error"
    message = error_message(fresh, request_id)
    assert "has no request id" in message and "Retry the privacy request" in message
    fresh.api.retry(request_id)
    assert fresh.api.wait_for(request_id, timeout=120) == "complete"
    assert_all_confirmed(sandbox, "mi-garbled-post")


def test_deletion_slower_than_the_wait_limit_errors_naming_the_request_id(fresh: Stack, sandbox: Sandbox) -> None:
    fresh.seed("slow@example.com", "mi-slow")
    fresh.api.set_secrets(CONNECTION_KEY, fresh.secrets(fresh.mapping_dataset, max_wait_seconds="3"))
    sandbox.set_processing_time(30.0)
    try:
        request_id, status = erase(fresh, "slow@example.com")
    finally:
        fresh.reset_secrets()

    assert status == "error"
    [deletion] = sandbox.deletions()
    message = error_message(fresh, request_id)
    assert f"request {deletion.id}" in message and "timed out" in message
    assert "after waiting 3 s" in message and "Follow up the request ids" in message
    assert len(fresh.mapping_rows("slow@example.com")) == 1  # nothing lost: the mapping stays


def test_status_answers_slower_than_the_wait_limit_error_within_it(fresh: Stack, sandbox: Sandbox) -> None:
    fresh.seed("sluggish@example.com", "mi-sluggish")
    fresh.api.set_secrets(CONNECTION_KEY, fresh.secrets(fresh.mapping_dataset, max_wait_seconds="3"))
    sandbox.slow_responses(50, delay=20.0, kinds=["status"])
    try:
        request_id, status = erase(fresh, "sluggish@example.com")
    finally:
        fresh.reset_secrets()

    assert status == "error"
    [deletion] = sandbox.deletions()
    message = error_message(fresh, request_id)
    assert f"request {deletion.id}" in message and "timed out" in message and "after waiting 3 s" in message
    # The step gave up within the wait it allowed, not after a 20 s answer (which would have
    # said "completed") or its retries.
    steps = {
        entry["status"]: datetime.fromisoformat(entry["updated_at"])
        for entry in fresh.api.execution_log(request_id)
        if entry.get("collection_name") == "user" and entry["action_type"] == "erasure"
    }
    assert (steps["error"] - steps["in_processing"]).total_seconds() < 8


def test_failed_deletion_names_every_request_id_including_confirmed_ones(fresh: Stack, sandbox: Sandbox) -> None:
    fresh.seed("half@example.com", "mi-half-ok", "mi-half-bad")
    sandbox.fail_mi_u("mi-half-bad", error="user is under legal hold")

    request_id, status = erase(fresh, "half@example.com")

    assert status == "error"
    by_mi_u = {d.mi_u: d for d in sandbox.deletions()}
    message = error_message(fresh, request_id)
    assert f"request {by_mi_u['mi-half-ok'].id}" in message and "completed" in message
    assert f"request {by_mi_u['mi-half-bad'].id}" in message and "failed (user is under legal hold)" in message
    assert "confirmed 1 of 2" in message
