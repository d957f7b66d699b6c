"""A real Fides webserver (and, optionally, Celery workers) with the connector installed."""

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from fides_movable_ink import installer
from fides_movable_ink.devstack.fides_api import FidesApi
from fides_movable_ink.devstack.services import Postgres, Redis, free_port

STARTUP_TIMEOUT = 240.0


@dataclass
class FidesServer:
    """Runs `fides webserver` (and `fides worker` processes) in `workdir`, where it reads data/saas."""

    workdir: Path
    postgres: Postgres
    redis: Redis
    app_db: str
    workers: int = 0
    log: Callable[[str], None] = print
    port: int = field(default_factory=free_port)
    root_client_id: str = "mi_devstack_root"
    root_client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    redis_db_index: int = 0  # 0: claim a free database at start (and empty it at stop)
    app_encryption_key: str = field(default_factory=lambda: secrets.token_hex(16))
    extra_env: dict[str, str] = field(default_factory=dict)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _claimed_redis_db: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webserver_log(self) -> Path:
        return self.workdir / "fides-webserver.log"

    def worker_log(self, index: int) -> Path:
        return self.workdir / f"fides-worker-{index}.log"

    def logs(self) -> list[Path]:
        return [self.webserver_log] + [self.worker_log(i) for i in range(self.workers)]

    @property
    def broker_url(self) -> str:
        return self.redis.url(self.redis_db_index)

    def env(self) -> dict[str, str]:
        """Fides settings. DEV_MODE and disabled domain validation exist only for the loopback sandbox."""
        broker = self.broker_url
        settings = {
            "FIDES__DATABASE__SERVER": self.postgres.host,
            "FIDES__DATABASE__PORT": str(self.postgres.port),
            "FIDES__DATABASE__USER": self.postgres.user,
            "FIDES__DATABASE__PASSWORD": self.postgres.password,
            "FIDES__DATABASE__DB": self.app_db,
            "FIDES__REDIS__HOST": self.redis.host,
            "FIDES__REDIS__PORT": str(self.redis.port),
            "FIDES__REDIS__PASSWORD": self.redis.password,
            "FIDES__REDIS__DB_INDEX": str(self.redis_db_index),
            "FIDES__CELERY__BROKER_URL": broker,
            "FIDES__CELERY__RESULT_BACKEND": broker,
            "FIDES__CELERY__TASK_ALWAYS_EAGER": "false" if self.workers else "true",
            "FIDES__SECURITY__APP_ENCRYPTION_KEY": self.app_encryption_key,
            "FIDES__SECURITY__OAUTH_ROOT_CLIENT_ID": self.root_client_id,
            "FIDES__SECURITY__OAUTH_ROOT_CLIENT_SECRET": self.root_client_secret,
            "FIDES__EXECUTION__REQUIRE_MANUAL_REQUEST_APPROVAL": "false",
            "FIDES__EXECUTION__SUBJECT_IDENTITY_VERIFICATION_REQUIRED": "false",
            # Sandbox only: Fides refuses loopback hosts outside dev mode, and the sandbox's
            # 127.0.0.1:port is not one of Movable Ink's allowed domains.
            "FIDES__DEV_MODE": "true",
            "FIDES__SECURITY__DOMAIN_VALIDATION_MODE": "disabled",
            "FIDES__USER__ANALYTICS_OPT_OUT": "true",
        }
        return {**os.environ, **settings, **self.extra_env}

    def start(self) -> "FidesServer":
        """Starts the webserver and workers; if any fails to come up, stops the others first."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "FidesServer":
        if not self.redis_db_index:
            self.redis_db_index = self.redis.claim_database()
            self._claimed_redis_db = True
        self.log(f"Fides: installing the connector into {self.workdir}")
        installer.install(self.workdir)
        env = self.env()
        fides = str(Path(sys.executable).with_name("fides"))
        self._spawn([fides, "webserver", "--port", str(self.port)], self.webserver_log, env)
        self.log(f"Fides: starting the webserver on {self.url} (log: {self.webserver_log})")
        self._wait_healthy()
        for index in range(self.workers):
            # Each worker serves a Celery health check on its own port.
            worker_env = {**env, "FIDES__CELERY__HEALTHCHECK_PORT": str(free_port())}
            self._spawn([fides, "worker"], self.worker_log(index), worker_env)
        if self.workers:
            self.log(f"Fides: started {self.workers} Celery worker(s)")
            self._wait_for_workers()
        return self

    def api(self) -> FidesApi:
        return FidesApi(self.url, self.root_client_id, self.root_client_secret)

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        if self._claimed_redis_db:
            self.redis.flush_database(self.redis_db_index)
            self._claimed_redis_db = False

    def worker_processes(self) -> list[subprocess.Popen[bytes]]:
        return self._processes[1:]

    def _spawn(self, command: list[str], log_path: Path, env: dict[str, str]) -> None:
        with open(log_path, "ab") as log_file:
            self._processes.append(
                subprocess.Popen(command, cwd=self.workdir, env=env, stdout=log_file, stderr=subprocess.STDOUT)
            )

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        webserver = self._processes[0]
        while time.monotonic() < deadline:
            if webserver.poll() is not None:
                raise RuntimeError(
                    f"Fides webserver exited with code {webserver.returncode} during start-up:\n"
                    + tail(self.webserver_log)
                )
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Fides webserver not healthy after {STARTUP_TIMEOUT:.0f} s:\n" + tail(self.webserver_log))

    def _wait_for_workers(self) -> None:
        """Celery logs 'ready.' once a worker consumes its queues."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            for index, process in enumerate(self.worker_processes()):
                if process.poll() is not None:
                    raise RuntimeError(f"Fides worker {index} exited during start-up:\n" + tail(self.worker_log(index)))
            if all("ready." in self.worker_log(i).read_text(errors="replace") for i in range(self.workers)):
                return
            time.sleep(0.5)
        raise RuntimeError("Fides workers not ready in time:\n" + tail(self.worker_log(0)))


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def read_log(paths: list[Path]) -> str:
    return "\n".join(p.read_text(errors="replace") for p in paths if p.exists())

