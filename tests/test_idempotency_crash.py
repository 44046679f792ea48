"""A tool's side effect happens exactly once, even when the run is killed right after it.

`tests/support/idempotent_worker.py` runs a 4-step plan whose every step calls the `record_effect`
tool once, on a SQLite file (sync API) or a PostgreSQL database (async API). The test kills
the worker with SIGKILL during step 3: after the tool has applied step 3's effect, while the
model's answer that would end the step is still in flight. A new worker resumes the thread.
The resumed attempt repeats step 3's tool call with the same idempotency key
(`<task_id>:3:1:1`), so the tool skips it: the effects file holds one line per step, the call
log shows step 3 called twice (once per process) and applied once, and the run completes.

Each backend runs twice: with `durability="sync"` (every checkpoint committed before the next
step starts), where the resume repeats exactly the interrupted attempt, and with LangGraph's
default (`async`, checkpoints written while the next step runs), where the kill may also lose
the last finished steps' checkpoints (seen on PostgreSQL): the resume then repeats those steps
too, and their tool calls, carrying their original keys, are skipped as well.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import fresh_postgres_database
from tests.support.idempotent_worker import (
    CALLS,
    EFFECTS,
    MODEL_CALLS,
    OUTPUT_EVENT,
    PLAN,
    SLOW_STEP,
    effect_of,
)
from tests.support.workers import killed_worker

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0
"""Upper bound for any one worker, so a hang fails the test instead of the suite."""
SLOW = 1.0
"""Seconds the model takes to end step 3 after its tool call: the kill lands in them."""


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


def worker_args(backend: str, db: str, directory: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.support.idempotent_worker",
        f"--backend={backend}",
        f"--db={db}",
        "--thread=fete",
        f"--dir={directory}",
        f"--slow={SLOW}",
        *extra,
    ]


def rows(path: Path) -> list[list[str]]:
    """A TSV log's rows (none when the file does not exist yet)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [line.split("\t") for line in text.splitlines()]


