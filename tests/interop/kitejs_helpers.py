"""Helpers shared by the kite.js interop tests: the node fixture and the client.js runner.

The tests need `node` and `npm`. Without them they are skipped, unless
KITE_REQUIRE_INTEROP=1 is set (CI sets it), in which case they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest

JS_DIR = Path(__file__).parent / "js"

# Per-call timeout handed to client.js, in seconds.
CALL_TIMEOUT = 10
# Upper bound for one client.js run or one server.js start-up, in seconds.
PROCESS_DEADLINE = 60
NPM_CI_TIMEOUT = 600

# client.js reads the token from this variable, which keeps it out of the command line that ps shows.
TOKEN_VARIABLE = "KITEJS_TOKEN"


def _missing_tool(reason: str) -> NoReturn:
    if os.environ.get("KITE_REQUIRE_INTEROP") == "1":
        pytest.fail(f"{reason}, and KITE_REQUIRE_INTEROP=1 requires the kite.js interop tests to run")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node() -> str:
    """Return the node executable, installing the kite.js harness from its lock file on first use."""
    node_path = shutil.which("node")
    if node_path is None:
        _missing_tool("node is not installed (apt-get install nodejs npm)")

    if not (JS_DIR / "node_modules" / "kite.js").is_dir():
        npm_ci(JS_DIR)
    return node_path


def npm_ci(directory: Path) -> None:
    """Install ``directory``'s npm packages from its lock file, failing the test if npm cannot."""
    npm_path = shutil.which("npm")
    if npm_path is None:
        _missing_tool(f"npm is not installed, so {directory}/node_modules cannot be created")
    completed = subprocess.run(
        [npm_path, "ci", "--no-audit", "--no-fund"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=NPM_CI_TIMEOUT,
    )
    if completed.returncode != 0:
        pytest.fail(
            f"npm ci in {directory} failed with exit code {completed.returncode}:\n"
            f"{completed.stdout}\n{completed.stderr}"
        )


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """Terminate ``process`` and wait for it, killing it if it outlives 10 s."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout=10)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()


async def run_kitejs_client(node: str, url: str, transport: str, calls: list[list[Any]], *,
                            token: str | None = None) -> list[dict[str, Any]]:
    """Run client.js once and return its result lines, one dict per call, in call order.

    With ``token`` the kite.js client sends ``{"type": "token", "key": token}``
    with every call. Without it the client sends no authentication, even if
    the test process itself has KITEJS_TOKEN set.
    """
    environment = {name: value for name, value in os.environ.items() if name != TOKEN_VARIABLE}
    if token is not None:
        environment[TOKEN_VARIABLE] = token
    process = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / "client.js"),
        url,
        transport,
        json.dumps(calls),
        "--timeout",
        str(CALL_TIMEOUT),
        cwd=JS_DIR,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=PROCESS_DEADLINE)
    finally:
        await stop_process(process)

    assert process.returncode == 0, (
        f"client.js {url} {transport} exited with {process.returncode}:\n{stderr.decode(errors='replace')}"
    )
    lines = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    assert [line["method"] for line in lines] == [call[0] for call in calls]
    return lines
