"""Kite configuration: defaults, then kite.key claims, then KITE_* environment variables."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

# Defaults follow the Go kite's config.New() so that mixed Go and Python
# deployments behave alike; each comment names where the number comes from.
DEFAULT_TIMEOUT = 15.0  # Go Config.Timeout: Kontrol calls and the XHR client's poll wait
DEFAULT_HANDSHAKE_TIMEOUT = 15.0  # Go Websocket.HandshakeTimeout
DEFAULT_HEARTBEAT_DELAY = 10.0  # Go kite SockJS.HeartbeatDelay; the Go XHR client needs h within Timeout
DEFAULT_DISCONNECT_DELAY = 10.0  # Go kite SockJS.DisconnectDelay
DEFAULT_VERIFY_TTL = 300.0  # Go VerifyTTL default (5 min) for trusted-key checks
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024  # 1 MiB; a frame above this closes the connection with 1009
DEFAULT_LEEWAY = 300.0  # seconds of clock skew allowed on exp/nbf/iat, Kontrol's TokenLeeway (5 min)

TRANSPORTS = ("auto", "websocket", "xhr")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the setting."""


def _parse_duration(name: str, text: str) -> float:
    """Parse seconds given as a number or a Go duration such as ``30s``, ``1m30s`` or ``500ms``."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ConfigError(
            f"invalid duration {text!r} in {name}: use seconds (15) or a Go duration (15s, 1m30s, 500ms)"
        )
    return sum(float(number) * units[unit] for number, unit in parts)


def _normalize_transport(name: str, text: str) -> str:
    lowered = text.strip().lower()
    aliases = {"auto": "auto", "websocket": "websocket", "ws": "websocket", "xhrpolling": "xhr", "xhr": "xhr"}
    if lowered not in aliases:
        raise ConfigError(f"invalid transport {text!r} in {name}: use auto, WebSocket or XHRPolling")
    return aliases[lowered]


@dataclass
class Config:
    """Settings of one kite: its identity fields, network options and credentials."""

    username: str = "unknown"
    environment: str = "unknown"
    region: str = "unknown"
    hostname: str = field(default_factory=socket.gethostname)
    # The kite.key ``jti``. Like the Go kite, it is not used as the kite id.
    id: str = ""

    kite_key: str = ""
    kontrol_url: str = ""
    kontrol_key: str = ""
    kontrol_user: str = ""

    disable_authentication: bool = False
    transport: str = "auto"
    ip: str = "0.0.0.0"
    port: int = 0
    tls_cert: str = ""
    tls_key: str = ""

    timeout: float = DEFAULT_TIMEOUT
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    heartbeat_delay: float = DEFAULT_HEARTBEAT_DELAY
    disconnect_delay: float = DEFAULT_DISCONNECT_DELAY
    verify_ttl: float = DEFAULT_VERIFY_TTL
    leeway: float = DEFAULT_LEEWAY
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    # Browser origins that may open sessions. Empty accepts every origin, as sockjs-go does.
    allowed_origins: list[str] = field(default_factory=list)

    def copy(self) -> "Config":
        copied = Config(**{item.name: getattr(self, item.name) for item in fields(self)})
        copied.allowed_origins = list(self.allowed_origins)
        return copied

    @classmethod
    def load(cls, *, kite_key_path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None,
             read_kite_key: bool = True) -> "Config":
        """Build a config from defaults, then the kite.key claims, then ``KITE_*`` variables.

        A missing kite.key is not an error here: the kite runs unauthenticated
        until it gets one. A kite.key that exists but cannot be decoded is.
        ``environ`` replaces ``os.environ`` for the ``KITE_*`` settings only;
        the kite.key is looked up with the process's own ``KITE_HOME``.
        """
        config = cls()
        if read_kite_key:
            from kitelib.auth.keyfile import KiteKeyNotFoundError, load_kite_key

            try:
                key = load_kite_key(kite_key_path)
            except KiteKeyNotFoundError:
                if kite_key_path is not None:
                    raise
            else:
                config.apply_kite_key(key.token, key.claims)
        config.apply_environment(os.environ if environ is None else environ)
        return config

    def apply_kite_key(self, token: str, claims: Mapping[str, Any]) -> None:
        """Take the username, Kontrol user, URL, key and jti from kite.key claims."""
        self.kite_key = token
        mapping = {"sub": "username", "iss": "kontrol_user", "kontrolURL": "kontrol_url",
                   "kontrolKey": "kontrol_key", "jti": "id"}
        for claim, attribute in mapping.items():
            value = claims.get(claim)
            if isinstance(value, str) and value:
                setattr(self, attribute, value)

    def apply_environment(self, environ: Mapping[str, str]) -> None:
        """Apply the ``KITE_*`` variables the Go kite reads, plus a few of ours."""
        strings = {
            "KITE_USERNAME": "username",
            "KITE_ENVIRONMENT": "environment",
            "KITE_REGION": "region",
            "KITE_HOSTNAME": "hostname",
            "KITE_IP": "ip",
            "KITE_KONTROL_URL": "kontrol_url",
            "KITE_TLS_CERT": "tls_cert",
            "KITE_TLS_KEY": "tls_key",
        }
        for variable, attribute in strings.items():
            if environ.get(variable):
                setattr(self, attribute, environ[variable])

        if environ.get("KITE_PORT"):
            text = environ["KITE_PORT"]
            if not text.isdigit() or int(text) > 65535:
                raise ConfigError(f"invalid port {text!r} in KITE_PORT: use a number from 0 to 65535")
            self.port = int(text)
        if environ.get("KITE_TRANSPORT"):
            self.transport = _normalize_transport("KITE_TRANSPORT", environ["KITE_TRANSPORT"])

        durations = {
            "KITE_TIMEOUT": "timeout",
            "KITE_HANDSHAKE_TIMEOUT": "handshake_timeout",
            "KITE_VERIFY_TTL": "verify_ttl",
        }
        for variable, attribute in durations.items():
            if environ.get(variable):
                setattr(self, attribute, _parse_duration(variable, environ[variable]))

        if environ.get("KITE_MAX_MESSAGE_SIZE"):
            text = environ["KITE_MAX_MESSAGE_SIZE"]
            if not text.isdigit() or int(text) < 1024:
                raise ConfigError(
                    f"invalid size {text!r} in KITE_MAX_MESSAGE_SIZE: use a byte count of at least 1024"
                )
            self.max_message_size = int(text)

        if environ.get("KITE_ALLOWED_ORIGINS"):
            from .protocol.origin import OriginError, OriginPolicy

            entries = [entry for entry in re.split(r"[,\s]+", environ["KITE_ALLOWED_ORIGINS"]) if entry]
            try:
                OriginPolicy(entries)
            except OriginError as exc:
                raise ConfigError(f"KITE_ALLOWED_ORIGINS: {exc}") from None
            self.allowed_origins = entries
