"""Fixtures for the authentication tests: RSA key pairs, a kite stand-in and a registry."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kitelib.auth import AuthenticatorRegistry, KeyPair, generate_key_pair
from kitelib.config import Config
from kitelib.protocol.identity import Identity

from .helpers import KONTROL_USER, NOW


@pytest.fixture(scope="session")
def kontrol_keys() -> KeyPair:
    """The key pair of the Kontrol that the test kite trusts."""
    return generate_key_pair()


@pytest.fixture(scope="session")
def attacker_keys() -> KeyPair:
    """A key pair that the test kite does not trust."""
    return generate_key_pair()


@pytest.fixture
def kite(kontrol_keys: KeyPair) -> SimpleNamespace:
    """A stand-in for a kite: the registry only reads ``config`` and ``identity``."""
    config = Config(username="alice", environment="prod", kontrol_user=KONTROL_USER,
                    kontrol_key=kontrol_keys.public_pem, kontrol_url="http://127.0.0.1:4000/kite")
    identity = Identity(username="alice", environment="prod", name="math", version="1.0.0",
                        region="eu", hostname="box1", id="6f1c0a8e-9d2b-4c1e-8a57-3b0f3c2e1d44")
    return SimpleNamespace(config=config, identity=identity)


@pytest.fixture
def registry(kite: SimpleNamespace) -> AuthenticatorRegistry:
    return AuthenticatorRegistry(kite, clock=lambda: NOW)
