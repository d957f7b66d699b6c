"""Client for Movable Ink's DSR API: tokens, deletions, polling and errors.

Free of Fides imports so it can be used and tested without a Fides server; the
Fides glue lives in `fides_override`. Every wire-format name comes from `contract`.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, TypeVar

import requests
from pydantic import ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_before_delay,
    stop_never,
    wait_exponential_jitter,
)

from fides_movable_ink import contract
from fides_movable_ink.contract import (
    DeletionStatus,
    StatusAnswer,
    SubmitAnswer,
    TokenAnswer,
    TokenErrorAnswer,
)

logger = logging.getLogger(__name__)

# Connect and read timeouts of one HTTP call, in seconds.
DEFAULT_TIMEOUT = (3.05, 30.0)
# Longest Retry-After we honour in one wait; a longer one is cut to this.
MAX_RETRY_AFTER = 60.0
# Answers and failures that say "try again": rate limits, server errors, lost connections.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)

TokenSource = Callable[[bool], str]
"""Returns a bearer token; called with True after a 401 to get a new one."""

StatusListener = Callable[["Deletion"], None]


class MovableInkError(Exception):
    """Movable Ink refused or failed a call; the message says what to do."""


class AccessDenied(MovableInkError):
    """No call can succeed with these settings: stop rather than try the next mi_u."""


class CredentialsRefused(AccessDenied):
    """The client id or secret is unknown to Movable Ink."""


class ScopeMissing(AccessDenied):
    """The client exists but was not granted the `dsr` scope."""


class TokenUnavailable(AccessDenied):
    """The token source could not provide a token."""


class DomainUnreachable(MovableInkError):
    """No HTTP answer from the Movable Ink domain."""


class UnexpectedAnswer(MovableInkError):
    """Movable Ink answered with an error or with something the contract does not allow."""


@dataclass(frozen=True)
class PollPolicy:
    """How long and how often to ask Movable Ink whether deletions are done."""

    max_wait: float = 900.0
    first_interval: float = 2.0
    max_interval: float = 30.0


@dataclass
class Deletion:
    """One mi_u's deletion request and what Movable Ink last said of it."""

    mi_u: str
    request_id: Optional[str] = None
    status: str = "not submitted"
    error: Optional[str] = None
    submitted_at: Optional[float] = None
    finished_at: Optional[float] = None
    status_calls: int = 0

    @property
    def confirmed(self) -> bool:
        return self.status == DeletionStatus.COMPLETED

    @property
    def terminal(self) -> bool:
        return self.status in contract.TERMINAL_STATUSES

    @property
    def seconds(self) -> Optional[float]:
        """Time from submission to the answer that made it terminal."""
        if self.submitted_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.submitted_at

    def describe(self) -> str:
        """One line for an operator: request id, final status, error; mi_u only as a fingerprint."""
        text = f"request {self.request_id or '(none)'} for mi_u {fingerprint(self.mi_u)}: {self.status}"
        return f"{text} ({self.error})" if self.error else text


def fingerprint(value: str) -> str:
    """Short stable digest that names an identifier without revealing it."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


class _TransientAnswer(Exception):
    """A 429 or 5xx answer, worth repeating the call for."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _retry_after(response: requests.Response) -> Optional[float]:
    """Seconds from a Retry-After header given in seconds, capped at MAX_RETRY_AFTER."""
    try:
        return min(max(float(response.headers["Retry-After"]), 0.0), MAX_RETRY_AFTER)
    except (KeyError, ValueError):
        return None


def send_with_retries(
    session: requests.Session,
    method: str,
    url: str,
    sleep: Optional[Callable[[float], None]] = None,
    attempts: int = 5,
    budget: Optional[float] = None,
    **kwargs: Any,
) -> requests.Response:
    """One HTTP call, repeated on dropped connections, timeouts, 429 and 5xx.

    Waits Retry-After when Movable Ink sends it, otherwise backs off exponentially
    with jitter. Returns the last answer when every attempt got a 429/5xx, so the
    caller can show it. POST is repeated too: a deletion is idempotent, so a second
    POST for an mi_u whose first answer was lost deletes the same person again.
    With a `budget` (seconds), no repeat starts once it is spent.
    """
    backoff = wait_exponential_jitter(initial=0.5, max=30.0, jitter=0.5)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _TransientAnswer):
            retry_after = _retry_after(error.response)
            if retry_after is not None:
                return retry_after
        return backoff(state)

    try:
        for attempt in Retrying(
            stop=stop_after_attempt(attempts) | (stop_before_delay(budget) if budget is not None else stop_never),
            wait=wait,
            retry=retry_if_exception_type((_TransientAnswer, *TRANSIENT_ERRORS)),
            sleep=time.sleep if sleep is None else sleep,
            reraise=True,
        ):
            with attempt:
                response = session.request(method, url, **kwargs)
                if response.status_code in TRANSIENT_STATUSES:
                    logger.info("Movable Ink answered HTTP %s; repeating the call", response.status_code)
                    raise _TransientAnswer(response)
                return response
    except _TransientAnswer as exc:
        return exc.response
    raise AssertionError("unreachable: Retrying either returns or raises")


