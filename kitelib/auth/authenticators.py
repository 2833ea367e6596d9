"""Server-side authentication of kite requests, pluggable by authentication type.

A request carries ``{"type": ..., "key": ...}``. The registry looks up the
authenticator for the type and returns who the caller is. On failure it
raises AuthenticationError with the texts Go kites send, because Go clients
act on them: a Go client renews its token when the text contains
``token is expired``.

Two types are built in:

``kiteKey``
    The key is a kite.key. Its own ``kontrolKey`` claim must be trusted
    (``verify_func``, by default: equal to this kite's Kontrol key), then the
    signature is checked with that key, then the time claims, and ``sub``
    must be non-empty. The issuer is not checked.
``token``
    The key is a token from Kontrol. Only RS256 is accepted, ``iss`` must be
    this kite's Kontrol user, the signature must verify with this kite's
    Kontrol key, the time claims must hold, ``aud`` and ``sub`` must be
    non-empty, and the audience must name this kite.

Keys and tokens never appear in messages or log lines.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from kitelib.auth.tokens import (
    MAX_TOKEN_LENGTH,
    KeyFormatError,
    SignatureError,
    TokenError,
    check_algorithm,
    check_time_claims,
    decode_unverified,
    shorten,
    verify_signature,
)
from kitelib.config import DEFAULT_VERIFY_TTL
from kitelib.protocol.errors import AuthenticationError, KiteError
from kitelib.protocol.identity import Identity

logger = logging.getLogger(__name__)

KITE_KEY = "kiteKey"
TOKEN = "token"

_MAX_TRUSTED_CACHE = 256  # distinct Kontrol keys remembered as trusted


class AuthenticatorError(Exception):
    """An authenticator's reason for rejecting a key.

    The registry sends it as ``<type>: <message>``, so the message must never
    contain the key.
    """


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The authenticated caller: the authentication type, the username and the verified claims."""

    type: str
    username: str
    claims: Mapping[str, Any] = field(default_factory=dict)


# An authenticator receives the key and returns the caller, or raises
# AuthenticatorError. Returning a plain string means "this username".
Authenticator = Callable[[str], "AuthResult | str"]
VerifyFunc = Callable[[str], bool]


