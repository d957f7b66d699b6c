"""A local simulator of Movable Ink's DSR API, served over real HTTP on 127.0.0.1.

It speaks the contract in `fides_movable_ink.contract` (OAuth2 client credentials,
submit a deletion, poll its status) and can be told to misbehave: fail deletions,
answer 5xx or 429, revoke tokens, drop connections, answer slowly or with broken JSON.
Faults and records are reachable from Python and, for other processes, under `/_sandbox/`.

It is built on `http.server` rather than an ASGI server because only a raw socket
handler can close a connection mid-request without answering.
"""

import argparse
import copy
import hashlib
import hmac
import json
import math
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from fides_movable_ink import contract

SANDBOX_CLIENT_ID = "sandbox-client"
SANDBOX_CLIENT_SECRET = "sandbox-secret"
LOOPBACK = "127.0.0.1"
ADMIN_PREFIX = "/_sandbox/"
REDACTED = "REDACTED"
DEFAULT_FAILURE = "simulated failure"

KIND_TOKEN, KIND_SUBMIT, KIND_STATUS, KIND_OTHER = "token", "submit", "status", "other"
FAULT_KINDS = frozenset({KIND_TOKEN, KIND_SUBMIT, KIND_STATUS})
DSR_KINDS = frozenset({KIND_SUBMIT, KIND_STATUS})


def _keys_by_value(mapping: Mapping[str, Any]) -> dict[Any, str]:
    return {value: key for key, value in mapping.items()}


# The contract spells the two request bodies only through its builders; read the field
# names back out of them (with marker values) so a correction there needs no edit here.
_SUBMIT_KEYS = _keys_by_value(contract.submit_body(brand="\0b", mi_u="\0m", reference="\0r"))
F_REQUEST_TYPE = _SUBMIT_KEYS[contract.REQUEST_TYPE_DELETE]
F_BRAND, F_MI_U, F_REFERENCE = _SUBMIT_KEYS["\0b"], _SUBMIT_KEYS["\0m"], _SUBMIT_KEYS["\0r"]
_FORM = contract.token_form(client_id="\0i", client_secret="\0s")
_FORM_KEYS = _keys_by_value(_FORM)
F_CLIENT_ID, F_CLIENT_SECRET = _FORM_KEYS["\0i"], _FORM_KEYS["\0s"]
F_SCOPE = _FORM_KEYS[contract.TOKEN_SCOPE]
F_GRANT_TYPE = next(k for k in _FORM if k not in {F_CLIENT_ID, F_CLIENT_SECRET, F_SCOPE})
GRANT_TYPE = _FORM[F_GRANT_TYPE]

# Fault methods the admin API may call by name.
FAULTS = (
    "fail_mi_u", "fail_all", "recover", "server_errors", "rate_limit", "revoke_tokens",
    "drop_connections", "slow_responses", "malformed_json", "set_processing_time",
)


@dataclass(frozen=True)
class ClientRecord:
    """An OAuth2 client the sandbox accepts."""

    secret: str
    scopes: Collection[str] = (contract.TOKEN_SCOPE,)


@dataclass(frozen=True)
class RequestRecord:
    """One request the sandbox received (admin calls excluded)."""

    method: str
    path: str
    kind: str  # token | submit | status | other
    body: Any  # JSON body or form fields, client secret redacted; None if empty
    token_id: str | None  # short hash of the bearer token, never the token itself
    status: int | None  # None: the connection was dropped without an answer
    at: float  # time.monotonic() when the request arrived
    faults: tuple[str, ...] = ()  # faults applied to this request


@dataclass(frozen=True)
class DeletionRecord:
    """A deletion as it stands now; times are time.monotonic() unless named *_wall."""

    id: str
    mi_u: str
    brand: str
    reference: str
    status: str
    error: str | None
    processing_time: float
    submitted_at: float
    completed_at: float | None  # when it became terminal (completed or failed)
    first_observed_terminal_at: float | None  # first status answer that showed it terminal
    submitted_at_wall: float
    completed_at_wall: float | None


