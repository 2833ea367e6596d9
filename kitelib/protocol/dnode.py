"""dnode messages: the JSON objects a kite connection carries.

A message is ``{"method", "arguments", "callbacks"}`` plus an optional
``links`` list that kite.js sends and receivers ignore. A string ``method``
names a remote method; an integer one calls a function that the receiver
sent earlier, by the id the receiver gave it.

Functions cannot travel as JSON, so the sender replaces each one with the
string ``"[Function]"`` and records its path (the index into ``arguments``,
then object keys and array indexes) under a fresh id in ``callbacks``.
The receiver puts a proxy at each path. Ids count from 0 per sender and per
connection; each side numbers independently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import orjson

FUNCTION_PLACEHOLDER = "[Function]"

# A path element is an int (Go) or a str (kite.js writes every element as a string).
PathElement = int | str


class ProtocolError(ValueError):
    """A message from the peer that breaks the dnode or kite rules; the peer is at fault."""


@dataclass(slots=True)
class Message:
    method: str | int
    arguments: list[Any]
    callbacks: dict[str, list[PathElement]] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        # Go never sends "links" and dnode-protocol ignores a missing one, so we leave it out.
        return {"method": self.method, "arguments": self.arguments, "callbacks": self.callbacks}


def encode_message(message: Message) -> str:
    """Serialise a message to compact JSON text, the form both Go and kite.js send."""
    return orjson.dumps(message.to_wire()).decode()


def decode_message(data: str | bytes | Any) -> Message:
    """Parse and check one dnode message. Raise ProtocolError naming the bad field.

    ``data`` is JSON text or an already parsed object (SockJS frames are
    parsed once for the outer array, then once per message).
    """
    if isinstance(data, (str, bytes, bytearray, memoryview)):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"dnode message is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"dnode message must be a JSON object, got {type(data).__name__}")

    method = data.get("method")
    if isinstance(method, bool) or not isinstance(method, (str, int)):
        raise ProtocolError(
            f"dnode field 'method' must be a string (method name) or an integer (callback id), got {method!r:.80}"
        )
    if isinstance(method, int) and method < 0:
        raise ProtocolError(f"dnode callback id must not be negative, got {method}")

    arguments = data.get("arguments", [])
    if arguments is None:
        arguments = []
    if not isinstance(arguments, list):
        raise ProtocolError(f"dnode field 'arguments' must be an array, got {type(arguments).__name__}")

    callbacks = data.get("callbacks", {})
    if callbacks is None:
        callbacks = {}
    if not isinstance(callbacks, dict):
        raise ProtocolError(f"dnode field 'callbacks' must be an object, got {type(callbacks).__name__}")
    for callback_id, path in callbacks.items():
        if not callback_id.isdigit():
            raise ProtocolError(f"dnode callback id {callback_id!r} must be a decimal integer")
        if not isinstance(path, list) or not path:
            raise ProtocolError(f"dnode callback {callback_id} path must be a non-empty array, got {path!r:.80}")
        for element in path:
            if isinstance(element, bool) or not isinstance(element, (int, str)):
                raise ProtocolError(
                    f"dnode callback {callback_id} path element must be a string or integer, got {element!r:.80}"
                )
    # "links" (kite.js circular references) is accepted and ignored.
    return Message(method, arguments, callbacks)


class CallbackRegistry:
    """The functions one side of a connection has sent, by the ids it gave them.

    Ids start at 0 and are never reused on a connection. The registry is the
    scrubbing half of the protocol: it turns callables into placeholders.
    """

    def __init__(self) -> None:
        self._next_id = 0
        self._functions: dict[int, Callable[..., Any]] = {}

    def __len__(self) -> int:
        return len(self._functions)

    def register(self, function: Callable[..., Any]) -> int:
        """Store ``function`` under a new id and return the id.

        Like Go, and unlike kite.js, a function sent twice gets two ids. The
        functions stay registered until the connection closes, except response
        callbacks, which the caller removes after the reply.
        """
        callback_id = self._next_id
        self._next_id += 1
        self._functions[callback_id] = function
        return callback_id

    def get(self, callback_id: int) -> Callable[..., Any] | None:
        return self._functions.get(callback_id)

    def remove(self, callback_id: int) -> None:
        self._functions.pop(callback_id, None)

    def clear(self) -> None:
        self._functions.clear()

    def scrub(self, arguments: list[Any], *, first: Iterable[tuple[list[PathElement], Callable[..., Any]]] = (),
              base: list[PathElement] | None = None) -> tuple[list[Any], dict[str, list[PathElement]]]:
        """Replace every callable in ``arguments`` with a placeholder and record its path.

        ``first`` lists (path, function) pairs to register before the walk, so
        that a kite request's responseCallback gets the lowest id, as Go does.
        ``base`` prefixes every recorded path, for a list that sits inside the
        message (a request's withArgs is at ``[0, "withArgs"]``). Returns the
        new list (the input is not changed) and the ``callbacks`` map.
        """
        callbacks: dict[str, list[PathElement]] = {}
        for path, function in first:
            callbacks[str(self.register(function))] = path
        if not _has_function(arguments):
            # The common case: one cheap walk, and no copy of the arguments.
            return list(arguments), callbacks
        prefix = base or []
        scrubbed = [self._scrub_value(value, prefix + [index], callbacks) for index, value in enumerate(arguments)]
        return scrubbed, callbacks

    def _scrub_value(self, value: Any, path: list[PathElement], callbacks: dict[str, list[PathElement]]) -> Any:
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        if isinstance(value, dict):
            return {key: self._scrub_value(item, path + [key], callbacks) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._scrub_value(item, path + [index], callbacks) for index, item in enumerate(value)]
        if callable(value):
            callbacks[str(self.register(value))] = path
            return FUNCTION_PLACEHOLDER
        return value


_SCALAR_TYPES = frozenset((str, int, float, bool, type(None)))


def _has_function(value: Any) -> bool:
    """Return whether a callable sits anywhere in ``value`` (exact JSON types are checked first, for speed)."""
    kind = type(value)
    if kind in _SCALAR_TYPES:
        return False
    if kind is list or kind is tuple:
        for item in value:
            if _has_function(item):
                return True
        return False
    if kind is dict:
        for item in value.values():
            if _has_function(item):
                return True
        return False
    if isinstance(value, (str, int, float)):
        return False
    if isinstance(value, dict):
        return any(_has_function(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_function(item) for item in value)
    return callable(value)


def unscrub(arguments: list[Any], callbacks: dict[str, list[PathElement]],
            make_proxy: Callable[[int], Any]) -> list[Any]:
    """Put ``make_proxy(id)`` at each callback path of received ``arguments``, in place.

    Raise ProtocolError when a path does not lead to a value in the message.
    """
    for callback_id, path in callbacks.items():
        _place(arguments, path, make_proxy(int(callback_id)), callback_id)
    return arguments


def _place(arguments: list[Any], path: list[PathElement], proxy: Any, callback_id: str) -> None:
    container: Any = arguments
    for depth, element in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(container, list):
            index = _list_index(element)
            if index is None or not 0 <= index < len(container):
                raise ProtocolError(f"dnode callback {callback_id} path {path!r:.120} does not match the arguments")
            if last:
                container[index] = proxy
                return
            container = container[index]
        elif isinstance(container, dict):
            key = str(element)
            if key not in container and not last:
                raise ProtocolError(f"dnode callback {callback_id} path {path!r:.120} does not match the arguments")
            if last:
                container[key] = proxy
                return
            container = container[key]
        else:
            raise ProtocolError(f"dnode callback {callback_id} path {path!r:.120} does not match the arguments")


def _list_index(element: PathElement) -> int | None:
    if isinstance(element, int):
        return element
    if element.isdigit():
        return int(element)
    return None
