"""The rule for which browser origins may open a session with a kite.

sockjs-go, which the Go kite serves through, accepts every origin: its
WebSocket upgrade does not look at ``Origin`` and its XHR transports echo the
request's ``Origin`` back in ``Access-Control-Allow-Origin``. A kite does the
same unless it is given an allow-list. This module makes that decision without
I/O, so the HTTP layer and the tests share one rule.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class OriginError(ValueError):
    """An allow-list entry that is not an origin. The message names the entry and the expected form."""


def normalize_origin(text: str) -> str:
    """Return ``scheme://host[:port]`` in lower case, without a default port.

    ``"null"`` (sent by sandboxed frames and ``file:`` pages) stays as it is.
    Raises ``ValueError`` for text that is not an origin.
    """
    text = text.strip()
    if text == "null":
        return text
    parts = urlsplit(text)
    if not parts.scheme or not parts.netloc or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{text!r} is not an origin: use scheme://host[:port], such as https://app.example.com")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an origin: {exc}") from None
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class OriginPolicy:
    """An allow-list that decides whether a request's ``Origin`` may use the kite.

    An empty allow-list, or one containing ``*``, accepts every origin, as
    sockjs-go does. Entries are origins such as ``https://app.example.com``
    or shell-style patterns such as ``https://*.example.com``. Two kinds of
    request always pass: one without an ``Origin`` header (a Node client),
    and one whose ``Origin`` names the request's ``Host`` (a page the kite
    served itself, or a Go kite or kitectl, which send the kite's own
    origin). The allow-list guards against other sites' pages, not against
    clients that are not browsers.
    """

    def __init__(self, allowed: Iterable[str] = ()):
        # The setting as given, so a server can tell when it changed.
        self.entries = tuple(allowed)
        patterns: list[str] = []
        for entry in self.entries:
            entry = entry.strip()
            if not entry:
                continue
            if entry == "*" or "*" in entry:
                patterns.append(entry.lower())
                continue
            try:
                patterns.append(normalize_origin(entry))
            except ValueError as exc:
                raise OriginError(f"invalid allowed origin: {exc}") from None
        self.patterns = tuple(patterns)
        self.accepts_all = not patterns or "*" in patterns

    def allows(self, origin: str | None, host: str | None = None, scheme: str = "http") -> bool:
        """Return True when a request with this ``Origin`` and ``Host`` header may proceed."""
        if origin is None or self.accepts_all:
            return True
        try:
            normalized = normalize_origin(origin)
        except ValueError:
            return False
        if host and normalized != "null":
            try:
                if normalized == normalize_origin(f"{scheme}://{host}"):
                    return True
            except ValueError:
                pass
        return any(fnmatchcase(normalized, pattern) for pattern in self.patterns)