def fetch_token(
    base_url: str,
    client_id: str,
    client_secret: str,
    session: Optional[requests.Session] = None,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    sleep: Optional[Callable[[float], None]] = None,
) -> str:
    """Gets an access token with the `dsr` scope; raises an error naming what is wrong."""
    try:
        response = send_with_retries(
            session or requests.Session(),
            "POST",
            base_url.rstrip("/") + contract.TOKEN_PATH,
            sleep=sleep,
            data=contract.token_form(client_id, client_secret),
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise _unreachable(base_url, exc) from exc
    if response.status_code == 200:
        answer = _parse(TokenAnswer, response)
        if answer is not None:
            return answer.access_token
    error = _parse(TokenErrorAnswer, response) or TokenErrorAnswer()
    if response.status_code == 401 or error.error == contract.TOKEN_ERROR_INVALID_CLIENT:
        raise CredentialsRefused(
            f"Movable Ink refused the credentials ({_describe_error(error)}): "
            "check the Client ID and Client Secret issued by Movable Ink support."
        )
    if error.error == contract.TOKEN_ERROR_INVALID_SCOPE:
        raise ScopeMissing(
            f"Movable Ink did not grant the '{contract.TOKEN_SCOPE}' scope to this client "
            f"({_describe_error(error)}): ask Movable Ink support to add it."
        )
    raise UnexpectedAnswer(
        f"Movable Ink's token endpoint answered HTTP {response.status_code}: {_excerpt(response)}"
    )


class MovableInkClient:
    """Submits deletions for mi_u values and polls Movable Ink until each is final."""

    def __init__(
        self,
        base_url: str,
        brand: str,
        token_source: TokenSource,
        session: Optional[requests.Session] = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        sleep: Optional[Callable[[float], None]] = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.brand = brand
        self._token_source = token_source
        self._token: Optional[str] = None
        self._session = session or requests.Session()
        self._timeout = timeout
        self._sleep = sleep if sleep is not None else (lambda seconds: time.sleep(seconds))
        # While polling, no call may outlast the wait the user allowed (time.monotonic()).
        self._deadline: Optional[float] = None

    def delete_users(
        self,
        mi_us: Iterable[str],
        reference: str,
        policy: PollPolicy = PollPolicy(),
        on_change: Optional[StatusListener] = None,
    ) -> list[Deletion]:
        """Submits one deletion per distinct mi_u, then polls them together until final.

        The wait is the slowest deletion's, not the sum. Never raises for one
        mi_u's failure: each Deletion carries its own status and error, so the
        caller can report all of them, even when every call is refused (bad
        credentials, missing scope): the rest are then left unsent, with the reason.
        """
        notify = on_change or (lambda deletion: None)
        deletions = [Deletion(mi_u) for mi_u in dict.fromkeys(mi_us)]
        denied: Optional[AccessDenied] = None
        for deletion in deletions:
            if denied is not None:
                deletion.error = str(denied)
                continue
            try:
                deletion.request_id, deletion.status = self.submit_deletion(deletion.mi_u, reference)
                deletion.submitted_at = time.monotonic()
            except MovableInkError as exc:
                deletion.error = _scrub(str(exc), deletion.mi_u)
                if isinstance(exc, AccessDenied):
                    denied = exc
            notify(deletion)

        pending = [d for d in deletions if d.request_id and not d.terminal]
        if pending and denied is None:
            try:
                self._poll_until_final(pending, policy, notify)
            except AccessDenied as exc:
                for deletion in pending:
                    if not deletion.terminal:
                        deletion.error = str(exc)
        return deletions

    def submit_deletion(self, mi_u: str, reference: str) -> tuple[str, str]:
        """POSTs one deletion; returns Movable Ink's request id and status."""
        response = self._call("POST", contract.DSR_PATH, json=contract.submit_body(self.brand, mi_u, reference))
        if response.status_code not in contract.SUBMIT_SUCCESS_CODES:
            raise _unexpected("deletion request", response)
        answer = _parse(SubmitAnswer, response)
        if answer is None:
            raise UnexpectedAnswer(
                f"Movable Ink accepted a deletion (HTTP {response.status_code}) but its answer has no "
                f"request id: {_excerpt(response)}. Retry the privacy request; a repeated deletion "
                "is harmless."
            )
        return answer.id, answer.status

    def get_status(self, request_id: str) -> tuple[str, Optional[str]]:
        """Returns a deletion's status and, when it failed, Movable Ink's error text."""
        response = self._call("GET", contract.status_path(request_id))
        if response.status_code != 200:
            raise _unexpected(f"status of deletion request {request_id}", response)
        answer = _parse(StatusAnswer, response)
        if answer is None:
            raise UnexpectedAnswer(
                f"Movable Ink's status of deletion request {request_id} is not one the contract "
                f"allows: {_excerpt(response)}"
            )
        return answer.status.value, answer.error

    def check_access(self) -> None:
        """Proves the token is accepted by the DSR API (Test connection)."""
        response = self._call("GET", contract.status_path(contract.CONNECTION_PROBE_ID))
        if response.status_code >= 500:
            raise _unexpected("connection test", response)

    def _poll_until_final(self, pending: list[Deletion], policy: PollPolicy, notify: StatusListener) -> None:
        """Polls every pending deletion each round, with jittered exponential backoff between rounds."""

        def poll_round() -> list[Deletion]:
            for deletion in pending:
                if deletion.terminal:
                    continue
                try:
                    status, error = self.get_status(deletion.request_id or "")
                except AccessDenied:
                    raise
                except MovableInkError as exc:
                    # One bad answer is not the end: keep the deletion pending and ask again next round.
                    deletion.error = str(exc)
                    logger.warning("Movable Ink status call for request %s failed: %s", deletion.request_id, exc)
                    continue
                deletion.status_calls += 1
                changed = status != deletion.status
                deletion.status, deletion.error = status, error
                if deletion.terminal:
                    deletion.finished_at = time.monotonic()
                if changed:
                    notify(deletion)
            return [d for d in pending if not d.terminal]

        # The first poll waits one interval: a deletion is never done the moment it is accepted.
        self._deadline = time.monotonic() + policy.max_wait
        self._sleep(policy.first_interval)
        retrying = Retrying(
            stop=stop_before_delay(max(policy.max_wait - policy.first_interval, 0.0)),
            wait=wait_exponential_jitter(
                initial=policy.first_interval, max=policy.max_interval, jitter=policy.first_interval / 2
            ),
            retry=retry_if_result(bool),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            still_pending = retrying(poll_round)
        finally:
            self._deadline = None
        for deletion in still_pending or []:
            deletion.error = (
                f"still '{deletion.status}' after waiting {policy.max_wait:g} s"
                + (f"; last error: {deletion.error}" if deletion.error else "")
            )
            deletion.status = "timed out"
            notify(deletion)

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One authenticated call; on 401 gets a new token once and repeats it."""
        response = self._send(method, path, self._current_token(), **kwargs)
        if response.status_code == 401:
            logger.info("Movable Ink answered 401; getting a new token and repeating the call")
            self._token = self._token_source(True)
            response = self._send(method, path, self._token, **kwargs)
            if response.status_code == 401:
                raise CredentialsRefused(
                    "Movable Ink refused a newly issued token (HTTP 401): check that the Client ID "
                    "and Client Secret belong to this Domain."
                )
        if response.status_code == 403:
            raise ScopeMissing(
                f"Movable Ink answered 403 Forbidden: the client lacks the '{contract.TOKEN_SCOPE}' "
                "scope. Ask Movable Ink support to grant it."
            )
        return response

    def _current_token(self) -> str:
        if self._token is None:
            self._token = self._token_source(False)
        return self._token

    def _send(self, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
        timeout, budget = self._timeout, None
        if self._deadline is not None:
            budget = self._deadline - time.monotonic()
            if budget <= 0:
                raise UnexpectedAnswer("no time left to ask Movable Ink within the maximum wait")
            timeout = (min(timeout[0], budget), min(timeout[1], budget))
        try:
            return send_with_retries(
                self._session,
                method,
                self.base_url + path,
                sleep=self._sleep,
                budget=budget,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=timeout,
                **kwargs,
            )
        except requests.RequestException as exc:
            raise _unreachable(self.base_url, exc) from exc


def _unreachable(base_url: str, exc: Exception) -> DomainUnreachable:
    return DomainUnreachable(
        f"Could not reach Movable Ink at {base_url} ({type(exc).__name__}): check the Domain "
        "and that this server can reach it."
    )


def _unexpected(what: str, response: requests.Response) -> UnexpectedAnswer:
    return UnexpectedAnswer(f"Movable Ink answered HTTP {response.status_code} to the {what}: {_excerpt(response)}")


def _scrub(text: str, mi_u: str) -> str:
    """Replaces an mi_u echoed in Movable Ink's answer, raw or JSON-escaped, with its fingerprint."""
    if not mi_u:
        return text
    for form in (mi_u, json.dumps(mi_u)[1:-1], json.dumps(mi_u, ensure_ascii=False)[1:-1]):
        text = text.replace(form, fingerprint(mi_u))
    return text


_Answer = TypeVar("_Answer", TokenAnswer, TokenErrorAnswer, SubmitAnswer, StatusAnswer)


def _parse(model: type[_Answer], response: requests.Response) -> Optional[_Answer]:
    """The answer as the contract's model, or None when it is not JSON of that shape."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError:
        return None


def _describe_error(error: TokenErrorAnswer) -> str:
    return ": ".join(part for part in (error.error, error.error_description) if part) or "no details"


def _excerpt(response: requests.Response, limit: int = 300) -> str:
    text = response.text.strip().replace("\n", " ")
    return (text[:limit] + "...") if len(text) > limit else (text or "(empty body)")
