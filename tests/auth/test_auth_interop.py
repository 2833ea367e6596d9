"""Interop with JWTs captured from the Go Kontrol (koding/kite baa1a54), and the shape of ours."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest

from kitelib.auth import (
    AuthenticatorRegistry,
    check_kite_key,
    decode_unverified,
    parse_kite_key,
    sign_kite_key,
    sign_token,
    verify_token,
)
from kitelib.config import Config
from kitelib.protocol.errors import AuthenticationError
from kitelib.protocol.identity import Identity

from .helpers import load_go_frames


@pytest.fixture(scope="module")
def go() -> dict:
    return load_go_frames()


def go_kite(go: dict, **identity: str) -> SimpleNamespace:
    """A kite configured from the captured Go kite.key, named like the token's audience."""
    config = Config()
    config.apply_kite_key(go["kite_key"], parse_kite_key(go["kite_key"]).claims)
    fields = {"username": config.username, "environment": "unknown", "name": "math", "version": "1.0.0",
              "region": "unknown", "hostname": "host", "id": "id"}
    fields.update(identity)
    return SimpleNamespace(config=config, identity=Identity(**fields))


def raw_segment(token: str, index: int) -> bytes:
    segment = token.split(".")[index]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_go_kite_key_verifies(go):
    claims = verify_token(go["kite_key"], go["kontrol_public_key"], now=go["kite_key_claims"]["iat"])
    assert claims == go["kite_key_claims"]


def test_go_kite_key_self_check(go):
    check = check_kite_key(go["kite_key"])
    assert check.signature_ok
    assert check.error is None
    assert check.header == go["kite_key_header"]


def test_go_token_verifies_inside_window(go):
    claims = go["token_claims"]
    for now in (claims["nbf"], (claims["nbf"] + claims["exp"]) // 2, claims["exp"]):
        assert verify_token(go["token"], go["kontrol_public_key"], now=now) == claims


def test_go_kite_key_maps_to_config(go):
    key = parse_kite_key(go["kite_key"])
    config = Config()
    config.apply_kite_key(key.token, key.claims)
    claims = go["kite_key_claims"]
    assert config.username == claims["sub"]
    assert config.kontrol_user == claims["iss"]
    assert config.kontrol_url == claims["kontrolURL"]
    assert config.kontrol_key == claims["kontrolKey"]
    assert config.id == claims["jti"]
    assert config.kite_key == go["kite_key"]


def test_go_token_authenticates(go):
    registry = AuthenticatorRegistry(go_kite(go), clock=lambda: go["token_claims"]["nbf"] + 60)
    result = registry.authenticate({"type": "token", "key": go["token"]})
    assert result.type == "token"
    assert result.username == go["token_claims"]["sub"]


def test_go_kite_key_authenticates(go):
    registry = AuthenticatorRegistry(go_kite(go), clock=lambda: go["kite_key_claims"]["iat"] + 60)
    result = registry.authenticate({"type": "kiteKey", "key": go["kite_key"]})
    assert result.username == "kontrol"


def test_go_token_expired_message(go):
    expires = go["token_claims"]["exp"]
    registry = AuthenticatorRegistry(go_kite(go), clock=lambda: expires + 300 + 120)
    with pytest.raises(AuthenticationError) as info:
        registry.authenticate({"type": "token", "key": go["token"]})
    assert info.value.message == "token: token is expired by 7m0s"


def test_go_token_wrong_kite_rejected(go):
    registry = AuthenticatorRegistry(go_kite(go, name="other"), clock=lambda: go["token_claims"]["nbf"])
    with pytest.raises(AuthenticationError) as info:
        registry.authenticate({"type": "token", "key": go["token"]})
    assert info.value.message == 'token: audience: name "math" not allowed (/kontrol/unknown/math)'


def test_go_token_tampered_says_expired(go):
    header, _, signature = go["token"].split(".")
    claims = dict(go["token_claims"], sub="admin")
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    registry = AuthenticatorRegistry(go_kite(go), clock=lambda: go["token_claims"]["nbf"])
    with pytest.raises(AuthenticationError) as info:
        registry.authenticate({"type": "token", "key": f"{header}.{payload}.{signature}"})
    assert info.value.message.startswith("token: token is expired")


def test_issued_header_matches_go(go, kontrol_keys):
    ours = sign_token(kontrol_keys.private_pem, issuer="kontrol", subject="kontrol", audience="/kontrol")
    assert ours.split(".")[0] == go["token"].split(".")[0]
    assert raw_segment(ours, 0) == b'{"alg":"RS256","typ":"JWT"}'


def test_issued_token_claims_match_go(go, kontrol_keys):
    ours = sign_token(kontrol_keys.private_pem, issuer="kontrol", subject="kontrol", audience="/kontrol/unknown/math",
                      now=1_800_000_000)
    claims = decode_unverified(ours).claims
    theirs = go["token_claims"]
    assert list(claims) == list(theirs)
    assert {key: type(value) for key, value in claims.items()} == {key: type(value) for key, value in theirs.items()}
    assert claims["exp"] - claims["iat"] == theirs["exp"] - theirs["iat"]
    assert claims["iat"] == claims["nbf"] == 1_800_000_000 - 300
    assert claims["exp"] == 1_800_000_000 + 48 * 3600 + 300


def test_issued_kite_key_claims_match_go(go, kontrol_keys):
    ours = sign_kite_key(kontrol_keys.private_pem, username="alice", issuer="kontrol",
                         kontrol_url="http://127.0.0.1:4000/kite", now=1_800_000_000)
    decoded = decode_unverified(ours)
    theirs = go["kite_key_claims"]
    assert decoded.header == go["kite_key_header"]
    assert list(decoded.claims) == list(theirs)
    assert {key: type(value) for key, value in decoded.claims.items()} == {
        key: type(value) for key, value in theirs.items()
    }
    assert decoded.claims["kontrolKey"] == kontrol_keys.public_pem
    assert decoded.claims["kontrolKey"].startswith("-----BEGIN PUBLIC KEY-----\n")
    assert decoded.claims["kontrolKey"] == decoded.claims["kontrolKey"].strip()
    assert decoded.claims["iat"] == 1_800_000_000 - 300


def test_issued_kite_key_self_check(kontrol_keys):
    ours = sign_kite_key(kontrol_keys.private_pem, username="alice", issuer="kontrol", kontrol_url="http://x/kite")
    assert check_kite_key(ours).signature_ok


def test_issued_token_verifies_with_pyjwt(kontrol_keys):
    # PyJWT is an independent verifier of what we sign: a second opinion on the format.
    import jwt

    ours = sign_token(kontrol_keys.private_pem, issuer="kontrol", subject="bob", audience="/alice/prod")
    claims = jwt.decode(ours, kontrol_keys.public_pem, algorithms=["RS256"], audience="/alice/prod",
                        issuer="kontrol")
    assert claims["sub"] == "bob"
