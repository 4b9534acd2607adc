"""Inbound webhook signatures: Standard Webhooks and plain HMAC, on raw bytes, constant-time."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from relay.results.signatures import (
    SignatureError,
    Verifier,
    secret_bytes,
    standard_headers,
    standard_signature,
    verify_hmac,
    verify_standard,
)

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"old-old-old-old-old-old-old-old!").decode()
BODY = b'{"type":"sms.delivered","id":"e1"}'
NOW = 1_700_000_000


def test_matches_the_standard_webhooks_reference_vector() -> None:
    # From the Standard Webhooks specification's test vectors.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = standard_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_accepts_a_valid_signature_and_returns_the_id() -> None:
    headers = standard_headers(SECRET, "msg_1", NOW, BODY)
    assert verify_standard(headers, BODY, [SECRET], tolerance_s=300, now=NOW) == "msg_1"


def test_headers_are_case_insensitive() -> None:
    headers = {k.upper(): v for k, v in standard_headers(SECRET, "msg_1", NOW, BODY).items()}
    assert verify_standard(headers, BODY, [SECRET], tolerance_s=300, now=NOW) == "msg_1"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),  # body changed by one byte (e.g. re-serialised)
        lambda h, b: ({**h, "webhook-id": "msg_2"}, b),
        lambda h, b: ({**h, "webhook-timestamp": str(NOW + 1)}, b),
        lambda h, b: ({**h, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}, b),
        lambda h, b: ({**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b),
        lambda h, b: ({**h, "webhook-timestamp": "soon"}, b),
    ],
)
def test_forged_or_incomplete_requests_are_refused(tamper) -> None:
    headers, body = tamper(standard_headers(SECRET, "msg_1", NOW, BODY), BODY)
    with pytest.raises(SignatureError):
        verify_standard(headers, body, [SECRET], tolerance_s=300, now=NOW)


def test_stale_and_future_timestamps_are_refused_both_ways() -> None:
    for ts, ok in ((NOW - 300, True), (NOW - 301, False), (NOW + 300, True), (NOW + 301, False)):
        headers = standard_headers(SECRET, "msg_1", ts, BODY)
        if ok:
            verify_standard(headers, BODY, [SECRET], tolerance_s=300, now=NOW)
        else:
            with pytest.raises(SignatureError, match=r"old|future"):
                verify_standard(headers, BODY, [SECRET], tolerance_s=300, now=NOW)


def test_rotation_several_secrets_and_several_signatures() -> None:
    old = standard_headers(OLD_SECRET, "msg_1", NOW, BODY)
    # Signed with the old secret only: accepted while both are configured, refused after.
    assert verify_standard(old, BODY, [SECRET, OLD_SECRET], tolerance_s=300, now=NOW) == "msg_1"
    with pytest.raises(SignatureError):
        verify_standard(old, BODY, [SECRET], tolerance_s=300, now=NOW)
    # The sender signs with both: one matching signature among several is enough.
    new = standard_headers(SECRET, "msg_1", NOW, BODY)
    both = {**old, "webhook-signature": f"{old['webhook-signature']} {new['webhook-signature']}"}
    assert verify_standard(both, BODY, [SECRET], tolerance_s=300, now=NOW) == "msg_1"


def test_secret_formats() -> None:
    assert secret_bytes(SECRET) == b"0123456789abcdef0123456789abcdef"
    assert secret_bytes("plain-text") == b"plain-text"
    with pytest.raises(ValueError, match="base64"):
        secret_bytes("whsec_not base64!")


@pytest.mark.parametrize(
    ("algorithm", "encoding"), [("sha256", "hex"), ("sha1", "hex"), ("sha256", "base64")]
)
def test_plain_hmac_scheme(algorithm: str, encoding: str) -> None:
    digest = hmac.new(b"shh", BODY, getattr(hashlib, algorithm)).digest()
    value = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    kwargs = {"header": "X-Optimized-Signature", "algorithm": algorithm, "encoding": encoding}
    verify_hmac({"x-optimized-signature": value}, BODY, ["other", "shh"], **kwargs)
    verify_hmac({"x-optimized-signature": "sha256=" + value}, BODY, ["shh"], prefix="sha256=", **kwargs)
    with pytest.raises(SignatureError):
        verify_hmac({"x-optimized-signature": value}, BODY + b"x", ["shh"], **kwargs)
    with pytest.raises(SignatureError, match="missing"):
        verify_hmac({}, BODY, ["shh"], **kwargs)


def test_verifier_fails_closed_without_secrets() -> None:
    with pytest.raises(SignatureError, match="no webhook secret"):
        Verifier(secrets=()).verify(standard_headers(SECRET, "m", NOW, BODY), BODY, NOW)


def test_verifier_selects_the_configured_scheme() -> None:
    standard = Verifier(secrets=(SECRET,), tolerance_s=300)
    assert standard.verify(standard_headers(SECRET, "m", NOW, BODY), BODY, NOW) == "m"
    plain = Verifier(secrets=("shh",), scheme="hmac", hmac_header="x-sig")
    assert plain.verify({"x-sig": hmac.new(b"shh", BODY, hashlib.sha256).hexdigest()}, BODY, NOW) is None
    with pytest.raises(SignatureError):
        plain.verify(standard_headers("shh", "m", NOW, BODY), BODY, NOW)
