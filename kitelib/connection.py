"""One dnode session between two kites, over any transport, in both directions.

A Connection sends calls and callback invocations, matches replies by
callback id, and hands incoming method calls to the local kite. Transports
(SockJS WebSocket, raw WebSocket, XHR polling; server or client side) only
move message strings and report when the link ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import logging
import secrets
import threading
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

from .protocol import dnode, envelope
from .protocol.dnode import CallbackRegistry, Message, ProtocolError
from .protocol.errors import DisconnectError, KiteError, SendError, TimeoutError
from .protocol.identity import Identity

if TYPE_CHECKING:
    from .kite import Kite

logger = logging.getLogger(__name__)

_connection_numbers = itertools.count(1)


class Transport(Protocol):
    """The interface a Connection needs from the link under it."""

    kind: str
    remote_address: str

    async def send(self, messages: list[str]) -> None:
        """Send dnode message texts in order; raise ConnectionError when the link is gone."""

    async def close(self, code: int = 3000, reason: str = "Go away!") -> None:
        """End the link; the transport then calls ``connection_lost`` once."""


def new_connection_id(prefix: str) -> str:
    """Return a short id for log lines: a prefix, a process-wide counter and 4 random hex digits."""
    return f"{prefix}{next(_connection_numbers)}-{secrets.token_hex(2)}"


class RemoteFunction:
    """A function the peer sent us. Calling it sends the call; the result is awaitable.

    The peer's functions return nothing over dnode, so awaiting only waits
    until the call has been handed to the transport. The call is queued
    before ``__call__`` returns, so a handler that calls back and then
    returns has its calls reach the peer before its reply, as with a Go kite.
    Calls from other threads (sync handlers run in a thread pool) return a
    concurrent Future instead.
    """

    __slots__ = ("connection", "callback_id")

    def __init__(self, connection: "Connection", callback_id: int):
        self.connection = connection
        self.callback_id = callback_id

    def __call__(self, *args: Any) -> "asyncio.Future[None] | concurrent.futures.Future[None]":
        connection = self.connection
        loop = connection.loop
        if threading.get_ident() != connection.loop_thread:
            # The coroutine queues the call in its first step, which the loop runs
            # before it learns that the handler's thread has returned.
            return asyncio.run_coroutine_threadsafe(connection.call_function(self.callback_id, list(args)), loop)
        try:
            connection.queue_function_call(self.callback_id, list(args))
        except (SendError, TypeError, ValueError) as exc:
            failed: asyncio.Future[None] = loop.create_future()
            failed.set_exception(exc)
            return failed
        return loop.create_task(connection.flush())

    def __repr__(self) -> str:
        return f"<RemoteFunction {self.callback_id} on {self.connection.id}>"


class Connection:
    """A dnode session. ``dialed`` is True when the local side opened it.

    Calls arriving on a dialed connection are trusted, as the Go kite trusts
    them: that is how Kontrol's ``kite.heartbeat`` reaches a kite.
    """

    def __init__(self, kite: "Kite", transport: Transport, *, dialed: bool, connection_id: str | None = None):
        self.kite = kite
        self.transport = transport
        self.dialed = dialed
        self.id = connection_id or new_connection_id("out-" if dialed else "in-")
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.callbacks = CallbackRegistry()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        # Filled from the first request on accepted connections, or by the client that dialed.
        self.remote_identity: Identity | None = None
        self.remote_username: str = ""
        self.closed = False
        self._closed_event = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.on_close: list[Callable[["Connection"], Any]] = []
        self._outbox: list[str] = []
        self._flushing = False
        # The client transports' receive loop, kept so it is not garbage-collected.
        self.reader_task: asyncio.Task[None] | None = None

    @property
    def remote_address(self) -> str:
        return self.transport.remote_address

    def describe(self) -> str:
        """Return the connection id, peer address and identity for log lines."""
        who = str(self.remote_identity) if self.remote_identity else "unidentified peer"
        return f"{self.id} ({self.transport.kind} {self.remote_address}, {who})"

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    # Sending

    async def send_message(self, message: Message) -> None:
        """Queue one message and send it, together with any queued while a send was in progress.

        A transport with ``gather_sends`` set also waits one event loop turn
        first, so the calls issued together go out in one SockJS frame or one
        xhr_send. Servers send at once: measured with 100 calls in flight,
        waiting on both sides made the two peers take turns instead of working
        in parallel. The first sender of a batch sends it and gets any send
        error. Messages that others queued fail with the connection, which
        then fails their pending calls with ``disconnect``.
        """
        self.queue_message(message)
        await self.flush()

    def queue_message(self, message: Message) -> None:
        """Queue one message for the next :meth:`flush`. Messages go out in the order they were queued."""
        if self.closed:
            raise SendError("can't send, connection is closed")
        self._outbox.append(dnode.encode_message(message))

    async def flush(self) -> None:
        """Send the queued messages, unless a send already in progress will take them."""
        if self._flushing:
            return
        self._flushing = True
        try:
            if getattr(self.transport, "gather_sends", False):
                await asyncio.sleep(0)
            while self._outbox:
                batch, self._outbox = self._outbox, []
                await self.transport.send(batch)
        except (ConnectionError, RuntimeError) as exc:
            self._outbox.clear()
            raise SendError(f"can't send on {self.id}: {exc}") from exc
        finally:
            self._flushing = False

    def queue_function_call(self, callback_id: int, args: list[Any]) -> None:
        """Queue a call of a function the peer sent us earlier, by its id."""
        arguments, callbacks = self.callbacks.scrub(args)
        self.queue_message(Message(callback_id, arguments, callbacks))

    async def call_function(self, callback_id: int, args: list[Any]) -> None:
        """Call a function the peer sent us earlier, by its id."""
        self.queue_function_call(callback_id, args)
        await self.flush()

    async def tell(self, method: str, *args: Any, timeout: float | None = None,
                   authentication: dict[str, str] | None = None) -> Any:
        """Call ``method`` on the peer with ``args`` and return its result, or raise its KiteError."""
        future: asyncio.Future[Any] = self.loop.create_future()

        def on_reply(*reply_args: Any) -> None:
            if not future.done():
                future.set_result(reply_args)

        # Only withArgs can hold functions; the response callback gets the lowest id, as Go does.
        reply_id = self.callbacks.register(on_reply)
        with_args, callbacks = self.callbacks.scrub(list(args), base=[0, "withArgs"])
        callbacks = {str(reply_id): list(envelope.RESPONSE_CALLBACK_PATH), **callbacks}
        options = envelope.build_request_options(self.kite.identity, authentication, with_args,
                                                 dnode.FUNCTION_PLACEHOLDER)
        scrubbed = [options]
        self.pending[reply_id] = future
        timer = None
        try:
            try:
                await self.send_message(Message(method, scrubbed, callbacks))
            except TypeError as exc:
                raise SendError(f"can't encode the arguments of {method!r} as JSON: {exc}") from None
            # A timer handle is much cheaper per call than asyncio.wait_for.
            timer = self.loop.call_later(timeout, _expire, future) if timeout is not None else None
            try:
                reply_args = await future
            except _CallTimedOut:
                raise TimeoutError(f'No response to "{method}" method in {timeout:g}s') from None
        finally:
            if timer is not None:
                timer.cancel()
            self.pending.pop(reply_id, None)
            self.callbacks.remove(reply_id)
        return envelope.parse_response(list(reply_args))

    # Receiving

    def receive(self, text: str | Any) -> None:
        """Handle one dnode message from the peer. Bad messages are logged and dropped."""
        try:
            message = dnode.decode_message(text)
            dnode.unscrub(message.arguments, message.callbacks, self._make_remote_function)
        except ProtocolError as exc:
            logger.warning("dropped invalid message from %s: %s", self.describe(), exc)
            return

        if isinstance(message.method, int):
            self._run_local_function(message)
        else:
            self.spawn(self.kite._handle_request(self, message))

    def _make_remote_function(self, callback_id: int) -> RemoteFunction:
        return RemoteFunction(self, callback_id)

    def _run_local_function(self, message: Message) -> None:
        function = self.callbacks.get(int(message.method))
        if function is None:
            logger.warning("dropped call to unknown callback id %s from %s", message.method, self.describe())
            return
        # Callbacks run in arrival order, like Go's read loop; coroutine functions become tasks.
        try:
            result = function(*message.arguments)
        except Exception:
            logger.exception("callback %s called by %s raised", message.method, self.describe())
            return
        if inspect.isawaitable(result):
            self.spawn(_log_failure(result, self, message.method))

    def spawn(self, coroutine: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run a coroutine tied to this connection; it is cancelled when the connection is lost."""
        task = self.loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # Closing

    async def close(self, code: int = 3000, reason: str = "Go away!") -> None:
        if self.closed:
            return
        try:
            await self.transport.close(code, reason)
        finally:
            self.connection_lost(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Fail pending calls with ``disconnect`` and run the close hooks. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        for future in list(self.pending.values()):
            if not future.done():
                future.set_exception(DisconnectError("Remote kite has disconnected"))
        self.pending.clear()
        self.callbacks.clear()
        for task in list(self._tasks):
            task.cancel()
        self._closed_event.set()
        if exc is not None:
            logger.info("connection %s lost: %s", self.describe(), exc)
        else:
            logger.debug("connection %s closed", self.describe())
        for hook in list(self.on_close):
            try:
                result = hook(self)
                if inspect.isawaitable(result):
                    self.loop.create_task(_log_failure(result, self, "on_close"))
            except Exception:
                logger.exception("close hook failed for %s", self.describe())


class _CallTimedOut(Exception):
    """Set on a pending call's future when its timeout passes."""


def _expire(future: "asyncio.Future[Any]") -> None:
    if not future.done():
        future.set_exception(_CallTimedOut())


async def _log_failure(awaitable: Awaitable[Any], connection: Connection, what: Any) -> None:
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except KiteError as exc:
        logger.warning("%s for %s failed: %s", what, connection.describe(), exc)
    except Exception:
        logger.exception("%s for %s raised", what, connection.describe())
