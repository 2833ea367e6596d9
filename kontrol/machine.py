"""registerMachine: issuing a kite.key to a new user, through pluggable machine authenticators.

- ``password``: Kontrol calls ``kite.getPass`` on the caller's connection and
  checks the returned password against the user's argon2 hash in storage.
- ``token``: the caller sends a one-time registration token an admin created.
- ``open``: anyone gets a key; only when the operator enables it.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from kitelib.protocol.errors import ArgumentError, GenericError, KiteError

from .storage import StorageError

if TYPE_CHECKING:
    from kitelib.method import Request

    from .server import Kontrol

logger = logging.getLogger(__name__)

# Seconds a caller has to type a password when Kontrol requests it.
PASSWORD_PROMPT_TIMEOUT = 120.0
DEFAULT_REGISTRATION_TOKEN_TTL = 24 * 3600.0


def hash_password(password: str) -> str:
    from argon2 import PasswordHasher

    return PasswordHasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_registration_token(token: str) -> str:
    """Return the SHA-256 hex digest under which a registration token is stored; the token itself is not."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_registration_token() -> str:
    return secrets.token_urlsafe(24)


def _fail(reason: str) -> KiteError:
    return GenericError(f"cannot authenticate user: {reason}")


def _parse(request: "Request") -> dict[str, Any]:
    # Go kitectl sends a bare username string; Go Kontrol expects {"authType": ...}.
    if len(request.args) == 1 and isinstance(request.args[0], str):
        return {"authType": "password", "username": request.args[0]}
    if len(request.args) != 1 or not isinstance(request.args[0], dict):
        raise ArgumentError(
            'registerMachine takes one object {"authType": "password"|"token"|"open", "username": ..., '
            f'"token": ...}}, got {request.args!r:.100}'
        )
    return request.args[0]


async def authenticate(kontrol: "Kontrol", request: "Request") -> str:
    """Check a registerMachine request and return the username to issue the kite.key for."""
    options = _parse(request)
    auth_type = options.get("authType", options.get("AuthType"))
    if not isinstance(auth_type, str) or not auth_type:
        raise ArgumentError('registerMachine needs "authType": "password", "token" or "open"')
    enabled = kontrol.settings.machine_auth
    if auth_type not in enabled:
        raise _fail(f"authentication type {auth_type!r} is not enabled on this Kontrol; it accepts "
                    f"{', '.join(enabled) or 'none'}")

    username = options.get("username") or request.kite.username
    if not isinstance(username, str) or not username or "/" in username or username == "anonymous":
        raise _fail(f"invalid username {username!r:.80}: send a non-empty name without '/'")

    try:
        if auth_type == "password":
            await _check_password(kontrol, request, username)
        elif auth_type == "token":
            await _check_token(kontrol, options, username)
    except StorageError as exc:
        raise GenericError(f"storage unavailable: {exc}") from None
    return username


async def _check_password(kontrol: "Kontrol", request: "Request", username: str) -> None:
    password_hash = await kontrol.storage.get_user(username)
    if password_hash is None:
        raise _fail(f"unknown user {username!r}: the Kontrol operator adds users with "
                    f"`kitectl kontrol user add {username}`")
    try:
        password = await request.connection.tell("kite.getPass", f"Password for {username}: ",
                                                 timeout=PASSWORD_PROMPT_TIMEOUT)
    except KiteError as exc:
        raise _fail(f"could not ask for the password: {exc.message}") from None
    if not isinstance(password, str) or not verify_password(password_hash, password):
        logger.info("wrong password for user %r from %s", username, request.connection.describe())
        raise _fail("invalid password")


async def _check_token(kontrol: "Kontrol", options: dict[str, Any], username: str) -> None:
    token = options.get("token")
    if not isinstance(token, str) or not token:
        raise _fail('missing "token": create one with `kitectl kontrol token create`')
    token_hash = hash_registration_token(token)
    record = await kontrol.storage.get_registration_token(token_hash)
    if record is None:
        raise _fail("invalid, expired or already used registration token")
    if record.username and record.username != username:
        raise _fail(f"this registration token is for user {record.username!r}, not {username!r}")
    if not await kontrol.storage.consume_registration_token(token_hash):
        raise _fail("invalid, expired or already used registration token")


async def create_registration_token(storage: Any, username: str | None,
                                    ttl: float = DEFAULT_REGISTRATION_TOKEN_TTL) -> str:
    """Store a new one-time token and return it; only its hash is kept."""
    token = new_registration_token()
    await storage.add_registration_token(hash_registration_token(token), username, time.time() + ttl)
    return token
