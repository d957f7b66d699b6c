"""The main job in one command: an erasure through a real Fides, deleting from the sandbox.

`fides-movable-ink demo` starts (or reuses) PostgreSQL and Redis, the Movable Ink sandbox
and a Fides webserver with the connector installed, configures Fides as the Admin UI
would, submits an erasure for a seeded email, shows progress, and prints the outcome.
"""

import argparse
import threading
import time
from typing import Any, Optional, Sequence

from fides_movable_ink.devstack.fides_api import TERMINAL_REQUEST_STATUSES
from fides_movable_ink.devstack.stack import CONNECTION_KEY, Stack

DEMO_EMAIL = "jane.doe@example.com"
DEMO_MI_US = ("mi_u-7f3a9c1e", "mi_u-b25d40aa")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="fides-movable-ink demo", description=__doc__)
    parser.add_argument("--processing-time", type=float, default=3.0, help="seconds Movable Ink takes per deletion")
    parser.add_argument("--workers", type=int, default=0, help="Celery workers (0: run inside the webserver)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder with Fides' logs")
    args = parser.parse_args(argv)

    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    try:
        with Stack(workers=args.workers, processing_time=args.processing_time, log=say, keep_workdir=args.keep) as stack:
            return run_erasure(stack, say)
    except Exception as exc:  # the demo's user wants the reason, not a traceback
        say(f"FAILED: {exc}")
        return 1


def run_erasure(stack: Stack, say: Any) -> int:
    api, sandbox = stack.api, stack.sandbox
    assert sandbox is not None

    test = api.test_connection(CONNECTION_KEY)
    say(f"Fides: Test connection of '{CONNECTION_KEY}': {test['test_status']} {test.get('failure_reason') or ''}")
    if test["test_status"] != "succeeded":
        return 1

    stack.seed(DEMO_EMAIL, *DEMO_MI_US)
    say(f"Mapping table: {DEMO_EMAIL} -> {', '.join(DEMO_MI_US)}")
    sandbox.reset()

    # With Celery in eager mode the POST returns only after the erasure ran: submit it in a
    # thread and follow its progress from what Movable Ink (the sandbox) receives meanwhile.
    submitted: dict[str, Any] = {}

    def submit() -> None:
        try:
            submitted["id"] = api.submit_erasure(DEMO_EMAIL)
        except Exception as exc:
            submitted["error"] = exc

    say(f"Fides: submitting an erasure privacy request for {DEMO_EMAIL}")
    worker = threading.Thread(target=submit, daemon=True)
    worker.start()
    seen: dict[str, str] = {}
    status = ""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        for deletion in sandbox.deletions():
            shown = "received" if deletion.first_observed_terminal_at is None else f"{deletion.status}, seen by Fides"
            if seen.get(deletion.id) != shown:
                seen[deletion.id] = shown
                say(f"Movable Ink: deletion {deletion.id} for {deletion.mi_u}: {shown}")
        if "error" in submitted:
            raise submitted["error"]
        if "id" in submitted:
            status = str(api.privacy_request(submitted["id"])["status"])
            if status in TERMINAL_REQUEST_STATUSES:
                break
        time.sleep(0.25)

    request_id = submitted.get("id", "(none)")
    say(f"Fides: privacy request {request_id} is '{status}'")
    for entry in api.execution_log(request_id) if "id" in submitted else []:
        if entry.get("collection_name") and entry["status"] != "in_processing":
            say(f"  {entry['dataset_name']}.{entry['collection_name']} {entry['action_type']}: "
                f"{entry['status']} {entry.get('message') or ''}")
    print()
    print(f"Privacy request {request_id}: {status}")
    print("Movable Ink deletions (submitted -> Fides saw it confirmed):")
    for deletion in sandbox.deletions():
        took = (
            f"{deletion.first_observed_terminal_at - deletion.submitted_at:.1f} s"
            if deletion.first_observed_terminal_at is not None
            else "not confirmed"
        )
        print(f"  {deletion.id}  {deletion.status:<10} {took}")
    remaining = stack.mapping_rows(DEMO_EMAIL)
    print(f"Mapping rows left for {DEMO_EMAIL}: {len(remaining)} (erased after Movable Ink confirmed)")
    ok = status == "complete" and all(d.status == "completed" for d in sandbox.deletions()) and len(seen) == len(DEMO_MI_US)
    return 0 if ok else 1
