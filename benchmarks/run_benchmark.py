"""Movable Ink erasures through a real Fides: the blocking connector against Fides' async polling.

Run:  .venv/bin/python benchmarks/run_benchmark.py [--quick]

Prints figures (stdout) and progress (stderr); exits 1 if any erasure does not complete.
See benchmarks/README.md for what each figure means and how it is measured.
"""

import argparse
import ast
import json
import math
import os
import shutil
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, cast

import redis
import yaml
from celery import Celery

from fides_movable_ink import contract, installer, templates
from fides_movable_ink.devstack.fides_api import TERMINAL_REQUEST_STATUSES, FidesApi
from fides_movable_ink.devstack.stack import CONNECTION_KEY, SYSTEM_KEY, Stack
from fides_movable_ink.sandbox import KIND_STATUS, KIND_SUBMIT, KIND_TOKEN, DeletionRecord, RequestRecord

BENCH_DIR = Path(__file__).resolve().parent
SHIM_SOURCE = BENCH_DIR / "fides_shim_async.py"
SHIM_INSTALLED = "movable_ink_async_benchmark.py"  # name inside Fides' override_implementations
ASYNC_TEMPLATE = BENCH_DIR / "async_template" / "movable_ink_async_config.yml"
ASYNC_TYPE = ASYNC_KEY = "movable_ink_async"
TASK_LOG_ENV = "MI_BENCH_TASK_LOG"
REGISTER_REQUEUE_ENV = "MI_BENCH_REGISTER_REQUEUE"

BLOCKING, ASYNC = "blocking", "async"
MODES = (BLOCKING, ASYNC)
MODE_KEY = {BLOCKING: CONNECTION_KEY, ASYNC: ASYNC_KEY}

# Fides' hourly job, sent by us at a faster fixed cadence (see README, "Async polling cadence").
REQUEUE_TASK = "fides.api.service.privacy_request.request_service.requeue_polling_tasks"
CELERY_QUEUES = ("fides", "fides.dsr")
KOMBU_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")  # kombu's Redis priority lists
PRODUCTION_CADENCE_S = 3600  # FIDES__EXECUTION__ASYNC_POLLING_INTERVAL_HOURS=1 (an int: 1 h is the minimum)

# Production defaults of the blocking connector (the devstack's defaults are faster, for tests).
POLL_INTERVAL_S = 2.0
MAX_WAIT_S = 900.0

T0 = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- the async peer: template and shim -------------------------------------------------------------


def check_shim_matches_contract() -> None:
    """The shim repeats a few contract names (it must import nothing of ours): make sure they agree."""
    constants = {}
    for node in ast.parse(SHIM_SOURCE.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Constant, ast.Tuple)):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = ast.literal_eval(node.value)
    expected = {
        "DSR_PATH": contract.DSR_PATH,
        "FIELD_STATUS": contract.FIELD_STATUS,
        "FIELD_ERROR": contract.FIELD_ERROR,
        "STATUS_COMPLETED": contract.DeletionStatus.COMPLETED.value,
        "STATUS_FAILED": contract.DeletionStatus.FAILED.value,
        "STATUSES_IN_PROGRESS": (contract.DeletionStatus.PENDING.value, contract.DeletionStatus.PROCESSING.value),
        "TASK_LOG_ENV": TASK_LOG_ENV,
        "REGISTER_REQUEUE_ENV": REGISTER_REQUEUE_ENV,
    }
    wrong = {k: (constants.get(k), v) for k, v in expected.items() if constants.get(k) != v}
    if wrong:
        raise SystemExit(f"{SHIM_SOURCE.name} disagrees with fides_movable_ink.contract: {wrong}")
    template = yaml.safe_load(ASYNC_TEMPLATE.read_text(encoding="utf-8"))["saas_config"]
    delete = template["endpoints"][0]["requests"]["delete"]
    if delete["path"] != contract.DSR_PATH or json.loads(delete["body"]).keys() != contract.submit_body("b", "m", "r").keys():
        raise SystemExit(f"{ASYNC_TEMPLATE.name} disagrees with fides_movable_ink.contract")


