"""A run killed mid-step resumes from its checkpoints in a new process.

`tests/support/crash_worker.py` runs a 5-step plan (step 1 is adapted) on a shared SQLite file
(sync API) or PostgreSQL database (async API). The test kills it with SIGKILL while step 3's
model call is in flight, resumes the thread in a new worker, and checks the durability
promise: planning and finished steps never run again, at most the interrupted attempt
repeats, the resumed progress stream starts at step 3, and the output equals an
uninterrupted run's apart from timings.

With `--parallel` steps 1-4 run at once (step 5 joins them): the kill lands once step 2 has
completed and step 1's first attempt has failed, while steps 3 and 4 are mid-call. The
resume must run only those two attempts of that wave again, then step 1's adaptation and
retry, then step 5.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.crash_worker import OUTPUT_EVENT, PLAN
from tests.support.databases import fresh_postgres_database
from tests.support.workers import killed_worker

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
WORKER = "tests/support/crash_worker.py"
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


@dataclass(frozen=True)
class Kill:
    """When the first worker is killed, and what its resume must then run again."""

    event: str
    step: int
    """The kill comes `wait` s after the worker printed `event` for `step`..."""
    wait: float
    in_flight: tuple[int, ...]
    """...while these steps' first executor calls are under way."""
    restarts: list[tuple[int, int]]
    """(step, attempt) of each `agentic.step_started` of the resumed run, in order (the
    in-flight steps', which come first, sorted)."""
    latency: float


MID_STEP = Kill(
    "agentic.step_started",
    KILL_IN_STEP,
    LATENCY / 2,
    (KILL_IN_STEP,),
    [(step, 1) for step in range(KILL_IN_STEP, len(PLAN) + 1)],
    LATENCY,
)
MID_WAVE = Kill("agentic.step_complete", 2, 0.5, (3, 4), [(3, 1), (4, 1), (1, 2), (5, 1)], 1.5)
"""A parallel run's first wave (steps 1-4): step 1's first attempt has failed and step 2
has completed, their writes had 0.5 s to be saved, steps 3 and 4 have 1 s of their calls left."""


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


def events_until(
    lines: queue.Queue[str | None], event: str, step: int, stderr: Path
) -> list[dict[str, Any]]:
    """The worker's events up to its first `event` for `step`, within `TIMEOUT`."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT
    while not events or (events[-1]["event"], events[-1].get("step")) != (event, step):
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            pytest.fail(f"no {event} for step {step} within {TIMEOUT:g} s")
        assert line is not None, f"worker ended early:\n{stderr.read_text()}"
        events.append(json.loads(line))
    return events


def start_and_kill(args: list[str], stderr: Path, log: Path, kill: Kill) -> list[dict[str, Any]]:
    """Start a worker, SIGKILL it while `kill.in_flight` steps' model calls are under way;
    the events it printed, those that came before the kill took effect included."""
    with killed_worker(args, stderr) as (worker, lines):
        events = events_until(lines, kill.event, kill.step, stderr)
        time.sleep(kill.wait)
        for step in kill.in_flight:
            assert calls_in(log)[("executor", str(step))] == 1, f"the kill missed step {step}"
    assert worker.returncode == -signal.SIGKILL
    events += [json.loads(line) for line in iter(lines.get_nowait, None)]
    ended = {e["step"] for e in events if e["event"] == "agentic.step_complete"}
    assert not ended & set(kill.in_flight), "an in-flight step ended before the kill"
    return events


def calls_in(log: Path) -> Counter[tuple[str, str]]:
    """Model calls per (node, step) recorded in a worker log; the step is `-` outside steps."""
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter((node, step) for node, step in (line.split("\t") for line in lines))


def comparable(output: dict[str, Any]) -> dict[str, Any]:
    """The output without what legitimately differs between runs: ids and timings."""
    timings = ("duration_ms", "started_ms")
    steps = [{k: v for k, v in step.items() if k not in timings} for step in output["steps"]]
    kept = {k: v for k, v in output.items() if k not in ("task_id", "total_duration_ms")}
    return {**kept, "steps": steps}


def crash_and_resume(
    backend: str, db: str, tmp_path: Path, *mode: str, kill: Kill = MID_STEP
) -> None:
    """Reference run, killed run, resumed run on one backend; the resume's guarantees."""
    reference_log, log = tmp_path / "reference.log", tmp_path / "calls.log"
    reference = run_worker(
        worker_args(backend, db, "reference", reference_log, "--latency=0", *mode),
        tmp_path / "reference.err",
    )
    slow = (*mode, f"--latency={kill.latency}")
    first = start_and_kill(
        worker_args(backend, db, "crashed", log, *slow), tmp_path / "first.err", log, kill
    )
    resumed = run_worker(
        worker_args(backend, db, "crashed", log, "--resume", *slow), tmp_path / "resumed.err"
    )
    expected = reference[-1]["output"]
    output = resumed[-1]["output"]

    assert [e["event"] for e in first].count("agentic.plan_ready") == 1
    assert output["task_id"] == first[0]["task_id"]
    assert comparable(output) == comparable(expected)
    assert expected["status"] == "completed"
    assert expected["plan"] == list(PLAN)
    assert [s["status"] for s in expected["steps"]] == ["adapted"] + ["completed"] * 4
    assert [s["step_num"] for s in expected["steps"]] == list(range(1, len(PLAN) + 1))
    if "--parallel" in mode:
        assert expected["dependencies"] == [[], [], [], [], [1, 2, 3, 4]]

    progress = resumed[:-1]
    assert "agentic.plan_ready" not in [e["event"] for e in progress]
    started = [(e["step"], e["attempt"]) for e in progress if e["event"] == "agentic.step_started"]
    interrupted = len(kill.in_flight)  # they start again first, at once: in any order
    assert sorted(started[:interrupted]) + started[interrupted:] == kill.restarts
    assert all(e["task_id"] == output["task_id"] for e in progress)

    assert calls_in(reference_log) == UNINTERRUPTED_CALLS
    calls = calls_in(log)
    assert not UNINTERRUPTED_CALLS - calls, "a model call is missing"
    repeated = calls - UNINTERRUPTED_CALLS
    # Only interrupted attempts run again, once at most: finished ones (failed ones too) never.
    assert repeated <= Counter(("executor", str(step)) for step in kill.in_flight), repeated


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


def test_sqlite_parallel_run_killed_mid_wave_resumes_in_a_new_process(tmp_path: Path) -> None:
    """Sync API, steps running at once: only the wave's unfinished attempts run again."""
    crash_and_resume(
        "sqlite", str(tmp_path / "checkpoints.db"), tmp_path, "--parallel", kill=MID_WAVE
    )


def test_postgres_parallel_run_killed_mid_wave_resumes_in_a_new_process(
    postgres_url: str, tmp_path: Path
) -> None:
    """Async API, steps running at once: only the wave's unfinished attempts run again."""
    crash_and_resume("postgres", postgres_url, tmp_path, "--parallel", kill=MID_WAVE)
