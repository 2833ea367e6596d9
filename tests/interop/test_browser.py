"""kite.js in a real headless Chromium against our kites: the example page in examples/browser.

Each test serves the example's page and kite from one process (the kite's
HTTP routes), opens the page in Debian's Chromium through the DevTools
protocol (tests/chromium.py), and reads what the page recorded. The kite runs
in the test's own event loop, so the tests can look at its connections and
restart it under the open page.

Without Chromium, node or npm the tests are skipped, unless
KITE_REQUIRE_INTEROP=1 is set (CI sets it), in which case they fail.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from kitelib import Kite

from ..chromium import Chromium, Page, find_chromium
from .kitejs_helpers import _missing_tool, npm_ci, stop_process

pytestmark = pytest.mark.interop

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "browser"
# The page's transport parameter, and the kind of connection the kite reports for it.
TRANSPORTS = {"websocket": "sockjs-websocket", "xhr-polling": "xhr-polling", "raw-websocket": "raw-websocket"}
SOCKJS_TRANSPORTS = ["websocket", "xhr-polling"]
# Reconnecting waits for kite.js's first back-off delay (700 ms) plus a SockJS handshake.
RECONNECT_DEADLINE = 30.0


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("browser_demo_server", EXAMPLE_DIR / "server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()


@pytest.fixture(scope="session")
def bundle() -> Path:
    """The kite.js browser bundle, installed with npm ci in examples/browser on first use."""
    path: Path = example.BUNDLE
    if not path.is_file():
        npm_ci(EXAMPLE_DIR)
        assert path.is_file(), f"npm ci in {EXAMPLE_DIR} installed no {path}"
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Chromium]:
    executable = find_chromium()
    if executable is None:
        _missing_tool("Chromium is not installed (apt-get install chromium), or set KITE_CHROMIUM")
    chromium = Chromium(executable)
    try:
        await chromium.start()
        yield chromium
    finally:
        await chromium.close()


async def start_demo(bundle: Path, port: int = 0, allowed_origins: list[str] | None = None) -> Kite:
    kite = example.make_kite(port, bundle=bundle, allowed_origins=allowed_origins)
    await kite.start()
    return kite


@pytest.fixture
async def demo_kite(bundle: Path) -> AsyncIterator[Kite]:
    kite = await start_demo(bundle)
    try:
        yield kite
    finally:
        await kite.stop()


def page_url(server: Kite, **params: str) -> str:
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return server.url.removesuffix("/kite") + "/" + (f"?{query}" if query else "")


async def open_connected(browser: Chromium, url: str) -> Page:
    page = await browser.open(url)
    await page.evaluate("demo.opened(1)")
    return page


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_page_squares_over_transport(browser: Chromium, demo_kite: Kite, transport: str) -> None:
    page = await open_connected(browser, page_url(demo_kite, transport=transport, run="0"))

    outcome = await page.evaluate("demo.call('square', 4)")

    assert outcome == {"result": 16}, page.report()
    # The kite saw the transport the page asked for, not a fallback.
    kinds = [connection.transport.kind for connection in demo_kite.connections]
    assert kinds == [TRANSPORTS[transport]]
    assert await page.evaluate("document.getElementById('log').textContent") == "square(4) = 16"


@pytest.mark.parametrize("transport", SOCKJS_TRANSPORTS)
async def test_page_callback_called_three_times(browser: Chromium, demo_kite: Kite, transport: str) -> None:
    page = await open_connected(browser, page_url(demo_kite, transport=transport, run="0"))

    seen = await page.evaluate("demo.call('countdown', 3, (n) => demo.ticks.push(n))"
                               ".then((outcome) => ({outcome, ticksAtReply: demo.ticks.slice()}))")

    assert seen["outcome"] == {"result": "liftoff"}, page.report()
    # The kite queues each callback call before its reply, so all three ran before the reply did.
    assert seen["ticksAtReply"] == [3, 2, 1]


async def test_kite_error_type_reaches_page(browser: Chromium, demo_kite: Kite) -> None:
    page = await open_connected(browser, page_url(demo_kite, run="0"))

    failure = await page.evaluate("demo.call('fail', 'for the test')")
    missing = await page.evaluate("demo.call('no.such.method')")
    after = await page.evaluate("demo.call('square', 3)")

    assert failure == {"error": {"type": "demoError",
                                 "message": "the demo kite failed on purpose: for the test"}}, page.report()
    assert missing["error"]["type"] == "methodNotFound"
    assert "no.such.method" in missing["error"]["message"]
    assert after == {"result": 9}
    text = await page.evaluate("document.getElementById('log').textContent")
    assert "fail(\"for the test\") failed: demoError: the demo kite failed on purpose" in text


async def test_page_runs_demo_on_load(browser: Chromium, demo_kite: Kite) -> None:
    page = await browser.open(page_url(demo_kite))

    results = await page.evaluate("demo.done")

    assert results["square"] == {"result": 16}, page.report()
    assert results["countdown"] == {"result": "liftoff"}
    assert results["ticks"] == [3, 2, 1]
    assert results["failure"]["error"]["type"] == "demoError"
    items = await page.evaluate("[...document.querySelectorAll('#log li')].map((li) => li.textContent)")
    assert items[:5] == ["square(4) = 16", "tick = 3", "tick = 2", "tick = 1", 'countdown(3) = "liftoff"']


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_page_reconnects_after_restart(browser: Chromium, bundle: Path, transport: str) -> None:
    kite = await start_demo(bundle)
    port = kite.port
    try:
        page = await open_connected(browser, page_url(kite, transport=transport, run="0"))
        assert await page.evaluate("demo.call('square', 2)") == {"result": 4}

        await kite.stop()
        await page.evaluate("demo.closed(1)")
        kite = await start_demo(bundle, port)
        await page.evaluate("demo.opened(2)", timeout=RECONNECT_DEADLINE)
        outcome = await page.evaluate("demo.call('square', 6)")
    finally:
        await kite.stop()

    assert outcome == {"result": 36}, page.report()


# Cross-origin pages: the page comes from one kite and talks to another on a different port.


@pytest.mark.parametrize("transport", SOCKJS_TRANSPORTS)
async def test_cross_origin_accepted_by_default(browser: Chromium, demo_kite: Kite, bundle: Path,
                                                        transport: str) -> None:
    other = await start_demo(bundle)
    try:
        page = await open_connected(browser, page_url(demo_kite, transport=transport, run="0", kite=other.url))
        outcome = await page.evaluate("demo.call('square', 7)")
        served_by_other = len(other.connections)
    finally:
        await other.stop()

    assert outcome == {"result": 49}, page.report()
    assert served_by_other == 1
    assert not demo_kite.connections


@pytest.mark.parametrize("transport", SOCKJS_TRANSPORTS)
async def test_allow_list_admits_listed_origin(browser: Chromium, demo_kite: Kite, bundle: Path,
                                               transport: str) -> None:
    page_origin = page_url(demo_kite).rstrip("/")
    other = await start_demo(bundle, allowed_origins=["https://app.example.test", page_origin])
    try:
        page = await open_connected(browser, page_url(demo_kite, transport=transport, run="0", kite=other.url))
        outcome = await page.evaluate("demo.call('square', 8)")
    finally:
        await other.stop()

    assert outcome == {"result": 64}, page.report()


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_allow_list_rejects_other_origins(browser: Chromium, demo_kite: Kite, bundle: Path, transport: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    other = await start_demo(bundle, allowed_origins=["https://app.example.test"])
    caplog.set_level(logging.WARNING, logger="kitelib.transport.server")
    try:
        page = await browser.open(page_url(demo_kite, transport=transport, run="0", kite=other.url))
        await page.evaluate("demo.closed(1)")
        opens = await page.evaluate("demo.opens")
        connections = len(other.connections)
        # The same kite still serves its own page, whose origin is its own.
        own = await open_connected(browser, page_url(other, transport=transport, run="0"))
        own_outcome = await own.evaluate("demo.call('square', 9)")
    finally:
        await other.stop()

    assert opens == 0, page.report()
    assert connections == 0
    page_origin = page_url(demo_kite).rstrip("/")
    assert any(f"origin {page_origin!r} is not in allowed_origins" in record.getMessage()
               for record in caplog.records)
    assert own_outcome == {"result": 81}


async def test_page_reports_missing_kitejs(browser: Chromium, tmp_path: Path) -> None:
    kite = await start_demo(tmp_path / "not-installed" / "bundle.js")
    try:
        page = await browser.open(page_url(kite))
        status = await page.evaluate("document.getElementById('status').textContent")
    finally:
        await kite.stop()

    assert status == "kite.js did not load: run npm ci in examples/browser, then reload", page.report()


async def test_example_runs_as_documented(browser: Chromium, bundle: Path, tmp_path: Path) -> None:
    """``python examples/browser/server.py`` prints the page's URL, and the page does its calls."""
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLE_DIR / "server.py"), "--port", "0", stdout=asyncio.subprocess.PIPE,
            stderr=log)
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("Open http://127.0.0.1:"), f"{line!r}\n{log_path.read_text()}"
        url = line.split()[1]
        page = await browser.open(url)
        results = await page.evaluate("demo.done")
    finally:
        await stop_process(process)

    assert results["square"] == {"result": 16}, page.report()
    assert results["ticks"] == [3, 2, 1]