@dataclass
class _Deletion:
    id: str
    mi_u: str
    brand: str
    reference: str
    processing_time: float
    fail_error: str | None  # fixed at submit, so recover() never rewrites history
    submitted_at: float = field(default_factory=time.monotonic)
    submitted_at_wall: float = field(default_factory=time.time)
    first_observed_terminal_at: float | None = None

    def status_at(self, now: float) -> contract.DeletionStatus:
        elapsed = now - self.submitted_at
        if elapsed >= self.processing_time:
            failed = self.fail_error is not None
            return contract.DeletionStatus.FAILED if failed else contract.DeletionStatus.COMPLETED
        if elapsed >= self.processing_time / 3:
            return contract.DeletionStatus.PROCESSING
        return contract.DeletionStatus.PENDING

    def record(self, now: float) -> DeletionRecord:
        status = self.status_at(now)
        terminal = status in contract.TERMINAL_STATUSES
        return DeletionRecord(
            id=self.id, mi_u=self.mi_u, brand=self.brand, reference=self.reference,
            status=str(status),
            error=self.fail_error if status == contract.DeletionStatus.FAILED else None,
            processing_time=self.processing_time,
            submitted_at=self.submitted_at,
            completed_at=self.submitted_at + self.processing_time if terminal else None,
            first_observed_terminal_at=self.first_observed_terminal_at,
            submitted_at_wall=self.submitted_at_wall,
            completed_at_wall=self.submitted_at_wall + self.processing_time if terminal else None,
        )


@dataclass
class _Token:
    client_id: str
    scopes: frozenset[str]
    expires_at: float
    revoked: bool = False


@dataclass
class _Fault:
    name: str
    remaining: int
    kinds: frozenset[str]
    status: int = 503
    retry_after: int = 1
    delay: float = 0.0
    after_processing: bool = False


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    observed: str | None = None  # id of a deletion this answer shows as terminal


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, json.dumps(payload).encode(), headers or {})


def _error(status: int, error: str, description: str, **headers: str) -> _Response:
    return _json(status, {"error": error, "error_description": description}, headers)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token_id(authorization: str | None) -> str | None:
    """Short hash of a bearer token: enough to correlate records, useless as a credential."""
    scheme, _, token = (authorization or "").partition(" ")
    return _digest(token.strip())[:12] if scheme.lower() == "bearer" and token.strip() else None


def _kind_of(method: str, path: str) -> str:
    if method == "POST" and path == contract.TOKEN_PATH:
        return KIND_TOKEN
    if method == "POST" and path == contract.DSR_PATH:
        return KIND_SUBMIT
    if method == "GET" and _status_id(path) is not None:
        return KIND_STATUS
    return KIND_OTHER


def _status_id(path: str) -> str | None:
    prefix = contract.DSR_PATH + "/"
    segment = path[len(prefix):] if path.startswith(prefix) else ""
    return unquote(segment) if segment and "/" not in segment else None


