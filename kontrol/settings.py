"""Kontrol settings: defaults, then ``KONTROL_*`` environment variables, then explicit values."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from kitelib.config import ConfigError, _parse_duration

STORAGE_KINDS = ("sqlite", "etcd", "postgres")

# Timing defaults. Each comment names where the number comes from.
DEFAULT_PORT = 4000  # the Go kontrol binary's port when none is given
DEFAULT_HEARTBEAT_INTERVAL = 10.0  # Go kontrol HeartbeatInterval: the interval sent with kite.heartbeat
DEFAULT_LIVENESS = 30.0  # Go HeartbeatInterval + HeartbeatDelay: no ping for this long means the kite is gone
DEFAULT_REGISTRATION_TTL = 90.0  # Go KeyTTL: how long an entry outlives a Kontrol that stopped refreshing it
DEFAULT_TOKEN_TTL = 48 * 3600.0  # Go TokenTTL
DEFAULT_TOKEN_LEEWAY = 300.0  # Go TokenLeeway (5 min), subtracted from iat/nbf and added to exp
DEFAULT_STORAGE_TIMEOUT = 10.0  # start-up must name an unreachable storage address within 10 s


@dataclass
class KontrolSettings:
    """Everything ``kitectl kontrol serve`` can set."""

    storage: str = "sqlite"
    db_path: str = ""  # SQLite file; empty means the platform data dir
    etcd_endpoints: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    etcd_prefix: str = ""
    postgres_dsn: str = ""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    public_url: str = ""  # the kontrolURL written into kite keys; default http://127.0.0.1:<port>/kite
    tls_cert: str = ""
    tls_key: str = ""

    username: str = "kontrol"  # Kontrol's own user: the iss of every key and token it issues
    kite_key_path: str = ""  # Kontrol's own kite.key; empty means the usual kite.key location
    environment: str = "production"
    region: str = "default"

    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    liveness: float = DEFAULT_LIVENESS
    registration_ttl: float = DEFAULT_REGISTRATION_TTL
    token_ttl: float = DEFAULT_TOKEN_TTL
    token_leeway: float = DEFAULT_TOKEN_LEEWAY
    storage_timeout: float = DEFAULT_STORAGE_TIMEOUT

    # registerMachine authenticators; "open" issues keys to anyone and is for local development only.
    machine_auth: list[str] = field(default_factory=lambda: ["password", "token"])

    @property
    def url(self) -> str:
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}/kite"

    def storage_settings(self) -> dict[str, Any]:
        """Return the keyword arguments for ``open_storage`` of the chosen backend only."""
        if self.storage == "sqlite":
            settings: dict[str, Any] = {}
            if self.db_path:
                settings["path"] = self.db_path
            return settings
        if self.storage == "etcd":
            endpoint = self.etcd_endpoints[0] if self.etcd_endpoints else "http://127.0.0.1:2379"
            settings = {"endpoint": endpoint, "timeout": self.storage_timeout}
            if self.etcd_prefix:
                settings["prefix"] = self.etcd_prefix
            return settings
        if self.storage == "postgres":
            if not self.postgres_dsn:
                raise ConfigError(
                    "missing PostgreSQL DSN: pass --postgres-dsn or set KONTROL_POSTGRES_DSN "
                    "(for example postgresql://kontrol@127.0.0.1:5432/kontrol)"
                )
            return {"dsn": self.postgres_dsn, "timeout": self.storage_timeout}
        raise ConfigError(f"invalid storage {self.storage!r}: use one of {', '.join(STORAGE_KINDS)}")

    def validate(self) -> None:
        if self.storage not in STORAGE_KINDS:
            raise ConfigError(f"invalid storage {self.storage!r}: use one of {', '.join(STORAGE_KINDS)}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("TLS needs both --tls-cert and --tls-key")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"invalid port {self.port}: use 0 to 65535")
        if self.liveness <= self.heartbeat_interval:
            raise ConfigError(
                f"liveness window {self.liveness:g}s must be longer than the heartbeat interval "
                f"{self.heartbeat_interval:g}s, or every kite would expire between two pings"
            )
        unknown = set(self.machine_auth) - {"password", "token", "open"}
        if unknown:
            raise ConfigError(f"unknown machine authenticator {sorted(unknown)}: use password, token or open")
        self.storage_settings()

    def apply_environment(self, environ: Mapping[str, str] | None = None) -> "KontrolSettings":
        """Read ``KONTROL_<FIELD>`` for each field (lists are comma-separated). Returns self."""
        environ = os.environ if environ is None else environ
        for item in fields(self):
            variable = "KONTROL_" + item.name.upper()
            text = environ.get(variable)
            if not text:
                continue
            current = getattr(self, item.name)
            if isinstance(current, list):
                setattr(self, item.name, [part.strip() for part in text.split(",") if part.strip()])
            elif isinstance(current, bool):
                setattr(self, item.name, text.lower() in ("1", "true", "yes"))
            elif isinstance(current, int) and not isinstance(current, bool):
                if not text.isdigit():
                    raise ConfigError(f"invalid number {text!r} in {variable}")
                setattr(self, item.name, int(text))
            elif isinstance(current, float):
                setattr(self, item.name, _parse_duration(variable, text))
            else:
                setattr(self, item.name, text)
        # Accept Go kontrol's variable names too.
        aliases = {"KONTROL_MACHINES": "etcd_endpoints", "KONTROL_TLSCERTFILE": "tls_cert",
                   "KONTROL_TLSKEYFILE": "tls_key", "KONTROL_KONTROLURL": "public_url"}
        for variable, attribute in aliases.items():
            if environ.get(variable) and not environ.get("KONTROL_" + attribute.upper()):
                value: Any = environ[variable]
                if attribute == "etcd_endpoints":
                    value = [part.strip() for part in value.split(",") if part.strip()]
                setattr(self, attribute, value)
        return self
