"""TokenRenewer scheduling, retries, coalescing and stopping, on a real event loop."""

from __future__ import annotations

import asyncio
import logging
import random
import time

import pytest

from kitelib.auth import (
    RenewalStoppedError,
    TokenRenewer,
    backoff_delay,
    is_target_gone,
    token_expiry,
)
from kitelib.protocol.errors import GenericError

from .helpers import forge


def token_expiring_in(seconds: float) -> str:
    # The renewer reads exp without verifying, so an unsigned token is enough.
    return forge({"alg": "RS256", "typ": "JWT"}, {"sub": "bob", "exp": time.time() + seconds})


class Kontrol:
    """A renew() stand-in that records call times and plays back scripted outcomes."""

    def __init__(self, outcomes=None, default_lifetime: float = 3600.0):
        self.outcomes = list(outcomes or [])
        self.default_lifetime = default_lifetime
        self.calls: list[float] = []
        self.called = asyncio.Event()

    async def __call__(self) -> str:
        self.calls.append(asyncio.get_running_loop().time())
        self.called.set()
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, asyncio.Event):
            await outcome.wait()
            return token_expiring_in(self.default_lifetime)
        if isinstance(outcome, str):
            return outcome
        return token_expiring_in(self.default_lifetime)

    async def wait_calls(self, count: int) -> None:
        while len(self.calls) < count:
            self.called.clear()
            await self.called.wait()


class Receiver:
    def __init__(self):
        self.tokens: list[str] = []
        self.received = asyncio.Event()

    def __call__(self, token: str) -> None:
        self.tokens.append(token)
        self.received.set()


@pytest.fixture
async def make_renewer():
    renewers: list[TokenRenewer] = []

    def make(kontrol, receiver, *, token, **options) -> TokenRenewer:
        renewer = TokenRenewer(kontrol, receiver, token=token, **options)
        renewers.append(renewer)
        return renewer

    yield make
    for renewer in renewers:
        await renewer.close()


# ---------------------------------------------------------------------------
# Pure helpers


def test_backoff_grows_and_caps():
    rng = random.Random(7)
    for attempt in range(12):
        base = min(60.0, 1.0 * 2.0 ** attempt)
        delay = backoff_delay(attempt, rng=rng)
        assert base / 2 <= delay <= base
    assert backoff_delay(10_000, rng=rng) <= 60.0


def test_backoff_has_jitter():
    rng = random.Random(1)
    assert len({backoff_delay(3, rng=rng) for _ in range(20)}) > 1


def test_target_gone_detection():
    assert is_target_gone(GenericError("no kites found"))
    assert is_target_gone(RuntimeError("getToken: no kites found for query"))
    assert not is_target_gone(GenericError("connection refused"))


def test_token_expiry_unverified():
    assert token_expiry(forge({"alg": "RS256"}, {"exp": 123})) == 123.0
    assert token_expiry(forge({"alg": "RS256"}, {"sub": "x"})) is None
    assert token_expiry("garbage") is None


# ---------------------------------------------------------------------------
# Scheduling


async def test_renews_before_exp(make_renewer):
    kontrol, receiver = Kontrol(), Receiver()
    loop = asyncio.get_running_loop()
    started = loop.time()
    renewer = make_renewer(kontrol, receiver, token=token_expiring_in(30.3))
    renewer.start()
    await asyncio.wait_for(receiver.received.wait(), 10)
    elapsed = kontrol.calls[0] - started
    assert 0.15 <= elapsed < 5
    assert renewer.token == receiver.tokens[0]
    assert renewer.renewals == 1


async def test_renew_before_configurable(make_renewer):
    kontrol, receiver = Kontrol(), Receiver()
    renewer = make_renewer(kontrol, receiver, token=token_expiring_in(1.2), renew_before=1.0)
    renewer.start()
    await asyncio.wait_for(receiver.received.wait(), 10)
    assert len(kontrol.calls) == 1


