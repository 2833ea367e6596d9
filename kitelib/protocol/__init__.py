"""The sans-I/O kite protocol: identities, dnode messages, SockJS frames, the call envelope and errors.

Nothing in this package opens a socket, reads a clock or logs.
"""

from .dnode import FUNCTION_PLACEHOLDER, CallbackRegistry, Message, ProtocolError, decode_message, encode_message, unscrub
from .errors import (
    ArgumentError,
    AuthenticationError,
    DisconnectError,
    GenericError,
    InvalidResponseError,
    KiteError,
    MethodNotFoundError,
    RequestLimitError,
    SendError,
    TimeoutError,
    error_from_wire,
)
from .identity import FIELDS, Identity, IdentityError, new_kite_id
from .sockjs import FrameError, ServerFrame

__all__ = [
    "FUNCTION_PLACEHOLDER", "CallbackRegistry", "Message", "ProtocolError", "decode_message", "encode_message",
    "unscrub", "ArgumentError", "AuthenticationError", "DisconnectError", "GenericError", "InvalidResponseError",
    "KiteError", "MethodNotFoundError", "RequestLimitError", "SendError", "TimeoutError", "error_from_wire",
    "FIELDS", "Identity", "IdentityError", "new_kite_id", "FrameError", "ServerFrame",
]
