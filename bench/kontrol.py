"""Measure Kontrol per storage backend: registrations, getKites latency and heartbeat CPU.

Usage, from the repository root:

    python -m bench.kontrol [--backends sqlite,etcd,postgres] [--register-kites 500]
        [--stored-kites 10000] [--queries 1000] [--heartbeat-kites 1000] [--time-scale 10]
        [--cpu-window 30]

Kontrol runs as a child process on 127.0.0.1. Its CPU time comes from
/proc/<pid>/stat (utime + stime of the process and its children, counted in
clock ticks of usually 10 ms, so short runs give coarse figures). etcd and
PostgreSQL run as throwaway local servers (tests/servers.py) and are skipped
with a note when their binaries are missing. Per backend:

1. Registrations: ``--register-kites`` kites dial Kontrol over SockJS
   WebSocket, one connection each, then all call ``register`` with 50 calls
   in flight. Registrations/s counts the register calls only; dials/s is
   reported apart.
2. getKites: ``--stored-kites`` entries are written straight into storage
   through the storage API (5 instances per kite name). One client then
   sends ``--queries`` sequential getKites RPCs, each for one name, so each
   returns 5 kites with tokens. The cold pass signs a token per query; the
   warm pass repeats the names and gets cached tokens.
3. Heartbeats: ``--heartbeat-kites`` kites register over real connections
   and handle ``kite.heartbeat``, so their pings reach Kontrol over the
   network. Kontrol's CPU is measured over ``--cpu-window`` seconds after a
   warm-up. With ``--time-scale S`` the heartbeat interval, liveness window,
   registration TTL and SockJS heartbeat delay are all divided by S, so K
   kites produce the pings, storage refreshes and heartbeat frames per second
   of K*S kites at the default 10 s interval. The connection count and the
   per-kite memory are those of K kites, not K*S. ``--time-scale 1`` with
   ``--heartbeat-kites 10000`` measures the real thing.

The bench client shares the machine with Kontrol, so rates depend on the
machine; CPU per operation is the more portable figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kitelib import Client, Config, Kite  # noqa: E402
from kitelib.auth.tokens import decode_unverified  # noqa: E402
from kitelib.kite import run_event_loop  # noqa: E402
from kitelib.protocol.identity import Identity  # noqa: E402
from kitelib.protocol.query import Query  # noqa: E402

# Default Kontrol timings (kontrol/settings.py): heartbeat interval, liveness window, registration TTL,
# and the kite's SockJS heartbeat delay (kitelib/config.py).
HEARTBEAT_INTERVAL = 10.0
LIVENESS = 30.0
REGISTRATION_TTL = 90.0
SOCKJS_HEARTBEAT_DELAY = 10.0

BACKENDS = ("sqlite", "etcd", "postgres")
INSTANCES_PER_NAME = 5
IN_FLIGHT = 50
START_TIMEOUT = 60.0
IDLE_WINDOW = 5.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# Kontrol child process


async def serve_kontrol(spec: dict[str, Any]) -> None:
    """Run one Kontrol from ``spec`` until SIGTERM; print its port, a kite.key and the key id on stdout."""
    from kontrol.server import Kontrol
    from kontrol.settings import KontrolSettings
    from kontrol.storage import open_storage

    settings = KontrolSettings(**spec["settings"])
    kontrol = Kontrol(settings, storage=open_storage(settings.storage, **spec["storage"]))
    kontrol.kite.config.heartbeat_delay = spec["sockjs_heartbeat_delay"]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await kontrol.start()
    ready = {"port": kontrol.kite.port, "kite_key": kontrol.own_kite_key("bench"), "key_id": kontrol.keys.current.id}
    print(json.dumps(ready), flush=True)
    try:
        await stop.wait()
    finally:
        await kontrol.stop()


def process_tree_cpu(root: int) -> float:
    """Return the CPU seconds (user + system) used by ``root`` and its live descendants, plus their reaped children."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat_file:
                text = stat_file.read()
        except OSError:
            continue
        # The command name may contain spaces, so split after its closing parenthesis.
        fields = text[text.rindex(")") + 2:].split()
        pid = int(entry)
        parents[pid] = int(fields[1])
        times[pid] = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(times.get(pid, 0.0) for pid in tree)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class KontrolProcess:
    """A Kontrol child process on a free port, stopped with SIGTERM."""

    def __init__(self, kind: str, storage: dict[str, Any], time_scale: float = 1.0):
        self.spec = {
            "settings": {
                "storage": kind,
                "host": "127.0.0.1",
                "port": 0,
                "heartbeat_interval": HEARTBEAT_INTERVAL / time_scale,
                "liveness": LIVENESS / time_scale,
                "registration_ttl": REGISTRATION_TTL / time_scale,
            },
            "storage": {key: str(value) if isinstance(value, Path) else value for key, value in storage.items()},
            "sockjs_heartbeat_delay": SOCKJS_HEARTBEAT_DELAY / time_scale,
        }
        if kind == "postgres":
            # Settings validation requires the DSN even though the storage is built from "storage".
            self.spec["settings"]["postgres_dsn"] = storage["dsn"]
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""
        self.kite_key = ""
        self.key_id = ""

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.kontrol", "--serve-kontrol", json.dumps(self.spec),
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), START_TIMEOUT)
        if not line:
            raise RuntimeError(f"Kontrol child exited with {await self.process.wait()} before it was ready")
        ready = json.loads(line)
        self.url = f"http://127.0.0.1:{ready['port']}/kite"
        self.kite_key = ready["kite_key"]
        self.key_id = ready["key_id"]

    def cpu(self) -> float:
        assert self.process is not None
        return process_tree_cpu(self.process.pid)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except asyncio.TimeoutError:
            print(f"Kontrol child {self.process.pid} ignored SIGTERM for 30 s; killing it", file=sys.stderr)
            self.process.kill()
            await self.process.wait()


