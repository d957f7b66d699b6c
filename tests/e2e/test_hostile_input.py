"""Hostile and messy input through a real Fides: odd mi_u values, bad settings, and what reaches the logs."""

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import pytest
import requests

from fides_movable_ink import contract, templates
from fides_movable_ink.devstack.fides_server import read_log
from fides_movable_ink.devstack.stack import BRAND, Stack
from fides_movable_ink.sandbox import SANDBOX_CLIENT_SECRET, RequestRecord
from tests.hostile_values import HOSTILE_MI_US

pytestmark = pytest.mark.e2e

EMAIL = "hostile.input+mi@example.com"
# Rows Fides reads alongside them: a duplicate, and values that are no mi_u at all.
MESSY_ROWS: list[Optional[str]] = [HOSTILE_MI_US[0], "", None, "   ", HOSTILE_MI_US[-1]]
PROBE_KEY = "movable_ink_hostile_probe"
# A loguru line written by our package: "<time> | <LEVEL> | fides_movable_ink.<module>:<function>:<line> - ..."
OUR_LINE = re.compile(r"^\S+ \S+ \| \w+\s*\| fides_movable_ink\.")
# Fides' dev-mode dump of a connector request: it carries the request body and the response.
DEV_MODE_DUMP = re.compile(r"\| fides\.api\.service\.connectors\.saas\.authenticated_client:send:\d+ - .*'(body|response)': ")
EMAIL_PATTERN = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


@dataclass(frozen=True)
class Erasure:
    request_id: str
    status: str
    submits: list[RequestRecord]
    polls: list[RequestRecord]
    mapping_rows_after: list[tuple[Any, ...]]


@pytest.fixture(scope="module")
def hostile_erasure(stack: Stack) -> Erasure:
    """One erasure for an email whose mapping rows hold every hostile and messy value."""
    sandbox = stack.sandbox
    assert sandbox is not None
    stack.seed(EMAIL, *HOSTILE_MI_US, *MESSY_ROWS)
    stack.reset_secrets()  # drops the stored token: Fides' OAuth2 strategy fetches one in this erasure
    sandbox.reset()
    request_id = stack.api.submit_erasure(EMAIL)
    status = stack.api.wait_for(request_id, timeout=90)
    return Erasure(request_id, status, sandbox.requests("submit"), sandbox.requests("status"), stack.mapping_rows(EMAIL))


