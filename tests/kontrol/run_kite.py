"""A kite served by ``Kite.run()`` in its own process, for the signal tests.

Usage: python -m tests.kontrol.run_kite NAME  (KITE_HOME contains its kite.key)
It prints "registered <kite id>" after each registration with Kontrol,
serves until SIGINT or SIGTERM, and prints "stopped" once run() returned.
"""

import sys

from kitelib import Config, Kite


def main(name: str) -> None:
    config = Config.load()
    config.ip = "127.0.0.1"
    kite = Kite(name, "1.0.0", config=config)
    kite.handle("square", lambda request, number: number * number)

    @kite.on_register
    def announce(result: object) -> None:
        print(f"registered {kite.id}", flush=True)

    kite.register()
    kite.run()
    print("stopped", flush=True)


main(sys.argv[1])
