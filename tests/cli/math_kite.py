"""A kite named math for the kitectl tests: it registers with the Kontrol named in $KITE_HOME/kite.key.

Run it as ``python tests/cli/math_kite.py``. Once registered it prints
``ready <url>`` on stdout. Its methods exercise each error type kitectl maps
to an exit code.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from kitelib import ArgumentError, Kite, KiteError
from kitelib.config import Config

logger = logging.getLogger(__name__)


def square(request: Any, *args: Any) -> Any:
    if len(args) != 1 or isinstance(args[0], bool) or not isinstance(args[0], (int, float)):
        raise ArgumentError(f"square takes one number, got {list(args)!r:.80}")
    return args[0] * args[0]


def echo(request: Any, *args: Any) -> list[Any]:
    return list(args)


def fail(request: Any) -> None:
    raise RuntimeError("math failed on purpose")


def fail_with_own_type(request: Any) -> None:
    raise KiteError("divided by zero", type="mathError")


async def slow(request: Any, seconds: float = 10.0) -> str:
    await asyncio.sleep(seconds)
    return "done"


async def main() -> None:
    config = Config.load()
    config.ip = "127.0.0.1"
    kite = Kite("math", "1.0.0", config=config)
    kite.handle("square", square)
    kite.handle("echo", echo)
    kite.handle("fail", fail)
    kite.handle("failWithOwnType", fail_with_own_type)
    kite.handle("slow", slow)
    # One call per 1000 s with a bucket of one: the second call in a test is throttled.
    kite.handle("limited", lambda request: "ok", throttle=(1000.0, 1))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await kite.start()
    kite.register()
    await kite.wait_registered(timeout=30)
    print(f"ready {kite.url}", flush=True)
    await stop.wait()
    await kite.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())