class Shim:
    """Copies the shim into Fides' override_implementations for this run; `remove()` undoes it."""

    def __init__(self) -> None:
        self.path = installer.fides_overrides_dir() / SHIM_INSTALLED

    def install(self) -> None:
        if self.path.exists():
            progress(f"replacing a shim left by an earlier run: {self.path}")
        shutil.copyfile(SHIM_SOURCE, self.path)
        progress(f"installed the async-polling shim {self.path}")

    def remove(self) -> None:
        removed = self.path.exists()
        self.path.unlink(missing_ok=True)
        for cached in (self.path.parent / "__pycache__").glob(f"{self.path.stem}.*.pyc"):
            cached.unlink(missing_ok=True)
        if removed:
            progress(f"removed the async-polling shim {self.path}")


def install_async_template(workdir: Path) -> None:
    """Benchmark-only SaaS template, into this Fides working dir only (read at webserver start)."""
    saas = workdir / "data" / "saas"
    for folder in ("config", "dataset", "icon"):
        (saas / folder).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ASYNC_TEMPLATE, saas / "config" / f"{ASYNC_TYPE}_config.yml")
    shutil.copyfile(templates.dataset_file(), saas / "dataset" / f"{ASYNC_TYPE}_dataset.yml")
    shutil.copyfile(templates.icon_file(), saas / "icon" / f"{ASYNC_TYPE}.svg")


