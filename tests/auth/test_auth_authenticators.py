"""The authenticator registry against valid credentials and the attacks a kite must reject."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

import pytest

from kitelib.auth import (
    AuthenticatorError,
    AuthenticatorRegistry,
    AuthResult,
    generate_key_pair,
)
from kitelib.protocol.errors import AuthenticationError

from .helpers import NOW, b64url, forge, kite_key_claims, sign, token_claims

LEEWAY = 300


def secret_fragments(key: str) -> list[str]:
    """Pieces of a key long enough that finding one in a message means the key leaked."""
    fragments = [part for part in key.split(".") if len(part) >= 16]
    if not fragments and len(key) >= 16:
        fragments = [key]
    return fragments


def reject(registry: AuthenticatorRegistry, type_name: str, key: Any, caplog: pytest.LogCaptureFixture) -> str:
    """Authenticate, expect AuthenticationError and return its message after checking it leaks nothing."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationError) as info:
        registry.authenticate({"type": type_name, "key": key})
    error = info.value
    assert error.type == "authenticationError"
    if isinstance(key, str):
        for fragment in secret_fragments(key):
            assert fragment[:64] not in error.message
            assert fragment[:64] not in caplog.text
    return error.message


def accept(registry: AuthenticatorRegistry, type_name: str, key: str) -> AuthResult:
    return registry.authenticate({"type": type_name, "key": key})


# ---------------------------------------------------------------------------
# Valid credentials


def test_token_valid_accepted(registry, kontrol_keys):
    result = accept(registry, "token", sign(token_claims(), kontrol_keys))
    assert result.type == "token"
    assert result.username == "bob"
    assert result.claims["aud"] == "/alice/prod/math"


def test_kite_key_valid_accepted(registry, kontrol_keys):
    result = accept(registry, "kiteKey", sign(kite_key_claims(kontrol_keys.public_pem), kontrol_keys))
    assert result.type == "kiteKey"
    assert result.username == "bob"
    assert result.claims["kontrolURL"] == "http://127.0.0.1:4000/kite"


def test_kite_key_issuer_not_checked(registry, kontrol_keys):
    claims = kite_key_claims(kontrol_keys.public_pem, iss="someone-else")
    assert accept(registry, "kiteKey", sign(claims, kontrol_keys)).username == "bob"


# ---------------------------------------------------------------------------
# Algorithm attacks


@pytest.mark.parametrize("type_name", ["token", "kiteKey"])
def test_alg_none_rejected(registry, kontrol_keys, caplog, type_name):
    claims = token_claims() if type_name == "token" else kite_key_claims(kontrol_keys.public_pem)
    key = forge({"alg": "none", "typ": "JWT"}, claims)
    message = reject(registry, type_name, key, caplog)
    assert message == f"{type_name}: unexpected signing method none: only RS256 is accepted"


@pytest.mark.parametrize("type_name", ["token", "kiteKey"])
def test_hs256_with_public_key_secret_rejected(registry, kontrol_keys, caplog, type_name):
    # The classic confusion attack: HMAC keyed with the PEM text the kite trusts.
    claims = token_claims() if type_name == "token" else kite_key_claims(kontrol_keys.public_pem)
    header_part = b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims_part = forge({}, claims).split(".")[1]
    signing_input = f"{header_part}.{claims_part}".encode()
    for secret in (kontrol_keys.public_pem, kontrol_keys.public_pem + "\n"):
        mac = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
        key = f"{header_part}.{claims_part}.{b64url(mac)}"
        message = reject(registry, type_name, key, caplog)
        assert message == f"{type_name}: unexpected signing method HS256: only RS256 is accepted"


@pytest.mark.parametrize("algorithm", ["RS384", "RS512", "PS256", "ES256", "rs256", None])
def test_other_algorithms_rejected(registry, kontrol_keys, caplog, algorithm):
    valid = sign(token_claims(), kontrol_keys)
    header = {"typ": "JWT"} if algorithm is None else {"alg": algorithm, "typ": "JWT"}
    # Keep the real RS256 signature: only the header differs.
    header_part = forge(header, {}).split(".")[0]
    key = header_part + valid[valid.index("."):]
    message = reject(registry, "token", key, caplog)
    assert "unexpected signing method" in message
    assert "token is expired" not in message


# ---------------------------------------------------------------------------
# Signatures and trust


