"""A run killed inside an agent's tool call resumes inside the agent, in a new process.

`tests/support/agent_crash_worker.py` runs a 3-step plan whose steps a `create_agent` agent
does, each in three model calls and two tool calls (`measure`, quick; then `saw`). The test
SIGKILLs it while step 2's `saw` sleeps, resumes the thread in a new worker (SQLite through
the sync API, PostgreSQL through the async one), and checks that the agent's checkpoints,
kept under the loop's thread, carry the resume: planning, step 1 and step 2's finished model
and tool calls never run again; only the killed `saw` call does. The output equals an
uninterrupted run's apart from timings, the usage included: the agent's model calls made
before the kill are counted from the messages its checkpoint holds.
"""

from __future__ import annotations

import json
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

from tests.support.agent_crash_worker import PLAN, SLOW_STEP, TASK
from tests.support.crash_worker import OUTPUT_EVENT
from tests.support.databases import fresh_postgres_database
from tests.support.workers import killed_worker

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0
"""Upper bound for any one worker, so a hang fails the test instead of the suite."""
SLOW = 40.0
"""Seconds step 2's `saw` sleeps in the killed worker: far longer than the kill takes."""
SETTLE = 2.0
"""Seconds between the cue and the kill, for the checkpoints LangGraph writes in the
background (its default `async` durability) to land: the agent's steps before `saw`."""
PER_STEP = Counter({"model 1": 1, "measure": 1, "model 2": 1, "saw": 1, "model 3": 1})
"""The model and tool calls the agent makes for one step."""
UNINTERRUPTED = Counter(
    {
        ("planner", "-"): 1,
        **{
            (what, str(step)): n for step in range(1, len(PLAN) + 1) for what, n in PER_STEP.items()
        },
        ("summariser", "-"): 1,
    }
)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


def worker_args(backend: str, db: str, thread: str, log: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.support.agent_crash_worker",
        f"--backend={backend}",
        f"--db={db}",
        f"--thread={thread}",
        f"--log={log}",
        *extra,
    ]


def calls_in(log: Path) -> Counter[tuple[str, str]]:
    """Model and tool calls per (what, step) in a worker's log."""
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return Counter((what, step) for what, step in (line.split("\t") for line in lines))


def run_worker(args: list[str], stderr: Path) -> list[dict[str, Any]]:
    """Run a worker to the end; its events, the output event last."""
    with stderr.open("w") as errors:
        done = subprocess.run(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True, timeout=TIMEOUT
        )
    assert done.returncode == 0, stderr.read_text()
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert events and events[-1]["event"] == OUTPUT_EVENT
    return events


def start_and_kill(args: list[str], stderr: Path, log: Path) -> list[dict[str, Any]]:
    """Start a worker and SIGKILL it inside step 2's `saw` call; the events it printed."""
    cue = ("saw", str(SLOW_STEP))
    with killed_worker(args, stderr) as (worker, lines):
        deadline = time.monotonic() + TIMEOUT
        while not calls_in(log)[cue]:
            assert worker.poll() is None, f"the worker ended early:\n{stderr.read_text()}"
            assert time.monotonic() < deadline, f"no {cue} call within {TIMEOUT:g} s"
            time.sleep(0.05)
        time.sleep(SETTLE)
    assert worker.returncode == -signal.SIGKILL
    return [json.loads(line) for line in iter(lines.get_nowait, None)]


def comparable(output: dict[str, Any]) -> dict[str, Any]:
    """The output without ids, timings and usage."""
    dropped = ("duration_ms", "started_ms", "usage")
    steps = [{k: v for k, v in step.items() if k not in dropped} for step in output["steps"]]
    kept = {k: v for k, v in output.items() if k not in ("task_id", "usage")}
    return {**kept, "steps": steps}


@dataclass(frozen=True)
class Crash:
    """What the three workers of one backend did: a reference run, a run killed in step 2's
    `saw`, and its resume."""

    reference: list[dict[str, Any]]
    reference_calls: Counter[tuple[str, str]]
    killed: list[dict[str, Any]]
    calls_at_kill: Counter[tuple[str, str]]
    resumed: list[dict[str, Any]]
    calls: Counter[tuple[str, str]]
    """Both processes' calls on the killed thread."""

    @property
    def expected(self) -> dict[str, Any]:
        return self.reference[-1]["output"]

    @property
    def output(self) -> dict[str, Any]:
        return self.resumed[-1]["output"]


def crash_and_resume(backend: str, db: str, directory: Path) -> Crash:
    reference_log, log = directory / "reference.log", directory / "calls.log"
    reference = run_worker(
        worker_args(backend, db, "reference", reference_log), directory / "reference.err"
    )
    killed = start_and_kill(
        worker_args(backend, db, "crashed", log, f"--slow={SLOW}"), directory / "first.err", log
    )
    at_kill = calls_in(log)
    resumed = run_worker(
        worker_args(backend, db, "crashed", log, "--resume"), directory / "resumed.err"
    )
    return Crash(reference, calls_in(reference_log), killed, at_kill, resumed, calls_in(log))


@pytest.fixture(scope="module")
def sqlite_crash(tmp_path_factory: pytest.TempPathFactory) -> Crash:
    """Sync API on a SQLite file; one crash serves the tests that read it."""
    directory = tmp_path_factory.mktemp("sqlite")
    return crash_and_resume("sqlite", str(directory / "checkpoints.db"), directory)


def check_resume(crash: Crash) -> None:
    """The kill's cost: the killed tool call, and nothing else."""
    expected, output = crash.expected, crash.output
    assert crash.reference_calls == UNINTERRUPTED
    assert expected["status"] == "completed" and expected["task"] == TASK
    assert [s["agent"] for s in expected["steps"]] == ["carpenter"] * len(PLAN)
    # The kill landed in step 2's `saw`, after step 1 had ended.
    done = [e["step"] for e in crash.killed if e["event"] == "agentic.step_complete"]
    assert done == [1]
    cut = crash.calls_at_kill
    assert cut[("saw", str(SLOW_STEP))] == 1 and not cut[("model 3", str(SLOW_STEP))]

    assert output["task_id"] == crash.killed[0]["task_id"]
    assert comparable(output) == comparable(expected)
    progress = crash.resumed[:-1]
    assert "agentic.plan_ready" not in [e["event"] for e in progress]
    started = [(e["step"], e["attempt"]) for e in progress if e["event"] == "agentic.step_started"]
    assert started == [(2, 1), (3, 1)]  # step 2's attempt goes on; step 1 stays done

    # The agent resumed from its own checkpoint: of all its calls, only the killed one ran
    # again. Planning, step 1, and step 2's model calls and `measure` did not.
    assert crash.calls - UNINTERRUPTED == Counter({("saw", str(SLOW_STEP)): 1})
    assert not UNINTERRUPTED - crash.calls


def test_sqlite_run_killed_in_an_agents_tool_call_resumes_inside_the_agent(
    sqlite_crash: Crash,
) -> None:
    """Sync API on a SQLite file."""
    check_resume(sqlite_crash)


def test_postgres_run_killed_in_an_agents_tool_call_resumes_inside_the_agent(
    postgres_url: str, tmp_path: Path
) -> None:
    """Async API on PostgreSQL."""
    check_resume(crash_and_resume("postgres", postgres_url, tmp_path))


def test_usage_after_a_resume_counts_the_agents_calls_made_before_the_kill(
    sqlite_crash: Crash,
) -> None:
    step = SLOW_STEP - 1
    assert (
        sqlite_crash.output["steps"][step]["usage"] == sqlite_crash.expected["steps"][step]["usage"]
    )