def _body_for_record(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        body: Any = json.loads(raw)
    except ValueError:
        # Not JSON: keep it as form fields, which is what the token request sends.
        body = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    if isinstance(body, dict) and F_CLIENT_SECRET in body:
        body[F_CLIENT_SECRET] = REDACTED
    return body


def _kinds(kinds: Iterable[str] | None) -> frozenset[str]:
    chosen = DSR_KINDS if kinds is None else frozenset([kinds] if isinstance(kinds, str) else kinds)
    if not chosen or not chosen <= FAULT_KINDS:
        raise ValueError(f"kinds must be a non-empty subset of {sorted(FAULT_KINDS)}")
    return chosen


class Sandbox:
    """Movable Ink's DSR API on 127.0.0.1, with faults on demand. Use as a context manager."""

    def __init__(
        self,
        host: str = LOOPBACK,
        port: int = 0,
        clients: Mapping[str, ClientRecord] | None = None,
        token_lifetime: float = 3600,
        processing_time: float = 1.0,
        brand: str | None = None,
        verbose: bool = False,
    ) -> None:
        if host != LOOPBACK:
            raise ValueError(f"the sandbox only binds {LOOPBACK}, not {host!r}")
        self.host, self._port = host, port
        default = {SANDBOX_CLIENT_ID: ClientRecord(SANDBOX_CLIENT_SECRET)}
        self.clients = dict(default if clients is None else clients)
        self.token_lifetime = token_lifetime
        self.brand = brand
        self.verbose = verbose
        self._initial_processing_time = processing_time
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}  # keyed by sha256 of the token
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._clear()

    def _clear(self) -> None:
        self._processing_time = self._initial_processing_time
        self._deletions: dict[str, _Deletion] = {}
        self._records: list[RequestRecord] = []
        self._faults: list[_Fault] = []
        self._fail_marks: dict[str, str] = {}
        self._fail_all: str | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> "Sandbox":
        """Bind and serve in a background thread."""
        if self._server is None:
            self._server = _Server((self.host, self._port), self)
            # A short poll interval keeps stop() fast (shutdown waits for one poll).
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                name="movable-ink-sandbox", daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open connections."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- records ---------------------------------------------------------------

    def requests(self, kind: str | None = None) -> list[RequestRecord]:
        """Copies of the recorded requests, optionally of one kind."""
        with self._lock:
            return copy.deepcopy([r for r in self._records if kind is None or r.kind == kind])

    def deletions(self) -> list[DeletionRecord]:
        """Every deletion submitted since the last reset, as it stands now."""
        now = time.monotonic()
        with self._lock:
            return [d.record(now) for d in self._deletions.values()]

    def issued_token_digests(self) -> set[str]:
        """SHA-256 hex digests of every token issued, for tests that look for leaked tokens."""
        with self._lock:
            return set(self._tokens)

    def faults(self) -> dict[str, Any]:
        """The faults in force, for inspection."""
        with self._lock:
            return {
                "pending": [asdict(f) | {"kinds": sorted(f.kinds)} for f in self._faults],
                "fail_mi_u": dict(self._fail_marks),
                "fail_all": self._fail_all,
                "processing_time": self._processing_time,
            }

    def reset(self) -> None:
        """Forget records, deletions and faults; issued tokens stay as they are."""
        with self._lock:
            self._clear()

    # -- faults ----------------------------------------------------------------

    def fail_mi_u(self, mi_u: str, error: str = DEFAULT_FAILURE) -> None:
        """Deletions submitted from now on for this mi_u end `failed` with `error`."""
        with self._lock:
            self._fail_marks[mi_u] = error

    def fail_all(self, error: str = DEFAULT_FAILURE) -> None:
        """Every deletion submitted from now on ends `failed` with `error`."""
        with self._lock:
            self._fail_all = error

    def recover(self) -> None:
        """New deletions complete again; those already marked to fail still fail."""
        with self._lock:
            self._fail_marks.clear()
            self._fail_all = None

    def server_errors(self, n: int = 1, status: int = 503, kinds: Iterable[str] | None = None) -> None:
        """The next n matching requests answer `status` (a 5xx)."""
        if not 500 <= status <= 599:
            raise ValueError("status must be a 5xx")
        self._add("server_errors", n, kinds, status=status)

    def rate_limit(self, n: int = 1, retry_after: int = 1, kinds: Iterable[str] | None = None) -> None:
        """The next n matching requests answer 429 with `Retry-After: retry_after`."""
        self._add("rate_limit", n, kinds, retry_after=int(retry_after))

    def revoke_tokens(self) -> None:
        """Every token issued so far is refused (401) from now on."""
        with self._lock:
            for token in self._tokens.values():
                token.revoked = True

    def drop_connections(
        self, n: int = 1, kinds: Iterable[str] | None = None, after_processing: bool = False
    ) -> None:
        """The next n matching requests get the socket closed with no answer.

        With `after_processing` the request takes effect first (a submit creates its
        deletion), modelling an answer lost on the way back.
        """
        self._add("drop_connections", n, kinds, after_processing=bool(after_processing))

    def slow_responses(self, n: int = 1, delay: float = 1.0, kinds: Iterable[str] | None = None) -> None:
        """The next n matching requests are answered after `delay` seconds."""
        self._add("slow_responses", n, kinds, delay=float(delay))

    def malformed_json(self, n: int = 1, kinds: Iterable[str] | None = None) -> None:
        """The next n matching successful (2xx) answers carry a body that is not JSON."""
        self._add("malformed_json", n, kinds)

    def set_processing_time(self, seconds: float) -> None:
        """How long deletions submitted from now on take to finish."""
        if seconds < 0:
            raise ValueError("processing time cannot be negative")
        with self._lock:
            self._processing_time = float(seconds)

    def _add(self, name: str, n: int, kinds: Iterable[str] | None, **params: Any) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError("n must be a positive integer")
        fault = _Fault(name, n, _kinds(kinds), **params)
        with self._lock:
            self._faults.append(fault)

    def _take(self, name: str, kind: str) -> _Fault | None:
        """Consume one use of the oldest fault `name` that applies to `kind`."""
        with self._lock:
            for fault in self._faults:
                if fault.name == name and kind in fault.kinds:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- serving ---------------------------------------------------------------

    def _serve(
        self, kind: str, method: str, path: str, headers: Message, raw: bytes
    ) -> tuple[_Response | None, float, list[str]]:
        """Answer one API request: (response or None to drop, delay, faults applied)."""
        if kind == KIND_OTHER:
            return _error(404, "not_found", f"no endpoint {method} {path}"), 0.0, []
        applied: list[str] = []
        drop = self._take("drop_connections", kind)
        if drop is not None and not drop.after_processing:
            return None, 0.0, ["drop_connections"]
        slow = self._take("slow_responses", kind)
        if slow is not None:
            applied.append("slow_responses")
        if (err := self._take("server_errors", kind)) is not None:
            applied.append("server_errors")
            response = _error(err.status, "server_error", "simulated server error")
        elif (limit := self._take("rate_limit", kind)) is not None:
            applied.append("rate_limit")
            response = _error(429, "rate_limited", "simulated rate limit",
                              **{"Retry-After": str(limit.retry_after)})
        else:
            response = self._route(kind, headers, path, raw)
            if 200 <= response.status < 300 and self._take("malformed_json", kind) is not None:
                applied.append("malformed_json")
                # Half a JSON object never parses; Content-Type still claims JSON, as a broken proxy would.
                response = _Response(response.status, response.body[: len(response.body) // 2] or b"{")
        if drop is not None:
            return None, 0.0, applied + ["drop_connections"]
        return response, slow.delay if slow else 0.0, applied

    def _route(self, kind: str, headers: Message, path: str, raw: bytes) -> _Response:
        try:
            if kind == KIND_TOKEN:
                return self._token(headers, raw)
            denied = self._authorize(headers.get("Authorization"))
            if denied is not None:
                return denied
            if kind == KIND_SUBMIT:
                return self._submit(raw)
            return self._status(_status_id(path) or "")
        except Exception as exc:  # a sandbox bug must still answer, not hang the client
            return _error(500, "sandbox_bug", f"{type(exc).__name__}: {exc}")

    def _token(self, headers: Message, raw: bytes) -> _Response:
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _error(400, "invalid_request", "the token request must be form-encoded")
        form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get(F_GRANT_TYPE) != GRANT_TYPE:
            return _error(400, "unsupported_grant_type", f"{F_GRANT_TYPE} must be {GRANT_TYPE}")
        client = self.clients.get(form.get(F_CLIENT_ID, ""))
        given = form.get(F_CLIENT_SECRET, "").encode()
        if client is None or not hmac.compare_digest(client.secret.encode(), given):
            return _error(401, contract.TOKEN_ERROR_INVALID_CLIENT, "unknown client or wrong secret")
        requested = form.get(F_SCOPE, "").split()
        if requested and (requested != [contract.TOKEN_SCOPE] or contract.TOKEN_SCOPE not in client.scopes):
            return _error(400, contract.TOKEN_ERROR_INVALID_SCOPE,
                          f"scope must be {contract.TOKEN_SCOPE!r}, granted to this client")
        # No scope asked: grant the client's own scopes, which may lack dsr (then DSR calls get 403).
        scopes = frozenset(requested or client.scopes)
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[_digest(token)] = _Token(
                form[F_CLIENT_ID], scopes, time.monotonic() + self.token_lifetime
            )
        return _json(200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": math.ceil(self.token_lifetime),
            "scope": " ".join(sorted(scopes)),
        })

    def _authorize(self, authorization: str | None) -> _Response | None:
        """None if the bearer token may call the DSR API, else the 401/403 answer."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            problem = "missing bearer token"
        else:
            with self._lock:
                record = self._tokens.get(_digest(token.strip()))
            if record is None:
                problem = "unknown token"
            elif record.revoked:
                problem = "token revoked"
            elif time.monotonic() >= record.expires_at:
                problem = "token expired"
            elif contract.TOKEN_SCOPE not in record.scopes:
                return _error(403, "insufficient_scope", f"the token lacks the {contract.TOKEN_SCOPE!r} scope")
            else:
                return None
        return _error(401, "invalid_token", problem, **{"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def _submit(self, raw: bytes) -> _Response:
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "invalid_request", "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_request", "the body must be a JSON object")
        fields = (F_REQUEST_TYPE, F_BRAND, F_MI_U, F_REFERENCE)
        missing = [f for f in fields if not isinstance(body.get(f), str) or not body[f].strip()]
        if missing:
            return _error(400, "invalid_request", f"missing or empty: {', '.join(missing)}")
        if body[F_REQUEST_TYPE] != contract.REQUEST_TYPE_DELETE:
            return _error(400, "invalid_request", f"{F_REQUEST_TYPE} must be {contract.REQUEST_TYPE_DELETE!r}")
        if self.brand is not None and body[F_BRAND] != self.brand:
            return _error(400, "invalid_request", f"unknown {F_BRAND} {body[F_BRAND]!r}")
        with self._lock:
            deletion = _Deletion(
                id=f"dsr_{uuid.uuid4().hex}", mi_u=body[F_MI_U], brand=body[F_BRAND],
                reference=body[F_REFERENCE], processing_time=self._processing_time,
                fail_error=self._fail_marks.get(body[F_MI_U], self._fail_all),
            )
            self._deletions[deletion.id] = deletion
        return _json(201, {contract.FIELD_ID: deletion.id,
                           contract.FIELD_STATUS: str(contract.DeletionStatus.PENDING)})

    def _status(self, deletion_id: str) -> _Response:
        with self._lock:
            deletion = self._deletions.get(deletion_id)
        if deletion is None:
            return _error(404, "not_found", f"no deletion request {deletion_id!r}")
        status = deletion.status_at(time.monotonic())
        payload = {contract.FIELD_ID: deletion.id, contract.FIELD_STATUS: str(status)}
        if status == contract.DeletionStatus.FAILED:
            payload[contract.FIELD_ERROR] = deletion.fail_error or DEFAULT_FAILURE
        response = _json(200, payload)
        if status in contract.TERMINAL_STATUSES:
            response.observed = deletion.id
        return response

    def _delivered(self, record: RequestRecord, observed: str | None) -> None:
        """Note a request just before its answer goes out (so a client never sees it first)."""
        with self._lock:
            self._records.append(record)
            deletion = self._deletions.get(observed) if observed else None
            if deletion is not None and deletion.first_observed_terminal_at is None:
                deletion.first_observed_terminal_at = time.monotonic()

    def _admin(self, method: str, name: str, query: str, raw: bytes) -> _Response:
        """The `/_sandbox/` API: same operations as the Python methods, as JSON."""
        if method == "GET" and name == "requests":
            kind = dict(parse_qsl(query)).get("kind")
            return _json(200, {"requests": [asdict(r) for r in self.requests(kind)]})
        if method == "GET" and name == "deletions":
            return _json(200, {"deletions": [asdict(d) for d in self.deletions()]})
        if method == "GET" and name == "faults":
            return _json(200, self.faults())
        if method == "POST" and name == "reset":
            self.reset()
            return _json(200, {"ok": True})
        if method == "POST" and name == "faults":
            try:
                params = json.loads(raw or b"{}")
                fault = params.pop("fault")
            except (ValueError, KeyError, AttributeError, TypeError):
                return _error(400, "invalid_request", 'expected a JSON object with "fault"')
            if fault not in FAULTS:
                return _error(400, "invalid_request", f"unknown fault {fault!r}; one of {list(FAULTS)}")
            try:
                getattr(self, fault)(**params)
            except (TypeError, ValueError) as exc:
                return _error(400, "invalid_request", str(exc))
            return _json(200, {"ok": True})
        return _error(404, "not_found", f"no admin endpoint {method} {ADMIN_PREFIX}{name}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        super().__init__(address, _Handler)
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    # Track open sockets so stop() can end keep-alive connections, which would
    # otherwise keep answering from their handler threads after the server stopped.
    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-answer is routine here (timeouts, drops); stay quiet.
        if self.sandbox.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MovableInkSandbox/1"
    sys_version = ""
    timeout = 60  # idle keep-alive connections end instead of piling up
    disable_nagle_algorithm = True  # headers and body go out in two writes; avoid a 40 ms stall
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        received = time.monotonic()
        sandbox = self.server.sandbox
        url = urlsplit(self.path)
        try:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        except ValueError:
            self._write(_error(400, "invalid_request", "bad Content-Length"))
            return
        if url.path.startswith(ADMIN_PREFIX):
            self._write(sandbox._admin(self.command, url.path[len(ADMIN_PREFIX):], url.query, raw))
            return
        kind = _kind_of(self.command, url.path)
        response, delay, applied = sandbox._serve(kind, self.command, url.path, self.headers, raw)
        if delay:
            time.sleep(delay)
        record = RequestRecord(
            method=self.command, path=url.path, kind=kind, body=_body_for_record(raw),
            token_id=_token_id(self.headers.get("Authorization")),
            status=response.status if response else None, at=received, faults=tuple(applied),
        )
        sandbox._delivered(record, response.observed if response else None)
        if response is None:
            # Close with no answer at all; the client sees the connection vanish.
            self.close_connection = True
            self._log(None)
            return
        self._write(response)

    def _write(self, response: _Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json")
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
        except OSError:  # the client gave up (timeout) before the answer
            self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self._log(code)

    def _log(self, code: int | str | None) -> None:
        # Path only, never the query string, headers or body: no credentials reach the log.
        if self.server.sandbox.verbose:
            path = urlsplit(self.path).path
            sys.stderr.write(f"sandbox {self.command} {path} {code if code is not None else 'dropped'}\n")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sandbox.verbose:
            super().log_message(format, *args)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a sandbox until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m fides_movable_ink.sandbox",
        description="Serve a local Movable Ink DSR API simulator on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free port)")
    parser.add_argument("--processing-time", type=float, default=1.0, help="seconds a deletion takes")
    parser.add_argument("--client-id", default=SANDBOX_CLIENT_ID)
    parser.add_argument("--client-secret", default=SANDBOX_CLIENT_SECRET)
    parser.add_argument("--brand", help="accept only this brand (default: any)")
    parser.add_argument("--token-lifetime", type=float, default=3600, help="token lifetime in seconds")
    parser.add_argument("--verbose", action="store_true", help="log one line per request to stderr")
    args = parser.parse_args(argv)

    stopping = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    sandbox = Sandbox(
        port=args.port,
        clients={args.client_id: ClientRecord(args.client_secret)},
        token_lifetime=args.token_lifetime,
        processing_time=args.processing_time,
        brand=args.brand,
        verbose=args.verbose,
    )
    with sandbox:
        print(f"Movable Ink sandbox serving at {sandbox.url}", flush=True)
        print(f"  token URL:     {sandbox.url}{contract.TOKEN_PATH}")
        print(f"  client_id:     {args.client_id}")
        print(f"  client_secret: {args.client_secret}")
        print(f"  scope:         {contract.TOKEN_SCOPE}")
        print(f"  brand:         {args.brand or '(any)'}")
        print(f"  admin API:     {sandbox.url}{ADMIN_PREFIX}", flush=True)
        try:
            while not stopping.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
