"""One run per thread across processes, on a SQLite file and on PostgreSQL.

`tests/support/lease_worker.py` runs `tests/support/crash_worker.py`'s 5-step plan (step 1 is
adapted) and logs every model call it makes. Two workers are released at the same instant (the
test creates their `--go` file once both are ready); one uses the blocking API and the other
the async one, so both kinds of hold are the same lock:

- two workers resume one thread whose worker was SIGKILLed mid-step: exactly one runs steps
  3-5, the other is refused with `ThreadBusyError` and makes no model call;
- two workers send a new task to one fresh thread: one runs it, the other is refused and
  makes no model call;
- a worker SIGKILLed while it holds the thread does not keep it: a resume from this process
  right after the kill runs.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver

from agentloop_graph import create_agent_loop
from tests.support.crash_worker import OUTPUT_EVENT, PLAN, scripted_model
from tests.support.databases import fresh_postgres_database
from tests.support.lease_worker import BUSY_EVENT, READY_EVENT
from tests.support.workers import killed_worker

pytestmark = pytest.mark.slow

BACKENDS = ["sqlite", "postgres"]
TIMEOUT = 60.0
"""Upper bound for any one worker, so a hang fails the test instead of the suite."""
LATENCY = 0.3
"""Seconds per executor answer: each run holds its thread for a second or more."""
KILL_IN_STEP = 3
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
AFTER_THE_KILL = Counter(
    {
        **{("executor", str(step)): 1 for step in range(KILL_IN_STEP, len(PLAN) + 1)},
        ("summariser", "-"): 1,
    }
)
"""Model calls of a resume after a kill in step 3: steps 3-5 and the summary."""

Lines = queue.Queue[str | None]


Database = tuple[str, str]
"""A backend and its database: a file or a conninfo."""


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database with its tables made (workers starting together would race to make them)."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            made: Database = ("sqlite", str(tmp_path / "checkpoints.db"))
        else:
            made = ("postgres", stack.enter_context(fresh_postgres_database()))
        with blocking_saver(made) as saver:
            saver.setup()
        yield made


def blocking_saver(database: Database) -> contextlib.AbstractContextManager[Any]:
    """The blocking checkpointer of `database`, to open with `with`."""
    backend, db = database
    if backend == "sqlite":
        return SqliteSaver.from_conn_string(db)
    return PostgresSaver.from_conn_string(db)


def worker_args(
    database: Database, api: str, log: Path, *extra: str, thread: str = "shed"
) -> list[str]:
    backend, db = database
    return [
        sys.executable,
        "-m",
        "tests.support.lease_worker",
        f"--backend={backend}",
        f"--api={api}",
        f"--db={db}",
        f"--thread={thread}",
        f"--log={log}",
        f"--latency={LATENCY}",
        *extra,
    ]


def calls_in(log: Path) -> Counter[tuple[str, str]]:
    """Model calls per (node, step) in a worker's log; none if it never made one."""
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter((node, step) for node, step in (line.split("\t") for line in lines))


