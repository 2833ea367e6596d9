"""The ``kite.*`` methods every kite serves."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import platform
import shutil
import sys
from typing import TYPE_CHECKING, Any

from .protocol.errors import ArgumentError

if TYPE_CHECKING:
    from .kite import Kite
    from .method import Request

logger = logging.getLogger(__name__)


class HeartbeatTicker:
    """Calls the function Kontrol sent with ``kite.heartbeat`` every interval.

    There is one ticker per kite; a new ``kite.heartbeat`` call replaces the
    old one, as in the Go kite.
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self, interval: float, ping: Any) -> None:
        self.stop()
        self._task = asyncio.get_running_loop().create_task(self._tick(interval, ping))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @staticmethod
    async def _tick(interval: float, ping: Any) -> None:
        while True:
            try:
                await ping()
            except Exception as exc:
                # The connection is gone; the Kontrol client re-registers and starts a new ticker.
                logger.info("heartbeat stopped: %s", exc)
                return
            await asyncio.sleep(interval)


def _one_string(request: "Request") -> str:
    if len(request.args) != 1 or not isinstance(request.args[0], str):
        raise ArgumentError(f"{request.method} takes one string argument, got {request.args!r:.80}")
    return request.args[0]


async def ping(request: "Request") -> str:
    return "pong"


async def heartbeat(request: "Request") -> None:
    args = request.args
    if (len(args) != 2 or isinstance(args[0], bool) or not isinstance(args[0], (int, float))
            or args[0] <= 0 or not callable(args[1])):
        raise ArgumentError(f"kite.heartbeat takes [seconds > 0, function], got {args!r:.80}")
    request.local_kite.heartbeat.start(float(args[0]), args[1])
    return None


def log_message(request: "Request") -> None:
    logger.info("%s: %s", request.kite.name or request.connection.describe(), _one_string(request))
    return None


def print_message(request: "Request") -> int:
    text = _one_string(request)
    sys.stdout.write(text)
    sys.stdout.flush()
    return len(text.encode())


def prompt(request: "Request") -> str:
    sys.stdout.write(_one_string(request))
    sys.stdout.flush()
    line = sys.stdin.readline()
    words = line.split()
    return words[0] if words else ""


def get_pass(request: "Request") -> str:
    return getpass.getpass(_one_string(request))


def system_info(request: "Request") -> dict[str, Any]:
    """Return the Go kite's systemInfo shape: disk in KiB for /, memory in bytes."""
    disk = shutil.disk_usage("/")
    memory_total, memory_used = _memory()
    return {
        "state": "RUNNING",
        "diskUsage": (disk.total - disk.free) // 1024,
        "diskTotal": disk.total // 1024,
        "memoryUsage": memory_used,
        "totalMemoryLimit": memory_total,
        "homeDir": os.path.expanduser("~"),
        "uname": platform.system().lower(),
    }


def _memory() -> tuple[int, int]:
    """Return (total, used) bytes from /proc/meminfo; used = total - free - buffers - cached, as Go computes it."""
    values: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                key, _, rest = line.partition(":")
                values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return 0, 0
    total = values.get("MemTotal", 0)
    used = total - values.get("MemFree", 0) - values.get("Buffers", 0) - values.get("Cached", 0)
    return total, used


async def tunnel(request: "Request") -> None:
    """Open the tunnel that a tunnel proxy requests; see kitelib.proxy.tunnel_client."""
    from .proxy.tunnel_client import handle_tunnel

    return await handle_tunnel(request)


def register_default_methods(kite: "Kite") -> None:
    kite.handle("kite.ping", ping, auth=False, spread_args=False)
    kite.handle("kite.heartbeat", heartbeat, spread_args=False)
    kite.handle("kite.systemInfo", system_info, spread_args=False)
    kite.handle("kite.log", log_message, spread_args=False)
    kite.handle("kite.print", print_message, spread_args=False)
    kite.handle("kite.prompt", prompt, spread_args=False)
    kite.handle("kite.getPass", get_pass, spread_args=False)
    kite.handle("kite.tunnel", tunnel, spread_args=False)
