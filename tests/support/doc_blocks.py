"""The code blocks of the Markdown pages, and a way to run their shell commands as written.

The pages' commands call `.venv/bin/python` and `.venv/bin/agentloop`, as a user does from
the checkout. `fake_venv` makes those two paths in a scratch directory, running this
interpreter and this checkout's package, so a block runs there word for word.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)
FILE_NAME = re.compile(r"^# (\S+\.py)\n")
"""A Python block whose first line is `# name.py` is that file's whole text."""


def code_blocks(page: Path, lang: str | None = None) -> list[str]:
    """The page's fenced code blocks, in order; only those in `lang` when given."""
    return [
        code for found, code in FENCE.findall(page.read_text()) if lang is None or found == lang
    ]


def files(page: Path) -> dict[str, str]:
    """The page's files: Python blocks that start with `# name.py`, by name."""
    found = {}
    for code in code_blocks(page, "python"):
        if name := FILE_NAME.match(code):
            found[name.group(1)] = code
    return found


def fake_venv(directory: Path) -> None:
    """`.venv/bin/python` and `.venv/bin/agentloop` in `directory`, running this checkout."""
    bin_dir = directory / ".venv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    commands = {
        "python": f'exec "{sys.executable}" "$@"',
        "agentloop": f'exec "{sys.executable}" -m agentloop_graph.cli "$@"',
    }
    for name, line in commands.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{line}\n")
        path.chmod(0o755)


def environment(**extra: str) -> dict[str, str]:
    """This process's environment, with the checkout first on the module path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("AGENTLOOP_MODEL", None)
    env.update(extra)
    return env


def run_bash(
    code: str, cwd: Path, *, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a shell block in `cwd` (stopping at the first failing command); return the result."""
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", code],
        cwd=cwd,
        env=env or environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
