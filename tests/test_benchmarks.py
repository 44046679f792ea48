"""The benchmark scripts run and print every figure they promise, each target with `met` or
`NOT met` beside its figure (timings are not asserted)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def assert_targets(stdout: str, figures: dict[str, str]) -> None:
    """Each figure is printed with its target, and whether it is met."""
    for figure, target in figures.items():
        line = rf"^{re.escape(figure)} +=\s+\d+\.\d+ .*target {re.escape(target)}: (met|NOT met)\)$"
        assert re.search(line, stdout, re.MULTILINE), (figure, stdout)


@pytest.mark.slow
def test_concurrency_benchmark_prints_its_ratios() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/concurrency.py",
            "--runs",
            "20",
            "--rounds",
            "2",
            "--baseline-rounds",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    for figure in (
        "project / floor",
        "baseline / project",
        "baseline / floor",
        "contract floor / floor",
        "project / contract floor",
    ):
        assert re.search(rf"^{figure} +=\s+\d+\.\d+", done.stdout, re.MULTILINE), figure
    assert_targets(
        done.stdout,
        {
            "project / floor": "<= 1.05",
            "baseline / project": ">= 6.5",
            "project / contract floor": "<= 1.02",
        },
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instruction_count_benchmark_prints_its_ratios() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/instructions.py", "--runs", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    for figure in ("project / floor", "contract floor / floor", "project / contract floor"):
        assert re.search(rf"^{figure} +=\s+\d+\.\d+", done.stdout, re.MULTILINE), figure


@pytest.mark.slow
def test_budget_benchmark_prints_calls_and_tokens_per_run() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/budget.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = re.findall(r"^  .+ (\d+) model calls +(\d+) tokens$", done.stdout, re.MULTILINE)
    assert len(rows) == 12
    # A model-call budget of 6 holds every run to at most 6 calls.
    assert all(int(calls) <= 6 for calls, _ in rows[4:8])


@pytest.mark.slow
def test_parallel_benchmark_prints_its_ratios() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/parallel.py",
            "--runs",
            "5",
            "--rounds",
            "1",
            "--latency",
            "0.01",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    figures = [
        f"{shape} N={n} {figure}"
        for n in (1, 5)
        for shape in ("chain", "fan-out", "diamond")
        for figure in ("/ critical path", "floor / critical path", "project / floor")
    ]
    figures += ["fan-out N=1 parallel / seq", "fan-out N=5 parallel / seq"]
    for figure in [*figures, "input chars parallel / seq"]:
        assert re.search(rf"^{re.escape(figure)} +=\s+\d+\.\d+", done.stdout, re.MULTILINE), figure
    targets = {
        f"{shape} N={n} / critical path": "<= 1.15" if n == 1 else "<= 1.3"
        for n in (1, 5)
        for shape in ("chain", "fan-out", "diamond")
    }
    assert_targets(done.stdout, {**targets, "input chars parallel / seq": "<= 1"})


@pytest.mark.slow
def test_handwritten_benchmark_prints_its_ratios() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/handwritten.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    figure = r"\d+\.\d+ \[\d+\.\d+\.\.\d+\.\d+\]"
    cases = [
        "async N=",
        "invoke N=",
        "SQLite invoke",
        "parallel fan-out N=1,",
        "parallel fan-out N=",
    ]
    executor = "executor= N="
    if re.search(rf"^{executor}.* skipped: ", done.stdout, re.MULTILINE) is None:
        cases.append(executor)
    for case in cases:
        # CPU and wall ratios, each a median with its [min..max].
        found = re.search(rf"^{re.escape(case)}.* {figure} +{figure}", done.stdout, re.MULTILINE)
        assert found, case
    verdicts = re.findall(r"^  .+ CPU \d+\.\d+ <= \d\.\d\d: (met|NOT met)$", done.stdout, re.M)
    assert len(verdicts) == len(cases) - 1, done.stdout


@pytest.mark.slow
def test_limits_benchmark_prints_spent_against_each_limit() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/limits.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert re.findall(r"^ +\d+ +\d+ +\d+\.\d\d  (met|NOT met)$", done.stdout, re.M), done.stdout
    assert re.findall(r"^ +\d+\.\d +\d+\.\d\ds +\d+\.\d\ds  (met|NOT met)$", done.stdout, re.M)
    assert re.search(r"^targets: (met|NOT met)$", done.stdout, re.M)
