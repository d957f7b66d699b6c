"""PostgreSQL and Redis for the demo, the end-to-end tests and the benchmarks.

The rule: use the servers reachable at the configured addresses when they answer;
otherwise start private ones from the machine's binaries in a temporary folder, and
stop only what was started here. Private servers listen on 127.0.0.1 only.

Settings (environment variables, with defaults):
``MI_PGHOST`` (127.0.0.1), ``MI_PGPORT`` (5432), ``MI_PGUSER`` (postgres), ``MI_PGPASSWORD``
(empty), ``MI_REDIS_HOST`` (127.0.0.1), ``MI_REDIS_PORT`` (6379), ``MI_REDIS_PASSWORD`` (empty).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import psycopg2
import psycopg2.extensions
import redis
from psycopg2 import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

LOOPBACK = "127.0.0.1"
# "Reachable" means a real connection and a trivial query within about this many seconds.
CONNECT_TIMEOUT = 3
# How long a private server may take to answer after it was launched.
READY_TIMEOUT = 30.0
# Where Debian/Ubuntu install PostgreSQL without putting initdb/pg_ctl in PATH.
POSTGRES_LIB_GLOB = "/usr/lib/postgresql/*/bin"
# initdb refuses to run as root; as root we run the server as this system user.
POSTGRES_OS_USER = "postgres"
# A Unix socket path must fit in sockaddr_un.sun_path (~107 bytes), ".s.PGSQL.NNNNN" included.
MAX_SOCKET_DIR_LEN = 90
# Key that marks a Redis database as claimed by a devstack Fides (flushed with the database).
CLAIM_MARKER = "fides-movable-ink:claimed"
CLAIM_SECONDS = 24 * 3600
# A freshly picked free port can be taken by someone else before the server binds it.
START_ATTEMPTS = 3

INSTALL_POSTGRES = (
    "install PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql`) "
    "or put the directory holding initdb and pg_ctl in PATH, "
    "or set MI_PGHOST/MI_PGPORT/MI_PGUSER/MI_PGPASSWORD to a running server"
)
INSTALL_REDIS = (
    "install Redis (Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`) "
    "or put redis-server in PATH, "
    "or set MI_REDIS_HOST/MI_REDIS_PORT/MI_REDIS_PASSWORD to a running server"
)


@dataclass(frozen=True)
class Postgres:
    """A PostgreSQL server the stack may use; `started_here` says whether we own it."""

    host: str
    port: int
    user: str
    password: str
    started_here: bool

    def dsn(self, dbname: str) -> str:
        """A `postgresql://` URL for `dbname`; both libpq (psycopg2) and SQLAlchemy accept it."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{auth}@{host}:{self.port}/{quote(dbname, safe='')}"

    def create_database(self, name: str) -> None:
        """Create database `name` empty: an existing one is dropped first (connections terminated)."""
        self.drop_database(name)
        with self._admin() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, terminating the connections still open to it."""
        with self._admin() as conn, conn.cursor() as cur:
            if conn.server_version >= 130000:
                # FORCE terminates and drops atomically: no client can slip back in between.
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                return
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    @contextlib.contextmanager
    def _admin(self) -> Iterator[psycopg2.extensions.connection]:
        conn = _pg_connect(self.host, self.port, self.user, self.password)
        try:
            # CREATE/DROP DATABASE cannot run inside a transaction block.
            conn.autocommit = True
            yield conn
        finally:
            conn.close()


@dataclass(frozen=True)
class Redis:
    """A Redis server the stack may use; `started_here` says whether we own it."""

    host: str
    port: int
    password: str
    started_here: bool

    def url(self, db: int) -> str:
        return f"redis://:{quote(self.password, safe='')}@{self.host}:{self.port}/{db}"

    def claim_database(self) -> int:
        """A database (1-15) that no client is connected to and no other stack has claimed.

        Two Fides stacks on one Redis database share Celery queues: one stack's worker then
        takes the other's tasks, whose erasures never finish. Data other programs left in a
        database is never deleted; only `flush_database` of our own claim empties one.
        """
        with self._client(0) as admin:
            in_use = {int(client.get("db", 0)) for client in admin.client_list()}
        for index in range(15, 0, -1):
            if index not in in_use:
                with self._client(index) as probe:
                    # An atomic marker: a stack starting at the same time moves on to another
                    # database. It expires, so a stack that died cannot hold one forever.
                    if probe.set(CLAIM_MARKER, os.getpid(), nx=True, ex=CLAIM_SECONDS):
                        return index
        raise RuntimeError(
            f"Redis at {self.host}:{self.port} has no free database (1-15): other stacks hold them all; "
            "stop them or point MI_REDIS_HOST/MI_REDIS_PORT at another Redis"
        )

    def flush_database(self, index: int) -> None:
        """Empties a claimed database, so the next stack finds it free."""
        with self._client(index) as client:
            client.flushdb()

    @contextlib.contextmanager
    def _client(self, db: int) -> Iterator[redis.Redis]:
        client = redis.Redis(host=self.host, port=self.port, password=self.password or None, db=db)
        try:
            yield client
        finally:
            client.close()


# Wraps a command so it runs as the postgres system user (identity unless we are root).
Runner = Callable[[list[str]], list[str]]


@dataclass
class _PrivatePostgres:
    folder: Path
    pg_ctl: str
    run_as: Runner
    env: dict[str, str]
    port: int | None = None

    def pg_ctl_command(self, *args: str) -> list[str]:
        return self.run_as([self.pg_ctl, "-D", str(self.folder / "data"), *args])


@dataclass
class _PrivateRedis:
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    port: int | None = None


class Services:
    """PostgreSQL and Redis: the configured ones if they answer, else private ones.

    Use as a context manager, or call `start()` and `stop()`. `stop()` only stops and
    deletes what `start()` launched; it is also run at interpreter exit as a safety net.
    """

    def __init__(self, workdir: Path, log: Callable[[str], None] = print) -> None:
        self.workdir = Path(workdir)
        self._log = log
        self._postgres: Postgres | None = None
        self._redis: Redis | None = None
        self._private_pg: _PrivatePostgres | None = None
        self._private_redis: _PrivateRedis | None = None

    @property
    def postgres(self) -> Postgres:
        if self._postgres is None:
            raise RuntimeError("Services.start() has not been called")
        return self._postgres

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("Services.start() has not been called")
        return self._redis

    @property
    def private_folders(self) -> tuple[Path, ...]:
        """The temporary folders of the servers started here (removed by `stop()`)."""
        owned = (self._private_pg, self._private_redis)
        return tuple(p.folder for p in owned if p is not None)

    def start(self) -> Services:
        """Find or start both servers; on failure, whatever was started is stopped again."""
        if self._postgres is not None and self._redis is not None:
            return self
        atexit.register(self.stop)
        try:
            self._postgres = self._postgres or self._use_or_start_postgres()
            self._redis = self._redis or self._use_or_start_redis()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop and delete the private servers started here; servers we merely used are left alone."""
        atexit.unregister(self.stop)
        try:
            if self._private_redis is not None:
                private_redis, self._private_redis = self._private_redis, None
                self._stop_redis(private_redis)
        finally:
            if self._private_pg is not None:
                private_pg, self._private_pg = self._private_pg, None
                self._stop_postgres(private_pg)
            self._postgres = self._redis = None

    def __enter__(self) -> Services:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- PostgreSQL -------------------------------------------------------------------

    def _use_or_start_postgres(self) -> Postgres:
        host = os.environ.get("MI_PGHOST", LOOPBACK)
        port = _env_port("MI_PGPORT", 5432)
        user = os.environ.get("MI_PGUSER", "postgres")
        password = os.environ.get("MI_PGPASSWORD", "")
        problem = _postgres_problem(host, port, user, password)
        if problem is None:
            self._log(f"PostgreSQL: using {host}:{port}")
            return Postgres(host, port, user, password, started_here=False)
        self._log(f"PostgreSQL: nothing usable at {host}:{port} ({problem}); starting a private server")
        port = self._start_postgres(f"PostgreSQL is not usable at {host}:{port} ({problem})")
        return Postgres(LOOPBACK, port, "postgres", "", started_here=True)

    def _start_postgres(self, why: str) -> int:
        initdb, pg_ctl = _find_postgres_binaries(why)
        run_as = _postgres_user_runner(why)
        folder = self._make_folder("postgres-", run_as)
        data = folder / "data"
        # PG* variables (PGPORT, PGDATA, ...) would leak into the server's defaults; LC_ALL=C
        # keeps initdb away from locales the machine lacks.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
        self._private_pg = private = _PrivatePostgres(folder, pg_ctl, run_as, env)

        init = subprocess.run(
            run_as([initdb, "-D", str(data), "--username=postgres", "--auth=trust",
                    "--encoding=UTF8", "--locale=C", "--no-sync"]),
            cwd=folder, env=env, capture_output=True, text=True, timeout=120,
        )
        if init.returncode != 0:
            raise RuntimeError(f"{why}, and initdb failed to create a private cluster:\n{_tail(init.stdout + init.stderr)}")
        # Sockets in our own folder: the system socket directory is not writable by everyone.
        # A path too long for a socket leaves Unix sockets off; we only use TCP anyway.
        socket_dir = str(folder) if len(os.fsencode(str(folder))) <= MAX_SOCKET_DIR_LEN else ""
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            # Appending keeps the file's owner (the postgres user when we run as root).
            conf.write(
                "\n# fides-movable-ink private server: loopback only, durability traded for speed\n"
                f"listen_addresses = '{LOOPBACK}'\n"
                f"unix_socket_directories = {_conf_quote(socket_dir)}\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )

        log_file = folder / "postgres.log"
        for _ in range(START_ATTEMPTS):
            port = free_port()
            started = subprocess.run(
                private.pg_ctl_command("-l", str(log_file), "-o", f"-p {port}", "-w", "-t", str(int(READY_TIMEOUT)), "-s", "start"),
                cwd=folder, env=env, capture_output=True, text=True, timeout=READY_TIMEOUT + 30,
            )
            private.port = port
            if started.returncode == 0 and _wait_until(lambda: _postgres_problem(LOOPBACK, port, "postgres", "") is None):
                self._log(f"PostgreSQL: started a private server on {LOOPBACK}:{port} (files in {folder})")
                return port
            # Most likely someone took the port first; make sure nothing half-started lingers.
            self._pg_ctl_stop(private, "immediate")
        log_text = log_file.read_text(errors="replace") if log_file.exists() else ""
        raise RuntimeError(f"{why}, and a private server in {folder} did not start:\n{_tail(log_text)}")

    def _pg_ctl_stop(self, private: _PrivatePostgres, mode: str) -> bool:
        result = subprocess.run(
            private.pg_ctl_command("-m", mode, "-w", "-t", "30", "-s", "stop"),
            cwd=private.folder, env=private.env, capture_output=True, text=True, timeout=60,
        )
        return result.returncode == 0

    def _stop_postgres(self, private: _PrivatePostgres) -> None:
        pid_file = private.folder / "data" / "postmaster.pid"
        if pid_file.exists() and not self._pg_ctl_stop(private, "fast"):
            self._pg_ctl_stop(private, "immediate")
        if pid_file.exists():
            # Deleting the data directory under a running server would leave it orphaned.
            raise RuntimeError(f"PostgreSQL: could not stop the private server in {private.folder}; stop it by hand")
        shutil.rmtree(private.folder, ignore_errors=True)
        if private.port is not None:
            self._log(f"PostgreSQL: stopped the private server on {LOOPBACK}:{private.port}")

    # --- Redis ------------------------------------------------------------------------

    def _use_or_start_redis(self) -> Redis:
        host = os.environ.get("MI_REDIS_HOST", LOOPBACK)
        port = _env_port("MI_REDIS_PORT", 6379)
        password = os.environ.get("MI_REDIS_PASSWORD", "")
        problem = _redis_problem(host, port, password)
        if problem is None:
            self._log(f"Redis: using {host}:{port}")
            return Redis(host, port, password, started_here=False)
        self._log(f"Redis: nothing usable at {host}:{port} ({problem}); starting a private server")
        port = self._start_redis(f"Redis is not usable at {host}:{port} ({problem})")
        return Redis(LOOPBACK, port, "", started_here=True)

    def _start_redis(self, why: str) -> int:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError(f"{why}, and no private server can be started: redis-server was not found in PATH; {INSTALL_REDIS}")
        folder = self._make_folder("redis-", None)
        self._private_redis = private = _PrivateRedis(folder)
        log_file = folder / "redis.log"
        for _ in range(START_ATTEMPTS):
            port = free_port()
            with open(log_file, "ab") as out:
                private.process = process = subprocess.Popen(
                    [server, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
                     "--daemonize", "no", "--dir", str(folder)],
                    cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                )
            private.port = port

            def answers() -> bool:
                # An exited process will never answer: stop waiting (its port was probably taken).
                return process.poll() is not None or _redis_problem(LOOPBACK, port, "") is None

            if _wait_until(answers) and process.poll() is None:
                self._log(f"Redis: started a private server on {LOOPBACK}:{port} (files in {folder})")
                return port
            _terminate(process)
        raise RuntimeError(f"{why}, and a private server in {folder} did not start:\n{_tail(log_file.read_text(errors='replace'))}")

    def _stop_redis(self, private: _PrivateRedis) -> None:
        if private.process is not None:
            _terminate(private.process)
        shutil.rmtree(private.folder, ignore_errors=True)
        if private.port is not None:
            self._log(f"Redis: stopped the private server on {LOOPBACK}:{private.port}")

    # --- shared -----------------------------------------------------------------------

    def _make_folder(self, prefix: str, run_as: Runner | None) -> Path:
        """A fresh folder under workdir, or under the system temp dir if the postgres user can't reach workdir."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=self.workdir))
        if run_as is None or os.geteuid() != 0 or _usable_by_postgres(folder, run_as):
            return folder
        # As root, workdir often sits under a 0700 directory (e.g. pytest's /tmp/pytest-of-root)
        # that the postgres user cannot traverse; the system temp dir is world-traversable.
        shutil.rmtree(folder, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix=f"fides-mi-{prefix}"))
        if not _usable_by_postgres(folder, run_as):
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError(f"the '{POSTGRES_OS_USER}' user cannot write to {folder}; set TMPDIR to a folder it can use")
        return folder


# --- helpers ----------------------------------------------------------------------------


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"{name}={value!r} is not a port number") from None


def _pg_connect(host: str, port: int, user: str, password: str) -> psycopg2.extensions.connection:
    return psycopg2.connect(
        host=host, port=port, user=user, password=password, dbname="postgres", connect_timeout=CONNECT_TIMEOUT
    )


def _postgres_problem(host: str, port: int, user: str, password: str) -> str | None:
    """None if PostgreSQL answers `SELECT 1` there, else why not (one line, no password)."""
    try:
        conn = _pg_connect(host, port, user, password)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        finally:
            conn.close()
    except psycopg2.Error as exc:
        return _first_line(exc)
    return None


def _redis_problem(host: str, port: int, password: str) -> str | None:
    """None if Redis answers PING there, else why not (one line, no password)."""
    client = redis.Redis(
        host=host, port=port, password=password or None,
        socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT,
        # redis-py retries failed connections with backoff by default (~4 s for a refused
        # port); a probe wants the first answer.
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return _first_line(exc)
    finally:
        client.close()
    return None


def _find_postgres_binaries(why: str) -> tuple[str, str]:
    """initdb and pg_ctl from PATH, else from the newest /usr/lib/postgresql/<version>/bin."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl

    def version(bindir: str) -> tuple[int, ...]:
        try:
            return tuple(int(part) for part in Path(bindir).parent.name.split("."))
        except ValueError:
            return (-1,)

    for bindir in sorted(glob.glob(POSTGRES_LIB_GLOB), key=version, reverse=True):
        initdb, pg_ctl = os.path.join(bindir, "initdb"), os.path.join(bindir, "pg_ctl")
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    raise RuntimeError(
        f"{why}, and no private server can be started: initdb and pg_ctl were not found "
        f"in PATH or under {POSTGRES_LIB_GLOB}; {INSTALL_POSTGRES}"
    )


def _postgres_user_runner(why: str) -> Runner:
    """How to run initdb/pg_ctl: as ourselves, or as the postgres system user when we are root."""
    if os.geteuid() != 0:
        return lambda command: command
    try:
        pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        raise RuntimeError(
            f"{why}, and no private server can be started: running as root, and initdb refuses root, "
            f"but there is no '{POSTGRES_OS_USER}' system user to run it as; {INSTALL_POSTGRES} "
            "(the package creates that user), or run as a non-root user"
        ) from None
    # runuser and su live in sbin/bin, which a reduced PATH (sudo, cron) may lack.
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
    runuser = shutil.which("runuser", path=search)
    if runuser:
        return lambda command: [runuser, "-u", POSTGRES_OS_USER, "--", *command]
    su = shutil.which("su", path=search)
    if su:
        # su takes one shell command; -s because the user's login shell may be nologin.
        return lambda command: [su, "-s", "/bin/sh", POSTGRES_OS_USER, "-c", shlex.join(command)]
    raise RuntimeError(
        f"{why}, and no private server can be started: running as root needs runuser or su "
        f"to run initdb as '{POSTGRES_OS_USER}'; install util-linux, or run as a non-root user"
    )


def _usable_by_postgres(folder: Path, run_as: Runner) -> bool:
    """Hand `folder` to the postgres user and check that it can really get there (all parents)."""
    os.chown(folder, pwd.getpwnam(POSTGRES_OS_USER).pw_uid, -1)
    probe = subprocess.run(run_as(["test", "-w", str(folder), "-a", "-x", str(folder)]), cwd="/", capture_output=True)
    return probe.returncode == 0


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _wait_until(ready: Callable[[], bool], timeout: float = READY_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(0.1)
    return ready()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"