def raw(stack: Stack, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A Fides API call whatever its status, with the stack's authenticated session."""
    return stack.api._session.request(method, f"{stack.api.base_url}/api/v1{path}", timeout=120, **kwargs)


@pytest.fixture
def probe_connection(stack: Stack) -> Iterator[str]:
    """The key of an extra Movable Ink connection a test may create; deleted afterwards."""
    yield PROBE_KEY
    raw(stack, "DELETE", f"/connection/{PROBE_KEY}")
    assert raw(stack, "GET", f"/connection/{PROBE_KEY}").status_code == 404


def instantiate(stack: Stack, secrets: dict[str, Any]) -> requests.Response:
    return raw(
        stack,
        "POST",
        f"/connection/instantiate/{templates.CONNECTOR_TYPE}",
        json={"name": "Movable Ink probe", "key": PROBE_KEY, "instance_key": PROBE_KEY, "secrets": secrets},
    )


def issued_tokens(stack: Stack) -> set[str]:
    """SHA-256 digests of every access token the sandbox issued this session."""
    assert stack.sandbox is not None
    return stack.sandbox.issued_token_digests()


def tokens_in(text: str, digests: set[str]) -> bool:
    """True when the text holds one of the issued tokens (43 url-safe characters each)."""
    for run in re.findall(r"[A-Za-z0-9_-]{43,}", text):
        for start in range(len(run) - 42):
            if hashlib.sha256(run[start : start + 43].encode()).hexdigest() in digests:
                return True
    return False


def test_fides_reports_erasure_support(stack: Stack) -> None:
    answer = raw(stack, "GET", "/connection_type?search=Movable&erasure=true")
    assert answer.status_code == 200
    [movable_ink] = [item for item in answer.json()["items"] if item["identifier"] == templates.CONNECTOR_TYPE]
    assert movable_ink["supported_actions"] == ["access", "erasure"]


def test_hostile_mi_u_values_are_each_deleted_once_exactly_as_stored(hostile_erasure: Erasure) -> None:
    assert hostile_erasure.status == "complete"
    sent = [submit.body for submit in hostile_erasure.submits]
    # One POST per distinct non-empty mi_u, the exact value in JSON; nothing for "", "   " or NULL.
    assert sorted(body["mi_u"] for body in sent) == sorted(HOSTILE_MI_US)
    assert all(
        body == {"request_type": "delete", "brand": BRAND, "mi_u": body["mi_u"], "reference": hostile_erasure.request_id}
        for body in sent
    )
    assert all(submit.path == contract.DSR_PATH and submit.status == 201 for submit in hostile_erasure.submits)
    # Status URLs are built from Movable Ink's request ids alone.
    assert hostile_erasure.polls
    assert all(re.fullmatch(re.escape(contract.DSR_PATH) + r"/dsr_[0-9a-f]{32}", poll.path) for poll in hostile_erasure.polls)
    assert hostile_erasure.mapping_rows_after == []  # every row masked once Movable Ink confirmed


def test_missing_client_secret_is_refused_at_instantiate_naming_it(stack: Stack, probe_connection: str) -> None:
    secrets = stack.secrets(stack.mapping_dataset)
    del secrets["client_secret"]

    answer = instantiate(stack, secrets)

    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert "must be supplied all of: [brand, client_id, client_secret, movable_ink_user_id]" in error["msg"]
    assert raw(stack, "GET", f"/connection/{probe_connection}").status_code == 404  # nothing was created


def test_empty_client_secret_is_refused_at_instantiate(stack: Stack, probe_connection: str) -> None:
    answer = instantiate(stack, stack.secrets(stack.mapping_dataset, client_secret=""))
    assert answer.status_code == 422
    assert "client_secret" in answer.json()["detail"][0]["msg"]


@pytest.mark.parametrize("domain", ["https://app.movableink.com", "app.movableink.com/api/v2"])
def test_domain_with_scheme_or_path_fails_test_connection_naming_the_domain(
    stack: Stack, probe_connection: str, domain: str
) -> None:
    # This Fides runs with FIDES__SECURITY__DOMAIN_VALIDATION_MODE=disabled (for the sandbox), so
    # instantiation accepts the value; with validation enabled it is a 422 (see the contract tests).
    assert instantiate(stack, stack.secrets(stack.mapping_dataset, domain=domain)).status_code == 200
    assert stack.sandbox is not None
    stack.sandbox.reset()

    answer = raw(stack, "GET", f"/connection/{probe_connection}/test")

    assert answer.status_code == 200
    result = answer.json()
    assert result["test_status"] == "failed"
    reason = result["failure_reason"] or ""
    assert reason.startswith("The Movable Ink Domain must be a host name only, for example app.movableink.com")
    assert domain in reason and "Traceback" not in reason
    assert stack.sandbox.requests() == []  # no call went out, to the sandbox or anywhere


def test_logs_hold_no_secret_or_token_and_our_lines_no_email_or_mi_u(
    stack: Stack, hostile_erasure: Erasure
) -> None:
    assert stack.fides is not None
    lines = read_log(stack.fides.logs()).splitlines()
    digests = issued_tokens(stack)
    assert lines and digests

    dumps = [line for line in lines if DEV_MODE_DUMP.search(line)]
    others = [line for line in lines if not DEV_MODE_DUMP.search(line)]
    assert [line[:200] for line in others if SANDBOX_CLIENT_SECRET in line] == []
    assert [line[:200] for line in others if tokens_in(line, digests)] == []
    # The token check finds tokens where they are: in the dumps of Fides' own token requests.
    token_dumps = [line for line in dumps if contract.TOKEN_PATH in line and "'response': " in line]
    assert all(tokens_in(line, digests) for line in token_dumps)

    ours = [line for line in lines if OUR_LINE.match(line)]
    assert any("Movable Ink confirmed" in line for line in ours)
    assert [line[:200] for line in ours if EMAIL_PATTERN.search(line)] == []
    assert [line[:200] for line in ours if any(mi_u in line for mi_u in HOSTILE_MI_US)] == []

    log = stack.api.execution_log(hostile_erasure.request_id)
    assert log
    entries = " ".join(str(entry) for entry in log)
    assert SANDBOX_CLIENT_SECRET not in entries and not tokens_in(entries, digests)
    assert not [mi_u for mi_u in HOSTILE_MI_US if mi_u in entries]
