"""Regenerate the checked-in completion scripts and man page: ``python -m kitectl.gen [--check]``.

With --check nothing is written; the exit status is 1 when a file differs
from what the current command definitions produce.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import completions, manpage
from .clispec import build_spec

ROOT = Path(__file__).resolve().parent.parent


def generated_files(root: Path = ROOT) -> dict[Path, str]:
    """Return each generated file's path under ``root`` with the content it should have."""
    spec = build_spec()
    files = {root / "completions" / f"kitectl.{shell}": completions.render(shell, spec) for shell in completions.SHELLS}
    files[root / "man" / "kitectl.1"] = manpage.render(spec)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kitectl.gen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    parser.add_argument("--root", type=Path, default=ROOT, help="source tree to write into (default: %(default)s)")
    options = parser.parse_args(argv)
    stale = []
    for path, content in generated_files(options.root).items():
        current = path.read_text() if path.exists() else None
        if current == content:
            continue
        stale.append(path)
        if not options.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            print(f"wrote {path}")
    if options.check and stale:
        for path in stale:
            print(f"out of date: {path}: run 'python -m kitectl.gen'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