# Storage servers


@dataclass
class Backend:
    """One storage backend: how to open a fresh data set, and the server process to measure."""

    kind: str
    work_dir: Path
    server: Any = None
    data_sets: int = 0

    def start(self) -> None:
        from tests.servers import EtcdServer, PostgresServer

        if self.kind == "etcd":
            self.server = EtcdServer(self.work_dir)
            self.server.start()
        elif self.kind == "postgres":
            self.server = PostgresServer()
            self.server.start()

    def stop(self) -> None:
        if self.kind == "postgres" and self.server is not None:
            self.server.remove()
        elif self.server is not None:
            self.server.stop()

    def new_data_set(self) -> dict[str, Any]:
        """Return open_storage settings for an empty data set: a new file, etcd prefix or schema."""
        self.data_sets += 1
        if self.kind == "sqlite":
            return {"path": self.work_dir / f"kontrol-{self.data_sets}.db"}
        if self.kind == "etcd":
            return {"endpoint": self.server.endpoint, "prefix": f"/bench-{self.data_sets}"}
        return {"dsn": self.server.dsn, "schema": f"bench_{self.data_sets}"}

    def server_cpu(self) -> float:
        if self.server is None or self.server.process is None:
            return 0.0
        return process_tree_cpu(self.server.process.pid)


def missing_binary(kind: str) -> str | None:
    """Return why ``kind`` cannot run here, or None."""
    if kind == "etcd" and shutil.which("etcd") is None:
        return "etcd binary not found: install the Debian package etcd-server"
    if kind == "postgres":
        from tests.servers import _postgres_bin_dir

        if _postgres_bin_dir() is None:
            return "PostgreSQL binaries not found: install the Debian package postgresql"
    return None


# Bench kites


def bench_kites(count: int, name: str, kite_key: str) -> list[Kite]:
    claims = decode_unverified(kite_key).claims
    kites = []
    for index in range(count):
        config = Config(username="bench", environment="production", region="eu", hostname=f"host{index}",
                        ip="127.0.0.1", timeout=60.0, handshake_timeout=60.0)
        config.apply_kite_key(kite_key, claims)
        kites.append(Kite(name, "1.0.0", config=config, handler_threads=1))
    return kites


async def bounded(count: int, work: Any) -> None:
    """Run ``work(index)`` for each index with at most IN_FLIGHT running at once."""
    semaphore = asyncio.Semaphore(IN_FLIGHT)

    async def one(index: int) -> None:
        async with semaphore:
            await work(index)

    await asyncio.gather(*(one(index) for index in range(count)))


