"""Running the real kitectl executable, a Kontrol and example kites as subprocesses for the CLI tests.

Every process gets its own KITE_HOME and no inherited KITE_* or KONTROL_*
variables. Long-running processes are read line by line on a thread, waited
for by a line they print (with a deadline), and stopped by their pid.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
MATH_KITE = Path(__file__).resolve().parent / "math_kite.py"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
KITECTL = [sys.executable, "-m", "kitectl"]


def cli_env(kite_home: Path, **extra: str) -> dict[str, str]:
    """Return an environment with only this test's KITE_HOME and the given extra variables."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("KITE_", "KONTROL_", "KITECTL_")) and key not in ("NO_COLOR", "FORCE_COLOR")}
    env["KITE_HOME"] = str(kite_home)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_kitectl(*args: str, env: dict[str, str], input: str | None = None,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``kitectl ARGS`` to completion with stdout and stderr captured as text."""
    return subprocess.run([*KITECTL, *args], env=env, cwd=REPO, input=input, capture_output=True, text=True,
                          timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Return the single stderr line of a failed run; fail when there are more lines or a traceback."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, f"expected one stderr line, got: {result.stderr!r}"
    assert lines[0].startswith("kitectl: "), lines[0]
    return lines[0]


class Process:
    """A long-running subprocess whose stdout lines are collected on a thread."""

    def __init__(self, args: list[str], env: dict[str, str], name: str):
        self.name = name
        self.popen = subprocess.Popen(args, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, bufsize=1,
                                      start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._pump, args=(self.popen.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._collect, args=(self.popen.stderr,), daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @staticmethod
    def _pump(stream: IO[str], lines: "queue.Queue[str | None]") -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def _collect(self, stream: IO[str]) -> None:
        for line in stream:
            self.stderr_lines.append(line.rstrip("\n"))

    def wait_for_line(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """Return the match of the first new stdout line matching ``pattern``; fail at the deadline or on exit."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: no line matching {pattern!r} within {timeout}s; "
                                     f"stdout {self.seen[-10:]}, stderr {self.stderr_lines[-10:]}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.popen.wait(STOP_TIMEOUT)
                raise AssertionError(f"{self.name} exited with {self.popen.returncode} before printing "
                                     f"{pattern!r}; stdout {self.seen[-10:]}, stderr {self.stderr_lines[-10:]}")
            self.seen.append(line)
            match = regex.search(line)
            if match:
                return match

    def wait_or_stop(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """Like wait_for_line, but stop the process when the line does not come, so no process is left behind."""
        try:
            return self.wait_for_line(pattern, timeout)
        except BaseException:
            self.stop()
            raise

    def send_signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        return self.popen.wait(timeout)

    def stop(self) -> int | None:
        """Stop the process by its pid: SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(STOP_TIMEOUT)
        return self.popen.returncode


class KontrolProcess(Process):
    """``kitectl kontrol serve`` on a loopback port, started and waited for until it serves."""

    def __init__(self, kite_home: Path, port: int, storage_args: list[str], env_extra: dict[str, Any] | None = None,
                 extra_args: list[str] | None = None):
        args = [*KITECTL, "kontrol", "serve", "--host", "127.0.0.1", "--port", str(port), *storage_args,
                *(extra_args or [])]
        super().__init__(args, cli_env(kite_home, **(env_extra or {})), "kitectl kontrol serve")
        self.url = f"http://127.0.0.1:{port}/kite"
        self.wait_or_stop(r"kontrol serving on ")
        # Everything printed up to the ready line: the init messages and the ready line itself.
        self.startup = list(self.seen)


class KiteProcess(Process):
    """The math example kite; ``url`` is known once it has registered with Kontrol."""

    def __init__(self, kite_home: Path):
        super().__init__([sys.executable, str(MATH_KITE)], cli_env(kite_home), "math kite")
        self.url = self.wait_or_stop(r"^ready (\S+)").group(1)


def poll_kitectl(*args: str, env: dict[str, str], until: Any, timeout: float = START_TIMEOUT
                 ) -> subprocess.CompletedProcess[str]:
    """Run kitectl repeatedly until ``until(result)`` is true; fail at the deadline with the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = run_kitectl(*args, env=env)
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"kitectl {' '.join(args)} did not reach the expected state within {timeout}s: "
                                 f"exit {result.returncode}, stdout {result.stdout!r}, stderr {result.stderr!r}")
