"""Durable runs of the `agentloop` command: where `--db` keeps them, and what each thread's
run is at.

A run's command-line options travel with it: they go in its config's metadata as one JSON
string under `OPTIONS_KEY`, and LangGraph copies a config's scalar metadata into every
checkpoint it writes, so `agentloop resume` finds them in the thread's last checkpoint.
LangChain, LangGraph and the database drivers load only when a function here needs them.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

OPTIONS_KEY = "agentloop_cli"
ENDED = ("completed", "partial", "failed", "cancelled")
"""The statuses of a run that has finished."""
WAITING = "waiting for approval"
UNFINISHED = "unfinished"
TASK_LISTED = 60
"""Characters of a task the listing shows."""


def is_postgres(db: str) -> bool:
    """Whether `--db` names a PostgreSQL database (a URL) rather than a SQLite file."""
    return db.startswith(("postgresql://", "postgres://"))


@contextlib.contextmanager
def open_checkpointer(db: str) -> Iterator[Any]:
    """A checkpointer keeping runs in `db`, its tables made if it is new; closed on leaving.

    Raises:
        ImportError: The checkpointer's package is not installed.
        Exception: The database cannot be opened (`sqlite3.Error`, `psycopg.Error`).
    """
    if is_postgres(db):
        from langgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(db) as saver:
            saver.setup()
            yield saver
        return
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    # The run streams on a worker thread while the command reads the thread on its own.
    conn = sqlite3.connect(db, check_same_thread=False)
    try:
        sqlite = SqliteSaver(conn)
        sqlite.setup()
        yield sqlite
    finally:
        conn.close()


@dataclass(frozen=True)
class ThreadRun:
    """A thread's latest run, as its last checkpoint tells it."""

    thread_id: str
    task: str
    status: str
    """`completed`, `partial`, `failed`, `cancelled`, or `WAITING`, `UNFINISHED`."""
    ended: int
    """Steps ended, whatever their status."""
    total: int
    """Steps in the plan (0 before planning)."""
    plan: Sequence[str]
    dependencies: Sequence[Sequence[int]]
    summary: str | None
    answer: str | None
    options: Mapping[str, Any]
    """The command-line options the run started with (or was last resumed with)."""
    question: Mapping[str, Any] | None
    """The plan approval the run waits for: its `task` and `plan`."""
    started: str | None = None
    """When the run started (an ISO timestamp), where the listing knows it."""

    @property
    def finished(self) -> bool:
        return self.status in ENDED


def reader(saver: Any) -> Any:
    """A loop that can read threads in `saver` (runs nothing, contacts no model)."""
    from agentloop_graph.graph import create_agent_loop

    return create_agent_loop("demo", checkpointer=saver)


def read_run(graph: Any, thread_id: str) -> ThreadRun | None:
    """The run on `thread_id` in `graph`'s checkpointer; None if the thread has none."""
    state = graph.get_state({"configurable": {"thread_id": thread_id}})
    if state.metadata is None:
        return None
    values = state.values
    questions = [found.value for task in state.tasks for found in task.interrupts]
    if questions:
        status = WAITING
    elif state.tasks:
        status = UNFINISHED
    else:
        status = values.get("status") or UNFINISHED
    try:
        options = json.loads(state.metadata.get(OPTIONS_KEY) or "{}")
    except ValueError:
        options = {}
    return ThreadRun(
        thread_id=thread_id,
        task=values.get("task") or "",
        status=status,
        ended=len(values.get("steps") or ()),
        total=len(values.get("plan") or ()),
        plan=list(values.get("plan") or ()),
        dependencies=list(values.get("dependencies") or ()),
        summary=values.get("summary"),
        answer=values.get("answer"),
        options=options if isinstance(options, dict) else {},
        question=questions[-1] if questions and isinstance(questions[-1], Mapping) else None,
    )


def list_runs(saver: Any, limit: int) -> list[ThreadRun]:
    """The latest run of up to `limit` threads in `saver`, the newest run first."""
    started: dict[str, str] = {}
    # Each new task writes an `input` checkpoint; checkpoint ids sort by time, newest first.
    # The listing is read to its end before any thread is: SQLite's saver holds its lock
    # while a listing is open.
    with contextlib.closing(saver.list(None, filter={"source": "input"})) as found:
        for checkpoint in found:
            configurable = checkpoint.config["configurable"]
            thread = str(configurable["thread_id"])
            if configurable.get("checkpoint_ns") or thread in started:
                continue
            started[thread] = checkpoint.checkpoint["ts"]
            if len(started) == limit:
                break
    graph = reader(saver)
    runs = [read_run(graph, thread) for thread in started]
    return [replace(run, started=started[run.thread_id]) for run in runs if run is not None]


def shown_db(db: str) -> str:
    """`--db` as printed: a PostgreSQL URL's password hidden (libpq also reads PGPASSWORD)."""
    parts = urllib.parse.urlsplit(db)
    if not parts.password:
        return db
    where = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{where}").geturl()


def resume_command(thread: str, db: str) -> str:
    """The command line that finishes the run on `thread` in `db`."""
    return f"agentloop resume {shlex.quote(thread)} --db {shlex.quote(shown_db(db))}"


def record(run: ThreadRun) -> dict[str, Any]:
    """A run as `agentloop runs --json` prints it."""
    return {
        "thread_id": run.thread_id,
        "started": run.started,
        "status": run.status,
        "steps_ended": run.ended,
        "steps": run.total,
        "task": run.task,
    }


def listing(runs: Sequence[ThreadRun], db: str) -> list[str]:
    """The lines of `agentloop runs`: a table, one run a row, or a line saying there are none."""
    if not runs:
        return [f"No runs in {shown_db(db)}."]
    rows = [("THREAD", "STARTED", "STATUS", "STEPS", "TASK")]
    for run in runs:
        task = " ".join(run.task.split())
        task = task if len(task) <= TASK_LISTED else f"{task[: TASK_LISTED - 1]}…"
        started = datetime.fromisoformat(run.started).astimezone() if run.started else None
        when = started.strftime("%Y-%m-%d %H:%M") if started else "?"
        rows.append((run.thread_id, when, run.status, f"{run.ended}/{run.total}", task))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[4]])
        for row in rows
    ]