async def dial_all(kontrol: KontrolProcess, kites: list[Kite]) -> list[Client]:
    clients = [Client(kontrol.url, kite=kite, auth={"type": "kiteKey", "key": kontrol.kite_key},
                      transport="websocket", timeout=60.0) for kite in kites]

    async def dial(index: int) -> None:
        await clients[index].connect()

    await bounded(len(clients), dial)
    return clients


async def register_all(clients: list[Client]) -> None:
    async def register(index: int) -> None:
        # Nothing dials the URL, because these kites only register and send heartbeats.
        result = await clients[index].tell("register", {"url": f"http://127.0.0.1:9/kite/{index}"})
        assert isinstance(result, dict) and result.get("url"), f"register returned {result!r}"

    await bounded(len(clients), register)


async def close_all(clients: list[Client], kites: list[Kite]) -> None:
    await asyncio.gather(*(client.close() for client in clients))
    for kite in kites:
        await kite.stop()


# Measurements


@dataclass
class Result:
    kind: str
    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure_registrations(kontrol: KontrolProcess, count: int, result: Result) -> None:
    kites = bench_kites(count, "reg", kontrol.kite_key)
    started = time.perf_counter()
    clients = await dial_all(kontrol, kites)
    result.figures["dials_per_s"] = count / (time.perf_counter() - started)

    cpu_before = kontrol.cpu()
    started = time.perf_counter()
    await register_all(clients)
    elapsed = time.perf_counter() - started
    result.figures["registrations_per_s"] = count / elapsed
    result.figures["register_cpu_ms"] = (kontrol.cpu() - cpu_before) / count * 1000
    await close_all(clients, kites)


async def fill_storage(kind: str, storage_settings: dict[str, Any], count: int, key_id: str) -> float:
    """Write ``count`` entries straight into storage; return the seconds it took."""
    from kontrol.storage import open_storage

    storage = open_storage(kind, **storage_settings)
    await storage.start()
    try:
        identities = [
            Identity("bench", "production", f"kite{index // INSTANCES_PER_NAME}", "1.0.0", "eu", f"host{index}",
                     str(uuid.uuid4()))
            for index in range(count)
        ]

        async def upsert(index: int) -> None:
            identity = identities[index]
            await storage.upsert(identity, f"http://127.0.0.1:9/kite/{identity.id}", key_id, 3600)

        started = time.perf_counter()
        await bounded(count, upsert)
        return time.perf_counter() - started
    finally:
        await storage.close()


async def measure_get_kites(kontrol: KontrolProcess, kind: str, storage_settings: dict[str, Any], stored: int,
                            queries: int, result: Result) -> None:
    fill_seconds = await fill_storage(kind, storage_settings, stored, kontrol.key_id)
    result.notes.append(f"{kind}: wrote {stored} entries through the storage API in {fill_seconds:.1f} s")
    names = stored // INSTANCES_PER_NAME
    chosen = random.Random(1).sample(range(names), min(queries, names))
    [kite] = bench_kites(1, "query", kontrol.kite_key)
    client = Client(kontrol.url, kite=kite, auth={"type": "kiteKey", "key": kontrol.kite_key},
                    transport="websocket", timeout=60.0)
    await client.connect()
    try:
        for label in ("cold", "warm"):
            latencies = []
            cpu_before = kontrol.cpu()
            for name_index in chosen:
                query = {"username": "bench", "environment": "production", "name": f"kite{name_index}"}
                started = time.perf_counter()
                answer = await client.tell("getKites", {"query": query})
                latencies.append(time.perf_counter() - started)
                found = len(answer["kites"])
                assert found == INSTANCES_PER_NAME, f"getKites for {query} returned {found} kites"
            result.figures[f"get_{label}_p50_ms"] = percentile(latencies, 0.5) * 1000
            result.figures[f"get_{label}_p99_ms"] = percentile(latencies, 0.99) * 1000
            result.figures[f"get_{label}_cpu_ms"] = (kontrol.cpu() - cpu_before) / len(chosen) * 1000
    finally:
        await client.close()
        await kite.stop()