def wait_for(condition: Callable[[], bool], what: str, worker: subprocess.Popen[str]) -> None:
    """Poll `condition` until it holds, failing after `TIMEOUT` or if the worker exits."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if worker.poll() is not None:
            pytest.fail(f"the worker exited ({worker.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {TIMEOUT:g} s")
        time.sleep(0.01)


def start_and_kill(args: list[str], directory: Path) -> tuple[int, list[dict[str, Any]]]:
    """Start a worker and SIGKILL it inside step 3's slow model call, after its tool call.

    Returns the worker's pid and every event it printed before it died.
    """
    stderr = directory / "first.err"
    slow_call = ["executor", str(SLOW_STEP), "2"]
    with killed_worker(args, stderr) as (worker, lines):
        try:
            wait_for(lambda: slow_call in rows(directory / MODEL_CALLS), "slow call", worker)
        except BaseException:
            print(stderr.read_text(), file=sys.stderr)
            raise
    assert worker.returncode == -signal.SIGKILL
    events: list[dict[str, Any]] = []
    while (line := lines.get_nowait()) is not None:
        events.append(json.loads(line))
    return worker.pid, events


def resume(args: list[str], directory: Path) -> tuple[int, list[dict[str, Any]]]:
    """Resume the thread in a new worker, to the end; its pid and events, the output last."""
    stderr = directory / "resumed.err"
    with (
        stderr.open("w") as errors,
        subprocess.Popen(
            [*args, "--resume"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
        ) as worker,
    ):
        try:
            stdout, _ = worker.communicate(timeout=TIMEOUT)
        finally:
            if worker.returncode is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)
    assert worker.returncode == 0, stderr.read_text()
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert events and events[-1]["event"] == OUTPUT_EVENT, stderr.read_text()
    return worker.pid, events


def step_events(events: list[dict[str, Any]], name: str) -> list[int]:
    return [e["step"] for e in events if e["event"] == name]


def kill_after_the_effect_and_resume(
    backend: str, db: str, directory: Path, durability: str | None
) -> None:
    args = worker_args(backend, db, directory)
    if durability is not None:
        args.append(f"--durability={durability}")
    first_pid, first = start_and_kill(args, directory)
    # The kill landed after step 3's side effect and before the step ended.
    assert step_events(first, "agentic.step_complete") == list(range(1, SLOW_STEP))
    assert step_events(first, "agentic.step_started")[-1] == SLOW_STEP
    effects_at_kill = rows(directory / EFFECTS)
    assert len(effects_at_kill) == SLOW_STEP

    resumed_pid, resumed = resume(args, directory)
    output = resumed[-1]["output"]
    task_id = output["task_id"]
    assert task_id == first[0]["task_id"]  # the plan, and so the keys, survived the kill

    # The run completes, every step on its first attempt, the interrupted one included.
    assert output["status"] == "completed"
    assert output["plan"] == list(PLAN)
    assert [(s["step_num"], s["status"], s["attempts"]) for s in output["steps"]] == [
        (step, "completed", 1) for step in range(1, len(PLAN) + 1)
    ]
    progress = resumed[:-1]
    assert "agentic.plan_ready" not in [e["event"] for e in progress]
    started = step_events(progress, "agentic.step_started")
    resumed_at = started[0]
    assert started == list(range(resumed_at, len(PLAN) + 1))
    if durability == "sync":
        # Every finished step's checkpoint was committed before the next step began: only
        # the interrupted attempt runs again.
        assert resumed_at == SLOW_STEP
    else:
        # Under `async` a finished step's checkpoint is written while the next step runs,
        # so the kill may also lose the last finished steps: the resume repeats them too.
        assert 1 <= resumed_at <= SLOW_STEP
    repeated = range(resumed_at, SLOW_STEP + 1)

    # Exactly one effect per step, under a key of the step's first attempt naming the call.
    effects = rows(directory / EFFECTS)
    keys = [key for key, _ in effects]
    assert [key.rsplit(":", 1)[0] for key in keys] == [
        f"{task_id}:{step}:1" for step in range(1, len(PLAN) + 1)
    ]
    assert effects == [[key, effect_of(step)] for step, key in enumerate(keys, 1)]
    assert effects[:SLOW_STEP] == effects_at_kill

    # Step 3's tool was called twice, once by each process, with the same key; applied once.
    # (So was any finished step the resume repeated.)
    calls = rows(directory / CALLS)
    assert calls == [
        *([key, str(first_pid), "applied"] for key in keys[:SLOW_STEP]),
        *([keys[step - 1], str(resumed_pid), "skipped"] for step in repeated),
        *([key, str(resumed_pid), "applied"] for key in keys[SLOW_STEP:]),
    ]

    # Planning never ran again; the repeated attempts made their whole conversation again.
    model_calls = Counter(tuple(row) for row in rows(directory / MODEL_CALLS))
    assert model_calls == Counter(
        {
            ("planner", "-", "1"): 1,
            **{
                ("executor", str(step), turn): 2 if step in repeated else 1
                for step in range(1, len(PLAN) + 1)
                for turn in ("1", "2")
            },
            ("summariser", "-", "1"): 1,
        }
    )


DURABILITY = pytest.mark.parametrize("durability", ["sync", None], ids=["sync", "default"])
"""`sync` commits each checkpoint before the next step; LangGraph's default (`async`) does not."""


@DURABILITY
def test_sqlite_effect_applied_once_across_a_kill(durability: str | None, tmp_path: Path) -> None:
    """Sync API on a SQLite file: the repeated tool call is recognised by its key."""
    db = str(tmp_path / "checkpoints.db")
    kill_after_the_effect_and_resume("sqlite", db, tmp_path, durability)


@DURABILITY
def test_postgres_effect_applied_once_across_a_kill(
    durability: str | None, postgres_url: str, tmp_path: Path
) -> None:
    """Async API on PostgreSQL: the repeated tool call is recognised by its key."""
    kill_after_the_effect_and_resume("postgres", postgres_url, tmp_path, durability)
