"""Secrets rotate without failing work: a secret is read through a cache with a TTL (Powertools
Parameters' max_age), not once per process; an upstream's 401/403 reads it again past the cache
and tries once more; results are signed with every configured secret, and inbound webhooks are
verified against each one. No network: fake secret providers and httpx.MockTransport."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities.parameters import base as powertools_base
from aws_lambda_powertools.utilities.parameters import secrets as powertools_secrets
from aws_lambda_powertools.utilities.parameters.base import BaseProvider
from relay.core.outcomes import Rejected
from relay.core.secrets import SecretSource
from relay.destinations.optimized.client import Created, OptimizedClient
from relay.destinations.optimized.models import BatchRequest
from relay.destinations.optimized.settings import OptimizedSettings
from relay.destinations.optimove.client import OptimoveClient, Status
from relay.results.endpoint import Delivered, ResultsEndpoint
from relay.results.settings import ResultsSettings
from relay.results.signatures import SignatureError, Verifier, standard_headers, verify_standard

OLD = "whsec_b2xkLW9sZC1vbGQtb2xkLW9sZC1vbGQtb2xkLW9sZA=="
NEW = "whsec_bmV3LW5ldy1uZXctbmV3LW5ldy1uZXctbmV3LW5ldw=="


class FakeSecretsManager:
    """A secret store with a cache of its own, as Powertools keeps one: ``fetch`` is what a
    SecretSource calls (name, max_age, force)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)
        self.now = 0.0
        self.reads = 0
        self.cache: dict[str, tuple[str, float]] = {}

    def fetch(self, name: str, max_age_s: float, force: bool) -> str:
        cached = self.cache.get(name)
        if cached and not force and cached[1] > self.now:
            return cached[0]
        self.reads += 1
        self.cache[name] = (self.values[name], self.now + max_age_s)
        return self.values[name]


def test_a_rotated_secret_is_seen_once_its_cache_age_has_passed() -> None:
    manager = FakeSecretsManager({"relay/optimized": "token-1"})
    token = SecretSource(None, "relay/optimized", max_age_s=300, fetch=manager.fetch)
    assert token.get() == "token-1"
    manager.values["relay/optimized"] = "token-2"  # rotated in Secrets Manager
    manager.now = 299
    assert token.get() == "token-1"  # still cached
    manager.now = 301
    assert token.get() == "token-2"  # the TTL passed: a warm process sees the rotation
    assert manager.reads == 2


def test_refresh_reads_past_the_cache_and_a_plain_value_never_changes() -> None:
    manager = FakeSecretsManager({"s": "a"})
    token = SecretSource(None, "s", max_age_s=300, fetch=manager.fetch)
    assert token.get() == "a"
    manager.values["s"] = "b"
    assert token.refresh() == "b"
    assert token.get() == "b"
    plain = SecretSource("local-token", "s", fetch=manager.fetch)  # the plain value wins (local form)
    assert not plain.refreshable
    assert plain.refresh() == "local-token"


class FakeProvider(BaseProvider):
    def __init__(self, values: dict[str, str]) -> None:
        super().__init__()
        self.values = values
        self.calls = 0

    def _get(self, name: str, **sdk_options: Any) -> str:
        self.calls += 1
        return self.values[name]

    def _get_multiple(self, path: str, **sdk_options: Any) -> dict[str, str]:
        raise NotImplementedError


def test_settings_read_secrets_manager_through_powertools_with_a_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parsed settings model is cached for the process's life, but it holds only the secret's
    name: every use goes through Powertools' cache (max_age = RELAY_SECRET_MAX_AGE_S)."""
    provider = FakeProvider({"relay/token": "token-1"})
    monkeypatch.setitem(powertools_secrets.DEFAULT_PROVIDERS, "secrets", provider)
    clock = {"now": dt.datetime(2027, 1, 1, 12, 0, 0)}

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> dt.datetime:  # type: ignore[override]
            return clock["now"]

    monkeypatch.setattr(powertools_base, "datetime", Clock)
    settings = OptimizedSettings(optimized_api_token_secret="relay/token", relay_secret_max_age_s=60)
    token = settings.optimized_token_source()
    assert token.get() == "token-1"
    provider.values["relay/token"] = "token-2"
    clock["now"] += dt.timedelta(seconds=30)
    assert (token.get(), settings.optimized_token()) == ("token-1", "token-1")
    clock["now"] += dt.timedelta(seconds=31)
    assert token.get() == "token-2"
    provider.values["relay/token"] = "token-3"
    assert token.refresh() == "token-3"  # force_fetch
    assert provider.calls == 3


# -- 401/403: the secret read again, one retry -------------------------------------------------------


def _batch() -> BatchRequest:
    return BatchRequest(profiles=[{"person": {"phone_number": "+15550000001"}}])  # type: ignore[list-item]


