"""Fides with two real Celery workers: many erasures at once, and a worker killed mid-poll."""

import os
import signal
import subprocess
import time
from collections import Counter

import pytest

from fides_movable_ink.devstack.stack import Stack

pytestmark = pytest.mark.e2e


def test_100_erasures_at_once_each_mi_u_deleted_exactly_once(worker_stack: Stack) -> None:
    sandbox = worker_stack.sandbox
    assert sandbox is not None
    sandbox.reset()
    worker_stack.reset_secrets()  # drops the stored token
    sandbox.reset()
    emails = [f"bulk-{n:03}@example.com" for n in range(100)]
    expected: list[str] = []
    for n, email in enumerate(emails):
        if n % 10 == 9:
            continue  # ten emails have no mapping row
        mi_us = [f"mi-bulk-{n:03}-a"] + ([f"mi-bulk-{n:03}-b"] if n % 5 == 0 else [])
        worker_stack.seed(email, *mi_us)
        expected += mi_us

    started = time.monotonic()
    request_ids = worker_stack.api.submit_erasures(emails)
    statuses = worker_stack.api.wait_for_all(request_ids, timeout=900)
    took = time.monotonic() - started

    assert Counter(statuses.values()) == {"complete": 100}
    posted = Counter(record.body["mi_u"] for record in sandbox.requests("submit"))  # type: ignore[index]
    assert posted == Counter(expected), "every mapped mi_u deleted exactly once, nothing for unmapped emails"
    assert all(d.status == "completed" and d.first_observed_terminal_at is not None for d in sandbox.deletions())
    tokens = len(sandbox.requests("token"))
    print(f"\n100 erasures ({len(expected)} mi_u) with 2 workers in {took:.0f} s; token requests: {tokens}")
    assert 1 <= tokens <= 4, f"{tokens} token requests for 100 erasures: tokens must be shared, not per request"


def test_worker_killed_while_polling_the_deletion_is_still_confirmed(worker_stack: Stack) -> None:
    sandbox = worker_stack.sandbox
    fides = worker_stack.fides
    assert sandbox is not None and fides is not None
    sandbox.reset()
    sandbox.set_processing_time(6.0)
    worker_stack.seed("killed@example.com", "mi-killed-1")

    request_id = worker_stack.api.submit_erasure("killed@example.com")
    deadline = time.monotonic() + 60
    while not sandbox.requests("submit") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox.requests("submit"), "the deletion was never submitted"
    [deletion] = sandbox.deletions()
    time.sleep(1.0)  # now polling: Movable Ink takes 6 s
    polling = [
        (index, process)
        for index, process in enumerate(fides.worker_processes())
        if f"Movable Ink deletion request {deletion.id}" in fides.worker_log(index).read_text(errors="replace")
    ]
    assert len(polling) == 1, "exactly one worker polls the deletion"
    index, worker = polling[0]
    children = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True).stdout.split()
    for pid in [worker.pid, *map(int, children)]:
        os.kill(pid, signal.SIGKILL)

    # Fides' interrupted-task check (every 10 s here, 300 s by default) re-queues the task on the
    # surviving worker; if it did not, an operator's retry would.
    status = worker_stack.api.wait_for(request_id, timeout=120)
    if status == "error":
        worker_stack.api.retry(request_id)
        status = worker_stack.api.wait_for(request_id, timeout=120)

    assert status == "complete"
    deletions = sandbox.deletions()
    assert {d.mi_u for d in deletions} == {"mi-killed-1"}
    assert all(d.status == "completed" for d in deletions)
    assert any(d.first_observed_terminal_at is not None for d in deletions), "Fides saw a confirmation"
    # The re-run POSTs again (2 deletions for one mi_u): harmless, deleting a person twice.
    assert 1 <= len(deletions) <= 2
    assert worker_stack.mapping_rows("killed@example.com") == []
