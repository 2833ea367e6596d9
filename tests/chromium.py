"""A driver for headless Debian Chromium that the tests use over the Chrome DevTools protocol.

The tests talk to the browser with the ``websockets`` library the project
already depends on, so no browser download and no Node driver is involved.
Chromium prints its DevTools WebSocket URL on stderr when it is ready; the
driver waits for that line rather than polling.

Only what the tests need is here: open a page, wait for its load event,
evaluate an expression (awaiting a promise it returns), and collect the page's
console output and uncaught errors for failure messages.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

import websockets

# Flags for a root user on a machine with no outside network: without the
# background-networking flags Chromium keeps dialing Google's hosts and logging failed connections.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
)
# A cold start took 0.3 s on an idle 2-core machine, so 30 s leaves room for a loaded one.
START_DEADLINE = 30.0
DEFAULT_DEADLINE = 20.0
DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://\S+)")


class BrowserError(Exception):
    """The browser or a page failed; the message carries the page's console output."""


def find_chromium() -> str | None:
    """Return the browser to drive: ``$KITE_CHROMIUM``, else Debian's ``chromium`` on PATH."""
    configured = os.environ.get("KITE_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """One headless browser process with a fresh profile, and its DevTools connection."""

    def __init__(self, executable: str):
        self.executable = executable
        self.process: asyncio.subprocess.Process | None = None
        self.profile = tempfile.TemporaryDirectory(prefix="kite-chromium-")
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._socket: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[tuple[str | None, str, asyncio.Queue[dict[str, Any]]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile.name}", "--remote-debugging-port=0",
            "about:blank", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        url = await asyncio.wait_for(self._read_devtools_url(), START_DEADLINE)
        self._tasks.append(asyncio.create_task(self._drain_stderr()))
        self._socket = await websockets.connect(url, max_size=None, ping_interval=None, open_timeout=START_DEADLINE)
        self._tasks.append(asyncio.create_task(self._read_messages()))

    async def _read_devtools_url(self) -> str:
        assert self.process is not None and self.process.stderr is not None
        while True:
            line = await self.process.stderr.readline()
            if not line:
                raise BrowserError(f"{self.executable} exited with {await self.process.wait()} before DevTools "
                                   f"was ready:\n" + "\n".join(self.stderr_tail))
            text = line.decode(errors="replace").rstrip()
            self.stderr_tail.append(text)
            match = DEVTOOLS_LINE.search(text)
            if match:
                return match.group(1)

    async def _drain_stderr(self) -> None:
        # An unread pipe would fill and stall the browser.
        assert self.process is not None and self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.stderr_tail.append(line.decode(errors="replace").rstrip())

    async def _read_messages(self) -> None:
        try:
            async for raw in self._socket:
                message = json.loads(raw)
                if "id" in message:
                    future = self._pending.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                    continue
                for session, method, queue in self._listeners:
                    if method == message.get("method") and session == message.get("sessionId"):
                        queue.put_nowait(message.get("params", {}))
        except websockets.ConnectionClosed:
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BrowserError("the DevTools connection closed"))

    async def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
                   timeout: float = DEFAULT_DEADLINE) -> dict[str, Any]:
        """Send one DevTools command and return its result. A protocol error raises BrowserError."""
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self._socket.send(json.dumps(message))
        try:
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(message_id, None)
        if "error" in reply:
            raise BrowserError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def listen(self, method: str, session: str | None) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners.append((session, method, queue))
        return queue

    async def open(self, url: str, *, timeout: float = DEFAULT_DEADLINE) -> "Page":
        """Open ``url`` in a new tab and return once its load event fired."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        await page.enable()
        await page.navigate(url, timeout=timeout)
        return page

    async def close(self) -> None:
        if self._socket is not None:
            try:
                await self.send("Browser.close", timeout=5)
            except (BrowserError, asyncio.TimeoutError, websockets.ConnectionClosed):
                pass
            await self._socket.close()
        if self.process is not None and self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.profile.cleanup()


class Page:
    """One tab, attached with a flat DevTools session."""

    def __init__(self, browser: Chromium, session: str):
        self.browser = browser
        self.session = session
        self.console: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def enable(self) -> None:
        console = self.browser.listen("Runtime.consoleAPICalled", self.session)
        errors = self.browser.listen("Runtime.exceptionThrown", self.session)
        self._tasks.append(asyncio.create_task(self._collect(console, errors)))
        await self.browser.send("Page.enable", session=self.session)
        await self.browser.send("Runtime.enable", session=self.session)

    async def _collect(self, console: asyncio.Queue[dict[str, Any]], errors: asyncio.Queue[dict[str, Any]]) -> None:
        async def console_lines() -> None:
            while True:
                event = await console.get()
                texts = [str(arg.get("value", arg.get("description", ""))) for arg in event.get("args", [])]
                self.console.append(f"console.{event.get('type')}: {' '.join(texts)}")

        async def error_lines() -> None:
            while True:
                event = await errors.get()
                details = event.get("exceptionDetails", {})
                description = details.get("exception", {}).get("description") or details.get("text")
                self.console.append(f"uncaught: {description}")

        await asyncio.gather(console_lines(), error_lines())

    async def navigate(self, url: str, *, timeout: float = DEFAULT_DEADLINE) -> None:
        loaded = self.browser.listen("Page.loadEventFired", self.session)
        result = await self.browser.send("Page.navigate", {"url": url}, session=self.session)
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url} failed: {result['errorText']}")
        await asyncio.wait_for(loaded.get(), timeout)

    async def evaluate(self, expression: str, *, timeout: float = DEFAULT_DEADLINE) -> Any:
        """Evaluate ``expression`` in the page, await the promise it returns, and return its JSON value."""
        try:
            reply = await self.browser.send(
                "Runtime.evaluate",
                {"expression": expression, "awaitPromise": True, "returnByValue": True},
                session=self.session, timeout=timeout)
        except asyncio.TimeoutError:
            raise BrowserError(f"{expression!r} did not settle within {timeout} s\n{self.report()}") from None
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression!r} threw {description}\n{self.report()}")
        return reply.get("result", {}).get("value")

    def report(self) -> str:
        """The page's console output so far, for assertion messages."""
        return "page console:\n" + ("\n".join(self.console) or "(empty)")