class BenchApi(FidesApi):
    """The few extra REST calls the benchmark needs."""

    def instantiate(self, connector_type: str, key: str, secrets: dict[str, Any]) -> None:
        self._call("POST", f"/connection/instantiate/{connector_type}",
                   json={"name": f"Movable Ink ({key})", "key": key, "instance_key": key, "secrets": secrets})
        self._call("PUT", f"/connection/{key}/system-links", json={"links": [{"system_fides_key": SYSTEM_KEY}]})

    def set_disabled(self, key: str, disabled: bool) -> None:
        self._call("PATCH", "/connection", json=[{"key": key, "name": f"Movable Ink ({key})", "connection_type": "saas",
                                                  "access": "write", "disabled": disabled}])

    def upsert_dataset(self, dataset: dict[str, Any]) -> None:
        self._call("POST", "/dataset/upsert", json=[dataset])

    def submit_batch(self, emails: list[str]) -> list[str]:
        """All erasures in one POST, as a batch submitted at once."""
        answer = self._call("POST", "/privacy-request", json=[
            {"identity": {"email": email}, "policy_key": "default_erasure_policy"} for email in emails])
        if answer.get("failed"):
            raise RuntimeError(f"Fides refused privacy requests: {answer['failed']}")
        return [str(item["id"]) for item in answer["succeeded"]]

    def recent_requests(self) -> dict[str, dict[str, Any]]:
        answer = self._call("GET", "/privacy-request?size=50")
        return {str(item["id"]): item for item in answer["items"]}

    def request_tasks(self, request_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/privacy-request/{request_id}/tasks"))


def use_mode(api: BenchApi, mode: str) -> None:
    """Exactly one Movable Ink connection enabled, and the mapping row erased after it."""
    target = MODE_KEY[mode]
    dataset = yaml.safe_load(templates.mapping_dataset_file().read_text(encoding="utf-8"))["dataset"][0]
    dataset["collections"][0]["fides_meta"]["erase_after"] = [f"{target}.user"]
    api.set_disabled(target, False)
    api.upsert_dataset(dataset)
    for other in MODE_KEY.values():
        if other != target:
            api.set_disabled(other, True)


# -- the polling job at a faster cadence -------------------------------------------------------------


class PollTicker:
    """Sends Fides' `requeue_polling_tasks` Celery task every `cadence` seconds while active.

    Production runs that job once an hour from the webserver's scheduler. A tick is skipped
    while Fides' Celery queues still hold messages, so fast ticks never pile duplicate
    continuations behind unfinished work (production's hourly ticks never do either).
    """

    def __init__(self, broker_url: str, cadence: float) -> None:
        self.cadence = cadence
        self._celery = Celery(broker=broker_url)
        self._redis = redis.Redis.from_url(broker_url)
        self._active = threading.Event()
        self._stop = threading.Event()
        self.sent = self.skipped = 0
        self._thread = threading.Thread(target=self._run, name="poll-ticker", daemon=True)

    def start(self) -> "PollTicker":
        self._thread.start()
        return self

    def activate(self, on: bool) -> None:
        (self._active.set if on else self._active.clear)()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._celery.close()
        self._redis.close()

    def _queued(self) -> int:
        return sum(cast(int, self._redis.llen(q + s)) for q in CELERY_QUEUES for s in KOMBU_PRIORITY_SUFFIXES)

    def _run(self) -> None:
        due = time.monotonic() + self.cadence
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due += self.cadence
            if not self._active.is_set():
                continue
            try:
                if self._queued():
                    self.skipped += 1
                    continue
                self._celery.send_task(REQUEUE_TASK, queue="fides")
                self.sent += 1
            except Exception as exc:  # keep ticking; the batch timeout reports a stuck erasure
                progress(f"poll ticker: {type(exc).__name__}: {exc}")


# -- measurement -----------------------------------------------------------------------------------


def read_task_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "end":
            records.append(record)
    return records


def celery_succeeded_seconds(logs: Iterable[Path], since_wall: float, until_wall: float) -> Optional[float]:
    """Sum of Celery's own 'Task ... succeeded in X s' durations logged in the window (cross-check)."""
    total, found = 0.0, False
    for path in logs:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if " succeeded in " not in line:
                continue
            try:
                stamp = datetime.fromisoformat(line[:23].replace(" ", "T")).timestamp()
                seconds = float(line.split(" succeeded in ", 1)[1].split("s", 1)[0])
            except (ValueError, IndexError):
                continue
            if since_wall <= stamp <= until_wall + 1:
                total, found = total + seconds, True
    return total if found else None


def wall(value: Optional[str]) -> Optional[float]:
    return datetime.fromisoformat(value).timestamp() if value else None


@dataclass
class Batch:
    mode: str
    workers: int
    processing_time: float
    size: int
    request_ids: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)
    submitted_wall: float = 0.0
    finished_wall: dict[str, float] = field(default_factory=dict)
    tokens: int = 0
    posts: int = 0
    status_calls: int = 0
    mi_us: int = 0
    notice_delays: list[float] = field(default_factory=list)
    complete_delays: list[float] = field(default_factory=list)
    end_to_end: list[float] = field(default_factory=list)
    node_cpu: list[float] = field(default_factory=list)
    node_wall: list[float] = field(default_factory=list)
    all_cpu: list[float] = field(default_factory=list)
    all_wall: list[float] = field(default_factory=list)
    node_task_runs: list[int] = field(default_factory=list)
    ticks: int = 0
    tick_cpu: float = 0.0
    tick_wall: float = 0.0
    celery_log_seconds: Optional[float] = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return len(self.statuses) == self.size and all(s == "complete" for s in self.statuses.values())

    @property
    def throughput(self) -> float:
        return self.size / self.elapsed * 60 if self.elapsed > 0 else math.nan

    @property
    def worker_seconds(self) -> float:
        """Per erasure: every task of the privacy request, plus its share of poll ticks."""
        return statistics.fmean(self.all_wall) + self.tick_wall / self.size


