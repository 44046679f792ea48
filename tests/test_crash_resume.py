"""A run killed mid-step resumes from its checkpoints in a new process.

`tests/crash_worker.py` runs a 5-step plan (step 1 is adapted) on a shared SQLite file
(sync API) or PostgreSQL database (async API). The test kills it with SIGKILL while step 3's
model call is in flight, resumes the thread in a new worker, and checks the durability
promise: planning and finished steps never run again, at most the interrupted attempt
repeats, the resumed progress stream starts at step 3, and the output equals an
uninterrupted run's apart from timings.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.crash_worker import OUTPUT_EVENT, PLAN
from tests.databases import fresh_postgres_database
from tests.workers import killed_worker

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
WORKER = "tests/crash_worker.py"
KILL_IN_STEP = 3
"""The step whose model call the kill interrupts; steps before it have finished."""
LATENCY = 0.5
"""Seconds per executor answer; the kill lands halfway through step 3's."""
UNINTERRUPTED_CALLS = Counter(
    {
        ("planner", "-"): 1,
        ("executor", "1"): 2,
        ("adapter", "1"): 1,
        **{("executor", str(step)): 1 for step in range(2, len(PLAN) + 1)},
        ("summariser", "-"): 1,
    }
)
"""Model calls per (node, step) of an uninterrupted run: step 1 takes two attempts."""
TIMEOUT = 60.0
"""Upper bound for any one worker, so a hang fails the test instead of the suite."""


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


def worker_args(backend: str, db: str, thread: str, log: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        WORKER,
        f"--backend={backend}",
        f"--db={db}",
        f"--thread={thread}",
        f"--log={log}",
        *extra,
    ]


def events_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def run_worker(args: list[str], stderr: Path) -> list[dict[str, Any]]:
    """Run a worker to the end; its events, the output event last."""
    with stderr.open("w") as errors:
        done = subprocess.run(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True, timeout=TIMEOUT
        )
    assert done.returncode == 0, stderr.read_text()
    events = events_of(done.stdout)
    assert events[-1]["event"] == OUTPUT_EVENT
    return events


def events_until_step_starts(
    lines: queue.Queue[str | None], step: int, stderr: Path
) -> list[dict[str, Any]]:
    """The worker's events up to its first attempt at `step`, within `TIMEOUT`."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT
    while not events or (events[-1]["event"], events[-1].get("step")) != (
        "agentic.step_started",
        step,
    ):
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            pytest.fail(f"step {step} did not start within {TIMEOUT:g} s")
        assert line is not None, f"worker ended early:\n{stderr.read_text()}"
        events.append(json.loads(line))
    return events


def start_and_kill(args: list[str], stderr: Path, log: Path) -> list[dict[str, Any]]:
    """Start a worker, SIGKILL it halfway through step 3's model call; the events it printed."""
    with killed_worker(args, stderr) as (worker, lines):
        events = events_until_step_starts(lines, KILL_IN_STEP, stderr)
        time.sleep(LATENCY / 2)
        assert calls_in(log)[("executor", str(KILL_IN_STEP))] == 1, "the kill missed step 3"
    assert worker.returncode == -signal.SIGKILL
    return events


def calls_in(log: Path) -> Counter[tuple[str, str]]:
    """Model calls per (node, step) recorded in a worker log; the step is `-` outside steps."""
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter((node, step) for node, step in (line.split("\t") for line in lines))


def comparable(output: dict[str, Any]) -> dict[str, Any]:
    """The output without what legitimately differs between runs: ids and timings."""
    steps = [{k: v for k, v in step.items() if k != "duration_ms"} for step in output["steps"]]
    kept = {k: v for k, v in output.items() if k not in ("task_id", "total_duration_ms")}
    return {**kept, "steps": steps}


def crash_and_resume(backend: str, db: str, tmp_path: Path, *mode: str) -> None:
    """Reference run, killed run, resumed run on one backend; the resume's guarantees."""
    reference_log, log = tmp_path / "reference.log", tmp_path / "calls.log"
    reference = run_worker(
        worker_args(backend, db, "reference", reference_log, "--latency=0", *mode),
        tmp_path / "reference.err",
    )
    first = start_and_kill(
        worker_args(backend, db, "crashed", log, *mode),
        tmp_path / "first.err",
        log,
    )
    resumed = run_worker(
        worker_args(backend, db, "crashed", log, "--resume", *mode), tmp_path / "resumed.err"
    )
    expected = reference[-1]["output"]
    output = resumed[-1]["output"]

    assert [e["event"] for e in first].count("agentic.plan_ready") == 1
    assert output["task_id"] == first[0]["task_id"]
    assert comparable(output) == comparable(expected)
    assert expected["status"] == "completed"
    assert expected["plan"] == list(PLAN)
    assert [s["status"] for s in expected["steps"]] == ["adapted"] + ["completed"] * 4

    progress = resumed[:-1]
    assert "agentic.plan_ready" not in [e["event"] for e in progress]
    started = [e["step"] for e in progress if e["event"] == "agentic.step_started"]
    assert started == list(range(KILL_IN_STEP, len(PLAN) + 1))
    assert all(e["task_id"] == output["task_id"] for e in progress)

    assert calls_in(reference_log) == UNINTERRUPTED_CALLS
    calls = calls_in(log)
    assert not UNINTERRUPTED_CALLS - calls, "a model call is missing"
    repeated = calls - UNINTERRUPTED_CALLS
    assert repeated in (Counter(), Counter({("executor", str(KILL_IN_STEP)): 1})), repeated


def test_sqlite_run_killed_mid_step_resumes_in_a_new_process(tmp_path: Path) -> None:
    """Sync API on a SQLite file: the kill costs at most the interrupted attempt."""
    crash_and_resume("sqlite", str(tmp_path / "checkpoints.db"), tmp_path)


def test_postgres_run_killed_mid_step_resumes_in_a_new_process(
    postgres_url: str, tmp_path: Path
) -> None:
    """Async API on PostgreSQL: the kill costs at most the interrupted attempt."""
    crash_and_resume("postgres", postgres_url, tmp_path)


def test_sqlite_nested_run_killed_mid_step_resumes_in_a_new_process(tmp_path: Path) -> None:
    """Nested in a checkpointed parent with the default durability: the same promise."""
    crash_and_resume("sqlite", str(tmp_path / "checkpoints.db"), tmp_path, "--nested")


def test_postgres_nested_run_killed_mid_step_resumes_in_a_new_process(
    postgres_url: str, tmp_path: Path
) -> None:
    """Nested in a checkpointed parent with the default durability: the same promise."""
    crash_and_resume("postgres", postgres_url, tmp_path, "--nested")
