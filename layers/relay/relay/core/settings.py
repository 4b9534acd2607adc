"""What every function shares of its configuration, and how any settings model is loaded.

Each part of the relay has its own pydantic-settings model (a destination's in its folder, the
results path's in ``results/``), each extending :class:`RelaySettings`, so a function parses only
the settings it uses. The env names are a stable contract (the README's settings tables).

Secrets: locally the plain variables hold the values; in AWS the ``*_SECRET``/``*_SECRET_NAME``
variables name a Secrets Manager secret, read through Powertools Parameters, cached for
RELAY_SECRET_MAX_AGE_S (not for the process's life: a parsed settings model holds the secret's
name, and each use reads the value through that cache, so a rotation reaches warm functions; see
``relay.core.secrets``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from relay.core.secrets import SecretSource, fetch_secret

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
    # How long a Secrets Manager value is cached in a warm function (rotation is seen within this;
    # an upstream's 401/403 reads it again at once).
    relay_secret_max_age_s: float = Field(300.0, ge=0)

    def api_keys(self) -> frozenset[str]:
        raw = secret_value(self.relay_api_keys, self.relay_api_keys_secret, self.relay_secret_max_age_s)
        return frozenset(k.strip() for k in (raw or "").split(",") if k.strip())

    def secret_source(self, value: SecretStr | None, secret_name: str | None) -> SecretSource:
        """A secret for a client built once per process: read at each use (see relay.core.secrets)."""
        return SecretSource(value, secret_name, max_age_s=self.relay_secret_max_age_s)


def secret_value(
    value: SecretStr | None, secret_name: str | None, max_age_s: float | None = None
) -> str | None:
    """A secret's plain value (local form) or, when only its name is set, Secrets Manager's."""
    if value is not None and value.get_secret_value().strip():
        return value.get_secret_value().strip()
    if secret_name:
        return resolve_secret(secret_name, max_age_s=max_age_s)
    return None


def resolve_secret(name: str, *, max_age_s: float | None = None, force: bool = False) -> str:
    if max_age_s is None:
        max_age_s = float(os.environ.get("RELAY_SECRET_MAX_AGE_S") or 300)
    return fetch_secret(name, max_age_s, force)


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
