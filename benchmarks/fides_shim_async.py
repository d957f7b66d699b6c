"""BENCHMARK ONLY: copied by benchmarks/run_benchmark.py into Fides' override_implementations
folder for the length of one benchmark run, and removed after it.

Self-contained (imports only Fides, Celery and the standard library), because Fides imports
every module of that folder in the webserver and in each worker, and any Fides process
started from this venv while the benchmark runs imports it too. Two things:

1. Registers `movable_ink_async_status`, the POLLING_STATUS override of the benchmark's
   `movable_ink_async` template: GET the deletion's status; completed -> complete,
   pending/processing -> not yet, failed (or anything else) -> raise.
2. Only when MI_BENCH_TASK_LOG is set (the benchmark sets it for its own Fides processes):
   appends one JSON line per Celery task run with its wall time and CPU time.
3. Only when MI_BENCH_REGISTER_REQUEUE is set: imports the module that defines Fides'
   `requeue_polling_tasks` task, so that workers accept it. Fides' workers do not register
   it (it is not in their autodiscovery list): production calls it directly, once an hour,
   from the webserver's scheduler. The benchmark sends it itself at a faster cadence.

No `from __future__ import annotations`: Fides checks the override's return annotation.
"""

import json
import os
import time
from typing import Any, Dict
from urllib.parse import quote

from fides.api.common_exceptions import FidesopsException
from fides.api.schemas.saas.shared_schemas import HTTPMethod, PollingStatusResult, SaaSRequestParams
from fides.api.service.connectors.saas.authenticated_client import AuthenticatedClient
from fides.api.service.saas_request.saas_request_override_factory import SaaSRequestType, register

# Mirrors fides_movable_ink.contract; run_benchmark.py checks they agree before copying this file.
STATUS_OVERRIDE = "movable_ink_async_status"
DSR_PATH = "/api/v2/data-subject-rights"
FIELD_STATUS = "status"
FIELD_ERROR = "error"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUSES_IN_PROGRESS = ("pending", "processing")
TASK_LOG_ENV = "MI_BENCH_TASK_LOG"
REGISTER_REQUEUE_ENV = "MI_BENCH_REGISTER_REQUEUE"


@register(STATUS_OVERRIDE, [SaaSRequestType.POLLING_STATUS])
def movable_ink_async_status(
    client: AuthenticatedClient,
    param_values: Dict[str, Any],
    request_config: Any,
    secrets: Dict[str, Any],
) -> PollingStatusResult:
    """One status call for the Movable Ink request id Fides stored as the correlation id."""
    request_id = str(param_values["correlation_id"])
    response = client.send(SaaSRequestParams(method=HTTPMethod.GET, path=f"{DSR_PATH}/{quote(request_id, safe='')}"))
    try:
        answer = response.json()
    except ValueError as exc:
        raise FidesopsException(f"Movable Ink status of request {request_id} is not JSON") from exc
    status = answer.get(FIELD_STATUS) if isinstance(answer, dict) else None
    if status == STATUS_COMPLETED:
        return PollingStatusResult(is_complete=True)
    if status in STATUSES_IN_PROGRESS:
        return PollingStatusResult(is_complete=False)
    if status == STATUS_FAILED:
        raise FidesopsException(f"Movable Ink deletion request {request_id} failed: {answer.get(FIELD_ERROR)}")
    raise FidesopsException(f"Movable Ink deletion request {request_id} has an unexpected status {status!r}")


def _install_task_recorder(path: str) -> None:
    """Celery signals run in the prefork child that executes the task."""
    from celery.signals import task_postrun, task_prerun

    started: Dict[str, tuple] = {}

    def _append(record: Dict[str, Any]) -> None:
        line = (json.dumps(record, default=str) + "\n").encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)  # one write per line: O_APPEND keeps lines of several processes whole
            finally:
                os.close(fd)
        except OSError:
            pass  # measurement must never fail a task

    @task_prerun.connect(weak=False)
    def _prerun(task_id: Any = None, task: Any = None, **_: Any) -> None:
        started[str(task_id)] = (time.time(), time.monotonic(), time.process_time(), time.thread_time())
        _append({"event": "start", "task": getattr(task, "name", str(task)), "task_id": str(task_id),
                 "start_wall": started[str(task_id)][0]})

    @task_postrun.connect(weak=False)
    def _postrun(task_id: Any = None, task: Any = None, args: Any = None, kwargs: Any = None,
                 state: Any = None, **_: Any) -> None:
        begun = started.pop(str(task_id), None)
        if begun is None:
            return
        kwargs = kwargs or {}
        _append({
            "event": "end",
            "task": getattr(task, "name", str(task)),
            "task_id": str(task_id),
            "pid": os.getpid(),
            "state": state,
            "privacy_request_id": kwargs.get("privacy_request_id") or (args[0] if args else None),
            "request_task_id": kwargs.get("privacy_request_task_id"),
            "start_wall": begun[0],
            "end_wall": time.time(),
            "wall_s": time.monotonic() - begun[1],
            "cpu_s": time.process_time() - begun[2],
            "thread_cpu_s": time.thread_time() - begun[3],
        })


if os.environ.get(TASK_LOG_ENV):
    try:
        _install_task_recorder(os.environ[TASK_LOG_ENV])
    except Exception:  # pylint: disable=broad-except  # measurement must never stop Fides
        pass

if os.environ.get(REGISTER_REQUEUE_ENV):
    try:
        import fides.api.service.privacy_request.request_service  # noqa: F401  (registers requeue_polling_tasks)
    except Exception:  # pylint: disable=broad-except  # the benchmark then reports stuck async erasures
        pass
