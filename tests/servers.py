"""Real etcd and PostgreSQL servers for tests, on free loopback ports.

Each server runs from a temporary directory, is polled until it accepts
connections and is stopped by its process id. A missing binary skips the
test, unless KITE_REQUIRE_BACKENDS=1 (set in CI), where it fails instead.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def backend_missing(message: str) -> None:
    """Skip the test, or fail it when KITE_REQUIRE_BACKENDS=1."""
    if os.environ.get("KITE_REQUIRE_BACKENDS") == "1":
        pytest.fail(f"{message} (KITE_REQUIRE_BACKENDS=1 makes this a failure)")
    pytest.skip(message)


def _stop_process(process: subprocess.Popen[bytes], name: str, stop_signal: int = signal.SIGTERM) -> None:
    if process.poll() is not None:
        return
    process.send_signal(stop_signal)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        logger.warning("%s (pid %d) ignored signal %d for %.0f s; killing it", name, process.pid, stop_signal, STOP_TIMEOUT)
        process.kill()
        process.wait(STOP_TIMEOUT)


class EtcdServer:
    """One etcd member with its own data directory; start() again after stop() keeps the data and ports."""

    def __init__(self, base_dir: Path):
        binary = shutil.which("etcd")
        if binary is None:
            backend_missing("etcd binary not found: install the Debian package etcd-server")
        self.binary = binary
        self.base_dir = base_dir
        self.data_dir = base_dir / "etcd-data"
        self.client_port = free_port()
        self.peer_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        peer_url = f"http://127.0.0.1:{self.peer_port}"
        log = open(self.base_dir / "etcd.log", "ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--name", "kite-test",
                "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.endpoint,
                "--advertise-client-urls", self.endpoint,
                "--listen-peer-urls", peer_url,
                "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", f"kite-test={peer_url}",
                "--heartbeat-interval", "10",
                "--election-timeout", "100",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.process.returncode}; see {self.base_dir / 'etcd.log'}")
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=1) as response:
                    if json.loads(response.read()).get("health") == "true":
                        return
            except (OSError, ValueError, urllib.error.URLError) as exc:
                last_error = exc
            time.sleep(0.02)
        raise RuntimeError(f"etcd at {self.endpoint} not healthy within {START_TIMEOUT} s: {last_error}")

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process, "etcd")
            self.process = None


def _postgres_bin_dir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda path: int(path.split("/")[4]))
    if not candidates:
        return None
    return Path(candidates[-1]).parent


class PostgresServer:
    """A throwaway PostgreSQL cluster (fsync off) listening on 127.0.0.1 only.

    initdb and postgres refuse to run as root, so as root they run as the
    ``postgres`` system user through runuser, in a directory owned by it.
    """

    def __init__(self) -> None:
        bin_dir = _postgres_bin_dir()
        if bin_dir is None:
            backend_missing("PostgreSQL binaries not found under /usr/lib/postgresql: install the Debian package postgresql")
        self.bin_dir = bin_dir
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self.account = pwd.getpwnam("postgres")
            except KeyError:
                backend_missing("running as root needs the 'postgres' system user: install the Debian package postgresql")
            if shutil.which("runuser") is None:
                backend_missing("running as root needs runuser (Debian package util-linux)")
        # Not under pytest's tmp_path: its parents are private to root, so the
        # postgres user could not reach them.
        self.base_dir = Path(tempfile.mkdtemp(prefix="kite-test-postgres-"))
        self.data_dir = self.base_dir / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        if self.as_root:
            os.chown(self.base_dir, self.account.pw_uid, self.account.pw_gid)
        self._run_checked([str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"])

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _command(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if self.as_root else command

    def _run_checked(self, command: list[str]) -> None:
        result = subprocess.run(self._command(command), capture_output=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed with {result.returncode}: {result.stderr.decode(errors='replace')[-2000:]}")

    def start(self) -> None:
        log = open(self.base_dir / "postgres.log", "ab")
        self.process = subprocess.Popen(
            self._command(
                [
                    str(self.bin_dir / "postgres"),
                    "-D", str(self.data_dir),
                    "-p", str(self.port),
                    "-k", str(self.base_dir),
                    "-c", "listen_addresses=127.0.0.1",
                    "-c", "fsync=off",
                    "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off",
                ]
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}; see {self.base_dir / 'postgres.log'}")
            try:
                with psycopg.connect(self.dsn, connect_timeout=1):
                    return
            except psycopg.OperationalError as exc:
                last_error = exc
            time.sleep(0.02)
        raise RuntimeError(f"PostgreSQL on port {self.port} not ready within {START_TIMEOUT} s: {last_error}")

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        if self.process is None:
            return
        # Under runuser our child is runuser, so SIGINT (fast shutdown) goes to
        # the postmaster's own pid from postmaster.pid.
        postmaster = self._postmaster_pid() if self.as_root else self.process.pid
        if postmaster is not None and self.process.poll() is None:
            try:
                os.kill(postmaster, signal.SIGINT)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.warning("postgres (pid %s) did not stop within %.0f s; killing it", postmaster, STOP_TIMEOUT)
            if postmaster is not None:
                try:
                    os.kill(postmaster, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _stop_process(self.process, "runuser", signal.SIGKILL)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)
