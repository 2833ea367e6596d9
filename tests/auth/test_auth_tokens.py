"""Key loading, signing, verification and audiences in kitelib.auth.tokens."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kitelib.auth import (
    KeyFormatError,
    SignatureError,
    TokenError,
    audience_for_query,
    check_time_claims,
    decode_unverified,
    load_private_key,
    load_public_key,
    sign_kite_key,
    sign_token,
    verify_token,
)
from kitelib.auth.tokens import format_go_duration
from kitelib.protocol.identity import Identity

from .helpers import NOW


def test_generated_pair_forms(kontrol_keys):
    assert kontrol_keys.private_pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert kontrol_keys.public_pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert kontrol_keys.public_pem == kontrol_keys.public_pem.strip()
    assert load_private_key(kontrol_keys.private_pem).key_size == 2048


def test_private_key_pkcs1_accepted(kontrol_keys):
    pkcs1 = load_private_key(kontrol_keys.private_pem).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    assert pkcs1.startswith("-----BEGIN RSA PRIVATE KEY-----")
    token = sign_token(pkcs1, issuer="kontrol", subject="bob", audience="/", now=NOW)
    assert verify_token(token, kontrol_keys.public_pem, now=NOW)["sub"] == "bob"


def test_public_key_certificate_accepted(kontrol_keys):
    private = load_private_key(kontrol_keys.private_pem)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kontrol")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(1).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=3650))
        .sign(private, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    token = sign_token(kontrol_keys.private_pem, issuer="kontrol", subject="bob", audience="/", now=NOW)
    assert verify_token(token, pem, now=NOW)["sub"] == "bob"


def test_keys_cached_by_pem(kontrol_keys):
    assert load_private_key(kontrol_keys.private_pem) is load_private_key(kontrol_keys.private_pem)
    assert load_public_key(kontrol_keys.public_pem) is load_public_key(kontrol_keys.public_pem)


def test_non_rsa_keys_rejected():
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_private = ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
    ec_public = ec_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(KeyFormatError, match="not an RSA key"):
        load_private_key(ec_private)
    with pytest.raises(KeyFormatError, match="not an RSA key"):
        load_public_key(ec_public)


def test_garbage_keys_rejected_without_echo(kontrol_keys):
    broken = kontrol_keys.private_pem.replace("A", "*", 5)
    with pytest.raises(KeyFormatError) as info:
        load_private_key(broken)
    assert broken.splitlines()[1] not in str(info.value)
    with pytest.raises(KeyFormatError):
        load_public_key("not a key")


def test_kite_key_public_key_must_match(kontrol_keys, attacker_keys):
    with pytest.raises(ValueError, match="does not belong"):
        sign_kite_key(kontrol_keys.private_pem, public_key=attacker_keys.public_pem, username="bob",
                      issuer="kontrol", kontrol_url="http://x/kite")
    token = sign_kite_key(kontrol_keys.private_pem, public_key=kontrol_keys.public_pem + "\n", username="bob",
                          issuer="kontrol", kontrol_url="http://x/kite")
    assert decode_unverified(token).claims["kontrolKey"] == kontrol_keys.public_pem


def test_kite_key_has_no_expiry(kontrol_keys):
    claims = decode_unverified(sign_kite_key(kontrol_keys.private_pem, username="bob", issuer="kontrol",
                                             kontrol_url="http://x/kite")).claims
    assert "exp" not in claims
    assert "nbf" not in claims
    assert "aud" not in claims


def test_token_without_nbf(kontrol_keys):
    token = sign_token(kontrol_keys.private_pem, issuer="kontrol", subject="bob", audience="/", include_nbf=False)
    assert "nbf" not in decode_unverified(token).claims


def test_token_ids_unique(kontrol_keys):
    tokens = [sign_token(kontrol_keys.private_pem, issuer="k", subject="b", audience="/", now=NOW) for _ in range(3)]
    assert len({decode_unverified(token).claims["jti"] for token in tokens}) == 3


def test_sign_rejects_empty_names(kontrol_keys):
    with pytest.raises(ValueError):
        sign_token(kontrol_keys.private_pem, issuer="kontrol", subject="", audience="/")
    with pytest.raises(ValueError):
        sign_kite_key(kontrol_keys.private_pem, username="", issuer="kontrol", kontrol_url="")


def test_verify_wrong_key_raises_signature_error(kontrol_keys, attacker_keys):
    token = sign_token(attacker_keys.private_pem, issuer="kontrol", subject="bob", audience="/", now=NOW)
    with pytest.raises(SignatureError):
        verify_token(token, kontrol_keys.public_pem, now=NOW)


def test_verify_checks_time(kontrol_keys):
    token = sign_token(kontrol_keys.private_pem, issuer="kontrol", subject="bob", audience="/", ttl=60, now=NOW)
    with pytest.raises(TokenError, match="token is expired by 5m1s"):
        verify_token(token, kontrol_keys.public_pem, now=NOW + 60 + 300 + 301, leeway=300)


@pytest.mark.parametrize(
    ("claims", "now", "message"),
    [
        ({"exp": 100}, 100 + 61, "token is expired by 1m1s"),
        ({"exp": 100}, 100 + 3 * 3600 + 5, "token is expired by 3h0m5s"),
        ({"iat": 200}, 100, "Token used before issued"),
        ({"nbf": 200}, 100, "token is not valid yet"),
        ({"exp": 50, "iat": 200}, 100, "token is expired by 50s"),
    ],
)
def test_time_claims_without_leeway(claims, now, message):
    with pytest.raises(TokenError) as info:
        check_time_claims(claims, now=now, leeway=0)
    assert str(info.value) == message


def test_time_claims_float_values():
    check_time_claims({"exp": 100.5, "iat": 99.5, "nbf": 99.5}, now=100, leeway=0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m0s"), (120, "2m0s"), (3600, "1h0m0s"), (172800, "48h0m0s"), (3725, "1h2m5s")],
)
def test_go_duration_format(seconds, text):
    assert format_go_duration(seconds) == text


@pytest.mark.parametrize(
    ("query", "audience"),
    [
        ({"username": "alice", "environment": "prod", "name": "math"}, "/alice/prod/math"),
        ({"username": "alice", "environment": "prod"}, "/alice/prod"),
        ({"username": "alice"}, "/alice"),
        ({"username": "alice", "name": "math", "version": "1.0.0"}, "/alice//math"),
        ({"username": "alice", "region": "eu"}, "/alice"),
        ({"id": "6f1c0a8e"}, "/"),
        ({}, "/"),
        (Identity(username="alice", environment="prod", name="math", id="x"), "/alice/prod/math"),
        (Identity(id="x"), "/"),
    ],
)
def test_audience_for_query(query, audience):
    assert audience_for_query(query) == audience


def test_decode_rejects_non_string():
    with pytest.raises(TokenError, match="must be a string"):
        decode_unverified(b"a.b.c")  # type: ignore[arg-type]
