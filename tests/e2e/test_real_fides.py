"""Erasures through a real Fides webserver, a real PostgreSQL mapping table and the sandbox over HTTP."""

from pathlib import Path

import pytest

from fides_movable_ink import installer
from fides_movable_ink.devstack.stack import BRAND, CONNECTION_KEY, Stack

pytestmark = pytest.mark.e2e


def erase(stack: Stack, email: str, timeout: float = 90) -> tuple[str, str]:
    request_id = stack.api.submit_erasure(email)
    return request_id, stack.api.wait_for(request_id, timeout=timeout)


def error_messages(stack: Stack, request_id: str) -> str:
    return " ".join(
        str(entry.get("message") or "") for entry in stack.api.execution_log(request_id) if entry["status"] == "error"
    )


def test_happy_path_deletes_from_movable_ink_then_erases_the_mapping_row(fresh: Stack) -> None:
    fresh.seed("happy@example.com", "mi-happy-1")
    fresh.reset_secrets()  # drops the stored token
    fresh.sandbox.reset()  # type: ignore[union-attr]

    request_id, status = erase(fresh, "happy@example.com")

    assert status == "complete"
    sandbox = fresh.sandbox
    assert sandbox is not None
    assert len(sandbox.requests("token")) == 1
    [submit] = sandbox.requests("submit")
    assert submit.body == {"request_type": "delete", "brand": BRAND, "mi_u": "mi-happy-1", "reference": request_id}
    [deletion] = sandbox.deletions()
    polls = sandbox.requests("status")
    assert polls and all(deletion.id in poll.path for poll in polls)
    assert deletion.status == "completed" and deletion.first_observed_terminal_at is not None
    assert fresh.mapping_rows("happy@example.com") == []  # masked after Movable Ink confirmed


def test_two_mi_u_for_one_email_are_both_deleted_and_confirmed(fresh: Stack) -> None:
    fresh.seed("two@example.com", "mi-two-a", "mi-two-b")

    _, status = erase(fresh, "two@example.com")

    assert status == "complete"
    deletions = fresh.sandbox.deletions()  # type: ignore[union-attr]
    assert sorted(d.mi_u for d in deletions) == ["mi-two-a", "mi-two-b"]
    assert all(d.status == "completed" and d.first_observed_terminal_at is not None for d in deletions)


def test_email_without_mapping_row_completes_and_sends_nothing(fresh: Stack) -> None:
    _, status = erase(fresh, "nobody@example.com")

    assert status == "complete"
    assert fresh.sandbox.requests("submit") == []  # type: ignore[union-attr]
    assert fresh.sandbox.requests("status") == []  # type: ignore[union-attr]


def test_failed_deletion_errors_with_our_message_then_retry_completes(fresh: Stack) -> None:
    sandbox = fresh.sandbox
    assert sandbox is not None
    fresh.seed("fails@example.com", "mi-fails-1")
    sandbox.fail_mi_u("mi-fails-1", error="account locked")

    request_id, status = erase(fresh, "fails@example.com")

    assert status == "error"
    [deletion] = sandbox.deletions()
    message = error_messages(fresh, request_id)
    assert f"request {deletion.id}" in message and "failed (account locked)" in message
    assert "retry this privacy request" in message
    assert "mi-fails-1" not in message
    assert len(fresh.mapping_rows("fails@example.com")) == 1  # the mapping survives a failed deletion

    sandbox.recover()
    fresh.api.retry(request_id)
    assert fresh.api.wait_for(request_id, timeout=90) == "complete"
    assert sandbox.deletions()[-1].status == "completed"
    assert fresh.mapping_rows("fails@example.com") == []


def test_wrong_client_secret_fails_test_connection_saying_so(fresh: Stack) -> None:
    try:
        result = fresh.api.patch_secrets(CONNECTION_KEY, {"client_secret": "not-the-secret"})
        assert result["test_status"] == "failed"
        assert "refused the credentials" in (result.get("failure_reason") or "")
        assert "Client Secret" in (result.get("failure_reason") or "")
    finally:
        fresh.reset_secrets()  # puts the right secret back
    assert fresh.api.test_connection(CONNECTION_KEY)["test_status"] == "succeeded"


def test_five_requests_in_a_row_reuse_one_token(fresh: Stack) -> None:
    emails = [f"five-{n}@example.com" for n in range(5)]
    for n, email in enumerate(emails):
        fresh.seed(email, f"mi-five-{n}")
    fresh.reset_secrets()  # drops the stored token
    fresh.sandbox.reset()  # type: ignore[union-attr]

    statuses = [erase(fresh, email)[1] for email in emails]

    assert statuses == ["complete"] * 5
    assert len(fresh.sandbox.requests("submit")) == 5  # type: ignore[union-attr]
    assert len(fresh.sandbox.requests("token")) == 1  # type: ignore[union-attr]


def test_package_zip_is_accepted_by_fides_upload_integration(fresh: Stack, tmp_path: Path) -> None:
    archive = installer.package(tmp_path / "movable_ink.zip")
    answer = fresh.api.register_template(archive.read_bytes())
    assert answer == {"message": "Connector template successfully registered."}
    fresh.api.use_http_for_sandbox(CONNECTION_KEY)  # the upload refreshes instances from the template
    fresh.seed("after-upload@example.com", "mi-after-upload")
    assert erase(fresh, "after-upload@example.com")[1] == "complete"
