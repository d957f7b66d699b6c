"""Movable Ink's DSR API wire contract: every assumption about it lives here.

Movable Ink does not publish this API. The client, the sandbox and the tests all
read these names, so a correction to the real contract is one edit in this file
(and in `docs/movable-ink-api.md`). The token path and scope are also declared in
`connector_config/movable_ink_config.yml`, because Fides' OAuth2 strategy reads
them from there; a contract test keeps the two in step.
"""

from enum import StrEnum
from typing import Any, Optional
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_DOMAIN = "app.movableink.com"
# Hosts a Domain may name; Fides enforces them through the endpoint param's `allowed_values`.
ALLOWED_DOMAINS = ["app.movableink.com", "*.movableink.com"]

# OAuth2 client credentials.
TOKEN_PATH = "/oauth/token"
TOKEN_SCOPE = "dsr"
TOKEN_ERROR_INVALID_CLIENT = "invalid_client"  # 401: unknown client id or wrong secret
TOKEN_ERROR_INVALID_SCOPE = "invalid_scope"  # 400: the client was not granted `dsr`

# Deletion requests.
DSR_PATH = "/api/v2/data-subject-rights"
REQUEST_TYPE_DELETE = "delete"
SUBMIT_SUCCESS_CODES = (201, 202)
FIELD_ID = "id"
FIELD_STATUS = "status"
FIELD_ERROR = "error"

# Test connection asks for the status of an id that cannot exist: any answer but
# 401/403 (normally 404) proves the token was accepted by the DSR API.
CONNECTION_PROBE_ID = "fides-connection-test"


class DeletionStatus(StrEnum):
    """Status values Movable Ink reports for a deletion request."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL_STATUSES = frozenset({DeletionStatus.COMPLETED, DeletionStatus.FAILED})


def token_form(client_id: str, client_secret: str) -> dict[str, str]:
    """Form fields of the token request."""
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret,
        "scope": TOKEN_SCOPE,
    }


def submit_body(brand: str, mi_u: str, reference: str) -> dict[str, Any]:
    """JSON body of a deletion request; `reference` is the Fides privacy request id."""
    return {
        "request_type": REQUEST_TYPE_DELETE,
        "brand": brand,
        "mi_u": mi_u,
        "reference": reference,
    }


def status_path(request_id: str) -> str:
    """Path of one deletion request's status; the id is percent-encoded as one segment."""
    return f"{DSR_PATH}/{quote(request_id, safe='')}"


class _Answer(BaseModel):
    """A Movable Ink JSON answer: unknown fields are ignored, known ones are checked."""

    model_config = ConfigDict(extra="ignore")


class TokenAnswer(_Answer):
    """200 from the token endpoint."""

    access_token: str = Field(min_length=1)
    token_type: str = "Bearer"
    expires_in: Optional[int] = None
    scope: Optional[str] = None


class TokenErrorAnswer(_Answer):
    """4xx from the token endpoint (RFC 6749 section 5.2)."""

    error: Optional[str] = None
    error_description: Optional[str] = None


class SubmitAnswer(_Answer):
    """201/202 to a deletion request."""

    id: str = Field(min_length=1, alias=FIELD_ID)
    status: str = Field(default=DeletionStatus.PENDING, alias=FIELD_STATUS)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class StatusAnswer(_Answer):
    """200 to a status call."""

    status: DeletionStatus = Field(alias=FIELD_STATUS)
    error: Optional[str] = Field(default=None, alias=FIELD_ERROR)
