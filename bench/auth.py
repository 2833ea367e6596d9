"""Measure RS256 signing and verification rates of kitelib.auth.

Run from the repository root: ``python bench/auth.py [--seconds 1.0]``.
Each case runs in one thread for about ``--seconds`` and prints operations
per second. "from PEM" cases parse the key on every operation, which is what
happens without the key cache.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cryptography  # noqa: E402
import jwt  # noqa: E402

from kitelib.auth import AuthenticatorRegistry, generate_key_pair, sign_token  # noqa: E402
from kitelib.auth.tokens import (  # noqa: E402
    decode_unverified,
    load_private_key,
    load_public_key,
    sign_claims,
    verify_signature,
    verify_token,
)
from kitelib.config import Config  # noqa: E402
from kitelib.protocol.identity import Identity  # noqa: E402


def measure(operation: Callable[[], object], seconds: float) -> tuple[int, float]:
    """Run ``operation`` repeatedly for about ``seconds`` and return (count, elapsed seconds)."""
    operation()  # warm caches and imports outside the timed part
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        operation()
        count += 1
        if count % 8 == 0 and time.perf_counter() >= deadline:
            break
    return count, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per case, in seconds (default 1.0)")
    arguments = parser.parse_args()

    keys = generate_key_pair()
    # Uncached loaders: the functions without their lru_cache wrapper.
    parse_private = load_private_key.__wrapped__
    parse_public = load_public_key.__wrapped__

    now = time.time()
    claims = {"aud": "/alice/prod/math", "exp": int(now + 3600), "jti": "x", "iat": int(now - 300),
              "iss": "kontrol", "nbf": int(now - 300), "sub": "bob"}
    token = sign_token(keys.private_pem, issuer="kontrol", subject="bob", audience="/alice/prod/math")
    decoded = decode_unverified(token)
    kite = SimpleNamespace(
        config=Config(username="alice", environment="prod", kontrol_user="kontrol", kontrol_key=keys.public_pem),
        identity=Identity(username="alice", environment="prod", name="math"),
    )
    registry = AuthenticatorRegistry(kite)
    public_key = load_public_key(keys.public_pem)

    cases: list[tuple[str, Callable[[], object]]] = [
        ("sign token, cached key object", lambda: sign_claims(claims, keys.private_pem)),
        ("sign token, key parsed from PEM each time", lambda: sign_claims(claims, parse_private(keys.private_pem))),
        ("verify token, cached key object", lambda: verify_token(token, keys.public_pem)),
        ("verify token, key parsed from PEM each time", lambda: verify_signature(decoded, parse_public(keys.public_pem))),
        ("authenticate token (registry, all checks)", lambda: registry.authenticate({"type": "token", "key": token})),
        ("PyJWT jwt.decode, cached key object", lambda: jwt.decode(token, public_key, algorithms=["RS256"],
                                                                 audience="/alice/prod/math")),
    ]

    print(f"Python {platform.python_version()}, cryptography {cryptography.__version__}, PyJWT {jwt.__version__}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}, RSA 2048, one thread, {arguments.seconds:g} s per case")
    print()
    print(f"| {'case':<46} | {'ops/s':>9} | {'µs/op':>9} |")
    print(f"|{'-' * 48}|{'-' * 11}|{'-' * 11}|")
    for name, operation in cases:
        count, elapsed = measure(operation, arguments.seconds)
        print(f"| {name:<46} | {count / elapsed:>9,.0f} | {elapsed / count * 1e6:>9,.1f} |")


if __name__ == "__main__":
    main()