def events_until(
    lines: Lines, done: Callable[[dict[str, Any]], bool], stderr: Path
) -> list[dict[str, Any]]:
    """A worker's events up to the first that is `done` (or its last), within `TIMEOUT`."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT
    while not events or not done(events[-1]):
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            pytest.fail(f"the worker hung:\n{stderr.read_text()}")
        if line is None:
            assert events, f"the worker printed nothing:\n{stderr.read_text()}"
            return events
        events.append(json.loads(line))
    return events


def at_once(*workers: list[str], directory: Path) -> list[list[dict[str, Any]]]:
    """Start the workers, release them together once all are ready; the events each printed
    after "ready"."""
    go = directory / "go"
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(killed_worker([*args, f"--go={go}"], directory / f"{n}.err"))
            for n, args in enumerate(workers)
        ]
        for n, (_, lines) in enumerate(started):
            events_until(lines, lambda e: e["event"] == READY_EVENT, directory / f"{n}.err")
        go.touch()
        # To the end of their output: the workers have exited by then.
        events = [
            events_until(lines, lambda _: False, directory / f"{n}.err")
            for n, (_, lines) in enumerate(started)
        ]
    for n, (worker, _) in enumerate(started):
        assert worker.returncode == 0, (directory / f"{n}.err").read_text()
    return events


def killed_in_step_3(args: list[str], stderr: Path) -> None:
    """Run a worker until step 3 starts and SIGKILL it, holding the thread."""
    with killed_worker(args, stderr) as (worker, lines):
        events_until(
            lines,
            lambda e: (e["event"], e.get("step")) == ("agentic.step_started", KILL_IN_STEP),
            stderr,
        )
    assert worker.returncode == -signal.SIGKILL


def one_ran_one_refused(
    outcomes: list[list[dict[str, Any]]], logs: list[Path], thread: str = "shed"
) -> tuple[list[dict[str, Any]], Counter[tuple[str, str]]]:
    """The winner's events and model calls, after checking the loser did nothing."""
    ends = [events[-1]["event"] for events in outcomes]
    assert sorted(ends) == sorted([OUTPUT_EVENT, BUSY_EVENT]), outcomes
    winner, loser = (0, 1) if ends[0] == OUTPUT_EVENT else (1, 0)
    refusal = outcomes[loser]
    assert [e["event"] for e in refusal] == [BUSY_EVENT]  # after "ready": nothing ran
    assert refusal[-1]["error"].startswith(f"thread '{thread}' is in use by another run")
    assert calls_in(logs[loser]) == Counter()
    assert outcomes[winner][-1]["output"]["status"] == "completed"
    return outcomes[winner], calls_in(logs[winner])


def test_two_processes_resuming_a_killed_run_at_once_one_runs_the_other_is_refused(
    database: Database, tmp_path: Path
) -> None:
    """The bug: both resumed and ran steps 3-5. Now one does; the other does nothing."""
    killed_in_step_3(worker_args(database, "async", tmp_path / "killed.log"), tmp_path / "k.err")
    logs = [tmp_path / "sync.log", tmp_path / "async.log"]
    outcomes = at_once(
        worker_args(database, "sync", logs[0], "--resume"),
        worker_args(database, "async", logs[1], "--resume"),
        directory=tmp_path,
    )
    events, calls = one_ran_one_refused(outcomes, logs)
    assert calls == AFTER_THE_KILL
    started = [e["step"] for e in events if e["event"] == "agentic.step_started"]
    assert started == list(range(KILL_IN_STEP, len(PLAN) + 1))
    assert list(tmp_path.glob("*.lock")) == []  # the killed worker's lock file went too


def test_two_processes_sending_a_new_task_to_one_fresh_thread_one_runs(
    database: Database, tmp_path: Path
) -> None:
    """The bug: both read "no unfinished run", then both wrote. Now one is refused."""
    logs = [tmp_path / "sync.log", tmp_path / "async.log"]
    outcomes = at_once(
        worker_args(database, "sync", logs[0]),
        worker_args(database, "async", logs[1]),
        directory=tmp_path,
    )
    events, calls = one_ran_one_refused(outcomes, logs)
    assert calls == UNINTERRUPTED_CALLS
    assert events[-1]["output"]["plan"] == list(PLAN)


def test_a_worker_killed_holding_the_thread_does_not_block_a_resume(
    database: Database, tmp_path: Path
) -> None:
    killed_in_step_3(worker_args(database, "sync", tmp_path / "killed.log"), tmp_path / "k.err")
    log = tmp_path / "resumed.log"
    config: RunnableConfig = {"configurable": {"thread_id": "shed"}}
    with blocking_saver(database) as saver:
        graph = create_agent_loop(scripted_model(log, 0), checkpointer=saver)
        output = graph.invoke(None, config)  # at once: no ThreadBusyError
    assert output["status"] == "completed"
    assert calls_in(log) == AFTER_THE_KILL
