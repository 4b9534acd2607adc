"""What every function shares of its configuration, and how any settings model is loaded.

Each part of the relay has its own pydantic-settings model (a destination's in its folder, the
results path's in ``results/``), each extending :class:`RelaySettings`, so a function parses only
the settings it uses. The env names are a stable contract (the README's settings tables).

Secrets: locally the plain variables hold the values; in AWS the ``*_SECRET``/``*_SECRET_NAME``
variables name a Secrets Manager secret, read through Powertools Parameters (cached).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound="RelaySettings")


class RelaySettings(BaseSettings):
    """Resources every function touches and the relay's own API."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    relay_table_name: str = "RelayTable"
    # Upstream profile/batch ids -> execution, chunk, profile: written at 2 items per profile sent,
    # read when a result arrives. A table of its own keeps that volume away from the main table.
    relay_links_table_name: str = "LinksTable"
    execution_ttl_days: int = Field(90, ge=1)
    idempotency_ttl_s: int = Field(86_400, ge=60)
    relay_api_keys: SecretStr | None = None
    relay_api_keys_secret: str | None = None
    relay_max_body_bytes: int = Field(5_000_000, ge=1024)
    relay_local_port: int = 3000
    # The reconciler repairs what stayed untouched this long with nothing in flight to move it.
    # Longer than a message's longest way through its queue (a crashed run's message comes back
    # after the 6-minute visibility timeout), so a repair means a message was really lost; a
    # repair is always safe to repeat, so shorter costs only duplicate wake-ups.
    relay_reconcile_after_s: float = Field(600.0, gt=0)

    def api_keys(self) -> frozenset[str]:
        raw = secret_value(self.relay_api_keys, self.relay_api_keys_secret)
        return frozenset(k.strip() for k in (raw or "").split(",") if k.strip())


def secret_value(value: SecretStr | None, secret_name: str | None) -> str | None:
    """A secret's plain value (local form) or, when only its name is set, Secrets Manager's."""
    if value is not None and value.get_secret_value().strip():
        return value.get_secret_value().strip()
    if secret_name:
        return resolve_secret(secret_name)
    return None


def resolve_secret(name: str) -> str:
    # Imported here: only deployed functions read Secrets Manager, and the import is not free.
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(name, max_age=300))


_loaders: list[Callable[[], object]] = []


def loader(model: type[S]) -> Callable[[], S]:
    """``get_settings = loader(MySettings)``: parsed from the environment once per process."""
    load = cache(model)
    _loaders.append(load)
    return load


def reset_settings() -> None:
    """Forget every parsed settings model (tests and the local stack change the environment)."""
    for load in _loaders:
        load.cache_clear()  # type: ignore[attr-defined]


get_settings = loader(RelaySettings)

# A base URL, without its trailing slash (clients join paths to it).
BaseUrl = Annotated[str, AfterValidator(lambda value: value.rstrip("/"))]
