"""The dev stack's PostgreSQL and Redis: use the machine's servers, or start and stop private ones."""

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import redis

from fides_movable_ink.devstack import services
from fides_movable_ink.devstack.services import Services

MI_VARS = ("MI_PGHOST", "MI_PGPORT", "MI_PGUSER", "MI_PGPASSWORD", "MI_REDIS_HOST", "MI_REDIS_PORT", "MI_REDIS_PASSWORD")
DB = "mi_services_test"


@pytest.fixture(autouse=True)
def default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the defaults, whatever the developer's shell exports."""
    for name in MI_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def lines() -> list[str]:
    return []


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def select_one(dsn: str) -> int:
    conn = psycopg2.connect(dsn, connect_timeout=3)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def ping(host: str, port: int, password: str) -> bool:
    client = redis.Redis(host=host, port=port, password=password or None, socket_timeout=3)
    try:
        return bool(client.ping())
    finally:
        client.close()


def exercise_postgres(pg: services.Postgres) -> None:
    pg.create_database(DB)
    conn = psycopg2.connect(pg.dsn(DB), connect_timeout=3)  # held open: create/drop must terminate it
    try:
        pg.create_database(DB)  # recreating drops the existing one first
        assert conn.closed or _is_terminated(conn)
        assert select_one(pg.dsn(DB)) == 1
    finally:
        conn.close()
    pg.drop_database(DB)
    with pytest.raises(psycopg2.OperationalError, match="does not exist"):
        select_one(pg.dsn(DB))
    pg.drop_database(DB)  # dropping a missing database is fine


def _is_terminated(conn: psycopg2.extensions.connection) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    except psycopg2.Error:
        return True
    return False


@pytest.fixture
def running_servers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """Ports of a PostgreSQL and a Redis that someone else runs: the machine's, or private ones.

    On a machine without servers at the default addresses, an outer Services starts them, so
    the "reuse" path is tested everywhere instead of being skipped.
    """
    if not (services._postgres_problem("127.0.0.1", 5432, "postgres", "") or services._redis_problem("127.0.0.1", 6379, "")):
        yield 5432, 6379
        return
    monkeypatch.setenv("MI_PGPORT", str(unused_port()))
    monkeypatch.setenv("MI_REDIS_PORT", str(unused_port()))
    with Services(tmp_path / "outer", log=lambda line: None) as outer:
        monkeypatch.setenv("MI_PGPORT", str(outer.postgres.port))
        monkeypatch.setenv("MI_REDIS_PORT", str(outer.redis.port))
        yield outer.postgres.port, outer.redis.port


def test_uses_running_servers_and_leaves_them_running(
    running_servers: tuple[int, int], tmp_path: Path, lines: list[str]
) -> None:
    pg_port, redis_port = running_servers
    work = tmp_path / "work"
    work.mkdir()
    with Services(work, log=lines.append) as stack:
        assert stack.postgres == services.Postgres("127.0.0.1", pg_port, "postgres", "", started_here=False)
        assert stack.redis == services.Redis("127.0.0.1", redis_port, "", started_here=False)
        assert stack.private_folders == ()
        exercise_postgres(stack.postgres)
    assert lines == [f"PostgreSQL: using 127.0.0.1:{pg_port}", f"Redis: using 127.0.0.1:{redis_port}"]
    # stop() must not touch servers it did not start.
    assert select_one(f"postgresql://postgres@127.0.0.1:{pg_port}/postgres") == 1
    assert ping("127.0.0.1", redis_port, "")
    assert list(work.iterdir()) == []


def test_starts_private_servers_and_removes_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lines: list[str]) -> None:
    pg_port, redis_port = unused_port(), unused_port()
    monkeypatch.setenv("MI_PGPORT", str(pg_port))
    monkeypatch.setenv("MI_REDIS_PORT", str(redis_port))
    stack = Services(tmp_path / "work", log=lines.append)
    try:
        stack.start()
    except RuntimeError as exc:
        pytest.fail(f"could not start private PostgreSQL/Redis servers on this machine: {exc}")
    try:
        pg, rd = stack.postgres, stack.redis
        folders = stack.private_folders
        assert pg.started_here and rd.started_here
        assert (pg.host, pg.user, pg.password, rd.host, rd.password) == ("127.0.0.1", "postgres", "", "127.0.0.1", "")
        assert len(folders) == 2 and all(folder.is_dir() for folder in folders)
        assert select_one(pg.dsn("postgres")) == 1
        exercise_postgres(pg)
        assert ping(rd.host, rd.port, rd.password)
        # Two stacks never share a Redis database; a flushed claim is free again.
        first, second = rd.claim_database(), rd.claim_database()
        assert first != second and {first, second} <= set(range(1, 16))
        rd.flush_database(first)
        assert rd.claim_database() == first
    finally:
        stack.stop()
    assert not port_open(pg.port), "the private PostgreSQL still listens after stop()"
    assert not port_open(rd.port), "the private Redis still listens after stop()"
    assert not any(folder.exists() for folder in folders), "stop() left the temporary folders behind"
    stack.stop()  # a second stop is harmless
    assert lines[0].startswith(f"PostgreSQL: nothing usable at 127.0.0.1:{pg_port} (")
    assert f"PostgreSQL: started a private server on 127.0.0.1:{pg.port}" in "\n".join(lines)
    assert f"Redis: started a private server on 127.0.0.1:{rd.port}" in "\n".join(lines)
    assert f"PostgreSQL: stopped the private server on 127.0.0.1:{pg.port}" in lines


def test_missing_binaries_are_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lines: list[str]) -> None:
    monkeypatch.setenv("MI_PGPORT", str(unused_port()))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(services, "POSTGRES_LIB_GLOB", str(tmp_path / "no-postgresql" / "*" / "bin"))
    stack = Services(tmp_path / "work", log=lines.append)
    with pytest.raises(RuntimeError, match=r"initdb and pg_ctl were not found.*apt-get install postgresql.*MI_PGHOST"):
        stack.start()
    assert stack.private_folders == ()
    with pytest.raises(RuntimeError, match="start"):
        stack.postgres