def run_batch(stack: Stack, api: BenchApi, task_log: Path, mode: str, processing_time: float, size: int,
              tag: str, ticker: PollTicker, timeout: float) -> Batch:
    assert stack.sandbox is not None and stack.fides is not None
    batch = Batch(mode, stack.workers, processing_time, size)
    emails = [f"bench-{tag}-{i}@example.com" for i in range(size)]
    for i, email in enumerate(emails):
        stack.seed(email, f"mi-{tag}-{i}")
    ticker.activate(mode == ASYNC)
    start_mono = time.monotonic()
    batch.submitted_wall = time.time()
    batch.request_ids = api.submit_batch(emails)
    ids = set(batch.request_ids)
    deadline = start_mono + timeout
    while True:
        seen = api.recent_requests()
        missing = ids - seen.keys()
        for request_id in missing:  # older than the newest 50: ask one by one
            seen[request_id] = api.privacy_request(request_id)
        batch.statuses = {i: str(seen[i]["status"]) for i in ids}
        if all(s in TERMINAL_REQUEST_STATUSES for s in batch.statuses.values()):
            break
        if time.monotonic() > deadline:
            progress(f"batch {tag}: timed out after {timeout:.0f} s: {sorted(batch.statuses.values())}")
            break
        time.sleep(1.0)
    end_mono = time.monotonic()
    end_wall = time.time()
    ticker.activate(False)
    for request_id in ids:
        finished = wall(seen[request_id].get("finished_processing_at"))
        if finished is not None:
            batch.finished_wall[request_id] = finished
    batch.elapsed = (max(batch.finished_wall.values()) if batch.finished_wall else end_wall) - batch.submitted_wall

    # What Movable Ink (the sandbox) saw.
    records: list[RequestRecord] = stack.sandbox.requests()
    deletions: list[DeletionRecord] = [d for d in stack.sandbox.deletions() if d.reference in ids]
    by_id = {d.id: d for d in deletions}
    batch.mi_us = len({d.mi_u for d in deletions})
    batch.tokens = sum(1 for r in records if r.kind == KIND_TOKEN and start_mono <= r.at <= end_mono)
    batch.posts = sum(1 for r in records if r.kind == KIND_SUBMIT and isinstance(r.body, dict)
                      and r.body.get("reference") in ids)
    batch.status_calls = sum(1 for r in records if r.kind == KIND_STATUS and r.path.rsplit("/", 1)[-1] in by_id)
    for d in deletions:
        if d.completed_at is not None and d.first_observed_terminal_at is not None:
            batch.notice_delays.append(d.first_observed_terminal_at - d.completed_at)
    for request_id in ids:
        done = [d.completed_at_wall for d in deletions if d.reference == request_id and d.completed_at_wall]
        finished = batch.finished_wall.get(request_id)
        if done and finished is not None:
            batch.complete_delays.append(finished - max(done))
        if finished is not None:
            batch.end_to_end.append(finished - batch.submitted_wall)

    # What the Fides workers spent (Celery task_prerun/task_postrun, recorded by the shim).
    time.sleep(0.5)  # let the last task_postrun lines land
    tasks = read_task_log(task_log)
    node_address = f"{MODE_KEY[mode]}:user"
    for request_id in ids:
        own = [t for t in tasks if t.get("privacy_request_id") == request_id]
        node_tasks = {t["id"] for t in api.request_tasks(request_id)
                      if t.get("collection_address") == node_address and t.get("action_type") == "erasure"}
        node = [t for t in own if t.get("request_task_id") in node_tasks]
        batch.all_cpu.append(sum(t["cpu_s"] for t in own))
        batch.all_wall.append(sum(t["wall_s"] for t in own))
        batch.node_cpu.append(sum(t["cpu_s"] for t in node))
        batch.node_wall.append(sum(t["wall_s"] for t in node))
        batch.node_task_runs.append(len(node))
    ticks = [t for t in tasks if t.get("task") == REQUEUE_TASK
             and batch.submitted_wall <= t["start_wall"] <= end_wall]
    batch.ticks = len(ticks)
    batch.tick_cpu = sum(t["cpu_s"] for t in ticks)
    batch.tick_wall = sum(t["wall_s"] for t in ticks)
    batch.celery_log_seconds = celery_succeeded_seconds(
        [stack.fides.worker_log(i) for i in range(stack.workers)], batch.submitted_wall, end_wall)
    return batch