def test_token_unknown_key_says_expired(registry, attacker_keys, caplog):
    message = reject(registry, "token", sign(token_claims(), attacker_keys), caplog)
    assert message.startswith("token: token is expired")


def test_token_tampered_claims_says_expired(registry, kontrol_keys, caplog):
    header, _, signature = sign(token_claims(), kontrol_keys).split(".")
    claims = forge({}, token_claims(sub="admin")).split(".")[1]
    message = reject(registry, "token", f"{header}.{claims}.{signature}", caplog)
    assert message.startswith("token: token is expired")


def test_token_after_key_rotation_says_expired(registry, kite, kontrol_keys, caplog):
    token = sign(token_claims(), kontrol_keys)
    kite.config.kontrol_key = generate_key_pair().public_pem
    message = reject(registry, "token", token, caplog)
    assert message.startswith("token: token is expired")


def test_token_without_kontrol_key_rejected(registry, kite, kontrol_keys, caplog):
    kite.config.kontrol_key = ""
    message = reject(registry, "token", sign(token_claims(), kontrol_keys), caplog)
    assert "no kontrol key" in message


def test_kite_key_untrusted_kontrol_key(registry, attacker_keys, caplog):
    # A self-consistent key from another Kontrol.
    key = sign(kite_key_claims(attacker_keys.public_pem), attacker_keys)
    message = reject(registry, "kiteKey", key, caplog)
    assert message == "kiteKey: kontrol key is not trusted"
    assert attacker_keys.public_pem.splitlines()[1] not in message


def test_kite_key_forged_with_trusted_claim(registry, kontrol_keys, attacker_keys, caplog):
    # The claim names the trusted key, but the attacker signed it.
    key = sign(kite_key_claims(kontrol_keys.public_pem), attacker_keys)
    assert reject(registry, "kiteKey", key, caplog) == "kiteKey: signature is invalid"


def test_kite_key_missing_kontrol_key_claim(registry, kontrol_keys, caplog):
    key = sign(kite_key_claims(kontrol_keys.public_pem, kontrolKey=None), kontrol_keys)
    assert reject(registry, "kiteKey", key, caplog) == "kiteKey: kite key has no kontrolKey claim"


def test_kite_key_trust_follows_rotation(registry, kite, kontrol_keys, caplog):
    old_key = sign(kite_key_claims(kontrol_keys.public_pem), kontrol_keys)
    assert accept(registry, "kiteKey", old_key).username == "bob"

    new_keys = generate_key_pair()
    kite.config.kontrol_key = new_keys.public_pem
    new_key = sign(kite_key_claims(new_keys.public_pem), new_keys)
    assert accept(registry, "kiteKey", new_key).username == "bob"
    assert reject(registry, "kiteKey", old_key, caplog) == "kiteKey: kontrol key is not trusted"


# ---------------------------------------------------------------------------
# Time claims


@pytest.mark.parametrize("type_name", ["token", "kiteKey"])
@pytest.mark.parametrize(
    ("claim", "value", "expected"),
    [
        ("exp", NOW - LEEWAY - 120, "token is expired by 7m0s"),
        ("exp", NOW - LEEWAY - 1, "token is expired by 5m1s"),
        ("nbf", NOW + LEEWAY + 1, "token is not valid yet"),
        ("iat", NOW + LEEWAY + 1, "Token used before issued"),
    ],
)
def test_time_claim_outside_leeway_rejected(registry, kontrol_keys, caplog, type_name, claim, value, expected):
    if type_name == "token":
        claims = token_claims(**{claim: value})
    else:
        claims = kite_key_claims(kontrol_keys.public_pem, **{claim: value})
    message = reject(registry, type_name, sign(claims, kontrol_keys), caplog)
    assert message == f"{type_name}: {expected}"


@pytest.mark.parametrize("type_name", ["token", "kiteKey"])
@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", NOW - LEEWAY),
        ("exp", NOW - 1),
        ("nbf", NOW + LEEWAY),
        ("iat", NOW + LEEWAY),
    ],
)
def test_time_claim_inside_leeway_accepted(registry, kontrol_keys, type_name, claim, value):
    if type_name == "token":
        claims = token_claims(**{claim: value})
    else:
        claims = kite_key_claims(kontrol_keys.public_pem, **{claim: value})
    assert accept(registry, type_name, sign(claims, kontrol_keys)).username == "bob"


