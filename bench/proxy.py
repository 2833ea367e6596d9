"""Measure kite round trips per second through the reverse proxy and the tunnel proxy against a direct connection.

Run from the repository root: ``python bench/proxy.py [--duration 5] [--in-flight 100] [--transport websocket]``.

Three servers start as child processes on 127.0.0.1: a reverse proxy, a
tunnel proxy, and a kite with an async ``square`` method that registers with
both. The client runs in this process and calls ``square`` over the chosen
SockJS transport three ways in the same run: directly, through the reverse
proxy and through the tunnel proxy. Each runs sequentially (one call at a
time) and with ``--in-flight`` calls outstanding on one connection.
Authentication is off everywhere, so the figures measure forwarding only.
Every process uses uvloop when it is installed. A proxied call crosses one
more process than a direct one, so on a machine with fewer free cores than
the three busy processes the ratio also measures CPU contention.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rpc import loop_name, measure, run_loop, stop_server, wait_for_termination  # noqa: E402

# A child prints this prefix and its port (or URLs) on stdout once it is ready.
READY = "ready "
STARTUP_TIMEOUT = 30.0


def bench_config(**values: object) -> object:
    from kitelib import Config

    return Config(ip="127.0.0.1", port=0, disable_authentication=True, **values)


# Servers (child processes)


async def serve_reverse_proxy() -> None:
    from kitelib.proxy import ReverseProxy

    proxy = ReverseProxy(bench_config())
    await proxy.start(register=False)
    print(f"{READY}{proxy.kite.url}", flush=True)
    await wait_for_termination()
    await proxy.stop()


async def serve_tunnel_proxy() -> None:
    from kitelib.proxy import TunnelProxy

    proxy = TunnelProxy(bench_config())
    await proxy.start(register=False)
    print(f"{READY}{proxy.kite.url}", flush=True)
    await wait_for_termination()
    await proxy.stop()


async def serve_kite(reverse_url: str, tunnel_url: str) -> None:
    from kitelib import Kite

    kite = Kite("bench", "1.0.0", config=bench_config())

    @kite.handle("square")
    async def square(request: object, number: int) -> int:
        return number * number

    await kite.start()
    reverse = kite.register_to_proxy(reverse_url)
    tunnel = kite.register_to_tunnel(tunnel_url)
    reverse_public = await reverse.wait_registered(timeout=STARTUP_TIMEOUT)
    tunnel_public = await tunnel.wait_registered(timeout=STARTUP_TIMEOUT)
    print(f"{READY}{kite.url} {reverse_public} {tunnel_public}", flush=True)
    await wait_for_termination()
    await kite.stop()


def start_child(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``python bench/proxy.py --serve ARGS`` and return the process and the words after READY."""
    process = subprocess.Popen([sys.executable, __file__, "--serve", *args], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith(READY):
            return process, line[len(READY):].split()
    stop_server(process)
    raise RuntimeError(f"the {args[0]} server did not report ready within {STARTUP_TIMEOUT:g}s "
                       f"(exit code {process.returncode})")


# Client measurements


async def bench_url(url: str, transport: str, duration: float, in_flight: int) -> tuple[float, float]:
    from kitelib import Client, Kite

    caller = Kite("bench-client", "1.0.0", config=bench_config())
    async with Client(url, kite=caller, transport=transport, timeout=30) as client:
        async def sequential(deadline: float) -> int:
            count = 0
            while time.perf_counter() < deadline:
                assert await client.tell("square", count) == count * count
                count += 1
            return count

        async def pipelined(deadline: float) -> int:
            counts = [0] * in_flight

            async def worker(slot: int) -> None:
                while time.perf_counter() < deadline:
                    assert await client.tell("square", slot) == slot * slot
                    counts[slot] += 1

            await asyncio.gather(*(worker(slot) for slot in range(in_flight)))
            return sum(counts)

        results = await measure(sequential, duration), await measure(pipelined, duration)
    await caller.stop()
    return results


def print_table(results: dict[str, tuple[float, float]], in_flight: int) -> None:
    direct = results["direct"]
    print(f"{'path':<14} {'sequential rt/s':>16} {'ratio':>6} {f'{in_flight} in flight rt/s':>20} {'ratio':>6}")
    for path, (sequential, pipelined) in results.items():
        print(f"{path:<14} {sequential:>16,.0f} {sequential / direct[0]:>6.2f} {pipelined:>20,.0f} "
              f"{pipelined / direct[1]:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per mode and path (default 5)")
    parser.add_argument("--in-flight", type=int, default=100,
                        help="calls outstanding at once in the concurrent mode (default 100)")
    parser.add_argument("--transport", choices=["websocket", "xhr"], default="websocket",
                        help="SockJS transport of the client (default websocket)")
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.serve:
        kind, *rest = arguments.serve
        servers = {"reverse": serve_reverse_proxy, "tunnel": serve_tunnel_proxy}
        run_loop(serve_kite(*rest) if kind == "kite" else servers[kind]())
        return
    if arguments.duration <= 0 or arguments.in_flight < 1:
        parser.error("--duration must be positive and --in-flight at least 1")

    import aiohttp
    import websockets

    print(f"Python {platform.python_version()}, {loop_name()}, aiohttp {aiohttp.__version__}, "
          f"websockets {websockets.__version__}, {os.cpu_count()} CPUs, {arguments.transport}, "
          f"{arguments.duration:g}s per mode")
    processes: list[subprocess.Popen[str]] = []
    try:
        reverse_process, (reverse_url,) = start_child("reverse")
        processes.append(reverse_process)
        tunnel_process, (tunnel_url,) = start_child("tunnel")
        processes.append(tunnel_process)
        kite_process, (direct, through_reverse, through_tunnel) = start_child("kite", reverse_url, tunnel_url)
        processes.append(kite_process)

        results: dict[str, tuple[float, float]] = {}

        async def run_all() -> None:
            paths = {"direct": direct, "reverse proxy": through_reverse, "tunnel proxy": through_tunnel}
            for path, url in paths.items():
                results[path] = await bench_url(url, arguments.transport, arguments.duration, arguments.in_flight)

        run_loop(run_all())
        print_table(results, arguments.in_flight)
    finally:
        for process in reversed(processes):
            stop_server(process)


if __name__ == "__main__":
    main()
