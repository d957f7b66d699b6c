"""The whole stack for the demo, the end-to-end tests and the benchmark.

PostgreSQL and Redis (the machine's, or private ones), the Movable Ink sandbox, a real
Fides webserver (and workers) with the connector installed, configured through Fides'
REST API the way the Admin UI does it.
"""

import secrets
import shutil
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, Optional

import psycopg2

from fides_movable_ink import templates
from fides_movable_ink.devstack.fides_api import FidesApi, MappingDatabase
from fides_movable_ink.devstack.fides_server import FidesServer
from fides_movable_ink.devstack.services import Services
from fides_movable_ink.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Sandbox

SYSTEM_KEY = "acme_marketing"
MAPPING_CONNECTION = "movable_ink_mapping_db"
CONNECTION_KEY = "movable_ink"  # the mapping dataset's erase_after names this key
BRAND = "Acme"


class Stack:
    """Starts everything in `start()`, stops what it started in `stop()`."""

    def __init__(
        self,
        workers: int = 0,
        processing_time: float = 1.0,
        poll_interval_seconds: float = 0.5,
        max_wait_seconds: float = 120.0,
        log: Callable[[str], None] = print,
        keep_workdir: bool = False,
        fides_env: Optional[dict[str, str]] = None,
    ) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="fides-movable-ink-"))
        self.workers = workers
        self.processing_time = processing_time
        self.poll_interval_seconds = poll_interval_seconds
        self.max_wait_seconds = max_wait_seconds
        self.log = log
        self.keep_workdir = keep_workdir
        self.fides_env = fides_env or {}
        suffix = secrets.token_hex(4)
        self.app_db = f"fides_mi_app_{suffix}"
        self.customer_db = f"fides_mi_customer_{suffix}"
        self.services = Services(self.workdir, log=log)
        self.sandbox: Optional[Sandbox] = None
        self.fides: Optional[FidesServer] = None
        self._api: Optional[FidesApi] = None
        self._databases: list[str] = []
        self.mapping_dataset = "movable_ink_mapping"

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def api(self) -> FidesApi:
        assert self._api is not None, "start() first"
        return self._api

    def start(self) -> "Stack":
        """Starts everything; if a part fails to come up, stops what did."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "Stack":
        self.services.start()
        postgres = self.services.postgres
        for name in (self.app_db, self.customer_db):
            postgres.create_database(name)
            self._databases.append(name)
        with self._customer_connection() as connection, connection.cursor() as cursor:
            cursor.execute(templates.mapping_sql_file().read_text(encoding="utf-8"))
        self.log(f"PostgreSQL: created the Fides database {self.app_db} and the mapping table in {self.customer_db}")

        self.sandbox = Sandbox(processing_time=self.processing_time, brand=BRAND).start()
        self.log(f"Movable Ink sandbox: serving on {self.sandbox.url}")

        self.fides = FidesServer(
            self.workdir,
            postgres,
            self.services.redis,
            self.app_db,
            workers=self.workers,
            log=self.log,
            extra_env=self.fides_env,
        ).start()
        self._api = self.fides.api()
        self.configure()
        return self

    def configure(self) -> None:
        """What a privacy engineer does in the Admin UI, through the same REST calls."""
        postgres = self.services.postgres
        api = self.api
        api.create_system(SYSTEM_KEY, "Acme marketing")
        mapping_dataset = api.connect_mapping_database(
            MAPPING_CONNECTION,
            MappingDatabase(postgres.host, postgres.port, postgres.user, postgres.password, self.customer_db),
            templates.mapping_dataset_file().read_text(encoding="utf-8"),
        )
        self.log(f"Fides: Postgres connection '{MAPPING_CONNECTION}' with dataset '{mapping_dataset}'")
        api.instantiate_movable_ink(CONNECTION_KEY, self.secrets(mapping_dataset), SYSTEM_KEY)
        api.use_http_for_sandbox(CONNECTION_KEY)
        self.mapping_dataset = mapping_dataset
        self.log(f"Fides: Movable Ink integration '{CONNECTION_KEY}' linked to system '{SYSTEM_KEY}'")

    def secrets(self, mapping_dataset: str = "movable_ink_mapping", **overrides: Any) -> dict[str, Any]:
        """The Integrations form as filled in for the sandbox."""
        assert self.sandbox is not None
        return {
            "domain": f"127.0.0.1:{self.sandbox.port}",
            "brand": BRAND,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "max_wait_seconds": str(self.max_wait_seconds),
            "poll_interval_seconds": str(self.poll_interval_seconds),
            "movable_ink_user_id": {
                "dataset": mapping_dataset,
                "field": "movable_ink_user_map.mi_u",
                "direction": "from",
            },
            **overrides,
        }

    def seed(self, email: str, *mi_us: Optional[str]) -> None:
        """Adds mapping rows; an email with no mi_u gets none."""
        with self._customer_connection() as connection, connection.cursor() as cursor:
            for mi_u in mi_us:
                cursor.execute("INSERT INTO movable_ink_user_map (email, mi_u) VALUES (%s, %s)", (email, mi_u))

    def mapping_rows(self, email: str) -> list[tuple[Any, ...]]:
        with self._customer_connection() as connection, connection.cursor() as cursor:
            cursor.execute("SELECT email, mi_u FROM movable_ink_user_map WHERE email = %s", (email,))
            return list(cursor.fetchall())

    def reset_secrets(self) -> None:
        """Puts back the stack's own Integrations form; this also drops the OAuth token Fides stored."""
        self.api.set_secrets(CONNECTION_KEY, self.secrets(self.mapping_dataset))

    def stop(self) -> None:
        if self.fides is not None:
            self.fides.stop()
        if self.sandbox is not None:
            self.sandbox.stop()
        for name in self._databases:
            try:
                self.services.postgres.drop_database(name)
            except Exception as exc:  # keep stopping the rest
                self.log(f"PostgreSQL: could not drop {name}: {exc}")
        self._databases.clear()
        self.services.stop()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _customer_connection(self) -> Any:
        """Autocommit connection that closes on exit (psycopg2's own context manager does not close)."""
        connection = psycopg2.connect(self.services.postgres.dsn(self.customer_db))
        connection.autocommit = True
        return closing(connection)

