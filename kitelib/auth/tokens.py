"""RS256 JSON Web Tokens as Kontrol issues them: kite.keys and per-kite tokens.

Verification is written against the compact JWS form directly so that only
RS256 can ever pass: ``none``, HMAC (including HS256 with the public key as
the secret) and every non-RSA algorithm are rejected before any key is
loaded. Signing goes through PyJWT. PyJWT and cryptography are imported
inside the functions that need them because ``import jwt`` alone takes about
90 ms and most programs that import this module only verify.

Messages of TokenError never contain the token or a key, so they can be sent
to a peer and logged.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import orjson

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

ALGORITHM = "RS256"
# Go Kontrol sends exactly this header, so ours matches it byte for byte.
HEADER: dict[str, str] = {"alg": "RS256", "typ": "JWT"}

DEFAULT_TOKEN_TTL = 48 * 3600.0  # Kontrol's TokenTTL
DEFAULT_LEEWAY = 300.0  # Kontrol's TokenLeeway: allowed clock skew, in seconds

# A Kontrol token or kite.key is about 1-2 KB. The limit stops a peer from
# making the server decode megabytes of base64 and JSON per request.
MAX_TOKEN_LENGTH = 64 * 1024

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_MAX_SHOWN = 64  # characters of an attacker-chosen value (alg, iss, aud) quoted in a message


class TokenError(ValueError):
    """A token that cannot be used. The message is safe to show to the peer."""


class SignatureError(TokenError):
    """A token whose signature does not verify with the given public key."""


class KeyFormatError(ValueError):
    """A PEM text that is not a usable RSA key. The message never contains the key."""


@dataclass(frozen=True, slots=True)
class DecodedToken:
    """The parts of a compact JWS, decoded but not verified."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An RSA key pair as PEM text: PKCS#8 private key, PKIX public key."""

    private_pem: str
    public_pem: str


def shorten(value: Any) -> str:
    """Return a peer-supplied value as short, printable text for a message or log line."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[:_MAX_SHOWN] + "..."
    # Control characters could forge extra lines in a log.
    return "".join(character if character.isprintable() else "?" for character in text)


def format_go_duration(seconds: float) -> str:
    """Format whole seconds as Go's time.Duration does (``2m0s``, ``48h0m0s``).

    Go clients and existing scripts match on texts such as
    ``token is expired by 2m0s``, so the format follows Go's.
    """
    total = int(seconds)
    sign = "-" if total < 0 else ""
    total = abs(total)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


# ---------------------------------------------------------------------------
# Keys


@functools.lru_cache(maxsize=256)
def load_public_key(pem: str) -> "RSAPublicKey":
    """Load an RSA public key from a PKIX ``PUBLIC KEY`` PEM or a PEM certificate.

    Results are cached by PEM text, so each distinct key is parsed once.
    Raises KeyFormatError for anything else, including non-RSA keys.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    data = pem.strip().encode("ascii", "replace")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyFormatError(
            f"invalid RSA public key: expected a PEM 'PUBLIC KEY' block or a certificate ({exc})"
        ) from None
    if not isinstance(key, RSAPublicKey):
        raise KeyFormatError(f"invalid RSA public key: the PEM contains a {type(key).__name__}, not an RSA key")
    return key


@functools.lru_cache(maxsize=64)
def load_private_key(pem: str) -> "RSAPrivateKey":
    """Load an RSA private key from a PKCS#1 or PKCS#8 PEM without a password.

    Loading takes about 37 ms for 2048 bits because cryptography validates
    the key, so results are cached by PEM text.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    try:
        key = serialization.load_pem_private_key(pem.strip().encode("ascii", "replace"), password=None)
    except (ValueError, TypeError) as exc:
        # TypeError: the key is encrypted. The text of either error contains no key material.
        raise KeyFormatError(
            f"invalid RSA private key: expected an unencrypted PKCS#1 or PKCS#8 PEM ({exc})"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise KeyFormatError(f"invalid RSA private key: the PEM contains a {type(key).__name__}, not an RSA key")
    return key


def public_key_pem(key: "RSAPrivateKey | RSAPublicKey") -> str:
    """Return the PKIX PEM of a key's public half, trimmed as kite.key claims carry it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    public = key.public_key() if isinstance(key, RSAPrivateKey) else key
    data = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return data.decode("ascii").strip()