class AuthenticatorRegistry:
    """The authenticators of one kite, by authentication type name.

    ``kite`` is any object with ``.config`` (a kitelib Config) and
    ``.identity`` (an Identity). Both are read at every call, because key
    rotation replaces them while the kite runs.

    ``verify_func(pem)`` decides whether a Kontrol public key presented in a
    kite.key is trusted. Without one, only this kite's own
    ``config.kontrol_key`` is trusted, and that comparison is not cached so
    that a rotated key takes effect at once. A custom ``verify_func``'s
    positive results are cached for ``config.verify_ttl`` seconds (0 means
    300 s as in Go, below 0 disables the cache). Negative results are never
    cached, so a key that becomes trusted works at once.

    ``clock`` returns the current Unix time and exists for tests.
    """

    def __init__(self, kite: Any, *, verify_func: VerifyFunc | None = None,
                 clock: Callable[[], float] = time.time, max_key_length: int = MAX_TOKEN_LENGTH):
        self._kite = kite
        self._verify_func = verify_func
        self._clock = clock
        self.max_key_length = max_key_length
        self._trusted_until: OrderedDict[str, float] = OrderedDict()
        self._authenticators: dict[str, Authenticator] = {
            KITE_KEY: self.authenticate_kite_key,
            TOKEN: self.authenticate_token,
        }

    # -- registration

    def register(self, type_name: str, authenticator: Authenticator) -> None:
        """Add or replace the authenticator for ``type_name``."""
        if not isinstance(type_name, str) or not type_name:
            raise ValueError(f"authentication type must be a non-empty string, got {type_name!r}")
        if not callable(authenticator):
            raise TypeError(f"authenticator for {type_name!r} must be callable, got {type(authenticator).__name__}")
        self._authenticators[type_name] = authenticator

    def unregister(self, type_name: str) -> None:
        """Remove the authenticator for ``type_name``. Requests of that type then get "Unknown authentication type"."""
        self._authenticators.pop(type_name, None)

    @property
    def types(self) -> tuple[str, ...]:
        """Names of the registered authentication types."""
        return tuple(self._authenticators)

    @property
    def verify_func(self) -> VerifyFunc | None:
        """The trusted-Kontrol-key check for ``kiteKey``, None for the default."""
        return self._verify_func

    @verify_func.setter
    def verify_func(self, function: VerifyFunc | None) -> None:
        self._verify_func = function
        self._trusted_until.clear()

    # -- dispatch

    def authenticate(self, authentication: Any) -> AuthResult:
        """Authenticate a request's ``authentication`` object and return the caller.

        Raises AuthenticationError with a message a peer can be shown.
        """
        if authentication is None:
            raise AuthenticationError("No authentication information is provided")
        if not isinstance(authentication, Mapping):
            raise AuthenticationError(
                f'invalid authentication: expected an object with "type" and "key", got {_json_type(authentication)}'
            )
        type_name = authentication.get("type")
        if not isinstance(type_name, str) or not type_name:
            raise AuthenticationError(
                'invalid authentication: "type" must be a non-empty string such as "kiteKey" or "token"'
            )
        authenticator = self._authenticators.get(type_name)
        if authenticator is None:
            raise AuthenticationError(f"Unknown authentication type: {shorten(type_name)}")

        key = authentication.get("key")
        if not isinstance(key, str):
            raise AuthenticationError(f'{type_name}: invalid authentication: "key" must be a string, '
                                      f"got {_json_type(key)}")
        if len(key) > self.max_key_length:
            raise AuthenticationError(
                f"{type_name}: key is too long: {len(key)} characters, the maximum is {self.max_key_length}"
            )

        try:
            result = authenticator(key)
        except (AuthenticatorError, TokenError) as exc:
            logger.debug("rejected %s authentication: %s", type_name, exc)
            raise AuthenticationError(f"{type_name}: {exc}") from None
        except KiteError as exc:
            logger.debug("rejected %s authentication: %s", type_name, exc.message)
            raise AuthenticationError(f"{type_name}: {exc.message}") from None
        except Exception as exc:
            # A bug in an application's authenticator. Its text might quote the
            # key, so only the exception class reaches the peer and the log.
            logger.error("authenticator for %r raised %s", type_name, type(exc).__name__)
            raise AuthenticationError(f"{type_name}: authenticator failed with {type(exc).__name__}") from None

        if isinstance(result, str):
            result = AuthResult(type=type_name, username=result)
        if not isinstance(result, AuthResult):
            logger.error("authenticator for %r returned %s instead of AuthResult", type_name, type(result).__name__)
            raise AuthenticationError(f"{type_name}: authenticator returned an invalid result")
        return result

    # -- built-in authenticators

    def authenticate_kite_key(self, key: str) -> AuthResult:
        """Authenticate a caller by its kite.key (type ``kiteKey``)."""
        decoded = decode_unverified(key)
        check_algorithm(decoded.header)
        kontrol_key = decoded.claims.get("kontrolKey")
        if not isinstance(kontrol_key, str) or not kontrol_key.strip():
            raise AuthenticatorError("kite key has no kontrolKey claim")
        if not self._is_trusted(kontrol_key):
            raise AuthenticatorError("kontrol key is not trusted")
        try:
            verify_signature(decoded, kontrol_key)
        except KeyFormatError as exc:
            raise AuthenticatorError(f"invalid kontrolKey claim: {exc}") from None
        except SignatureError:
            raise AuthenticatorError("signature is invalid") from None
        check_time_claims(decoded.claims, now=self._clock(), leeway=self._kite.config.leeway)
        return AuthResult(type=KITE_KEY, username=_subject(decoded.claims), claims=decoded.claims)

    def authenticate_token(self, key: str) -> AuthResult:
        """Authenticate a caller by a token that Kontrol issued for this kite (type ``token``)."""
        config = self._kite.config
        decoded = decode_unverified(key)
        check_algorithm(decoded.header)
        claims = decoded.claims

        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise AuthenticatorError("token has no issuer")
        if issuer != config.kontrol_user:
            raise AuthenticatorError(f"issuer is not trusted: {shorten(issuer)}")
        if not config.kontrol_key:
            raise AuthenticatorError(
                "this kite has no kontrol key to verify tokens with: give it a kite.key (kitectl register)"
            )
        try:
            verify_signature(decoded, config.kontrol_key)
        except KeyFormatError as exc:
            logger.error("cannot verify tokens because this kite's kontrol key is invalid: %s", exc)
            raise AuthenticatorError("this kite's kontrol key is invalid, so it cannot verify tokens") from None
        except SignatureError:
            # Go clients renew their token when the text contains "token is
            # expired". A bad signature usually means Kontrol rotated its key,
            # and a new token fixes that.
            raise AuthenticatorError(
                "token is expired (its signature does not verify with this kite's kontrol key; get a new token)"
            ) from None
        check_time_claims(claims, now=self._clock(), leeway=config.leeway)

        audience = claims.get("aud")
        if audience is not None and not isinstance(audience, str):
            # Kontrol sends one string, and Go kites cannot decode an array.
            raise AuthenticatorError(f"token audience must be one string, got {_json_type(audience)}")
        if not audience:
            raise AuthenticatorError("token has no audience")
        username = _subject(claims)
        self._check_audience(audience)
        return AuthResult(type=TOKEN, username=username, claims=claims)

    # -- helpers

    def _is_trusted(self, kontrol_key: str) -> bool:
        if self._verify_func is None:
            own_key = self._kite.config.kontrol_key
            return bool(own_key) and kontrol_key.strip() == own_key.strip()

        ttl = self._kite.config.verify_ttl
        if ttl == 0:  # Go's VerifyTTL treats 0 as "use the default"
            ttl = DEFAULT_VERIFY_TTL
        now = self._clock()
        if ttl > 0:
            trusted_until = self._trusted_until.get(kontrol_key)
            if trusted_until is not None and now < trusted_until:
                self._trusted_until.move_to_end(kontrol_key)
                return True

        try:
            trusted = bool(self._verify_func(kontrol_key))
        except Exception as exc:
            logger.error("verify_func raised %s while checking a kontrol key", type(exc).__name__)
            raise AuthenticatorError("kontrol key could not be verified") from None

        if trusted and ttl > 0:
            self._trusted_until[kontrol_key] = now + ttl
            self._trusted_until.move_to_end(kontrol_key)
            while len(self._trusted_until) > _MAX_TRUSTED_CACHE:
                self._trusted_until.popitem(last=False)
        return trusted

    def _check_audience(self, audience: str) -> None:
        """Raise AuthenticatorError unless ``audience`` names this kite.

        ``/`` allows every kite. Otherwise the audience is a kite path whose
        username must equal this kite's, and whose environment and name must
        equal this kite's or be empty.
        """
        if audience == "/":
            return
        if not audience.startswith("/"):
            raise AuthenticatorError(f"audience: {shorten(audience)} is not a kite path starting with '/'")
        target = Identity.parse(audience)
        local = self._kite.identity
        checks = (
            ("username", target.username, target.username != local.username),
            ("environment", target.environment, bool(target.environment) and target.environment != local.environment),
            ("name", target.name, bool(target.name) and target.name != local.name),
        )
        for field_name, value, mismatch in checks:
            if mismatch:
                raise AuthenticatorError(f'audience: {field_name} "{shorten(value)}" not allowed ({shorten(audience)})')


def _subject(claims: Mapping[str, Any]) -> str:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthenticatorError("token has no username")
    return subject


def _json_type(value: Any) -> str:
    names = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string",
             list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)
