"""Kite error types.

Every error that crosses the wire is an object with the keys ``type``,
``message``, ``code`` and ``id`` (the request id). Each wire ``type`` has an
exception class here, so callers can catch by kind and still read the wire
fields. ``sendError``, ``timeout``, ``disconnect`` and ``invalidResponse`` are
produced locally by a client and never sent.
"""

from __future__ import annotations

from typing import Any


class KiteError(Exception):
    """An error with a kite wire type.

    ``type`` is the wire type string, ``code`` an application code (usually
    empty) and ``id`` the request id the server assigned, empty when the error
    happened before the request got one.
    """

    type: str = "genericError"

    def __init__(self, message: str, *, code: str = "", id: str = "", type: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.id = id
        if type is not None:
            self.type = type

    def to_wire(self) -> dict[str, str]:
        """Return the error object in the field order Go sends."""
        return {"type": self.type, "message": self.message, "code": self.code, "id": self.id}

    def __str__(self) -> str:
        # Go prints "<type>: <message> (<id>)" and leaves the type out for genericError.
        text = self.message if self.type in ("", "genericError") else f"{self.type}: {self.message}"
        return f"{text} ({self.id})" if self.id else text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(type={self.type!r}, message={self.message!r}, id={self.id!r})"


class MethodNotFoundError(KiteError):
    type = "methodNotFound"


class ArgumentError(KiteError):
    type = "argumentError"


class GenericError(KiteError):
    type = "genericError"


class RequestLimitError(KiteError):
    type = "requestLimitError"


class AuthenticationError(KiteError):
    type = "authenticationError"


class SendError(KiteError):
    type = "sendError"


class TimeoutError(KiteError):  # noqa: A001 - named after the wire type, like asyncio.TimeoutError
    type = "timeout"


class DisconnectError(KiteError):
    type = "disconnect"


class InvalidResponseError(KiteError):
    type = "invalidResponse"


ERROR_CLASSES: dict[str, type[KiteError]] = {
    cls.type: cls
    for cls in (
        MethodNotFoundError,
        ArgumentError,
        GenericError,
        RequestLimitError,
        AuthenticationError,
        SendError,
        TimeoutError,
        DisconnectError,
        InvalidResponseError,
    )
}


def error_from_wire(data: Any) -> KiteError:
    """Build the exception for a received error object.

    Unknown types (an application's own, or kite.js's ``{message, name}``
    errors without a type) become a plain KiteError that keeps the wire type.
    A bare string becomes a genericError with that message.
    """
    if isinstance(data, str):
        return GenericError(data)
    if not isinstance(data, dict):
        return InvalidResponseError(f"error must be an object, got {data!r:.200}")
    wire_type = data.get("type")
    message = data.get("message")
    code = data.get("code")
    request_id = data.get("id")
    message = _as_text(message)
    code = _as_text(code)
    request_id = request_id if isinstance(request_id, str) else ""
    if not isinstance(wire_type, str) or not wire_type:
        wire_type = "genericError"
    cls = ERROR_CLASSES.get(wire_type, KiteError)
    return cls(message, code=code, id=request_id, type=wire_type)


def _as_text(value: Any) -> str:
    """Return a wire field as text: strings unchanged, null as empty, anything else through str()."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return str(value)
