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


def printed(*args: str, timeout: float = 300) -> str:
    """What `python <args>` prints, run from the repository's root (it must succeed)."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return done.stdout


def assert_targets(stdout: str, figures: dict[str, str]) -> None:
    """Each figure is printed with its target, and whether it is met."""
    for figure, target in figures.items():
        line = rf"^{re.escape(figure)} +=\s+\d+\.\d+ .*target {re.escape(target)}: (met|NOT met)\)$"
        assert re.search(line, stdout, re.MULTILINE), (figure, stdout)


@pytest.mark.slow
def test_concurrency_benchmark_prints_its_ratios() -> None:
    stdout = printed(
        "benchmarks/concurrency.py", "--runs", "20", "--rounds", "2", "--baseline-rounds", "1"
    )
    for figure in (
        "project / floor",
        "baseline / project",
        "baseline / floor",
        "contract floor / floor",
        "project / contract floor",
    ):
        assert re.search(rf"^{figure} +=\s+\d+\.\d+", stdout, re.MULTILINE), figure
    assert_targets(
        stdout,
        {
            "project / floor": "<= 1.05",
            "baseline / project": ">= 6.5",
            "project / contract floor": "<= 1.02",
        },
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instruction_count_benchmark_prints_its_ratios() -> None:
    stdout = printed("benchmarks/instructions.py", "--runs", "3", timeout=900)
    for figure in ("project / floor", "contract floor / floor", "project / contract floor"):
        assert re.search(rf"^{figure} +=\s+\d+\.\d+", stdout, re.MULTILINE), figure


@pytest.mark.slow
def test_budget_benchmark_prints_calls_and_tokens_per_run() -> None:
    stdout = printed("benchmarks/budget.py")
    rows = re.findall(r"^  .+ (\d+) model calls +(\d+) tokens$", stdout, re.MULTILINE)
    assert len(rows) == 12
    # A model-call budget of 6 holds every run to at most 6 calls.
    assert all(int(calls) <= 6 for calls, _ in rows[4:8])


@pytest.mark.slow
def test_parallel_benchmark_prints_its_ratios() -> None:
    stdout = printed("benchmarks/parallel.py", "--runs", "5", "--rounds", "1", "--latency", "0.01")
    figures = [
        f"{shape} N={n} {figure}"
        for n in (1, 5)
        for shape in ("chain", "fan-out", "diamond")
        for figure in ("/ critical path", "floor / critical path", "project / floor")
    ]
    figures += ["fan-out N=1 parallel / seq", "fan-out N=5 parallel / seq"]
    for figure in [*figures, "input chars parallel / seq"]:
        assert re.search(rf"^{re.escape(figure)} +=\s+\d+\.\d+", stdout, re.MULTILINE), figure
    targets = {
        f"{shape} N={n} / critical path": "<= 1.15" if n == 1 else "<= 1.3"
        for n in (1, 5)
        for shape in ("chain", "fan-out", "diamond")
    }
    assert_targets(stdout, {**targets, "input chars parallel / seq": "<= 1"})


@pytest.mark.slow
def test_handwritten_benchmark_prints_its_ratios() -> None:
    stdout = printed("benchmarks/handwritten.py", "--quick")
    figure = r"\d+\.\d+ \[\d+\.\d+\.\.\d+\.\d+\]"
    cases = [
        "async N=",
        "invoke N=",
        "SQLite invoke",
        "parallel fan-out N=1,",
        "parallel fan-out N=",
        "executor= N=",
    ]
    for case in cases:
        # CPU and wall ratios, each a median with its [min..max].
        found = re.search(rf"^{re.escape(case)}.* {figure} +{figure}", stdout, re.MULTILINE)
        assert found, case
    verdicts = re.findall(r"^  .+ CPU \d+\.\d+ <= \d\.\d\d: (met|NOT met)$", stdout, re.M)
    assert len(verdicts) == len(cases) - 1, stdout


@pytest.mark.slow
def test_handwritten_benchmark_counts_instructions() -> None:
    stdout = printed("benchmarks/handwritten.py", "--quick", "--instructions", "--case", "invoke N")
    # One case: instructions a run of each side (callgrind counts them), and their ratio.
    rows = re.findall(r"^invoke N=\d+, 5 steps +([\d,]+) +([\d,]+) +(\d\.\d{3})$", stdout, re.M)
    assert len(rows) == 1, stdout
    project, mine, ratio = (float(figure.replace(",", "")) for figure in rows[0])
    assert mine > 1_000_000 and abs(project / mine - ratio) < 0.001, stdout
    verdict = r"^  invoke N=.+ instructions \d\.\d{3} <= 1\.10: (met|NOT met)$"
    assert re.search(verdict, stdout, re.M), stdout


@pytest.mark.slow
def test_limits_benchmark_prints_spent_against_each_limit() -> None:
    stdout = printed("benchmarks/limits.py", "--quick")
    assert re.findall(r"^ +\d+ +\d+ +\d+\.\d\d  (met|NOT met)$", stdout, re.M), stdout
    assert re.findall(r"^ +\d+\.\d +\d+\.\d\ds +\d+\.\d\ds  (met|NOT met)$", stdout, re.M)
    assert re.search(r"^targets: (met|NOT met)$", stdout, re.M)
