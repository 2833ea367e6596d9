"""kitectl start-up benchmark: wall-clock medians of whole kitectl processes against their targets.

Run ``python bench/cli.py [--runs N] [--strict]`` from the repository root.
It measures ``kitectl --help`` (target <= 100 ms) and ``kitectl tell URL
kite.ping`` against a local kite (target <= 300 ms end to end), plus a few
reference points, and lists the slowest imports of ``kitectl --help`` from
``python -X importtime``. With --strict the exit status is 1 when a target
is missed. The kite runs in its own process on 127.0.0.1; no Kontrol is needed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

KITE_SCRIPT = """
import asyncio, signal
from kitelib import Kite
from kitelib.config import Config

async def main():
    kite = Kite("bench", "1.0.0", config=Config(ip="127.0.0.1"))
    await kite.start()
    print(kite.url, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await kite.stop()

asyncio.run(main())
"""


def kitectl_command() -> list[str]:
    """Return the installed console script when there is one, else ``python -m kitectl``."""
    script = shutil.which("kitectl")
    return [script] if script else [sys.executable, "-m", "kitectl"]


def median_ms(command: list[str], runs: int, env: dict[str, str]) -> float:
    """Run ``command`` ``runs`` times after one warm-up run and return the median wall time in milliseconds."""
    subprocess.run(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def slowest_imports(command: list[str], env: dict[str, str], count: int = 8) -> list[tuple[int, str]]:
    """Return the ``count`` largest cumulative import times (microseconds, module) of one run of ``command``."""
    python_command = [sys.executable, "-X", "importtime", "-m", "kitectl", *command[1:]] \
        if command[0] != sys.executable else [sys.executable, "-X", "importtime", *command[1:]]
    result = subprocess.run(python_command, env=env, cwd=REPO, capture_output=True, text=True, check=True)
    entries = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+\s+\|\s+(\d+)\s+\|(\s*)(\S+)", line)
        if match and len(match.group(2)) <= 3:  # top-level and first-level imports only
            entries.append((int(match.group(1)), match.group(3)))
    return sorted(entries, reverse=True)[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="measured runs per command (default: %(default)s)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    options = parser.parse_args()

    kitectl = kitectl_command()
    home = tempfile.mkdtemp(prefix="kitectl-bench-")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KITE_", "KONTROL_"))}
    env.update({"KITE_HOME": home, "PYTHONPATH": str(REPO)})

    kite = subprocess.Popen([sys.executable, "-c", KITE_SCRIPT], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert kite.stdout is not None
        url = kite.stdout.readline().strip()
        if not url:
            print(f"the benchmark kite exited with {kite.wait()} before printing its URL", file=sys.stderr)
            return 1
        rows = [
            ("python -c pass (interpreter start-up)", [sys.executable, "-c", "pass"], None),
            ("kitectl --version", [*kitectl, "--version"], None),
            ("kitectl --help", [*kitectl, "--help"], 100.0),
            ("kitectl tell --help", [*kitectl, "tell", "--help"], None),
            ("kitectl tell URL kite.ping", [*kitectl, "tell", url, "kite.ping"], 300.0),
        ]
        print(f"kitectl: {' '.join(kitectl)}; {options.runs} runs each, median wall clock")
        missed = False
        for label, command, target in rows:
            value = median_ms(command, options.runs, env)
            verdict = ""
            if target is not None:
                ok = value <= target
                missed |= not ok
                verdict = f"target <= {target:.0f} ms: {'met' if ok else 'MISSED'}"
            print(f"  {label:<40} {value:7.1f} ms  {verdict}")
        print("slowest imports of kitectl --help (cumulative):")
        for microseconds, module in slowest_imports([*kitectl, "--help"], env):
            print(f"  {microseconds / 1000:7.1f} ms  {module}")
    finally:
        kite.send_signal(signal.SIGTERM)
        kite.wait(10)
        shutil.rmtree(home, ignore_errors=True)
    return 1 if missed and options.strict else 0


if __name__ == "__main__":
    sys.exit(main())
