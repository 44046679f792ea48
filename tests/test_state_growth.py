"""The state-growth benchmark runs, prints its figures, and the history is stored as deltas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_state_growth_benchmark_prints_bytes_per_step_and_ratio() -> None:
    done = subprocess.run(
        # --check: exit status 1 when per-step bytes grow more than 3x with the plan.
        [sys.executable, "benchmarks/state_growth.py", "--steps", "5", "20", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for figure in (
        "rows/step",
        "file/step",
        "ratio 20/5",
        "target rows <= 3: met)",
        "writes.steps",
    ):
        assert figure in done.stdout