async def count_registered(kind: str, storage_settings: dict[str, Any], name: str) -> int:
    from kontrol.storage import open_storage

    storage = open_storage(kind, **storage_settings)
    await storage.start()
    try:
        return len(await storage.get(Query("bench", "production", name)))
    finally:
        await storage.close()


async def measure_heartbeats(backend: Backend, count: int, time_scale: float, window: float,
                             result: Result) -> None:
    storage_settings = backend.new_data_set()
    kontrol = KontrolProcess(backend.kind, storage_settings, time_scale)
    await kontrol.start()
    kites: list[Kite] = []
    clients: list[Client] = []
    try:
        idle_before, server_idle_before = kontrol.cpu(), backend.server_cpu()
        await asyncio.sleep(IDLE_WINDOW)
        result.figures["idle_core_pct"] = (kontrol.cpu() - idle_before) / IDLE_WINDOW * 100
        result.figures["idle_server_core_pct"] = (backend.server_cpu() - server_idle_before) / IDLE_WINDOW * 100

        kites = bench_kites(count, "hb", kontrol.kite_key)
        clients = await dial_all(kontrol, kites)
        await register_all(clients)
        ttl = REGISTRATION_TTL / time_scale
        # Let every kite reach its steady state: pings flowing and the first periodic refresh written.
        await asyncio.sleep(ttl / 3 + HEARTBEAT_INTERVAL / time_scale)

        cpu_before, server_before, client_before = kontrol.cpu(), backend.server_cpu(), own_cpu()
        started = time.monotonic()
        await asyncio.sleep(window)
        elapsed = time.monotonic() - started
        result.figures["heartbeat_core_pct"] = (kontrol.cpu() - cpu_before) / elapsed * 100
        result.figures["heartbeat_server_core_pct"] = (backend.server_cpu() - server_before) / elapsed * 100
        result.figures["heartbeat_client_core_pct"] = (own_cpu() - client_before) / elapsed * 100

        # Kites whose pings did not arrive would have expired after the (scaled) liveness window.
        alive = await count_registered(backend.kind, storage_settings, "hb")
        result.figures["heartbeat_alive"] = alive
        if alive != count:
            result.notes.append(f"{backend.kind}: only {alive} of {count} heartbeating kites were still registered")
    finally:
        await close_all(clients, kites)
        await kontrol.stop()


async def run_backend(kind: str, arguments: argparse.Namespace, work_dir: Path) -> Result:
    result = Result(kind)
    backend = Backend(kind, work_dir)
    backend.start()
    try:
        storage_settings = backend.new_data_set()
        kontrol = KontrolProcess(kind, storage_settings)
        await kontrol.start()
        try:
            await measure_registrations(kontrol, arguments.register_kites, result)
            await measure_get_kites(kontrol, kind, storage_settings, arguments.stored_kites, arguments.queries,
                                    result)
        finally:
            await kontrol.stop()
        await measure_heartbeats(backend, arguments.heartbeat_kites, arguments.time_scale, arguments.cpu_window,
                                 result)
    finally:
        backend.stop()
    return result


# Report


def print_header() -> None:
    try:
        import uvloop  # noqa: F401
        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"
    print()
    print(f"command: python -m bench.kontrol {' '.join(sys.argv[1:])}")
    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {loop_name}, {platform.platform()}")
    print()


def print_request_table(results: list[Result], arguments: argparse.Namespace) -> None:
    print(f"| backend | registrations/s ({arguments.register_kites} kites) | dials/s | Kontrol CPU per register "
          f"| getKites p50 / p99, cold token | getKites p50 / p99, cached token | Kontrol CPU per getKites |")
    print("|---|---|---|---|---|---|---|")
    for result in results:
        figures = result.figures
        print(f"| {result.kind} | {figures['registrations_per_s']:,.0f} | {figures['dials_per_s']:,.0f} "
              f"| {figures['register_cpu_ms']:.2f} ms "
              f"| {figures['get_cold_p50_ms']:.2f} / {figures['get_cold_p99_ms']:.2f} ms "
              f"| {figures['get_warm_p50_ms']:.2f} / {figures['get_warm_p99_ms']:.2f} ms "
              f"| {figures['get_warm_cpu_ms']:.2f} ms (cold {figures['get_cold_cpu_ms']:.2f} ms) |")
    print()
    print(f"getKites: {arguments.stored_kites:,} stored kites, {arguments.queries} sequential queries of "
          f"{INSTANCES_PER_NAME} matches each")
    print()


