"""Secrets read when they are used, so a rotation reaches a warm function.

A :class:`SecretSource` is what a client built once per process holds instead of the secret's
value: ``get()`` on every request (Powertools Parameters caches a Secrets Manager value for
``max_age_s``, RELAY_SECRET_MAX_AGE_S, so a rotated secret is seen within that), and ``refresh()``
after the upstream answered 401/403 (``force_fetch``: the secret may have been rotated a moment
ago). A plain value (the local form, a test's) never changes for the life of the process, as an
environment variable of a Lambda instance does not either.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import SecretStr

# name, force -> the secret's current value
Fetch = Callable[[str, float, bool], str]

DEFAULT_MAX_AGE_S = 300.0


def fetch_secret(name: str, max_age_s: float, force: bool) -> str:
    # Imported here: only deployed functions read Secrets Manager, and the import is not free.
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(name, max_age=int(max_age_s), force_fetch=force))


class SecretSource:
    """One secret: its plain value, or the Secrets Manager secret that holds it."""

    def __init__(
        self,
        plain: SecretStr | str | None = None,
        name: str | None = None,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        fetch: Fetch | None = None,
    ) -> None:
        value = plain.get_secret_value() if isinstance(plain, SecretStr) else plain
        self.plain = (value or "").strip() or None
        self.name = name or None
        self.max_age_s = max_age_s
        self.fetch = fetch or fetch_secret

    @property
    def refreshable(self) -> bool:
        """Whether reading it again can give another value (Secrets Manager, not a plain value)."""
        return self.plain is None and self.name is not None

    def get(self) -> str | None:
        if self.plain is not None:
            return self.plain
        if self.name:
            return self.fetch(self.name, self.max_age_s, False).strip() or None
        return None

    def refresh(self) -> str | None:
        """Read it again now, past the cache (after a 401/403: it may have just been rotated)."""
        if not self.refreshable:
            return self.get()
        assert self.name is not None
        return self.fetch(self.name, self.max_age_s, True).strip() or None


def source(value: str | SecretSource | None) -> SecretSource:
    """A client's secret argument: a source, or a fixed value (tests, scripts)."""
    return value if isinstance(value, SecretSource) else SecretSource(value)


def listed(value: str | None) -> list[str]:
    """A comma-separated secret (several while one is rotated) as its values."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]
