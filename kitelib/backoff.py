"""Exponential backoff with jitter for redialing."""

from __future__ import annotations

import random


class Backoff:
    """Delays that grow by ``factor`` from ``initial`` up to ``maximum``, each randomized by ±``jitter``.

    The defaults (0.5 s, x1.5, cap 60 s, ±50 %) are the Go kite's redial
    backoff, so that hundreds of kites do not reconnect in lockstep after a
    Kontrol restart.
    """

    def __init__(self, initial: float = 0.5, factor: float = 1.5, maximum: float = 60.0, jitter: float = 0.5,
                 rng: random.Random | None = None):
        if initial <= 0 or factor < 1 or maximum < initial or not 0 <= jitter < 1:
            raise ValueError(
                f"invalid backoff: initial={initial} factor={factor} maximum={maximum} jitter={jitter}"
            )
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._interval = initial
        self.attempts = 0

    def next_delay(self) -> float:
        """Return the next delay in seconds and grow the interval."""
        interval = self._interval
        self._interval = min(self._interval * self.factor, self.maximum)
        self.attempts += 1
        spread = interval * self.jitter
        return interval + self._rng.uniform(-spread, spread)

    def reset(self) -> None:
        self._interval = self.initial
        self.attempts = 0
