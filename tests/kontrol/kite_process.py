"""A kite run in its own process by the Kontrol tests, so that it can be killed with SIGKILL or stopped.

Usage: python -m tests.kontrol.kite_process NAME  (KITE_HOME contains its kite.key)
It prints "registered <kite id>" once Kontrol accepted it, then serves until killed.
"""

import asyncio
import sys

from kitelib import Config, Kite


async def main(name: str) -> None:
    config = Config.load()
    config.ip = "127.0.0.1"
    kite = Kite(name, "1.0.0", config=config)
    kite.handle("square", lambda request, number: number * number)
    await kite.start()
    kite.register()
    await kite.wait_registered(timeout=30)
    print(f"registered {kite.id}", flush=True)
    await asyncio.Event().wait()


asyncio.run(main(sys.argv[1]))
