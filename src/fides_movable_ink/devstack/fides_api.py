"""The Fides REST calls the Admin UI makes to set up the connector and run privacy requests."""

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import requests
import yaml

from fides_movable_ink import templates

TERMINAL_REQUEST_STATUSES = {"complete", "error", "canceled", "denied"}
MAX_REQUESTS_PER_CALL = 50  # POST /privacy-request refuses longer lists


class FidesApiError(RuntimeError):
    """A Fides API call failed; the message carries Fides' answer."""


@dataclass(frozen=True)
class MappingDatabase:
    """Where the customer's email-to-mi_u table lives, as Fides' Postgres connector sees it."""

    host: str
    port: int
    user: str
    password: str
    dbname: str


class FidesApi:
    """Authenticated calls to one Fides webserver (base URL without /api/v1)."""

    def __init__(self, base_url: str, client_id: str, client_secret: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        token = self._call(
            "POST",
            "/oauth/token",
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret},
        )["access_token"]
        self._session.headers["Authorization"] = f"Bearer {token}"

    # -- set-up, in the order the Admin UI does it -------------------------------------------

    def create_system(self, fides_key: str, name: str) -> None:
        self._call(
            "POST",
            "/system",
            json={"fides_key": fides_key, "name": name, "system_type": "Service", "privacy_declarations": []},
            ok=(200, 201, 409),  # 409: it exists already, which is what we want
        )

    def connect_mapping_database(self, key: str, database: MappingDatabase, dataset_yaml: str) -> str:
        """Postgres connection (write access, or the erasure never finishes) with the mapping dataset."""
        self._call(
            "PATCH",
            "/connection",
            json=[{"key": key, "name": "Movable Ink user map", "connection_type": "postgres", "access": "write"}],
        )
        self._call(
            "PUT",
            f"/connection/{key}/secret?verify=true",
            json={
                "host": database.host,
                "port": database.port,
                "username": database.user,
                "password": database.password,
                "dbname": database.dbname,
            },
        )
        dataset = yaml.safe_load(dataset_yaml)["dataset"][0]
        self._call("POST", "/dataset/upsert", json=[dataset])
        self._call(
            "PATCH",
            f"/connection/{key}/datasetconfig",
            json=[{"fides_key": dataset["fides_key"], "ctl_dataset_fides_key": dataset["fides_key"]}],
        )
        return str(dataset["fides_key"])

    def instantiate_movable_ink(self, key: str, secrets: dict[str, Any], system_key: Optional[str]) -> None:
        """The connector from its template, with its secrets and the mi_u reference."""
        self._call(
            "POST",
            f"/connection/instantiate/{templates.CONNECTOR_TYPE}",
            json={"name": f"Movable Ink ({key})", "key": key, "instance_key": key, "secrets": secrets},
        )
        if system_key:
            self._call("PUT", f"/connection/{key}/system-links", json={"links": [{"system_fides_key": system_key}]})

    def use_http_for_sandbox(self, key: str) -> None:
        """The template says https; a sandbox on 127.0.0.1 speaks http (this instance only)."""
        config = self._call("GET", f"/connection/{key}/saas_config")
        config["client_config"]["protocol"] = "http"
        self._call("PATCH", f"/connection/{key}/saas_config", json=config)

    def set_secrets(self, key: str, secrets: dict[str, Any]) -> dict[str, Any]:
        """Replaces a connection's secrets (also drops a stored OAuth token) and tests it."""
        return self._call("PUT", f"/connection/{key}/secret?verify=true", json=secrets)

    def patch_secrets(self, key: str, secrets: dict[str, Any]) -> dict[str, Any]:
        """Edits some secrets, as the Integrations form does, and tests the connection."""
        return self._call("PATCH", f"/connection/{key}/secret?verify=true", json=secrets)

    def register_template(self, zip_bytes: bytes) -> dict[str, Any]:
        """Fides' "Upload integration"."""
        return self._call(
            "POST", "/connector-templates/register", data=zip_bytes, headers={"Content-Type": "application/zip"}
        )

    def test_connection(self, key: str) -> dict[str, Any]:
        return self._call("GET", f"/connection/{key}/test")

    # -- privacy requests ----------------------------------------------------------------------

    def submit_erasure(self, email: str, policy_key: str = "default_erasure_policy") -> str:
        return self.submit_erasures([email], policy_key)[0]

    def submit_erasures(self, emails: list[str], policy_key: str = "default_erasure_policy") -> list[str]:
        """Submits one erasure per email, 50 per call (Fides' limit); returns the ids in the same order."""
        ids: list[str] = []
        for start in range(0, len(emails), MAX_REQUESTS_PER_CALL):
            batch = emails[start : start + MAX_REQUESTS_PER_CALL]
            answer = self._call(
                "POST", "/privacy-request", json=[{"identity": {"email": e}, "policy_key": policy_key} for e in batch]
            )
            if answer.get("failed"):
                raise FidesApiError(f"Fides refused privacy requests: {answer['failed']}")
            # Fides answers in the order it was given (the answer omits the identity).
            ids += [str(item["id"]) for item in answer["succeeded"]]
        return ids

    def privacy_request(self, request_id: str) -> dict[str, Any]:
        answer = self._call("GET", f"/privacy-request?request_id={request_id}&verbose=true")
        return dict(answer["items"][0])

    def execution_log(self, request_id: str) -> list[dict[str, Any]]:
        answer = self._call("GET", f"/privacy-request/{request_id}/log?size=100")
        return list(answer["items"])

    def wait_for_all(self, request_ids: list[str], timeout: float = 600.0) -> dict[str, str]:
        """Polls until every privacy request is terminal; returns each final status."""
        deadline = time.monotonic() + timeout
        final: dict[str, str] = {}
        while True:
            for request_id in [r for r in request_ids if r not in final]:
                status = str(self.privacy_request(request_id)["status"])
                if status in TERMINAL_REQUEST_STATUSES:
                    final[request_id] = status
            if len(final) == len(request_ids):
                return final
            if time.monotonic() > deadline:
                raise FidesApiError(f"{len(request_ids) - len(final)} privacy request(s) not finished after {timeout:.0f} s")
            time.sleep(1.0)

    def retry(self, request_id: str) -> None:
        self._call("POST", f"/privacy-request/{request_id}/retry")

    def wait_for(
        self,
        request_id: str,
        timeout: float = 120.0,
        on_status: Optional[Callable[[str], None]] = None,
        until: frozenset[str] = frozenset(TERMINAL_REQUEST_STATUSES),
    ) -> str:
        """Polls a privacy request until its status is in `until`; returns that status."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            status = str(self.privacy_request(request_id)["status"])
            if status != last and on_status:
                on_status(status)
            last = status
            if status in until:
                return status
            if time.monotonic() > deadline:
                raise FidesApiError(f"privacy request {request_id} still '{status}' after {timeout:.0f} s")
            time.sleep(0.5)

    # -------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kwargs: Any) -> Any:
        response = self._session.request(method, f"{self.base_url}/api/v1{path}", timeout=300, **kwargs)
        if response.status_code not in ok:
            raise FidesApiError(f"{method} {path} -> HTTP {response.status_code}: {response.text[:1000]}")
        return response.json() if response.content else None