def failure_check(stack: Stack, api: BenchApi, ticker: PollTicker, mode: str) -> str:
    """One erasure whose Movable Ink deletion ends 'failed': what does Fides make of it?"""
    assert stack.sandbox is not None
    use_mode(api, mode)
    stack.sandbox.set_processing_time(0.5)
    stack.sandbox.fail_all()
    email = f"bench-failure-check-{mode}@example.com"
    stack.seed(email, f"mi-failure-check-{mode}")
    ticker.activate(mode == ASYNC)
    try:
        request_id = api.submit_batch([email])[0]
        status = api.wait_for(request_id, timeout=120)  # a failed step turns 'error' only after ~30 s
    except Exception as exc:  # report, do not abort the figures
        status = f"not final ({type(exc).__name__})"
    finally:
        ticker.activate(False)
        stack.sandbox.recover()
    mi = [d.status for d in stack.sandbox.deletions() if d.mi_u == f"mi-failure-check-{mode}"]
    row = "kept (a retry can still find the mi_u)" if stack.mapping_rows(email) else "erased (the mi_u is gone)"
    return f"{mode:>8}: Movable Ink deletion {'/'.join(mi) or 'not sent'} -> Fides request '{status}', mapping row {row}"


# -- output ----------------------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def maximum(values: Sequence[float]) -> float:
    return max(values) if values else math.nan


ROWS: list[tuple[str, Callable[[Batch], str], str]] = [
    ("erasures completed", lambda b: f"{sum(s == 'complete' for s in b.statuses.values())}/{b.size}", "all"),
    ("token requests (batch total)", lambda b: str(b.tokens), "0"),
    ("POSTs per mi_u", lambda b: fmt(b.posts / b.mi_us, 2) if b.mi_us else "-", "1"),
    ("status calls per mi_u", lambda b: fmt(b.status_calls / b.mi_us, 2) if b.mi_us else "-", "1"),
    ("MI done -> connector saw it, s  mean", lambda b: fmt(mean(b.notice_delays)), "0"),
    ("                                max", lambda b: fmt(maximum(b.notice_delays)), ""),
    ("MI done -> request complete, s  mean", lambda b: fmt(mean(b.complete_delays)), ""),
    ("                                max", lambda b: fmt(maximum(b.complete_delays)), ""),
    ("submit -> request complete, s   mean", lambda b: fmt(mean(b.end_to_end)), ""),
    ("connector CPU, ms (MI node tasks)", lambda b: fmt(mean(b.node_cpu) * 1000, 0), ""),
    ("  MI node task runs per erasure", lambda b: fmt(mean(b.node_task_runs), 1), "1"),
    ("Fides worker CPU, ms (all tasks+ticks)", lambda b: fmt((mean(b.all_cpu) + b.tick_cpu / b.size) * 1000, 0), ""),
    ("worker-s held, MI node tasks", lambda b: fmt(mean(b.node_wall), 2), ""),
    ("worker-s held, all tasks+ticks", lambda b: fmt(b.worker_seconds, 2), ""),
    ("  Celery 'succeeded in' sum / erasure", lambda b: fmt(b.celery_log_seconds / b.size, 2)
     if b.celery_log_seconds is not None else "-", ""),
    ("poll ticks run in batch (skipped)", lambda b: f"{b.ticks}" if b.mode == ASYNC else "-", ""),
    ("batch throughput, erasures/min", lambda b: fmt(b.throughput, 1), ""),
]


