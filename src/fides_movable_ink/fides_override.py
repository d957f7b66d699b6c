"""Fides request overrides for Movable Ink: thin glue around `MovableInkClient`.

Fides imports this module (through the shim `fides-movable-ink install` writes) in
the webserver and in every worker. No `from __future__ import annotations` here:
Fides checks that a DELETE override's return annotation is exactly `int` and a
READ override's exactly `List[Row]`.
"""

from typing import Any, Dict, Iterable, List, Optional, Tuple, cast
from urllib.parse import ParseResult, urlparse

from fides.api.common_exceptions import (
    ConnectionException,
    DomainValidationError,
    FidesopsException,
    OAuth2TokenException,
)
from fides.api.graph.execution import ExecutionNode
from fides.api.models.policy import Policy
from fides.api.models.privacy_request import PrivacyRequest
from fides.api.schemas.saas.shared_schemas import HTTPMethod, SaaSRequestParams
from fides.api.service.authentication.authentication_strategy import AuthenticationStrategy
from fides.api.service.authentication.authentication_strategy_oauth2_base import (
    OAuth2AuthenticationStrategyBase,
)
from fides.api.service.connectors.saas.authenticated_client import AuthenticatedClient
from fides.api.service.saas_request.saas_request_override_factory import (
    SaaSRequestType,
    register,
)
from fides.api.util.collection_util import Row
from fides.api.util.saas_util import deny_unsafe_hosts
from loguru import logger

from fides_movable_ink import contract
from fides_movable_ink.client import (
    Deletion,
    MovableInkClient,
    MovableInkError,
    PollPolicy,
    TokenSource,
    TokenUnavailable,
    fetch_token,
)

READ_OVERRIDE = "movable_ink_user_read"
DELETE_OVERRIDE = "movable_ink_user_delete"
TEST_OVERRIDE = "movable_ink_test_connection"

# Labels of the Integrations form fields, used in errors that ask the user to fix one.
FIELD_LABELS = {
    "domain": "Domain",
    "brand": "Brand",
    "client_id": "Client ID",
    "client_secret": "Client Secret",
}


@register(READ_OVERRIDE, [SaaSRequestType.READ])
def movable_ink_user_read(
    client: AuthenticatedClient,
    node: ExecutionNode,
    policy: Policy,
    privacy_request: PrivacyRequest,
    input_data: Dict[str, List[Any]],
    secrets: Dict[str, Any],
) -> List[Row]:
    """One row per distinct mi_u read from the mapping table; calls nothing.

    Replaces a path-less read with an `output` template: Fides pastes values into
    that JSON text unescaped, so an mi_u with `"` or `\\` broke the read.
    """
    mi_us, skipped = _distinct_mi_us(input_data.get("mi_u") or [])
    if skipped:
        logger.info("Skipping {} Movable Ink mapping value(s) without an mi_u", skipped)
    return [{"mi_u": mi_u} for mi_u in mi_us]


@register(DELETE_OVERRIDE, [SaaSRequestType.DELETE])
def movable_ink_user_delete(
    client: AuthenticatedClient,
    param_values_per_row: List[Dict[str, Any]],
    policy: Policy,
    privacy_request: PrivacyRequest,
    secrets: Dict[str, Any],
) -> int:
    """Deletes each distinct mi_u from Movable Ink and waits until Movable Ink confirms it.

    Returns the number of confirmed deletions; raises naming every Movable Ink
    request id and final status when any deletion failed or timed out.
    """
    if not any(row.get("masked_object_fields") for row in param_values_per_row):
        logger.info(
            "Policy '{}' targets no data category of the Movable Ink dataset: no deletion sent",
            policy.key,
        )
        return 0

    mi_us, skipped = _distinct_mi_us(row.get("mi_u") for row in param_values_per_row)
    if skipped:
        logger.info("Skipping {} Movable Ink row(s) without an mi_u", skipped)
    if not mi_us:
        return 0

    movable_ink = MovableInkClient(
        base_url=_base_url(client),
        brand=_required(secrets, "brand"),
        token_source=_fides_token_source(client),
    )
    deletions = movable_ink.delete_users(
        mi_us, reference=privacy_request.id, policy=_poll_policy(secrets), on_change=_log_change
    )
    confirmed = sum(deletion.confirmed for deletion in deletions)
    if confirmed < len(deletions):
        raise FidesopsException(
            f"Movable Ink confirmed {confirmed} of {len(deletions)} deletion(s) for privacy request "
            f"{privacy_request.id}: "
            + "; ".join(deletion.describe() for deletion in deletions)
            + ". Follow up the request ids above with Movable Ink, then retry this privacy request;"
            " deletions already confirmed are harmless to repeat."
        )
    logger.info("Movable Ink confirmed {} deletion(s)", confirmed)
    return confirmed


@register(TEST_OVERRIDE, [SaaSRequestType.TEST])
def movable_ink_test_connection(client: AuthenticatedClient, secrets: Dict[str, Any]) -> None:
    """Proves the credentials get a `dsr` token and that the DSR API accepts it."""
    base_url = _base_url(client)
    try:
        token = fetch_token(base_url, _required(secrets, "client_id"), _required(secrets, "client_secret"))
        MovableInkClient(base_url, _required(secrets, "brand"), lambda renew: token).check_access()
    except MovableInkError as exc:
        raise ConnectionException(str(exc)) from exc