def test_leeway_read_from_config(registry, kite, kontrol_keys, caplog):
    token = sign(token_claims(exp=NOW - 1), kontrol_keys)
    assert accept(registry, "token", token).username == "bob"
    kite.config.leeway = 0
    assert reject(registry, "token", token, caplog) == "token: token is expired by 1s"


@pytest.mark.parametrize("value", ["1800003600", True, [NOW], {"t": NOW}])
def test_time_claim_wrong_type_rejected(registry, kontrol_keys, caplog, value):
    message = reject(registry, "token", sign(token_claims(exp=value), kontrol_keys), caplog)
    assert message.startswith("token: claim 'exp' must be a number of seconds")


def test_token_without_exp_accepted(registry, kontrol_keys):
    # Kontrol always sets exp, but jwt-go does not require it, and Go kites accept such tokens.
    assert accept(registry, "token", sign(token_claims(exp=None), kontrol_keys)).username == "bob"


# ---------------------------------------------------------------------------
# Required claims and issuer


@pytest.mark.parametrize("type_name", ["token", "kiteKey"])
@pytest.mark.parametrize("subject", [None, "", 42])
def test_missing_or_empty_sub_rejected(registry, kontrol_keys, caplog, type_name, subject):
    if type_name == "token":
        claims = token_claims(sub=subject)
    else:
        claims = kite_key_claims(kontrol_keys.public_pem, sub=subject)
    assert reject(registry, type_name, sign(claims, kontrol_keys), caplog) == f"{type_name}: token has no username"


@pytest.mark.parametrize("audience", [None, ""])
def test_missing_or_empty_aud_rejected(registry, kontrol_keys, caplog, audience):
    claims = token_claims(aud=audience)
    assert reject(registry, "token", sign(claims, kontrol_keys), caplog) == "token: token has no audience"


def test_aud_array_rejected(registry, kontrol_keys, caplog):
    message = reject(registry, "token", sign(token_claims(aud=["/alice"]), kontrol_keys), caplog)
    assert message == "token: token audience must be one string, got array"


@pytest.mark.parametrize("issuer", [None, ""])
def test_missing_or_empty_iss_rejected(registry, kontrol_keys, caplog, issuer):
    message = reject(registry, "token", sign(token_claims(iss=issuer), kontrol_keys), caplog)
    assert message == "token: token has no issuer"


def test_wrong_issuer_rejected(registry, kontrol_keys, caplog):
    message = reject(registry, "token", sign(token_claims(iss="mallory"), kontrol_keys), caplog)
    assert message == "token: issuer is not trusted: mallory"


def test_issuer_read_from_config(registry, kite, kontrol_keys, caplog):
    token = sign(token_claims(), kontrol_keys)
    kite.config.kontrol_user = "kontrol2"
    assert reject(registry, "token", token, caplog) == "token: issuer is not trusted: kontrol"


def test_issuer_control_characters_not_echoed(registry, kontrol_keys, caplog):
    message = reject(registry, "token", sign(token_claims(iss="evil\nFAKE LOG LINE"), kontrol_keys), caplog)
    assert "\n" not in message
    assert message == "token: issuer is not trusted: evil?FAKE LOG LINE"


# ---------------------------------------------------------------------------
# Audience


@pytest.mark.parametrize(
    "audience",
    ["/", "/alice", "/alice/prod", "/alice/prod/math", "/alice/prod/math/2.0.0/us/other-host/other-id", "/alice//math"],
)
def test_audience_for_this_kite_accepted(registry, kontrol_keys, audience):
    assert accept(registry, "token", sign(token_claims(aud=audience), kontrol_keys)).username == "bob"


@pytest.mark.parametrize(
    ("audience", "expected"),
    [
        ("/mallory", 'audience: username "mallory" not allowed (/mallory)'),
        ("/mallory/prod/math", 'audience: username "mallory" not allowed (/mallory/prod/math)'),
        ("//prod/math", 'audience: username "" not allowed (//prod/math)'),
        ("/alice/dev", 'audience: environment "dev" not allowed (/alice/dev)'),
        ("/alice/dev/math", 'audience: environment "dev" not allowed (/alice/dev/math)'),
        ("/alice/prod/other", 'audience: name "other" not allowed (/alice/prod/other)'),
        ("alice", "audience: alice is not a kite path starting with '/'"),
    ],
)
def test_audience_for_other_kite_rejected(registry, kontrol_keys, caplog, audience, expected):
    message = reject(registry, "token", sign(token_claims(aud=audience), kontrol_keys), caplog)
    assert message == f"token: {expected}"


