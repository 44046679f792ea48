"""Durable runs from the command line: `run --db`, `resume`, `runs`, in this process.

A run kept in a SQLite file (or a PostgreSQL database) is left waiting for plan approval,
resumed, refused on a busy or unfinished thread, and listed. Killing a run mid-step and
resuming it in another process is in `test_cli_process.py`.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from agentloop_graph import cli, create_agent_loop
from tests.support.databases import fresh_postgres_database

PICNIC = "Plan a picnic"
WAITS = re.compile(
    r"No answer \(end of input\): the plan waits for approval; answer it with: "
    r"agentloop resume (\w+) --db (\S+)"
)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "runs.db")


def _answers(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def _left_waiting(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *extra: str
) -> str:
    """Start a demo run that asks about its plan and gets no answer; its thread."""
    _answers(monkeypatch, "")
    argv = ["run", PICNIC, "--model", "demo", "--approve", "--db", db, *extra]
    assert cli.main(argv) == cli.WAITING
    found = WAITS.search(capsys.readouterr().out)
    assert found is not None and found[2] == db
    return found[1]


def _runs(db: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert cli.main(["runs", "--db", db, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_run_kept_in_a_file_says_its_thread_and_is_listed(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", PICNIC, "--model", "demo", "--db", db, "--thread", "picnic"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[1:3] == [
        f"Task: {PICNIC}",
        f"Thread: picnic (resume with: agentloop resume picnic --db {db})",
    ]
    assert "Status: completed" in "\n".join(lines)
    (listed,) = _runs(db, capsys)
    assert listed | {"started": None} == {
        "thread_id": "picnic",
        "started": None,
        "status": "completed",
        "steps_ended": 4,
        "steps": 4,
        "task": PICNIC,
    }


def test_without_db_a_run_names_no_thread(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", PICNIC, "--model", "demo", "--json"]) == 0

    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "agentic.plan_ready"


def test_with_no_answer_the_plan_waits_and_resume_asks_again(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = _left_waiting(db, monkeypatch, capsys, "--max-steps", "3")
    (listed,) = _runs(db, capsys)
    assert (listed["status"], listed["steps_ended"], listed["steps"]) == (
        "waiting for approval",
        0,
        3,
    )

    # No --model, no --approve: the run goes on with the options it started with.
    _answers(monkeypatch, "e\nPack the basket\nWalk to the park\n\n")
    assert cli.main(["resume", thread, "--db", db]) == 0

    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:4] == [
        cli.DEMO_NOTE,
        f"Task: {PICNIC}",
        f"Thread: {thread} (resume with: agentloop resume {thread} --db {db})",
        "Plan (3 steps):",
    ]
    assert "Run this plan? y = run it, e = edit it, n = cancel: e" in lines
    assert "[2/2] Walk to the park ..." in lines
    assert f"Summary: {PICNIC}: Completed 2/2 steps." in lines
    assert [run["status"] for run in _runs(db, capsys)] == ["completed"]


def test_resuming_a_finished_run_says_so_in_one_line_with_its_status(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = _left_waiting(db, monkeypatch, capsys)
    _answers(monkeypatch, "n\n")
    assert cli.main(["resume", thread, "--db", db]) == 1
    capsys.readouterr()

    assert cli.main(["resume", thread, "--db", db]) == 1

    assert capsys.readouterr().out == (
        f"The run on thread {thread} has already finished (cancelled, 0 of 4 steps ended): "
        "nothing to resume.\n"
    )
    assert cli.main(["resume", thread, "--db", db, "--json"]) == 1
    (event,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert event == {
        "event": "output",
        "thread_id": thread,
        "status": "cancelled",
        "summary": f"{PICNIC}: Plan rejected; no step ran.",
        "answer": None,
    }


def test_json_events_name_the_thread_and_the_wait(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _answers(monkeypatch, "")
    argv = ["run", PICNIC, "--model", "demo", "--approve", "--db", db, "--json"]
    assert cli.main(argv) == cli.WAITING

    out, err = capsys.readouterr()
    first, plan_ready, last = (json.loads(line) for line in out.splitlines())
    thread = first["thread_id"]
    assert first == {"event": "thread", "thread_id": thread, "db": db}
    assert plan_ready["event"] == "agentic.plan_ready"
    assert last == {
        "event": "waiting",
        "thread_id": thread,
        "plan": plan_ready["steps"],
        "resume": f"agentloop resume {thread} --db {db}",
    }
    assert "the plan waits for approval" in err  # with the question, on stderr

    _answers(monkeypatch, "y\n")
    assert cli.main(["resume", thread, "--db", db, "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0] == first
    assert events[1]["event"] == "agentic.step_started"
    assert events[-1]["event"] == "agentic.task_complete"


def test_options_given_to_resume_replace_the_runs_own(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = _left_waiting(db, monkeypatch, capsys, "--max-model-calls", "20")

    _answers(monkeypatch, "y\n")
    # Plan, step 1, step 2: the third call is the budget's last.
    assert cli.main(["resume", thread, "--db", db, "--max-model-calls", "3"]) == 2

    lines = capsys.readouterr().out.splitlines()
    assert lines[lines.index("[3/4] Work out the result from those facts ...") + 1] == (
        "    ✗ failed: budget exhausted: model calls"
    )
    assert any(line.endswith("(limits: 3 model calls)") for line in lines)


def test_a_new_task_on_a_thread_whose_run_is_unfinished_is_one_line(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = _left_waiting(db, monkeypatch, capsys)

    argv = ["run", "Bake a cake", "--model", "demo", "--db", db, "--thread", thread, "--json"]
    assert cli.main(argv) == 1

    out, err = capsys.readouterr()
    note, line = err.splitlines()  # under --json the demo's note goes to stderr
    assert note == cli.DEMO_NOTE
    assert line == (
        f"agentloop: error: thread {thread!r} has an unfinished run; finish it with "
        f"`agentloop resume {thread} --db {db}`, or run the task on another --thread"
    )
    assert json.loads(out.splitlines()[-1]) == {
        "event": "error",
        "error": line.removeprefix("agentloop: error: "),
        "thread_id": thread,
    }
    # The thread is as it was: still waiting, still resumable.
    assert [(run["status"], run["task"]) for run in _runs(db, capsys)] == [
        ("waiting for approval", PICNIC)
    ]


def test_a_thread_in_use_by_another_run_is_refused_and_left_as_it_was(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = _left_waiting(db, monkeypatch, capsys)
    conn = sqlite3.connect(db, check_same_thread=False)
    other = create_agent_loop("demo", checkpointer=SqliteSaver(conn))
    holding = other.stream(None, {"configurable": {"thread_id": thread}})  # holds the thread
    try:
        _answers(monkeypatch, "y\n")
        assert cli.main(["resume", thread, "--db", db]) == 1
    finally:
        holding.close()
        conn.close()

    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"agentloop: error: thread {thread!r} is in use by another run "
        "(another agentloop process?); wait for it to end"
    )
    assert [run["status"] for run in _runs(db, capsys)] == ["waiting for approval"]


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["resume", "nope"], "no run on thread 'nope' in {db}; list the runs there with"),
        (["runs", "--db", "{tmp}"], "cannot open the SQLite file --db {tmp}: "),
        (["run", "x", "--model", "demo", "--db", "{tmp}/no/such/dir.db"], "cannot open"),
        (["run", "x", "--thread", "t"], "--thread needs --db"),
        (["run", "x", "--db", "{db}", "--url", "http://h:1"], "--db is for local runs"),
        (["resume"], "the following arguments are required: ID, --db"),
    ],
)
def test_durable_run_mistakes_are_one_error_line(
    argv: list[str], problem: str, db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [word.format(db=db, tmp=tmp_path) for word in argv]
    if argv[0] == "resume" and len(argv) > 1:
        argv += ["--db", db]

    assert cli.main(argv) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"agentloop: error: {problem.format(db=db, tmp=tmp_path)}")


def test_runs_lists_threads_newest_first_and_says_when_there_are_none(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["runs", "--db", db]) == 0
    assert capsys.readouterr().out == f"No runs in {db}.\n"

    for task in ("Plan a picnic", "Plan a picnic, break step 2", "x" * 300):
        cli.main(["run", task, "--model", "demo", "--db", db])
    _left_waiting(db, monkeypatch, capsys)

    assert cli.main(["runs", "--db", db, "--limit", "3"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["THREAD", "STARTED", "STATUS", "STEPS", "TASK"]
    assert [re.split(r"\s{2,}", row)[2:] for row in rows] == [
        ["waiting for approval", "0/4", PICNIC],
        ["completed", "4/4", "x" * 59 + "…"],
        ["partial", "4/4", "Plan a picnic, break step 2"],
    ]


def test_the_run_keeps_its_model_from_the_environment(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cli.MODEL_ENV, "demo")
    thread = _left_waiting(db, monkeypatch, capsys)
    monkeypatch.setenv(cli.MODEL_ENV, "nonsense")

    _answers(monkeypatch, "y\n")
    assert cli.main(["resume", thread, "--db", db]) == 0
    assert capsys.readouterr().out.startswith(cli.DEMO_NOTE)


def test_a_resumed_run_may_not_take_an_option_it_cannot_use(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = _left_waiting(db, monkeypatch, capsys)

    assert cli.main(["resume", thread, "--db", db, "--max-parallel", "2"]) == 1
    assert cli.main(["resume", thread, "--db", db, "--ollama-host", "h"]) == 1

    first, second = capsys.readouterr().err.splitlines()
    assert first.startswith("agentloop: error: --max-parallel needs --parallel")
    assert second == (
        "agentloop: error: --ollama-host is for ollama: models, and --model 'demo' is not one"
    )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    from psycopg.conninfo import conninfo_to_dict

    with fresh_postgres_database() as conninfo:
        parts = conninfo_to_dict(conninfo)
        user = parts.get("user", "postgres")
        where = f"{parts.get('host', '127.0.0.1')}:{parts.get('port', 5432)}"
        yield f"postgresql://{user}@{where}/{parts['dbname']}"


def test_a_run_kept_in_postgres_waits_and_is_resumed(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = _left_waiting(postgres_url, monkeypatch, capsys)
    (listed,) = _runs(postgres_url, capsys)
    assert (listed["thread_id"], listed["status"]) == (thread, "waiting for approval")

    _answers(monkeypatch, "y\n")
    assert cli.main(["resume", thread, "--db", postgres_url]) == 0
    assert "Status: completed" in capsys.readouterr().out
    assert [run["status"] for run in _runs(postgres_url, capsys)] == ["completed"]


def test_a_postgres_password_is_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://me:secret@127.0.0.1:9/nothing"

    assert cli.main(["runs", "--db", url]) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert "secret" not in line
    assert line.startswith("agentloop: error: cannot open the PostgreSQL database --db ")
    assert "postgresql://me:***@127.0.0.1:9/nothing" in line