def generate_key_pair(bits: int = 2048) -> KeyPair:
    """Generate an RSA key pair for Kontrol.

    The private PEM is PKCS#8 and ends with a newline, ready for a file. The
    public PEM is trimmed, which is the form compared with the ``kontrolKey``
    claim.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return KeyPair(private_pem=private_pem, public_pem=public_key_pem(key))


# ---------------------------------------------------------------------------
# Decoding and verification


def _decode_segment(segment: str, part: str) -> bytes:
    # RFC 7515 base64url without padding. The standard decoder would skip
    # characters outside the alphabet, so check them first.
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        raise TokenError(f"token is malformed: the {part} is not valid base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise TokenError(f"token is malformed: the {part} is not valid base64url") from None


def _decode_json_object(data: bytes, part: str) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise TokenError(f"token is malformed: the {part} is not valid JSON") from None
    if not isinstance(value, dict):
        raise TokenError(f"token is malformed: the {part} is JSON {type(value).__name__}, expected an object")
    return value


def decode_unverified(token: str) -> DecodedToken:
    """Split and decode a compact JWS without checking its signature or claims.

    Raises TokenError when the token is too long, does not have three
    base64url parts, or its header or claims are not JSON objects.
    """
    if not isinstance(token, str):
        raise TokenError(f"token must be a string, got {type(token).__name__}")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(f"token is too long: {len(token)} characters, the maximum is {MAX_TOKEN_LENGTH}")
    token = token.strip()
    if not token:
        raise TokenError("token is empty")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError(f"token is malformed: expected 3 dot-separated parts, got {len(parts)}")
    header = _decode_json_object(_decode_segment(parts[0], "header"), "header")
    claims = _decode_json_object(_decode_segment(parts[1], "claims"), "claims")
    signature = _decode_segment(parts[2], "signature")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    return DecodedToken(header=header, claims=claims, signing_input=signing_input, signature=signature)


def check_algorithm(header: Mapping[str, Any]) -> None:
    """Raise TokenError unless the header names RS256, the only algorithm Kontrol uses."""
    algorithm = header.get("alg")
    if algorithm != ALGORITHM:
        raise TokenError(f"unexpected signing method {shorten(algorithm)}: only {ALGORITHM} is accepted")


def verify_signature(decoded: DecodedToken, public_key: "str | RSAPublicKey") -> None:
    """Raise SignatureError unless the RS256 signature verifies with ``public_key``.

    ``public_key`` is a PEM text (loaded through the cache) or a loaded key.
    The header's algorithm is checked first, so an HMAC token whose secret
    is the public key is rejected without computing anything.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    check_algorithm(decoded.header)
    key = load_public_key(public_key) if isinstance(public_key, str) else public_key
    try:
        key.verify(decoded.signature, decoded.signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureError("signature is invalid") from None


def _time_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TokenError(f"claim {name!r} must be a number of seconds, got {type(value).__name__}")
    return float(value)


def check_time_claims(claims: Mapping[str, Any], *, now: float | None = None, leeway: float = DEFAULT_LEEWAY) -> None:
    """Check ``exp``, ``iat`` and ``nbf`` (each optional) allowing ``leeway`` seconds of clock skew.

    The checks run in jwt-go's order and raise TokenError with its texts,
    ``token is expired by <duration>`` (the time since ``exp``),
    ``Token used before issued`` and ``token is not valid yet``.
    """
    now = time.time() if now is None else now
    expires = _time_claim(claims, "exp")
    issued = _time_claim(claims, "iat")
    not_before = _time_claim(claims, "nbf")
    if expires is not None and now > expires + leeway:
        raise TokenError(f"token is expired by {format_go_duration(now - expires)}")
    if issued is not None and now + leeway < issued:
        raise TokenError("Token used before issued")
    if not_before is not None and now + leeway < not_before:
        raise TokenError("token is not valid yet")


def verify_token(token: str, public_key: "str | RSAPublicKey", *, now: float | None = None,
                 leeway: float = DEFAULT_LEEWAY) -> dict[str, Any]:
    """Verify an RS256 token's signature and time claims and return its claims.

    Audience, issuer and subject are left to the caller, because which values
    are acceptable depends on who verifies.
    """
    decoded = decode_unverified(token)
    verify_signature(decoded, public_key)
    check_time_claims(decoded.claims, now=now, leeway=leeway)
    return decoded.claims


# ---------------------------------------------------------------------------
# Signing


def sign_claims(claims: Mapping[str, Any], private_key: "str | RSAPrivateKey") -> str:
    """Sign ``claims`` as an RS256 JWT with the header ``{"alg":"RS256","typ":"JWT"}``.

    ``private_key`` is a PEM text (loaded through the cache) or a loaded key.
    Claims keep their order in the payload.
    """
    import jwt

    key = load_private_key(private_key) if isinstance(private_key, str) else private_key
    # PyJWT adds "typ" and "alg" itself. It would also add "kid" if one were
    # given in headers, and Kontrol never sends one.
    return jwt.encode(dict(claims), key, algorithm=ALGORITHM, headers={"typ": "JWT"})


def sign_kite_key(private_key: "str | RSAPrivateKey", *, username: str, issuer: str, kontrol_url: str,
                  public_key: str | None = None, leeway: float = DEFAULT_LEEWAY, now: float | None = None,
                  jti: str | None = None) -> str:
    """Issue a kite.key for ``username``, as Kontrol's user registration does.

    The claims are ``jti`` (a UUID4 unless given), ``iat`` (now minus
    ``leeway``, so a peer whose clock is behind accepts it), ``iss``,
    ``sub``, ``kontrolKey`` (the trimmed PKIX PEM of the signing key) and
    ``kontrolURL``. There is no ``exp``, ``nbf`` or ``aud``, so the key never
    expires. ``public_key`` defaults to the private key's public half. When
    given, it must belong to the private key, because a kite.key must verify
    with its own ``kontrolKey``.
    """
    if not username:
        raise ValueError("username is empty: a kite.key needs the user it belongs to as 'sub'")
    if not issuer:
        raise ValueError("issuer is empty: a kite.key needs Kontrol's username as 'iss'")
    key = load_private_key(private_key) if isinstance(private_key, str) else private_key
    derived_pem = public_key_pem(key)
    if public_key is not None:
        if load_public_key(public_key).public_numbers() != key.public_key().public_numbers():
            raise ValueError("public_key does not belong to the private key: pass the matching pair or omit it")
        kontrol_key = public_key.strip()
    else:
        kontrol_key = derived_pem
    now = time.time() if now is None else now
    claims = {
        "jti": jti or str(uuid.uuid4()),
        "iat": int(now - leeway),
        "iss": issuer,
        "sub": username,
        "kontrolKey": kontrol_key,
        "kontrolURL": kontrol_url,
    }
    return sign_claims(claims, key)


def sign_token(private_key: "str | RSAPrivateKey", *, issuer: str, subject: str, audience: str,
               ttl: float = DEFAULT_TOKEN_TTL, leeway: float = DEFAULT_LEEWAY, now: float | None = None,
               include_nbf: bool = True, jti: str | None = None) -> str:
    """Issue a token that lets ``subject`` call the kites matching ``audience``.

    The claims follow Kontrol: ``aud`` is one string (Go clients cannot
    decode an array), ``exp`` is now plus ``ttl`` plus ``leeway``, and
    ``iat`` and ``nbf`` are now minus ``leeway``. Sign with the private key
    whose public half is in the target kite's kite.key.
    """
    if not issuer or not subject or not audience:
        raise ValueError(
            f"issuer, subject and audience must be non-empty, got {issuer!r}, {subject!r}, {audience!r}"
        )
    now = time.time() if now is None else now
    claims: dict[str, Any] = {
        "aud": audience,
        "exp": int(now + ttl + leeway),
        "jti": jti or str(uuid.uuid4()),
        "iat": int(now - leeway),
        "iss": issuer,
    }
    if include_nbf:
        claims["nbf"] = int(now - leeway)
    claims["sub"] = subject
    return sign_claims(claims, private_key)


def audience_for_query(query: Any) -> str:
    """Return the token audience Kontrol derives from a kite query.

    ``query`` is an Identity or a mapping with the seven identity keys. The
    audience is ``/username/environment/name`` when ``name`` is set, else
    ``/username/environment`` when ``environment`` is set, else
    ``/username``. A query that sets only the id therefore gets ``/``, which
    every kite accepts.
    """
    if isinstance(query, Mapping):
        username, environment, name = (query.get(key) or "" for key in ("username", "environment", "name"))
    else:
        username, environment, name = query.username, query.environment, query.name
    if name:
        return f"/{username}/{environment}/{name}"
    if environment:
        return f"/{username}/{environment}"
    return f"/{username}"