def test_audience_read_from_identity(registry, kite, kontrol_keys, caplog):
    token = sign(token_claims(aud="/alice/prod/math"), kontrol_keys)
    kite.identity = kite.identity.replace(name="math2")
    message = reject(registry, "token", token, caplog)
    assert message == 'token: audience: name "math" not allowed (/alice/prod/math)'


# ---------------------------------------------------------------------------
# Malformed keys


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("", "token is empty"),
        ("   ", "token is empty"),
        ("abc", "token is malformed: expected 3 dot-separated parts, got 1"),
        ("a.b", "token is malformed: expected 3 dot-separated parts, got 2"),
        ("a.b.c.d", "token is malformed: expected 3 dot-separated parts, got 4"),
        ("!!!!.e30.", "token is malformed: the header is not valid base64url"),
        ("eyJhbGciOiJSUzI1NiJ9.e30=.", "token is malformed: the claims is not valid base64url"),
        ("eyJhbGciOiJSUzI1NiJ9.e30.a", "token is malformed: the signature is not valid base64url"),
        (b64url(b"{not json") + ".e30.", "token is malformed: the header is not valid JSON"),
        ("eyJhbGciOiJSUzI1NiJ9." + b64url(b'{"sub": "bob"') + ".", "token is malformed: the claims is not valid JSON"),
        ("eyJhbGciOiJSUzI1NiJ9." + b64url(b'["bob"]') + ".", "token is malformed: the claims is JSON list, expected an object"),
        (b64url(b'"RS256"') + ".e30.", "token is malformed: the header is JSON str, expected an object"),
        ("eyJhbGciOiJSUzI1NiJ9." + b64url(b"\xff\xfe") + ".", "token is malformed: the claims is not valid JSON"),
    ],
)
@pytest.mark.parametrize("type_name", ["token", "kiteKey"])
def test_malformed_key_rejected(registry, caplog, type_name, key, expected):
    assert reject(registry, type_name, key, caplog) == f"{type_name}: {expected}"


@pytest.mark.parametrize("type_name", ["token", "kiteKey"])
def test_huge_key_rejected_quickly(registry, kontrol_keys, caplog, type_name):
    valid = sign(token_claims(), kontrol_keys)
    header, claims, signature = valid.split(".")
    key = f"{header}.{claims}{'A' * (1024 * 1024)}.{signature}"
    started = time.perf_counter()
    message = reject(registry, type_name, key, caplog)
    elapsed = time.perf_counter() - started
    assert message == f"{type_name}: key is too long: {len(key)} characters, the maximum is 65536"
    assert elapsed < 0.05


def test_key_at_limit_reaches_authenticator(registry, kontrol_keys, caplog):
    key = "A" * registry.max_key_length
    message = reject(registry, "token", key, caplog)
    assert message == "token: token is malformed: expected 3 dot-separated parts, got 1"


# ---------------------------------------------------------------------------
# The authentication object


def test_none_authentication_rejected(registry):
    with pytest.raises(AuthenticationError) as info:
        registry.authenticate(None)
    assert info.value.message == "No authentication information is provided"


@pytest.mark.parametrize(
    ("authentication", "expected"),
    [
        ("eyJ...", 'invalid authentication: expected an object with "type" and "key", got string'),
        ([], 'invalid authentication: expected an object with "type" and "key", got array'),
        ({}, 'invalid authentication: "type" must be a non-empty string such as "kiteKey" or "token"'),
        ({"type": "", "key": "x"}, 'invalid authentication: "type" must be a non-empty string such as "kiteKey" or "token"'),
        ({"type": 7, "key": "x"}, 'invalid authentication: "type" must be a non-empty string such as "kiteKey" or "token"'),
        ({"type": "token"}, 'token: invalid authentication: "key" must be a string, got null'),
        ({"type": "token", "key": 5}, 'token: invalid authentication: "key" must be a string, got number'),
        ({"type": "kiteKey", "key": {"k": 1}}, 'kiteKey: invalid authentication: "key" must be a string, got object'),
    ],
)
def test_invalid_authentication_object_rejected(registry, authentication, expected):
    with pytest.raises(AuthenticationError) as info:
        registry.authenticate(authentication)
    assert info.value.message == expected


