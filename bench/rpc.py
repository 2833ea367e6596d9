"""Measure kite RPC round trips per second against a plain aiohttp WebSocket JSON echo.

Run from the repository root: ``python bench/rpc.py [--duration 5] [--in-flight 100]``.

Two servers start as child processes on 127.0.0.1: an aiohttp WebSocket
server that echoes each JSON message (orjson), the baseline, and a kite with
an async ``square`` method. The client runs in this process:

- baseline: the websockets client sends ~100-byte JSON messages and reads the echo;
- kite: kitelib's Client over SockJS WebSocket calls ``square``.

Each runs sequentially (one call at a time) and with ``--in-flight`` calls
outstanding on one connection. Every process uses uvloop when it is installed.
The figures depend on the machine; compare the ratio, not the absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

# A child prints this prefix and its port on stdout once it is listening.
READY = "listening on port "
STARTUP_TIMEOUT = 30.0


def run_loop(main: Awaitable[None]) -> None:
    """Run ``main`` on uvloop when installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]
        return
    uvloop.run(main)  # type: ignore[arg-type]


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


# Servers (child processes)


async def wait_for_termination() -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def serve_baseline() -> None:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(orjson.dumps(orjson.loads(message.data)).decode())
        return ws

    app = web.Application()
    app.router.add_get("/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"{READY}{port}", flush=True)
    await wait_for_termination()
    await runner.cleanup()


async def serve_kite() -> None:
    from kitelib import Config, Kite

    kite = Kite("bench", "1.0.0", config=Config(ip="127.0.0.1", port=0, disable_authentication=True))

    @kite.handle("square")
    async def square(request: object, number: int) -> int:
        return number * number

    await kite.start()
    print(f"{READY}{kite.port}", flush=True)
    await wait_for_termination()
    await kite.stop()


def start_server(kind: str) -> tuple[subprocess.Popen[str], int]:
    """Start ``python bench/rpc.py --serve kind`` and return the process and its port."""
    process = subprocess.Popen([sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith(READY):
            return process, int(line[len(READY):])
    stop_server(process)
    raise RuntimeError(f"the {kind} server did not report its port within {STARTUP_TIMEOUT:g}s "
                       f"(exit code {process.returncode})")


def stop_server(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Client measurements


async def measure(round_trips: Callable[[float], Awaitable[int]], duration: float) -> float:
    """Run ``round_trips(deadline)`` for ``duration`` seconds after a short warm-up; return round trips/s."""
    await round_trips(time.perf_counter() + min(0.5, duration / 5))
    started = time.perf_counter()
    count = await round_trips(started + duration)
    return count / (time.perf_counter() - started)


def baseline_message(number: int) -> str:
    # About 100 bytes, the size the design measurements used.
    return orjson.dumps({"method": "square", "arguments": [number], "padding": "x" * 48, "id": number}).decode()


async def bench_baseline(port: int, duration: float, in_flight: int) -> tuple[float, float]:
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/echo", compression=None, max_size=None) as ws:
        async def sequential(deadline: float) -> int:
            count = 0
            while time.perf_counter() < deadline:
                await ws.send(baseline_message(count))
                orjson.loads(await ws.recv())
                count += 1
            return count

        async def pipelined(deadline: float) -> int:
            # One connection allows one reader, so a window of sends replaces concurrent callers.
            for number in range(in_flight):
                await ws.send(baseline_message(number))
            outstanding = in_flight
            count = 0
            while outstanding:
                orjson.loads(await ws.recv())
                outstanding -= 1
                count += 1
                if time.perf_counter() < deadline:
                    await ws.send(baseline_message(count))
                    outstanding += 1
            return count

        return await measure(sequential, duration), await measure(pipelined, duration)


async def bench_kite(port: int, duration: float, in_flight: int) -> tuple[float, float]:
    from kitelib import Client, Config, Kite

    caller = Kite("bench-client", "1.0.0", config=Config(disable_authentication=True))
    async with Client(f"http://127.0.0.1:{port}/kite", kite=caller, transport="websocket", timeout=30) as client:
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
                    await client.tell("square", slot)
                    counts[slot] += 1

            await asyncio.gather(*(worker(slot) for slot in range(in_flight)))
            return sum(counts)

        results = await measure(sequential, duration), await measure(pipelined, duration)
    await caller.stop()
    return results


def print_table(baseline: tuple[float, float], kite: tuple[float, float], in_flight: int) -> None:
    rows = [("sequential", baseline[0], kite[0]), (f"{in_flight} in flight", baseline[1], kite[1])]
    print(f"{'mode':<14} {'aiohttp echo rt/s':>18} {'kite square rt/s':>17} {'kite/baseline':>14}")
    for mode, base_rate, kite_rate in rows:
        print(f"{mode:<14} {base_rate:>18,.0f} {kite_rate:>17,.0f} {kite_rate / base_rate:>14.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per mode (default 5)")
    parser.add_argument("--in-flight", type=int, default=100,
                        help="calls outstanding at once in the concurrent mode (default 100)")
    parser.add_argument("--serve", choices=["baseline", "kite"], help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.serve == "baseline":
        run_loop(serve_baseline())
        return
    if arguments.serve == "kite":
        run_loop(serve_kite())
        return
    if arguments.duration <= 0 or arguments.in_flight < 1:
        parser.error("--duration must be positive and --in-flight at least 1")

    import aiohttp
    import websockets

    print(f"Python {platform.python_version()}, {loop_name()}, aiohttp {aiohttp.__version__}, "
          f"websockets {websockets.__version__}, {os.cpu_count()} CPUs, {arguments.duration:g}s per mode")
    processes: list[subprocess.Popen[str]] = []
    try:
        baseline_process, baseline_port = start_server("baseline")
        processes.append(baseline_process)
        kite_process, kite_port = start_server("kite")
        processes.append(kite_process)

        results: dict[str, tuple[float, float]] = {}

        async def run_all() -> None:
            results["baseline"] = await bench_baseline(baseline_port, arguments.duration, arguments.in_flight)
            results["kite"] = await bench_kite(kite_port, arguments.duration, arguments.in_flight)

        run_loop(run_all())
        print_table(results["baseline"], results["kite"], arguments.in_flight)
    finally:
        for process in processes:
            stop_server(process)


if __name__ == "__main__":
    main()
