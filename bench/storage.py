"""Measure Kontrol storage backends: upsert throughput and lookup latency.

Usage: python -m bench.storage [--entries 10000] [--concurrency 32] [--backends sqlite,etcd,postgres]

etcd and PostgreSQL run as throwaway local servers (see tests/servers.py), so
the etcd-server and postgresql Debian packages must be installed. Each kite
name has 10 instances, so a prefix lookup of username/environment/name
returns 10 entries.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from kitelib.protocol.identity import Identity
from kitelib.protocol.query import Query
from kontrol.storage import Storage, open_storage
from tests.servers import EtcdServer, PostgresServer

INSTANCES_PER_NAME = 10
LOOKUPS = 1000


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(storage: Storage, entries: int, concurrency: int) -> dict[str, float]:
    identities = [
        Identity("bench", "production", f"kite{index // INSTANCES_PER_NAME}", "1.0.0", "eu", f"host{index}", str(uuid.uuid4()))
        for index in range(entries)
    ]
    queue: asyncio.Queue[Identity] = asyncio.Queue()
    for identity in identities:
        queue.put_nowait(identity)

    async def upsert_worker() -> None:
        while not queue.empty():
            identity = queue.get_nowait()
            await storage.upsert(identity, f"http://127.0.0.1:4000/{identity.id}", "key", 600)

    started = time.perf_counter()
    await asyncio.gather(*(upsert_worker() for _ in range(concurrency)))
    upsert_seconds = time.perf_counter() - started

    names = entries // INSTANCES_PER_NAME
    prefix_latencies = []
    for index in range(LOOKUPS):
        query = Query("bench", "production", f"kite{index % names}")
        started = time.perf_counter()
        records = await storage.get(query)
        prefix_latencies.append(time.perf_counter() - started)
        assert len(records) == INSTANCES_PER_NAME, f"{query} returned {len(records)} entries"

    id_latencies = []
    for index in range(LOOKUPS):
        started = time.perf_counter()
        record = await storage.get_by_id(identities[(index * 7919) % entries].id)
        id_latencies.append(time.perf_counter() - started)
        assert record is not None

    return {
        "upserts_per_second": entries / upsert_seconds,
        "prefix_p50_ms": percentile(prefix_latencies, 0.5) * 1000,
        "prefix_p99_ms": percentile(prefix_latencies, 0.99) * 1000,
        "prefix_mean_ms": statistics.fmean(prefix_latencies) * 1000,
        "id_p50_ms": percentile(id_latencies, 0.5) * 1000,
        "id_p99_ms": percentile(id_latencies, 0.99) * 1000,
    }


async def run_backend(kind: str, entries: int, concurrency: int, work_dir: Path) -> dict[str, float]:
    server = None
    try:
        if kind == "sqlite":
            storage = open_storage("sqlite", path=work_dir / "bench.db")
        elif kind == "etcd":
            server = EtcdServer(work_dir)
            server.start()
            storage = open_storage("etcd", endpoint=server.endpoint)
        else:
            server = PostgresServer()
            server.start()
            storage = open_storage("postgres", dsn=server.dsn, max_size=concurrency)
        await storage.start()
        try:
            return await measure(storage, entries, concurrency)
        finally:
            await storage.close()
    finally:
        if isinstance(server, PostgresServer):
            server.remove()
        elif server is not None:
            server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000, help="kite entries to upsert (default 10000)")
    parser.add_argument("--concurrency", type=int, default=32, help="upserts in flight at once (default 32)")
    parser.add_argument("--backends", default="sqlite,etcd,postgres", help="comma-separated backends to measure")
    arguments = parser.parse_args()

    print(f"{arguments.entries} entries, {arguments.concurrency} concurrent upserts, {LOOKUPS} sequential lookups")
    print(f"{'backend':10} {'upserts/s':>10} {'prefix p50':>11} {'prefix p99':>11} {'id p50':>8} {'id p99':>8}  (ms)")
    for kind in arguments.backends.split(","):
        with tempfile.TemporaryDirectory(prefix=f"kite-bench-{kind}-") as work_dir:
            result = await run_backend(kind, arguments.entries, arguments.concurrency, Path(work_dir))
        print(
            f"{kind:10} {result['upserts_per_second']:10.0f} {result['prefix_p50_ms']:11.3f} "
            f"{result['prefix_p99_ms']:11.3f} {result['id_p50_ms']:8.3f} {result['id_p99_ms']:8.3f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
