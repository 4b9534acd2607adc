"""Shapes shared by every route: the error body and small value types."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _e164(value: str) -> str:
    if not E164.match(value):
        raise ValueError("must be an E.164 phone number such as +35840123456")
    return value


def _email(value: str) -> str:
    if not EMAIL.match(value):
        raise ValueError("must be an email address")
    return value


class Model(BaseModel):
    """Every model of the relay: its validator is built on first use (pydantic's ``defer_build``),
    so a function's cold start pays only for the models it uses, not for every model it imports."""

    model_config = ConfigDict(defer_build=True)


class RequestModel(Model):
    """The body of a request (and the objects in it that the relay reads itself): a field it does
    not know is refused with a 422 naming it, on every route - a misspelt ``send_at`` or
    ``start_at`` must not be dropped silently and the work sent at the wrong time."""

    model_config = ConfigDict(defer_build=True, extra="forbid")


PhoneNumber = Annotated[str, AfterValidator(_e164)]
EmailAddress = Annotated[str, Field(max_length=320), AfterValidator(_email)]


class ErrorDetail(Model):
    field: str | None = Field(None, description="Offending field, e.g. profiles[3].person.phone_number")
    message: str
    type: str | None = None


class ErrorBody(Model):
    code: str = Field(description="Stable machine-readable code, e.g. validation_failed")
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(Model):
    """Every 4xx/5xx answer of the relay: ``{error: {code, message, details[]}}``."""

    error: ErrorBody


def json_safe(value: Any) -> Any:
    """What pydantic puts in ``ctx``/``input`` is not always JSON; keep only plain values."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