async def test_due_token_renewed_at_once(make_renewer):
    kontrol, receiver = Kontrol(), Receiver()
    renewer = make_renewer(kontrol, receiver, token=token_expiring_in(-10))
    renewer.start()
    await asyncio.wait_for(receiver.received.wait(), 10)
    assert len(kontrol.calls) == 1


# ---------------------------------------------------------------------------
# renew_now


async def test_renew_now_returns_new_token(make_renewer):
    kontrol, receiver = Kontrol(), Receiver()
    renewer = make_renewer(kontrol, receiver, token=token_expiring_in(3600))
    renewer.start()
    new_token = await asyncio.wait_for(renewer.renew_now(), 10)
    assert new_token == renewer.token == receiver.tokens[0]


async def test_renew_now_without_exp(make_renewer):
    kontrol, receiver = Kontrol(), Receiver()
    renewer = make_renewer(kontrol, receiver, token=forge({"alg": "RS256"}, {"sub": "bob"}))
    new_token = await asyncio.wait_for(renewer.renew_now(), 10)
    assert new_token == receiver.tokens[0]


async def test_renew_now_coalesces(make_renewer):
    release = asyncio.Event()
    kontrol, receiver = Kontrol([release]), Receiver()
    renewer = make_renewer(kontrol, receiver, token=token_expiring_in(3600))
    first = renewer.renew_now()
    await asyncio.wait_for(kontrol.wait_calls(1), 10)
    second = renewer.renew_now()
    third = renewer.renew_now()
    release.set()
    tokens = await asyncio.wait_for(asyncio.gather(first, second, third), 10)
    assert len(set(tokens)) == 1
    assert len(kontrol.calls) == 1


async def test_repeated_renew_now_spaced(make_renewer):
    kontrol, receiver = Kontrol(), Receiver()
    loop = asyncio.get_running_loop()
    renewer = make_renewer(kontrol, receiver, token=token_expiring_in(3600), initial_backoff=0.2,
                           max_backoff=1.0)
    await asyncio.wait_for(renewer.renew_now(), 10)
    first_done = loop.time()
    await asyncio.wait_for(renewer.renew_now(), 10)
    # The second request came at once, so it waits at least half the initial backoff.
    assert kontrol.calls[1] - first_done >= 0.1 - 0.005
    assert len(kontrol.calls) == 2


# ---------------------------------------------------------------------------
# Failures


async def test_failures_retried_with_backoff(make_renewer, caplog):
    caplog.set_level(logging.WARNING)
    failures = [GenericError("connection refused") for _ in range(3)]
    kontrol, receiver = Kontrol(failures), Receiver()
    renewer = make_renewer(kontrol, receiver, token=token_expiring_in(3600), initial_backoff=0.02,
                           backoff_factor=2.0, max_backoff=0.08)
    future = renewer.renew_now()
    token = await asyncio.wait_for(future, 10)
    assert token == receiver.tokens[0]
    assert renewer.failures == 3
    gaps = [later - earlier for earlier, later in zip(kontrol.calls, kontrol.calls[1:])]
    for attempt, gap in enumerate(gaps):
        base = min(0.08, 0.02 * 2 ** attempt)
        assert gap >= base / 2 - 0.002
    assert caplog.text.count("token renewal failed") == 3


async def test_backoff_capped(make_renewer):
    failures = [GenericError("connection refused") for _ in range(6)]
    kontrol, receiver = Kontrol(failures), Receiver()
    renewer = make_renewer(kontrol, receiver, token=token_expiring_in(3600), initial_backoff=0.01,
                           max_backoff=0.02)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(renewer.renew_now(), 10)
    # Six retries at 0.01-0.02 s each; without the cap they would take at least 0.31 s.
    assert asyncio.get_running_loop().time() - started < 0.3


