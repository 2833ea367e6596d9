"""Access to the captured Go and kite.js traffic kept beside the repository in shared/frames."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

FRAMES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "frames"


def load_json(name: str) -> dict:
    """Load one capture file, skipping the test when the folder is absent (never in CI)."""
    path = FRAMES_DIR / name
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"captured frames missing: {path} (CI copies shared/ beside the clone)")
        pytest.skip(f"captured frames not found at {path}")
    return json.loads(path.read_text())


def vectors() -> list[dict]:
    return load_json("vectors.json")["vectors"]
