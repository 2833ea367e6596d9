"""Kite for Python: wire-compatible kites (RPC servers and clients) and their Kontrol client.

Importing this package stays cheap: aiohttp, websockets, httpx and PyJWT load
only when a server starts or a client dials.
"""

from .client import Client
from .config import Config
from .kite import Kite
from .method import Request
from .protocol.errors import (
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
)
from .protocol.identity import Identity

__version__ = "0.1.0"

__all__ = [
    "Client", "Config", "Kite", "Request", "Identity", "ArgumentError", "AuthenticationError", "DisconnectError",
    "GenericError", "InvalidResponseError", "KiteError", "MethodNotFoundError", "RequestLimitError", "SendError",
    "TimeoutError", "__version__",
]