async def test_timeout_counts_as_failure(make_renewer):
    never = asyncio.Event()
    kontrol, receiver = Kontrol([never]), Receiver()
    renewer = make_renewer(kontrol, receiver, token=token_expiring_in(3600), timeout=0.05, initial_backoff=0.01)
    token = await asyncio.wait_for(renewer.renew_now(), 10)
    assert token == receiver.tokens[0]
    assert renewer.failures == 1
    assert len(kontrol.calls) == 2


async def test_non_string_result_counts_as_failure(make_renewer):
    kontrol, receiver = Kontrol([""]), Receiver()
    renewer = make_renewer(kontrol, receiver, token=token_expiring_in(3600), initial_backoff=0.01)
    token = await asyncio.wait_for(renewer.renew_now(), 10)
    assert token
    assert renewer.failures == 1


async def test_already_due_token_backs_off(make_renewer, caplog):
    caplog.set_level(logging.WARNING)
    expired = token_expiring_in(-60)
    kontrol, receiver = Kontrol([expired] * 10), Receiver()
    loop = asyncio.get_running_loop()
    renewer = make_renewer(kontrol, receiver, token=expired, initial_backoff=0.05, max_backoff=0.2)
    started = loop.time()
    renewer.start()
    await asyncio.wait_for(kontrol.wait_calls(4), 10)
    # Retries 2-4 waited at least 0.025 + 0.05 + 0.1 s instead of looping at once.
    assert loop.time() - started >= 0.175 - 0.005
    assert "already due for renewal" in caplog.text


async def test_on_token_error_keeps_running(make_renewer, caplog):
    kontrol = Kontrol()
    calls = []

    def broken(token: str) -> None:
        calls.append(token)
        raise ValueError("application bug")

    renewer = make_renewer(kontrol, broken, token=token_expiring_in(3600), initial_backoff=0.01)
    first = await asyncio.wait_for(renewer.renew_now(), 10)
    second = await asyncio.wait_for(renewer.renew_now(), 10)
    assert calls == [first, second]
    assert "on_token callback raised" in caplog.text


# ---------------------------------------------------------------------------
# Stopping


async def test_target_gone_stops(make_renewer, caplog):
    caplog.set_level(logging.WARNING)
    gone_errors = []
    kontrol, receiver = Kontrol([GenericError("no kites found")]), Receiver()
    renewer = make_renewer(kontrol, receiver, token=token_expiring_in(3600), on_gone=gone_errors.append)
    future = renewer.renew_now()
    with pytest.raises(GenericError, match="no kites found"):
        await asyncio.wait_for(future, 10)
    assert renewer.stopped
    assert isinstance(renewer.error, GenericError)
    assert gone_errors == [renewer.error]
    assert len(kontrol.calls) == 1
    assert "target kite is gone" in caplog.text
    with pytest.raises(GenericError):
        await renewer.renew_now()


async def test_close_fails_waiters(make_renewer):
    never = asyncio.Event()
    kontrol, receiver = Kontrol([never]), Receiver()
    renewer = make_renewer(kontrol, receiver, token=token_expiring_in(3600), timeout=None)
    future = renewer.renew_now()
    await asyncio.wait_for(kontrol.wait_calls(1), 10)
    await renewer.close()
    with pytest.raises(RenewalStoppedError):
        await future
    assert renewer.stopped
    with pytest.raises(RenewalStoppedError):
        await renewer.renew_now()
    await renewer.close()


async def test_logs_no_token(make_renewer, caplog):
    caplog.set_level(logging.DEBUG)
    kontrol, receiver = Kontrol([GenericError("connection refused")]), Receiver()
    old = token_expiring_in(3600)
    renewer = make_renewer(kontrol, receiver, token=old, initial_backoff=0.01)
    new = await asyncio.wait_for(renewer.renew_now(), 10)
    for token in (old, new):
        for part in token.split("."):
            if len(part) >= 16:
                assert part not in caplog.text
