"""Keeping a Kontrol token fresh for one remote kite.

A client that calls a kite with a Kontrol token must get a new one before
the old one expires, and at once when the kite rejects the token with a
message containing ``token is expired``. Kites also send that text after
Kontrol rotated its key. TokenRenewer does both with plain asyncio.
The caller supplies the coroutine that requests a token from Kontrol, so this
module does not depend on the client.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Awaitable, Callable

from kitelib.auth.tokens import TokenError, decode_unverified, format_go_duration

logger = logging.getLogger(__name__)

DEFAULT_RENEW_BEFORE = 30.0  # seconds before exp, as Go clients renew
DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_BACKOFF_FACTOR = 2.0
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_RENEW_TIMEOUT = 60.0
# Long waits are split into slices of this length and recomputed from the
# wall clock, because the event loop's monotonic clock may stop while the
# machine sleeps but exp is wall-clock time.
_MAX_WAIT_SLICE = 300.0


class RenewalStoppedError(RuntimeError):
    """The renewer was closed before a new token arrived."""


def is_target_gone(error: BaseException) -> bool:
    """Return True when a renewal error means the target kite no longer exists.

    Kontrol replies to ``getToken`` for an unregistered kite with an error
    containing ``no kites found``. Retrying cannot help then.
    """
    message = getattr(error, "message", None)
    if not isinstance(message, str):
        message = str(error)
    return "no kites found" in message


def backoff_delay(attempt: int, *, initial: float = DEFAULT_INITIAL_BACKOFF, factor: float = DEFAULT_BACKOFF_FACTOR,
                  maximum: float = DEFAULT_MAX_BACKOFF, rng: random.Random | None = None) -> float:
    """Return the wait before retry number ``attempt`` (0-based), in seconds.

    The base grows as ``initial * factor ** attempt`` up to ``maximum``. The
    result is a random value between half the base and the base, so clients
    that failed together do not retry together.
    """
    base = min(maximum, initial * factor ** min(attempt, 64))
    return base * (rng or random).uniform(0.5, 1.0)


def token_expiry(token: str) -> float | None:
    """Return the ``exp`` claim of a token without verifying it, or None when it has none."""
    try:
        expires = decode_unverified(token).claims.get("exp")
    except TokenError:
        return None
    if isinstance(expires, bool) or not isinstance(expires, (int, float)):
        return None
    return float(expires)


class TokenRenewer:
    """Renews a token ``renew_before`` seconds before its ``exp``, or at once on request.

    ``renew()`` returns a new token and ``on_token(token)`` receives it.
    Failed renewals are retried with exponential backoff and jitter. When an
    error means the target kite is gone (``is_gone``, by default: the text
    contains ``no kites found``), the renewer stops, stores the error in
    ``error``, logs it and calls ``on_gone(error)``.

    Call ``start()`` inside a running event loop and ``close()`` when done.
    ``clock`` returns the Unix time and exists for tests.
    """

    def __init__(self, renew: Callable[[], Awaitable[str]], on_token: Callable[[str], None], *, token: str,
                 renew_before: float = DEFAULT_RENEW_BEFORE, initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
                 backoff_factor: float = DEFAULT_BACKOFF_FACTOR, max_backoff: float = DEFAULT_MAX_BACKOFF,
                 timeout: float | None = DEFAULT_RENEW_TIMEOUT,
                 on_gone: Callable[[BaseException], None] | None = None,
                 is_gone: Callable[[BaseException], bool] = is_target_gone,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None):
        self._renew = renew
        self._on_token = on_token
        self._token = token
        self._renew_before = renew_before
        self._initial_backoff = initial_backoff
        self._backoff_factor = backoff_factor
        self._max_backoff = max_backoff
        self._timeout = timeout
        self._on_gone = on_gone
        self._is_gone = is_gone
        self._clock = clock
        self._rng = rng or random.Random()

        self.error: BaseException | None = None
        self.renewals = 0  # successful renewals so far
        self.failures = 0  # failed renewal attempts so far
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Future[str]] = []
        self._task: asyncio.Task[None] | None = None
        self._renewing = False
        self._closed = False

    @property
    def token(self) -> str:
        """The newest token."""
        return self._token

    @property
    def stopped(self) -> bool:
        """True after close() or after the target kite was found to be gone."""
        return self._closed or self.error is not None

    def start(self) -> None:
        """Start the background task. Requires a running event loop. Calling it again does nothing."""
        if self._task is None and not self.stopped:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kite-token-renewer")

    def renew_now(self) -> asyncio.Future[str]:
        """Request a renewal as soon as allowed and return a future for the new token.

        Callers may ignore the future. Requests that arrive while a renewal is
        running or waiting to retry share its result instead of starting
        another. Repeated requests shortly after a renewal are spaced by the
        backoff, so a kite that keeps rejecting new tokens does not cause a
        tight loop. The future fails with RenewalStoppedError after close(),
        or with the renewal error when the target kite is gone.
        """
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        # Callers may drop the future. Reading the exception here stops asyncio
        # from logging "exception was never retrieved".
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        if self.error is not None:
            future.set_exception(self.error)
            return future
        if self._closed:
            future.set_exception(RenewalStoppedError("token renewer is closed"))
            return future
        self._waiters.append(future)
        if not self._renewing:
            self._wake.set()
        self.start()
        return future

    async def close(self) -> None:
        """Stop renewing. Pending renew_now() futures fail with RenewalStoppedError."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._fail_waiters(RenewalStoppedError("token renewer is closed"))

    # -- background task

    async def _run(self) -> None:
        try:
            await self._renew_forever()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not vanish inside the task
            logger.exception("token renewer stopped by an unexpected error")
            self._stop(exc)

    async def _renew_forever(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0  # consecutive renewals that failed or returned an already-due token
        requested_streak = 0  # renew_now() requests that came soon after a renewal
        retry_delay: float | None = None
        last_success: float | None = None  # loop.time() of the last successful renewal

        while True:
            if retry_delay is not None:
                await asyncio.sleep(retry_delay)
            else:
                requested = await self._wait_until_due()
                if requested and last_success is not None:
                    # The token renewed moments ago was rejected as well, so
                    # space these renewals out like failures.
                    since = loop.time() - last_success
                    if since < self._max_backoff:
                        wait = self._backoff(requested_streak) - since
                        requested_streak += 1
                        if wait > 0:
                            await asyncio.sleep(wait)
                    else:
                        requested_streak = 0

            self._wake.clear()
            self._renewing = True
            try:
                token = await self._call_renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                if self._is_gone(exc):
                    self._stop(exc)
                    return
                retry_delay = self._backoff(attempt)
                attempt += 1
                logger.warning("token renewal failed (attempt %d): %s; retrying in %.1f s",
                               attempt, _describe(exc), retry_delay)
                continue
            finally:
                self._renewing = False

            last_success = loop.time()
            self._accept(token)
            remaining = self._seconds_until_due()
            if remaining is not None and remaining <= 0:
                # Kontrol returned a token that is already inside the renewal
                # window: a cached token, or clocks that disagree. Renewing
                # again at once would loop, so back off as after a failure.
                retry_delay = self._backoff(attempt)
                attempt += 1
                logger.warning("renewed token is already due for renewal (exp in %s); renewing again in %.1f s",
                               format_go_duration(self._seconds_until_expiry() or 0), retry_delay)
            else:
                attempt = 0
                retry_delay = None

    async def _wait_until_due(self) -> bool:
        """Wait until the token is due for renewal or renew_now() is called. Return True for renew_now()."""
        while not self._wake.is_set():
            remaining = self._seconds_until_due()
            if remaining is not None and remaining <= 0:
                return False
            timeout = _MAX_WAIT_SLICE if remaining is None else min(remaining, _MAX_WAIT_SLICE)
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                continue
        return True

    async def _call_renew(self) -> str:
        async with asyncio.timeout(self._timeout):
            token = await self._renew()
        if not isinstance(token, str) or not token:
            raise TokenError(f"renew() returned {type(token).__name__} instead of a token string")
        return token

    def _accept(self, token: str) -> None:
        self._token = token
        self.renewals += 1
        expiry = self._seconds_until_expiry()
        logger.debug("token renewed, expires in %s", "unknown" if expiry is None else format_go_duration(expiry))
        try:
            self._on_token(token)
        except Exception:
            logger.exception("on_token callback raised; the renewer keeps running")
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(token)

    def _stop(self, error: BaseException) -> None:
        self.error = error
        logger.warning("token renewal stopped because the target kite is gone: %s", _describe(error))
        self._fail_waiters(error)
        if self._on_gone is not None:
            try:
                self._on_gone(error)
            except Exception:
                logger.exception("on_gone callback raised")

    def _fail_waiters(self, error: BaseException) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, initial=self._initial_backoff, factor=self._backoff_factor,
                             maximum=self._max_backoff, rng=self._rng)

    def _seconds_until_expiry(self) -> float | None:
        expiry = token_expiry(self._token)
        return None if expiry is None else expiry - self._clock()

    def _seconds_until_due(self) -> float | None:
        remaining = self._seconds_until_expiry()
        return None if remaining is None else remaining - self._renew_before


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "renew() timed out"
    return f"{type(error).__name__}: {error}"