def test_unknown_type_rejected(registry):
    with pytest.raises(AuthenticationError) as info:
        registry.authenticate({"type": "sessionID", "key": "abc"})
    assert info.value.message == "Unknown authentication type: sessionID"


def test_unknown_long_type_shortened(registry):
    with pytest.raises(AuthenticationError) as info:
        registry.authenticate({"type": "x" * 10_000, "key": "abc"})
    assert info.value.message == "Unknown authentication type: " + "x" * 64 + "..."


# ---------------------------------------------------------------------------
# Pluggable authenticators


def test_register_custom_type(registry):
    registry.register("sessionID", lambda key: AuthResult(type="sessionID", username=f"user-{len(key)}"))
    result = registry.authenticate({"type": "sessionID", "key": "abcd"})
    assert result == AuthResult(type="sessionID", username="user-4")
    assert "sessionID" in registry.types


def test_register_string_result_becomes_username(registry):
    registry.register("sessionID", lambda key: "carol")
    result = registry.authenticate({"type": "sessionID", "key": "abcd"})
    assert result.username == "carol"
    assert result.type == "sessionID"


def test_register_replaces_builtin(registry, kontrol_keys):
    registry.register("token", lambda key: AuthResult(type="token", username="replaced"))
    assert registry.authenticate({"type": "token", "key": "anything"}).username == "replaced"


def test_unregister_makes_type_unknown(registry, kontrol_keys):
    registry.unregister("kiteKey")
    with pytest.raises(AuthenticationError) as info:
        registry.authenticate({"type": "kiteKey", "key": sign(kite_key_claims(kontrol_keys.public_pem), kontrol_keys)})
    assert info.value.message == "Unknown authentication type: kiteKey"


def test_custom_authenticator_error_prefixed(registry):
    def deny(key: str) -> AuthResult:
        raise AuthenticatorError("session has ended")

    registry.register("sessionID", deny)
    with pytest.raises(AuthenticationError) as info:
        registry.authenticate({"type": "sessionID", "key": "abcd"})
    assert info.value.message == "sessionID: session has ended"


def test_custom_authenticator_crash_hides_text(registry, caplog):
    secret = "s3cr3t-session-value-that-must-not-leak"

    def crash(key: str) -> AuthResult:
        raise RuntimeError(f"lookup failed for {key}")

    registry.register("sessionID", crash)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationError) as info:
        registry.authenticate({"type": "sessionID", "key": secret})
    assert info.value.message == "sessionID: authenticator failed with RuntimeError"
    assert secret not in caplog.text
    assert "RuntimeError" in caplog.text


def test_custom_authenticator_bad_result(registry):
    registry.register("sessionID", lambda key: 42)
    with pytest.raises(AuthenticationError) as info:
        registry.authenticate({"type": "sessionID", "key": "abcd"})
    assert info.value.message == "sessionID: authenticator returned an invalid result"


def test_register_rejects_bad_arguments(registry):
    with pytest.raises(ValueError):
        registry.register("", lambda key: "x")
    with pytest.raises(TypeError):
        registry.register("sessionID", "not callable")


# ---------------------------------------------------------------------------
# verify_func and its cache


class CountingVerifier:
    def __init__(self, trusted: set[str]):
        self.trusted = trusted
        self.calls = 0

    def __call__(self, pem: str) -> bool:
        self.calls += 1
        return pem in self.trusted


@pytest.fixture
def clock() -> list[float]:
    return [float(NOW)]


def test_verify_func_trusts_other_kontrol(kite, attacker_keys, clock):
    verifier = CountingVerifier({attacker_keys.public_pem})
    registry = AuthenticatorRegistry(kite, verify_func=verifier, clock=lambda: clock[0])
    key = sign(kite_key_claims(attacker_keys.public_pem), attacker_keys)
    assert accept(registry, "kiteKey", key).username == "bob"
    assert verifier.calls == 1


def test_verify_func_result_cached_for_ttl(kite, attacker_keys, clock):
    verifier = CountingVerifier({attacker_keys.public_pem})
    registry = AuthenticatorRegistry(kite, verify_func=verifier, clock=lambda: clock[0])
    kite.config.verify_ttl = 60
    key = sign(kite_key_claims(attacker_keys.public_pem), attacker_keys)

    accept(registry, "kiteKey", key)
    accept(registry, "kiteKey", key)
    assert verifier.calls == 1

    clock[0] += 61
    accept(registry, "kiteKey", key)
    assert verifier.calls == 2


