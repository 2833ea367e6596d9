"""The kite call envelope on top of dnode.

A request's ``arguments`` is exactly one options object::

    [{"kite": {7 fields}, "authentication": {"type", "key"} | null,
      "withArgs": [...], "responseCallback": "[Function]"}]

The reply calls ``responseCallback`` with one argument ``{"error", "result"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .dnode import Message, ProtocolError
from .errors import ArgumentError, InvalidResponseError, KiteError, error_from_wire
from .identity import Identity, IdentityError

# Go scrubs its response callback at this path, and Go servers look it up there.
RESPONSE_CALLBACK_PATH = [0, "responseCallback"]


@dataclass(slots=True)
class CallOptions:
    """The decoded options object of one request."""

    kite: Identity
    authentication: Any
    with_args: list[Any]
    response_callback: Callable[..., Any] | None


def build_request_options(identity: Identity, authentication: dict[str, str] | None, args: list[Any],
                          response_callback: Any) -> dict[str, Any]:
    """Return the options object; withArgs is always an array, never null.

    ``response_callback`` is the function, or the placeholder when the caller scrubbed it already.
    """
    return {
        "kite": identity.to_dict(),
        "authentication": authentication,
        "withArgs": list(args),
        "responseCallback": response_callback,
    }


def parse_request(message: Message) -> CallOptions:
    """Decode the options object of an unscrubbed request, or raise.

    Raises ProtocolError when ``arguments`` is not ``[options]`` (the caller
    cannot get a reply then unless a response callback was found anyway) and
    ArgumentError for a malformed field inside the options.
    """
    arguments = message.arguments
    if len(arguments) != 1 or not isinstance(arguments[0], dict):
        raise ProtocolError(
            "kite request 'arguments' must be a one-element array holding the options object "
            "{kite, authentication, withArgs, responseCallback}"
        )
    options = arguments[0]
    response_callback = options.get("responseCallback")
    if not callable(response_callback):
        response_callback = None

    try:
        identity = Identity.from_dict(options.get("kite"))
    except IdentityError as exc:
        raise ArgumentError(str(exc)) from None

    # kite.js passes a single argument without wrapping it; Go sends null for none.
    with_args = options.get("withArgs")
    if with_args is None:
        with_args = []
    elif not isinstance(with_args, list):
        with_args = [with_args]
    return CallOptions(identity, options.get("authentication"), with_args, response_callback)


def find_response_callback(message: Message) -> int | None:
    """Return the id of the response callback recorded in a message's callbacks, if any.

    Used to reply to a request whose options object is unusable.
    """
    for callback_id, path in message.callbacks.items():
        if len(path) == 2 and str(path[0]) == "0" and path[1] == "responseCallback":
            return int(callback_id)
    return None


def build_response(error: KiteError | None, result: Any) -> list[Any]:
    """Return the arguments of a reply: one ``{error, result}`` object, as Go sends it."""
    return [{"error": error.to_wire() if error is not None else None, "result": result}]


def parse_response(arguments: list[Any]) -> Any:
    """Return the result of a reply's arguments, or raise its error.

    A reply must be one object with an ``error`` or ``result`` key; kite.js
    error replies have no ``result``. A two-element ``[error, result]`` list,
    which dnode-style peers send, is accepted too.
    """
    if len(arguments) == 2 and not _is_reply_object(arguments[0]):
        error, result = arguments
        if error:
            raise error_from_wire(error)
        return result
    if len(arguments) != 1 or not _is_reply_object(arguments[0]):
        raise InvalidResponseError("Server has sent invalid response arguments")
    reply = arguments[0]
    error = reply.get("error")
    if error:
        raise error_from_wire(error)
    return reply.get("result")


def _is_reply_object(value: Any) -> bool:
    return isinstance(value, dict) and ("error" in value or "result" in value)