def print_tables(batches: list[Batch], worker_counts: list[int], processing_times: list[float],
                 cadence: float, skipped: dict[tuple[int, float], int], failure_lines: list[str]) -> None:
    columns = [(w, m) for w in worker_counts for m in MODES]
    label_width = 40
    for pt in processing_times:
        cells = {(b.workers, b.mode): b for b in batches if b.processing_time == pt}
        size = next(iter(cells.values())).size if cells else 0
        print()
        print(f"== Movable Ink processing time {pt:g} s: batch of {size} erasures submitted at once, 1 mi_u each ==")
        header = "".join(f"{f'{w}w {m}':>13}" for w, m in columns)
        print(f"{'figure (per erasure unless noted)':<{label_width}}{header}{'ideal':>7}")
        for label, render, ideal in ROWS:
            values = "".join(f"{render(cells[c]) if c in cells else '-':>13}" for c in columns)
            if label.startswith("poll ticks"):
                values = "".join(
                    f"{(render(cells[c]) + f' ({skipped.get((c[0], pt), 0)})') if c in cells and c[1] == ASYNC else '-':>13}"
                    for c in columns)
            print(f"{label:<{label_width}}{values}{ideal:>7}")
        ratios = []
        for w in worker_counts:
            b, a = cells.get((w, BLOCKING)), cells.get((w, ASYNC))
            if b and a:
                ratios.append(
                    f"{w}w: async/blocking worker-s {a.worker_seconds / b.worker_seconds:.2f}x, "
                    f"throughput {a.throughput / b.throughput:.2f}x, "
                    f"status calls {a.status_calls / max(b.status_calls, 1):.2f}x")
        b1, b2 = cells.get((1, BLOCKING)), cells.get((2, BLOCKING))
        if b1 and b2:
            ratios.append(f"blocking 2w/1w throughput {b2.throughput / b1.throughput:.2f}x")
        a1, a2 = cells.get((1, ASYNC)), cells.get((2, ASYNC))
        if a1 and a2:
            ratios.append(f"async 2w/1w throughput {a2.throughput / a1.throughput:.2f}x")
        for line in ratios:
            print(f"  ratio (same run) {line}")
    print()
    print(f"Async mode here: Fides' requeue_polling_tasks sent every {cadence:g} s by the benchmark (SUBSTITUTED);")
    print(f"production runs it every ASYNC_POLLING_INTERVAL_HOURS (int, min 1) = {PRODUCTION_CADENCE_S} s from the")
    print("webserver's scheduler, not aligned to the erasure. Derived (not measured) at production cadence, per erasure:")
    for pt in processing_times:
        extra = pt / PRODUCTION_CADENCE_S  # expected ticks between the POST and MI done
        print(f"  {pt:>5g} s: MI done -> Fides notices U(0, {PRODUCTION_CADENCE_S}) s, mean {PRODUCTION_CADENCE_S / 2:.0f} s;"
              f" submit -> complete ~{pt + PRODUCTION_CADENCE_S / 2:.0f} s mean;"
              f" status calls per mi_u {1 + extra:.3f}; MI node task runs {2 + extra:.3f}")
    print("Capacity per worker slot, erasures/day = 86400 / worker-s held per erasure (derived from the tables):")
    for pt in processing_times:
        parts = []
        for w, m in columns:
            b = next((x for x in batches if x.processing_time == pt and x.workers == w and x.mode == m), None)
            if b and w == 1:
                parts.append(f"{m} {86400 / b.worker_seconds:,.0f}")
        if parts:
            print(f"  {pt:>5g} s (1 worker run): " + ", ".join(parts))
    if failure_lines:
        print("A deletion Movable Ink reports 'failed' (one erasure per mode, last stack):")
        for line in failure_lines:
            print(f"  {line}")


# -- the run ---------------------------------------------------------------------------------------


