"""Token builders and constants shared by the authentication tests."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from kitelib.auth import KeyPair, sign_claims

# A fixed Unix time for every authenticator test, so tokens never age.
NOW = 1_800_000_000
KONTROL_USER = "kontrol"

# The shared folder sits beside the repository clone, in development and in CI.
FRAMES_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "frames"


def token_claims(**overrides: Any) -> dict[str, Any]:
    """Claims of a valid token for the test kite; a value of None removes the claim."""
    claims: dict[str, Any] = {
        "aud": "/alice/prod/math",
        "exp": NOW + 3600,
        "jti": "0b9f6a3e-5a55-4d0e-9d6f-2f1a4b7c8d9e",
        "iat": NOW - 300,
        "iss": KONTROL_USER,
        "nbf": NOW - 300,
        "sub": "bob",
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def kite_key_claims(public_pem: str, **overrides: Any) -> dict[str, Any]:
    """Claims of a valid kite.key for user bob; a value of None removes the claim."""
    claims: dict[str, Any] = {
        "jti": "3c2e1d44-0a8e-4c1e-8a57-6f1c9d2b3b0f",
        "iat": NOW - 300,
        "iss": KONTROL_USER,
        "sub": "bob",
        "kontrolKey": public_pem,
        "kontrolURL": "http://127.0.0.1:4000/kite",
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forge(header: Any, claims: Any, signature: bytes = b"") -> str:
    """Build a compact JWS from arbitrary header and claims values without any checks."""
    return ".".join([b64url(orjson.dumps(header)), b64url(orjson.dumps(claims)), b64url(signature)])


def sign(claims: dict[str, Any], keys: KeyPair) -> str:
    return sign_claims(claims, keys.private_pem)


def load_go_frames() -> dict[str, Any]:
    """Load the JWTs captured from a Go Kontrol, or skip when the shared folder is absent."""
    path = FRAMES_DIR / "go-jwt.json"
    if not path.is_file():
        pytest.skip(f"captured Go JWTs not found at {path.resolve()}: check out the shared folder beside the repository")
    return json.loads(path.read_text())