def _created(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        201,
        json={"uuid": "b-1", "profiles": [{"uuid": "p-1", "external_id": "EXT-1"}]},
    )


def test_a_401_reads_the_token_again_and_retries_exactly_once() -> None:
    manager = FakeSecretsManager({"t": "old"})
    token = SecretSource(None, "t", max_age_s=300, fetch=manager.fetch)
    assert token.get() == "old"  # cached in this warm process
    manager.values["t"] = "new"  # rotated; the upstream already takes only the new one
    seen: list[str | None] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        if request.headers.get("authorization") != "Bearer new":
            return httpx.Response(401, json={"message": "Unauthenticated."})
        return _created(request)

    client = OptimizedClient("https://api.example", token, transport=httpx.MockTransport(upstream))
    outcome = client.create_batch("g-1", _batch(), now=0)
    assert isinstance(outcome, Created), outcome
    assert seen == ["Bearer old", "Bearer new"]  # exactly one retry
    assert client.refreshes == 1
    # Later requests use the new token straight away.
    assert isinstance(client.create_batch("g-1", _batch(), now=0), Created)
    assert seen[-1] == "Bearer new"


def test_a_401_with_an_unchanged_token_is_not_retried() -> None:
    manager = FakeSecretsManager({"t": "revoked"})
    token = SecretSource(None, "t", fetch=manager.fetch)
    calls: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(401, json={"message": "Unauthenticated."})

    client = OptimizedClient("https://api.example", token, transport=httpx.MockTransport(upstream))
    outcome = client.create_batch("g-1", _batch(), now=0)
    assert isinstance(outcome, Rejected)
    assert outcome.status == 401
    assert len(calls) == 1  # read again (force_fetch), same token: trying again would change nothing
    assert client.refreshes == 1
    assert manager.reads == 2


def test_optimove_runs_and_polls_retry_once_after_a_403_with_fresh_keys() -> None:
    manager = FakeSecretsManager({"api": "key-1", "brand": "brand-1"})
    api_key = SecretSource(None, "api", fetch=manager.fetch)
    brand = SecretSource(None, "brand", fetch=manager.fetch)
    api_key.get(), brand.get()
    manager.values["api"] = "key-2"
    seen: list[str | None] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-api-key"))
        if request.headers.get("x-api-key") != "key-2":
            return httpx.Response(403, json={"message": "Forbidden"})
        return httpx.Response(200, json={"execution_id": "opt-1", "status": "Finished"})

    client = OptimoveClient(
        "https://optimove.example", api_key, brand, transport=httpx.MockTransport(upstream)
    )
    outcome = client.status("opt-1")
    assert seen == ["key-1", "key-2"]
    assert client.refreshes == 1
    assert isinstance(outcome, Status), outcome


def test_settings_give_clients_sources_read_at_request_time() -> None:
    settings = OptimizedSettings(optimized_api_token="plain-token")
    source = settings.optimized_token_source()
    assert isinstance(source, SecretSource)
    assert source.get() == "plain-token"


# -- results: signed with each secret, verified with any --------------------------------------------


def test_results_are_signed_with_the_current_and_the_previous_secret() -> None:
    seen: list[httpx.Request] = []

    def customer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    secret = {"value": OLD}
    endpoint = ResultsEndpoint(
        "https://customer.example/results", lambda: secret["value"], transport=httpx.MockTransport(customer)
    )
    assert endpoint.post("msg_1", b'{"a":1}', now=1_700_000_000) == Delivered(204)
    assert len(seen[-1].headers["webhook-signature"].split()) == 1
    secret["value"] = f"{NEW},{OLD}"  # rotation in progress: read at each request
    assert endpoint.post("msg_2", b'{"a":2}', now=1_700_000_000) == Delivered(204)
    request = seen[-1]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for receiver_knows in ([OLD], [NEW], [OLD, NEW]):
        assert (
            verify_standard(
                request.headers, request.content, receiver_knows, tolerance_s=5, now=1_700_000_000
            )
            == "msg_2"
        )
    with pytest.raises(SignatureError):
        verify_standard(
            request.headers, request.content, ["some-other-secret"], tolerance_s=5, now=1_700_000_000
        )


def test_inbound_webhooks_accept_either_comma_separated_secret() -> None:
    settings = ResultsSettings(webhook_secret=f" {NEW} , {OLD} ")  # type: ignore[arg-type]
    assert settings.webhook_secrets() == [NEW, OLD]
    verifier = Verifier(secrets=tuple(settings.webhook_secrets()))
    for signer in (OLD, NEW):
        headers = standard_headers(signer, "msg_9", 1_700_000_000, b"{}")
        assert verifier.verify(headers, b"{}", 1_700_000_000) == "msg_9"
    with pytest.raises(SignatureError):
        verifier.verify(
            standard_headers("some-other-secret", "msg_9", 1_700_000_000, b"{}"), b"{}", 1_700_000_000
        )