def configure_async(stack: Stack, api: BenchApi) -> None:
    secrets = {k: v for k, v in stack.secrets(stack.mapping_dataset).items()
               if k not in ("max_wait_seconds", "poll_interval_seconds")}
    api.instantiate(ASYNC_TYPE, ASYNC_KEY, secrets)
    api.use_http_for_sandbox(ASYNC_KEY)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small matrix: a smoke check, not figures to quote")
    parser.add_argument("--cadence", type=float, default=5.0,
                        help="seconds between requeue_polling_tasks ticks in async mode (production: 3600)")
    args = parser.parse_args(argv)
    if args.quick:
        worker_counts, processing_times, sizes = [1, 2], [0.5, 5.0], {0.5: 2, 5.0: 2}
    else:
        worker_counts, processing_times, sizes = [1, 2], [0.5, 5.0, 30.0], {0.5: 6, 5.0: 6, 30.0: 4}

    check_shim_matches_contract()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the finally blocks stop Fides and remove the shim
    shim = Shim()
    batches: list[Batch] = []
    warm_failures: list[Batch] = []
    failure_lines: list[str] = []
    skipped: dict[tuple[int, float], int] = {}
    started = time.monotonic()
    try:
        shim.install()
        for workers in worker_counts:
            task_log = Path(os.environ.get("TMPDIR", "/tmp")) / f"mi-bench-tasks-{os.getpid()}-{workers}.jsonl"
            task_log.unlink(missing_ok=True)
            stack = Stack(
                workers=workers, processing_time=0.5, poll_interval_seconds=POLL_INTERVAL_S,
                max_wait_seconds=MAX_WAIT_S, log=progress,
                fides_env={TASK_LOG_ENV: str(task_log), REGISTER_REQUEUE_ENV: "1",
                           "FIDES__CELERY__WORKER_CONCURRENCY": "1"},
            )
            install_async_template(stack.workdir)
            with stack:
                assert stack.fides is not None and stack.sandbox is not None
                progress(f"{workers} worker(s): Fides uses Redis database {stack.fides.redis_db_index}")
                api = BenchApi(stack.fides.url, stack.fides.root_client_id, stack.fides.root_client_secret)
                configure_async(stack, api)
                ticker = PollTicker(stack.fides.broker_url, args.cadence).start()
                try:
                    for mode in MODES:  # warm-up: first erasures load code and fetch a token; not reported
                        use_mode(api, mode)
                        stack.sandbox.set_processing_time(0.5)
                        warm = run_batch(stack, api, task_log, mode, 0.5, workers, f"w{workers}-warm-{mode}",
                                         ticker, timeout=120)
                        progress(f"{workers} worker(s), {mode}: warm-up {'ok' if warm.ok else 'FAILED'}")
                        if not warm.ok:
                            warm_failures.append(warm)
                    for pt in processing_times:
                        stack.sandbox.set_processing_time(pt)
                        for mode in MODES:
                            use_mode(api, mode)
                            size = sizes[pt]
                            rounds = math.ceil(size / workers) if mode == BLOCKING else 1
                            timeout = 60 + rounds * (pt + 45) + pt
                            before = ticker.skipped
                            batch = run_batch(stack, api, task_log, mode, pt, size,
                                              f"w{workers}-{mode}-{pt:g}".replace(".", "_"), ticker, timeout)
                            if mode == ASYNC:
                                skipped[(workers, pt)] = ticker.skipped - before
                            batches.append(batch)
                            progress(f"{workers} worker(s), {mode}, {pt:g} s: {batch.size} erasures in "
                                     f"{batch.elapsed:.1f} s, {'ok' if batch.ok else 'NOT ALL COMPLETE'}")
                    if workers == worker_counts[-1]:
                        failure_lines = [failure_check(stack, api, ticker, mode) for mode in MODES]
                        progress("failed-deletion check: " + " | ".join(failure_lines))
                finally:
                    ticker.stop()
            task_log.unlink(missing_ok=True)
    finally:
        shim.remove()

    print_tables(batches, worker_counts, processing_times, args.cadence, skipped, failure_lines)
    failed = [b for b in warm_failures + batches if not b.ok]
    print(f"\nTotal run time {time.monotonic() - started:.0f} s. "
          f"Each worker: one `fides worker` with --concurrency 1 (one task slot). Blocking connector with its"
          f" production defaults (first status check {POLL_INTERVAL_S:g} s, backoff to 30 s).")
    if args.quick:
        print("--quick: smoke check only; figures from this matrix are too small to quote.")
    if failed:
        print(f"FAILED: {sum(b.size - sum(s == 'complete' for s in b.statuses.values()) for b in failed)} erasure(s)"
              " did not complete: " + "; ".join(f"{b.workers}w {b.mode} {b.processing_time:g}s {b.statuses}" for b in failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
