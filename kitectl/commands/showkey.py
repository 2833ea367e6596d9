"""``kitectl showkey``: which kite.key is used, its claims, and whether its signature checks out."""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from typing import Annotated, Any

import typer

from ..errors import EXIT_FAILURE, CLIError
from ..output import print_json, print_table
from ..runtime import kite_key_not_found

# Go kitectl prints the claims in this order; any other claim follows, sorted.
CLAIM_ORDER = ("sub", "iss", "kontrolURL", "aud", "iat", "exp", "nbf", "jti", "kontrolKey")
TIME_CLAIMS = ("iat", "exp", "nbf")


def showkey(
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object: path, header, claims, signature and expiry.")] = False,
) -> None:
    """Show which kite.key is used, its claims, and whether its signature checks out.

    The signature is checked against the kontrolKey claim inside the key,
    which proves the key is intact, not that a Kontrol trusts it. Exits 1
    when the signature does not verify or the key has expired.
    """
    from kitelib.auth.keyfile import KiteKeyError, KiteKeyNotFoundError, check_kite_key, load_kite_key

    try:
        key = load_kite_key()
    except KiteKeyNotFoundError as exc:
        raise kite_key_not_found() from exc
    except KiteKeyError as exc:
        raise CLIError("cannot use kite.key", str(exc), "run 'kitectl register --force' to replace it") from exc
    try:
        check = check_kite_key(key.token)
    except KiteKeyError as exc:
        raise CLIError("cannot decode kite.key", f"{key.path}: {exc}", "run 'kitectl register --force'") from exc

    expires = key.claims.get("exp")
    expired = isinstance(expires, (int, float)) and expires < time.time()
    if json_output:
        print_json({"path": str(key.path), "header": check.header, "claims": check.claims,
                    "signature": {"valid": check.signature_ok, "error": check.error}, "expired": expired})
    else:
        rows: list[tuple[str, str]] = [("file", str(key.path))]
        rows += [(name, _show_claim(name, check.claims[name])) for name in _ordered(check.claims)]
        signature = "valid (checked with the kontrolKey claim)" if check.signature_ok else f"INVALID: {check.error}"
        rows.append(("signature", signature))
        if expired:
            rows.append(("status", "EXPIRED"))
        print_table(["FIELD", "VALUE"], rows)
    if not check.signature_ok or expired:
        raise typer.Exit(EXIT_FAILURE)


def _ordered(claims: dict[str, Any]) -> list[str]:
    known = [name for name in CLAIM_ORDER if name in claims]
    return known + sorted(name for name in claims if name not in CLAIM_ORDER)


def _show_claim(name: str, value: Any) -> str:
    if name in TIME_CLAIMS and isinstance(value, (int, float)):
        return f"{value:.0f} ({time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(value))})"
    if name == "kontrolKey" and isinstance(value, str):
        return describe_public_key(value)
    return str(value)


def describe_public_key(pem: str) -> str:
    """Return ``PUBLIC KEY SHA256:<fingerprint>`` for a PEM key, the digest of its DER bytes as ssh-keygen shows."""
    lines = [line.strip() for line in pem.strip().splitlines()]
    if len(lines) < 3 or not lines[0].startswith("-----BEGIN "):
        return f"not a PEM key: {pem[:40]!r}"
    kind = lines[0].removeprefix("-----BEGIN ").removesuffix("-----")
    try:
        der = base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        return f"{kind} with an invalid base64 body"
    digest = base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    return f"{kind} SHA256:{digest}"
