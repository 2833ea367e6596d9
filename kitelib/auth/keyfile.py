"""The kite.key file: where it lives, reading, writing and self-checking it.

A kite.key is a JWT that Kontrol signed for one user. Its claims give the
kite its username and Kontrol's URL, user name and public key.

Search order:

1. ``$KITE_HOME/kite.key`` when ``KITE_HOME`` is set. No other place is read
   then, because the user chose the directory explicitly.
2. ``kite.key`` in ``platformdirs.user_config_dir("kite")``
   (``~/.config/kite`` on Linux).
3. ``~/.kite/kite.key``, where the Go tools keep it.

New keys are written to the first location of this list that applies.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kitelib.auth.tokens import (
    MAX_TOKEN_LENGTH,
    KeyFormatError,
    SignatureError,
    TokenError,
    check_algorithm,
    decode_unverified,
    verify_signature,
)

logger = logging.getLogger(__name__)

KITE_KEY_FILENAME = "kite.key"
_DIRECTORY_MODE = 0o700
_FILE_MODE = 0o600


class KiteKeyError(Exception):
    """A kite.key that exists but cannot be used. The message names the file, never the token."""


class KiteKeyNotFoundError(KiteKeyError):
    """No kite.key in any searched location."""


@dataclass(frozen=True, slots=True)
class KiteKey:
    """A kite.key as read from disk, with its claims decoded but not verified."""

    token: str
    claims: dict[str, Any]
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class KiteKeyCheck:
    """The result of checking a kite.key against its own ``kontrolKey`` claim.

    ``error`` explains why ``signature_ok`` is False and is None otherwise.
    """

    header: dict[str, Any]
    claims: dict[str, Any]
    signature_ok: bool
    error: str | None = None


def kite_key_candidates() -> list[Path]:
    """Return the kite.key paths that are searched, in order (see the module docstring)."""
    kite_home = os.environ.get("KITE_HOME")
    if kite_home:
        return [Path(kite_home).expanduser() / KITE_KEY_FILENAME]
    import platformdirs

    return [
        Path(platformdirs.user_config_dir("kite")) / KITE_KEY_FILENAME,
        Path.home() / ".kite" / KITE_KEY_FILENAME,
    ]


def kite_key_path() -> Path:
    """Return the path a new kite.key is written to: ``$KITE_HOME`` or the platform config directory."""
    return kite_key_candidates()[0]


def find_kite_key() -> Path | None:
    """Return the first existing kite.key of the search order, or None."""
    for path in kite_key_candidates():
        if path.is_file():
            return path
    return None


def _not_found(paths: list[Path]) -> KiteKeyNotFoundError:
    searched = ", ".join(str(path) for path in paths)
    return KiteKeyNotFoundError(
        f"kite.key not found (searched {searched}): run 'kitectl register' to get one, "
        "or set KITE_HOME to the directory that contains kite.key"
    )


def parse_kite_key(token: str, path: Path | None = None) -> KiteKey:
    """Decode a kite.key's claims without verifying them. Raises KiteKeyError when it is malformed."""
    where = f"kite.key {path}" if path is not None else "kite.key"
    token = token.strip()
    if not token:
        raise KiteKeyError(f"{where} is empty: run 'kitectl register' to get a new one")
    try:
        decoded = decode_unverified(token)
    except TokenError as exc:
        raise KiteKeyError(f"{where} is not a valid kite key: {exc}") from None
    return KiteKey(token=token, claims=decoded.claims, path=path)


def load_kite_key(path: str | os.PathLike[str] | None = None) -> KiteKey:
    """Read a kite.key from ``path`` or from the first location that has one.

    Surrounding whitespace is trimmed. Raises KiteKeyNotFoundError when there
    is no file and KiteKeyError when the file cannot be read or decoded.
    """
    if path is not None:
        candidates = [Path(path).expanduser()]
        found = candidates[0] if candidates[0].exists() else None
    else:
        candidates = kite_key_candidates()
        found = find_kite_key()
    if found is None:
        raise _not_found(candidates)

    try:
        with found.open("rb") as file:
            # Read one byte past the limit so a too-long file is detected without reading all of it.
            data = file.read(MAX_TOKEN_LENGTH + 1)
    except OSError as exc:
        raise KiteKeyError(f"cannot read kite.key {found}: {exc.strerror or exc}") from None
    if len(data) > MAX_TOKEN_LENGTH:
        raise KiteKeyError(
            f"kite.key {found} is larger than {MAX_TOKEN_LENGTH} bytes, so it is not a kite key: "
            "check the path or run 'kitectl register'"
        )
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KiteKeyError(f"kite.key {found} is not ASCII text, so it is not a kite key") from None
    key = parse_kite_key(text, found)
    logger.debug("loaded kite.key %s for user %r", found, key.claims.get("sub"))
    return key


def write_kite_key(token: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Write a kite.key atomically with mode 0600 and return its path.

    The token is checked to decode first, so a broken reply never replaces
    a working key. A directory that has to be created gets mode 0700. An
    existing directory keeps its mode, because ``KITE_HOME`` may point at a
    directory that other software shares. The data goes to a temporary file
    in the same directory, which then replaces the old key in one rename.
    """
    key = parse_kite_key(token)
    target = Path(path).expanduser() if path is not None else kite_key_path()
    directory = target.parent
    if not directory.exists():
        directory.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
        # mkdir applies the umask. Set the mode explicitly so it is 0700 whatever the umask is.
        os.chmod(directory, _DIRECTORY_MODE)

    descriptor, temporary_name = tempfile.mkstemp(prefix=".kite.key.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as file:
            if hasattr(os, "fchmod"):
                os.fchmod(file.fileno(), _FILE_MODE)
            # The Go tools write the bare token without a newline.
            file.write(key.token.encode("ascii"))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary_name, target)
    except BaseException:
        try:
            os.unlink(temporary_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)
    logger.info("wrote kite.key for user %r to %s", key.claims.get("sub"), target)
    return target


def _fsync_directory(directory: Path) -> None:
    # Makes the rename durable on POSIX. Windows cannot open directories, and there it is skipped.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def check_kite_key(token: str) -> KiteKeyCheck:
    """Check a kite.key's signature against its own ``kontrolKey`` claim.

    This only proves that the key is self-consistent, as Go does on load.
    Whether that Kontrol key is trusted is for the kite that receives the
    key to decide. Raises KiteKeyError when the token cannot be decoded at all.
    """
    try:
        decoded = decode_unverified(token)
    except TokenError as exc:
        raise KiteKeyError(f"not a valid kite key: {exc}") from None

    def result(error: str | None) -> KiteKeyCheck:
        return KiteKeyCheck(header=decoded.header, claims=decoded.claims, signature_ok=error is None, error=error)

    try:
        check_algorithm(decoded.header)
    except TokenError as exc:
        return result(str(exc))
    kontrol_key = decoded.claims.get("kontrolKey")
    if not isinstance(kontrol_key, str) or not kontrol_key.strip():
        return result("the kontrolKey claim is missing or empty, so the signature cannot be checked")
    try:
        verify_signature(decoded, kontrol_key)
    except KeyFormatError as exc:
        return result(f"the kontrolKey claim is not usable: {exc}")
    except SignatureError:
        return result("signature does not verify with the key in the kontrolKey claim")
    return result(None)