def test_verify_func_ttl_zero_means_default(kite, attacker_keys, clock):
    verifier = CountingVerifier({attacker_keys.public_pem})
    registry = AuthenticatorRegistry(kite, verify_func=verifier, clock=lambda: clock[0])
    kite.config.verify_ttl = 0
    key = sign(kite_key_claims(attacker_keys.public_pem), attacker_keys)
    accept(registry, "kiteKey", key)
    clock[0] += 299
    accept(registry, "kiteKey", key)
    assert verifier.calls == 1
    clock[0] += 2
    accept(registry, "kiteKey", key)
    assert verifier.calls == 2


def test_verify_func_cache_disabled_below_zero(kite, attacker_keys, clock):
    verifier = CountingVerifier({attacker_keys.public_pem})
    registry = AuthenticatorRegistry(kite, verify_func=verifier, clock=lambda: clock[0])
    kite.config.verify_ttl = -1
    key = sign(kite_key_claims(attacker_keys.public_pem), attacker_keys)
    accept(registry, "kiteKey", key)
    accept(registry, "kiteKey", key)
    assert verifier.calls == 2


def test_verify_func_negative_not_cached(kite, attacker_keys, clock, caplog):
    verifier = CountingVerifier(set())
    registry = AuthenticatorRegistry(kite, verify_func=verifier, clock=lambda: clock[0])
    key = sign(kite_key_claims(attacker_keys.public_pem), attacker_keys)
    assert reject(registry, "kiteKey", key, caplog) == "kiteKey: kontrol key is not trusted"

    verifier.trusted.add(attacker_keys.public_pem)
    assert accept(registry, "kiteKey", key).username == "bob"
    assert verifier.calls == 2


def test_verify_func_error_rejects(kite, attacker_keys, clock, caplog):
    def broken(pem: str) -> bool:
        raise OSError("storage unavailable")

    registry = AuthenticatorRegistry(kite, verify_func=broken, clock=lambda: clock[0])
    key = sign(kite_key_claims(attacker_keys.public_pem), attacker_keys)
    assert reject(registry, "kiteKey", key, caplog) == "kiteKey: kontrol key could not be verified"


def test_verify_func_cached_key_still_needs_signature(kite, attacker_keys, kontrol_keys, clock, caplog):
    verifier = CountingVerifier({attacker_keys.public_pem})
    registry = AuthenticatorRegistry(kite, verify_func=verifier, clock=lambda: clock[0])
    accept(registry, "kiteKey", sign(kite_key_claims(attacker_keys.public_pem), attacker_keys))
    forged = sign(kite_key_claims(attacker_keys.public_pem, sub="root"), kontrol_keys)
    assert reject(registry, "kiteKey", forged, caplog) == "kiteKey: signature is invalid"


# ---------------------------------------------------------------------------
# Secrets stay out of messages and logs


def test_no_secret_in_any_rejection(registry, kite, kontrol_keys, attacker_keys, caplog):
    """Every rejection above, once more, with the whole log checked for key material."""
    caplog.set_level(logging.DEBUG)
    keys = [
        sign(token_claims(exp=NOW - 10_000), kontrol_keys),
        sign(token_claims(), attacker_keys),
        sign(token_claims(iss="x"), kontrol_keys),
        sign(token_claims(aud="/mallory"), kontrol_keys),
        sign(kite_key_claims(attacker_keys.public_pem), attacker_keys),
        sign(kite_key_claims(kontrol_keys.public_pem), attacker_keys),
        forge({"alg": "none"}, token_claims()),
    ]
    messages = []
    for key in keys:
        for type_name in ("token", "kiteKey"):
            with pytest.raises(AuthenticationError) as info:
                registry.authenticate({"type": type_name, "key": key})
            messages.append(info.value.message)
    joined = "\n".join(messages) + caplog.text
    for key in keys:
        for fragment in secret_fragments(key):
            assert fragment[:64] not in joined
    for pem in (kontrol_keys.public_pem, attacker_keys.public_pem):
        assert pem.splitlines()[1] not in joined
    for private_pem in (kontrol_keys.private_pem, attacker_keys.private_pem):
        assert private_pem.splitlines()[1] not in joined
