"""A kite that serves a web page, and the page talks to the kite with kite.js.

One process serves three things on one port:

- ``/``: the page in ``static/`` (index.html and app.js);
- ``/kite.js``: the kite.js 1.0.13 browser bundle, from ``node_modules``;
- ``/kite``: the kite "browser-demo" itself, over SockJS.

Set up and run it:

    cd examples/browser && npm ci && cd ../..
    python examples/browser/server.py --port 8080

then open http://127.0.0.1:8080/ (add ``?transport=xhr-polling`` to use XHR
polling instead of a WebSocket, or ``?transport=raw-websocket`` for a
WebSocket without SockJS). The page calls ``square(4)``, passes a
callback to ``countdown`` that the kite calls three times, and calls
``fail`` to show how a kite's error reaches the page.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from aiohttp import web

from kitelib import Config, Kite, KiteError
from kitelib.config import ConfigError
from kitelib.protocol.origin import OriginError, OriginPolicy

HERE = Path(__file__).resolve().parent
BUNDLE = HERE / "node_modules" / "kite.js" / "dist" / "bundle.js"


def make_kite(port: int, *, host: str = "127.0.0.1", bundle: Path = BUNDLE,
              allowed_origins: list[str] | None = None) -> Kite:
    """Build the demo kite with its page routes. The tests call this too.

    ``KITE_*`` variables apply as for any kite, ``KITE_ALLOWED_ORIGINS``
    among them, and ``allowed_origins`` adds to what they allow.
    """
    config = Config.load(read_kite_key=False)
    config.ip, config.port = host, port
    # The demo page calls without credentials.
    config.disable_authentication = True
    config.allowed_origins.extend(allowed_origins or [])
    kite = Kite("browser-demo", "1.0.0", config=config)

    @kite.handle("square")
    def square(request, number: float) -> float:
        return number * number

    @kite.handle("countdown")
    async def countdown(request, start: int, on_tick) -> str:
        """Call the page's ``on_tick`` with start, start-1, ... 1, then return "liftoff".

        Each call is queued when it is made, so the page runs every tick
        before it receives the result, without awaiting the calls here.
        """
        if not callable(on_tick):
            raise KiteError(f"countdown's second argument must be a function, not {on_tick!r}",
                            type="argumentError")
        for number in range(start, 0, -1):
            on_tick(number)
        return "liftoff"

    @kite.handle("fail")
    def fail(request, reason: str = "asked to fail") -> None:
        raise KiteError(f"the demo kite failed on purpose: {reason}", type="demoError")

    async def serve_bundle(request: web.Request) -> web.StreamResponse:
        if not bundle.is_file():
            text = (f"{bundle} is missing. Run 'npm ci' in {HERE} to install kite.js, "
                    "or pass --bundle PATH to a kite.js dist/bundle.js.\n")
            return web.Response(status=404, text=text)
        return web.FileResponse(bundle, headers={"Content-Type": "application/javascript; charset=utf-8"})

    kite.handle_http("/kite.js", serve_bundle)
    kite.serve_static("/", HERE / "static")
    return kite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("KITE_PORT", "8080")),
                        help="port to listen on; 0 picks a free one (default 8080, or KITE_PORT)")
    parser.add_argument("--bundle", type=Path, default=BUNDLE,
                        help="kite.js browser bundle to serve at /kite.js (default: the one npm ci installs here)")
    parser.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                        help="let pages from ORIGIN (such as http://localhost:3000) connect; repeat for more. "
                             "Without it every origin may connect, as with a Go kite.")
    args = parser.parse_args()
    try:
        OriginPolicy(args.allowed_origin)
    except OriginError as exc:
        parser.error(f"--allowed-origin: {exc}")
    logging.basicConfig(level=os.environ.get("KITE_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    if not args.bundle.is_file():
        print(f"warning: {args.bundle} is missing; run 'npm ci' in {HERE} before opening the page", file=sys.stderr)

    try:
        kite = make_kite(args.port, host=args.host, bundle=args.bundle, allowed_origins=args.allowed_origin)
    except ConfigError as exc:
        sys.exit(f"server.py: {exc}")

    async def serve() -> None:
        await kite.start()
        page = kite.url.removesuffix("/kite") + "/"
        # The tests read this line to learn the port.
        print(f"Open {page} in a browser (kite at {kite.url})", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await kite.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        # Binding fails this way when the port is taken or the address is not local.
        sys.exit(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
                 "pass --port 0 to pick a free port, or another --host")


if __name__ == "__main__":
    main()
