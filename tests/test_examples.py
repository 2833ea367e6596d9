"""The README's examples, run as a user would: the first kite and client, and the main-job script."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.servers import free_port

REPO = Path(__file__).resolve().parents[1]


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"the example exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer within {timeout}s"
            time.sleep(0.05)


def test_first_kite_and_client(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, KITE_HOME=str(tmp_path), KITE_PORT=str(port))
    kite = subprocess.Popen([sys.executable, "examples/math_kite.py"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/kite/info", kite)
        result = subprocess.run([sys.executable, "examples/square_client.py", f"http://127.0.0.1:{port}/kite"],
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "16\n"
    finally:
        kite.terminate()
        assert kite.wait(10) == 0


def test_main_job_script() -> None:
    env = dict(os.environ, KONTROL_PORT=str(free_port()), MATH_PORT=str(free_port()))
    env.pop("KITE_HOME", None)
    result = subprocess.run(["bash", "examples/main_job.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    tell_output = lines[lines.index("== kitectl tell --query name=math square 4") + 1]
    assert tell_output == "16"
    query_rows = lines[lines.index("== kitectl query --name math") + 1:lines.index(
        "== kitectl tell --query name=math square 4")]
    assert len(query_rows) == 1
    assert query_rows[0].split("\t")[2] == "math"
    assert lines[-1].split()[1] == "16"


def run_browser_example(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "examples/browser/server.py", *args], cwd=REPO,
                          env=dict(os.environ, **env), capture_output=True, text=True, timeout=60)


def test_browser_example_bad_origin_error() -> None:
    flag = run_browser_example("--port", "0", "--allowed-origin", "example.com")
    variable = run_browser_example("--port", "0", KITE_ALLOWED_ORIGINS="example.com")

    assert flag.returncode == 2
    assert "--allowed-origin: invalid allowed origin: 'example.com' is not an origin" in flag.stderr
    assert variable.returncode == 1
    assert variable.stderr.strip().splitlines() == [
        "server.py: KITE_ALLOWED_ORIGINS: invalid allowed origin: 'example.com' is not an origin: "
        "use scheme://host[:port], such as https://app.example.com"]


def test_browser_example_busy_port_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_browser_example("--port", str(port))

    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "pass --port 0 to pick a free port" in result.stderr
    assert "Traceback" not in result.stderr