def _fides_token_source(client: AuthenticatedClient) -> TokenSource:
    """Tokens from Fides' OAuth2 strategy, which stores them in the connection's secrets.

    Every worker reads the same stored token, so tokens are not fetched per request;
    after a 401 the strategy is asked for a new one, which it stores for the others.
    """
    authentication = client.client_config.authentication
    if authentication is None:
        raise FidesopsException("The Movable Ink config declares no authentication: reinstall the template.")
    strategy = cast(
        OAuth2AuthenticationStrategyBase,
        AuthenticationStrategy.get_strategy(authentication.strategy, authentication.configuration),
    )

    def token(renew: bool) -> str:
        try:
            if renew:
                return strategy.get_access_token(client.configuration)
            request = client.get_authenticated_request(SaaSRequestParams(method=HTTPMethod.GET, path=""))
            return request.headers["Authorization"].removeprefix("Bearer ")
        except (OAuth2TokenException, FidesopsException) as exc:
            raise TokenUnavailable(f"Could not get a Movable Ink token: {exc}") from exc

    return token


def _base_url(client: AuthenticatedClient) -> str:
    """The URL Fides built from the Domain, refused unless Fides would send its own requests there.

    Our client makes its own HTTP calls, not through `client.send`, so it repeats
    the checks `send` makes: the host guard and the allowed-domain check (which
    honours FIDES__SECURITY__DOMAIN_VALIDATION_MODE).
    """
    url = urlparse(client.uri)
    if url.username is not None or url.password is not None:
        # Never echo a Domain that carries credentials.
        raise ConnectionException(
            f"The Movable Ink {FIELD_LABELS['domain']} must be a host name only, for example "
            "app.movableink.com, without a user name or password."
        )
    if not _is_bare_host(url):
        raise ConnectionException(
            f"The Movable Ink {FIELD_LABELS['domain']} must be a host name only, for example "
            f"app.movableink.com, without 'https://', a path or a query; Fides built '{client.uri}' from it."
        )
    try:
        client._validate_request_domain(url.netloc)  # pylint: disable=protected-access
    except DomainValidationError as exc:
        raise ConnectionException(
            f"The Movable Ink {FIELD_LABELS['domain']} '{url.netloc}' is not one of the allowed hosts "
            f"[{', '.join(contract.ALLOWED_DOMAINS)}], so the client secret is not sent there. "
            "Set the Domain to your Movable Ink host, for example app.movableink.com."
        ) from exc
    try:
        deny_unsafe_hosts(url.netloc)
    except Exception as exc:
        raise ConnectionException(
            f"Fides refuses to call the Movable Ink {FIELD_LABELS['domain']} '{url.netloc}': {exc}. "
            "Set the Domain to your Movable Ink host, for example app.movableink.com."
        ) from exc
    return client.uri.rstrip("/")


def _is_bare_host(url: ParseResult) -> bool:
    """True when the URL is scheme://host[:port] and nothing more."""
    try:
        port_ok = url.port is None or url.port > 0  # .port raises on a malformed port
    except ValueError:
        return False
    return port_ok and bool(url.hostname) and url.path in ("", "/") and not (url.params or url.query or url.fragment)


def _required(secrets: Dict[str, Any], name: str) -> str:
    value = secrets.get(name)
    if value in (None, ""):
        raise ConnectionException(
            f"The Movable Ink integration has no {FIELD_LABELS.get(name, name)}: set it in the "
            "system's Integrations tab."
        )
    return str(value)


def _distinct_mi_us(values: Iterable[Any]) -> Tuple[List[str], int]:
    """Distinct mi_u values in first-seen order, and how many were NULL or blank.

    Values are kept exactly as stored (quotes, spaces, unicode and all): they only
    ever travel in JSON bodies, never in a URL.
    """
    distinct: Dict[str, None] = {}
    skipped = 0
    for value in values:
        if value is None or not str(value).strip():
            skipped += 1
        else:
            distinct.setdefault(str(value), None)
    return list(distinct), skipped


def _poll_policy(secrets: Dict[str, Any]) -> PollPolicy:
    default = PollPolicy()
    return PollPolicy(
        max_wait=_number(secrets, "max_wait_seconds", default.max_wait),
        first_interval=_number(secrets, "poll_interval_seconds", default.first_interval),
        max_interval=default.max_interval,
    )


def _number(secrets: Dict[str, Any], name: str, default: float) -> float:
    value: Optional[Any] = secrets.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number <= 0:
        raise ConnectionException(f"The Movable Ink setting {name} must be a positive number of seconds, not '{value}'.")
    return number


def _log_change(deletion: Deletion) -> None:
    """Logs request ids and statuses only: never an mi_u, a token or a secret."""
    if deletion.request_id is None:
        logger.warning("Movable Ink did not accept a deletion: {}", deletion.error)
    else:
        logger.info("Movable Ink deletion request {} is {}", deletion.request_id, deletion.status)
