"""Kontrol's signing key pairs, loaded once from storage and kept as key objects.

Loading a 2048-bit RSA private key from PEM costs tens of milliseconds, so each
pair is parsed once and the parsed keys are reused for every token.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from kitelib.auth.tokens import generate_key_pair, load_private_key, sign_kite_key, sign_token

from .storage import KeyPair, Storage

logger = logging.getLogger(__name__)


class NoKeysError(RuntimeError):
    """Storage contains no usable key pair; ``kitectl kontrol init`` creates one."""


@dataclass
class LoadedKeyPair:
    record: KeyPair
    private_key: Any

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def public_pem(self) -> str:
        return self.record.public_pem

    @property
    def deleted(self) -> bool:
        return self.record.deleted_at is not None


def _normalize(pem: str) -> str:
    return pem.strip()


class KeyRing:
    """The key pairs in storage, indexed by id and public key.

    The current pair is the newest one not deleted; it signs new kite keys
    and tokens for kites whose own pair was deleted.
    """

    def __init__(self, storage: Storage):
        self.storage = storage
        self._by_id: dict[str, LoadedKeyPair] = {}
        self._by_public: dict[str, LoadedKeyPair] = {}
        self.current: LoadedKeyPair | None = None

    async def load(self) -> None:
        """Read every pair from storage; raise NoKeysError when none is usable."""
        pairs = await self.storage.list_key_pairs(include_deleted=True)
        for record in pairs:
            self._remember(record)
        live = [pair for pair in self._by_id.values() if not pair.deleted]
        if not live:
            raise NoKeysError(
                f"no Kontrol key pair in {self.storage.kind} storage at {self.storage.address}: "
                "run `kitectl kontrol init` first"
            )
        self.current = max(live, key=lambda pair: pair.record.created_at)

    def _remember(self, record: KeyPair) -> LoadedKeyPair:
        existing = self._by_id.get(record.id)
        if existing is not None and existing.record == record:
            return existing
        private_key = existing.private_key if existing else load_private_key(record.private_pem)
        loaded = LoadedKeyPair(record, private_key)
        self._by_id[record.id] = loaded
        self._by_public[_normalize(record.public_pem)] = loaded
        return loaded

    @property
    def empty(self) -> bool:
        return not self._by_id

    def get(self, key_id: str) -> LoadedKeyPair | None:
        return self._by_id.get(key_id)

    def by_public(self, public_pem: str) -> LoadedKeyPair | None:
        return self._by_public.get(_normalize(public_pem))

    def is_known(self, public_pem: str) -> bool:
        """Return whether ``public_pem`` is one of ours, deleted pairs included, as Go Kontrol accepts them."""
        return _normalize(public_pem) in self._by_public

    def require_current(self) -> LoadedKeyPair:
        if self.current is None:
            raise NoKeysError("no Kontrol key pair loaded: run `kitectl kontrol init` first")
        return self.current

    def signing_pair(self, key_id: str) -> LoadedKeyPair:
        """Return the pair that signs tokens for a kite registered with ``key_id``.

        A kite whose pair was deleted, or is unknown here, gets tokens from the current pair.
        """
        pair = self._by_id.get(key_id)
        if pair is None or pair.deleted:
            return self.require_current()
        return pair

    async def create(self) -> LoadedKeyPair:
        """Generate a new pair, store it and make it current."""
        generated = generate_key_pair()
        record = KeyPair(id=str(uuid.uuid4()), public_pem=generated.public_pem, private_pem=generated.private_pem,
                         created_at=time.time())
        await self.storage.add_key_pair(record)
        loaded = self._remember(record)
        self.current = loaded
        logger.info("created key pair %s", record.id)
        return loaded

    async def rotate(self) -> tuple[LoadedKeyPair, LoadedKeyPair | None]:
        """Create a new current pair and retire the old one; return (new, old).

        The retired pair stays readable, so tokens it signed verify until they expire
        and kites holding kite keys it signed get re-signed keys when they register.
        """
        old = self.current
        new = await self.create()
        if old is not None:
            await self.storage.delete_key_pair(old.id)
            refreshed = await self.storage.get_key_pair(old.id)
            if refreshed is not None:
                self._remember(refreshed)
            logger.info("retired key pair %s", old.id)
        return new, old

    def sign_kite_key(self, username: str, issuer: str, kontrol_url: str, *, leeway: float) -> str:
        pair = self.require_current()
        return sign_kite_key(pair.private_key, username=username, issuer=issuer, kontrol_url=kontrol_url,
                             public_key=pair.public_pem, leeway=leeway)


class TokenCache:
    """Tokens by (audience, subject, issuer, key id), reused until ``ttl`` ends, as Go Kontrol caches them."""

    def __init__(self, ring: KeyRing, *, ttl: float, leeway: float, max_entries: int = 100_000):
        self.ring = ring
        self.ttl = ttl
        self.leeway = leeway
        self.max_entries = max_entries
        self._tokens: dict[tuple[str, str, str, str], tuple[str, float]] = {}

    def token(self, *, audience: str, subject: str, issuer: str, key_id: str, force: bool = False) -> str:
        pair = self.ring.signing_pair(key_id)
        cache_key = (audience, subject, issuer, pair.id)
        now = time.time()
        if not force:
            cached = self._tokens.get(cache_key)
            if cached is not None and cached[1] > now:
                return cached[0]
        token = sign_token(pair.private_key, issuer=issuer, subject=subject, audience=audience, ttl=self.ttl,
                           leeway=self.leeway, now=now)
        if len(self._tokens) >= self.max_entries:
            self._tokens.clear()
        # Reused for ttl - leeway, so a cached token always has at least the leeway left.
        self._tokens[cache_key] = (token, now + max(self.ttl - self.leeway, 0))
        return token
