"""A kite named "math" that serves square(number) on port 6000.

When a kite.key is present (``kitectl register``, or the one ``kitectl kontrol
serve`` writes on first start), the kite also registers with the Kontrol the
key names, so that other kites and ``kitectl query`` can find it.

    python examples/math_kite.py
"""

import logging
import os

from kitelib import Kite

logging.basicConfig(level=os.environ.get("KITE_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")

kite = Kite("math", "1.0.0")
if not os.environ.get("KITE_PORT"):
    kite.config.port = 6000


# auth=False makes square public: callers need no kite.key or token.
@kite.handle("square", auth=False)
def square(request, number: float) -> float:
    return number * number


@kite.handle("whoami")
def whoami(request) -> dict:
    """Return the authenticated caller, which shows what a token or kite.key carries."""
    return {"username": request.username, "kite": str(request.kite), "authType": request.auth.type}


if kite.config.kite_key and kite.config.kontrol_url:
    kite.register()

kite.run()