def print_heartbeat_table(results: list[Result], arguments: argparse.Namespace) -> None:
    scale = arguments.time_scale
    interval = HEARTBEAT_INTERVAL / scale
    print(f"| backend | Kontrol CPU, {arguments.heartbeat_kites:,} kites pinging every {interval:g} s "
          f"| storage server CPU | Kontrol idle | bench client CPU | kites alive after |")
    print("|---|---|---|---|---|---|")
    for result in results:
        figures = result.figures
        print(f"| {result.kind} | {figures['heartbeat_core_pct']:.1f} % of a core "
              f"| {figures['heartbeat_server_core_pct']:.1f} % | {figures['idle_core_pct']:.1f} % "
              f"| {figures['heartbeat_client_core_pct']:.1f} % "
              f"| {figures['heartbeat_alive']:,.0f} / {arguments.heartbeat_kites:,} |")
    print()

    if scale != 1:
        equivalent = int(arguments.heartbeat_kites * scale)
        print(f"Heartbeats are time-scaled by {scale:g}: {arguments.heartbeat_kites:,} kites every {interval:g} s "
              f"send the pings, storage refreshes and SockJS heartbeat frames per second of {equivalent:,} kites "
              f"every {HEARTBEAT_INTERVAL:g} s, over {arguments.heartbeat_kites:,} connections.")
    print(f"CPU measured over {arguments.cpu_window:g} s. Percentages are of one core.")


def print_report(results: list[Result], arguments: argparse.Namespace, skipped: list[str]) -> None:
    print_header()
    print_request_table(results, arguments)
    print_heartbeat_table(results, arguments)
    for result in results:
        for note in result.notes:
            print(f"note: {note}")
    for reason in skipped:
        print(f"skipped: {reason}")


async def main(arguments: argparse.Namespace) -> None:
    results: list[Result] = []
    skipped: list[str] = []
    for kind in arguments.backends.split(","):
        reason = missing_binary(kind)
        if reason is not None:
            skipped.append(f"{kind}: {reason}")
            continue
        with tempfile.TemporaryDirectory(prefix=f"kite-bench-kontrol-{kind}-") as work_dir:
            print(f"measuring {kind} ...", file=sys.stderr, flush=True)
            try:
                results.append(await run_backend(kind, arguments, Path(work_dir)))
            except Exception as exc:
                # One broken backend should not cost the figures of the others.
                skipped.append(f"{kind}: the run failed with {type(exc).__name__}: {exc}")
    print_report(results, arguments, skipped)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,etcd,postgres", help="comma-separated backends to measure")
    parser.add_argument("--register-kites", type=int, default=500, help="kites that register at once (default 500)")
    parser.add_argument("--stored-kites", type=int, default=10_000,
                        help="entries in storage while getKites is measured (default 10000)")
    parser.add_argument("--queries", type=int, default=1000, help="getKites calls per pass (default 1000)")
    parser.add_argument("--heartbeat-kites", type=int, default=1000,
                        help="kites that register and ping during the CPU measurement (default 1000)")
    parser.add_argument("--time-scale", type=float, default=10.0,
                        help="divide every heartbeat timing by this factor (default 10; 1 means real timings)")
    parser.add_argument("--cpu-window", type=float, default=30.0,
                        help="seconds over which heartbeat CPU is measured (default 30)")
    parser.add_argument("--serve-kontrol", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    unknown = set(arguments.backends.split(",")) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backend {', '.join(sorted(unknown))}: use {', '.join(BACKENDS)}")
    return arguments


if __name__ == "__main__":
    parsed = parse_arguments()
    if parsed.serve_kontrol:
        run_event_loop(serve_kontrol(json.loads(parsed.serve_kontrol)))
    else:
        run_event_loop(main(parsed))
