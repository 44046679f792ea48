"""docs/durability.md's walk-through runs as written, with SQLite and with PostgreSQL.

Its script is written to a scratch directory and its commands run there, each block as one
shell script, as a user pastes them: a run started in one process, killed with SIGKILL once
step 3 has started and resumed by another, then a plan asked for by one process and answered
by another. PostgreSQL runs in a fresh database (`AGENTLOOP_TEST_POSTGRES`, see
tests/support/databases.py), handed to the script as `DATABASE_URL`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.databases import fresh_postgres_database
from tests.support.doc_blocks import ROOT, code_blocks, environment, fake_venv, files, run_bash

pytestmark = pytest.mark.slow

PAGE = ROOT / "docs" / "durability.md"
TEXT = PAGE.read_text()
SCRIPT = "picnic.py"


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def commands(backend: str) -> tuple[str, str]:
    """The page's two blocks for `backend`: the kill and resume, then the plan approval."""
    blocks = [code for code in code_blocks(PAGE, "bash") if f"{SCRIPT} {backend} " in code]
    assert len(blocks) == 2, blocks
    kill, approval = blocks
    return kill, approval


def shown_outputs() -> tuple[list[str], list[str]]:
    """What the page says the SQLite blocks print: the kill and resume, the approval."""
    kill, approval = code_blocks(PAGE, "text")[:2]
    return lines(kill), lines(approval)


def walk_through(backend: str, tmp_path: Path, **env: str) -> None:
    fake_venv(tmp_path)
    for name, code in files(PAGE).items():
        (tmp_path / name).write_text(code)
    kill, approval = commands(backend)
    expected_kill, expected_approval = shown_outputs()

    killed = run_bash(kill, tmp_path, env=environment(**env), timeout=180)
    assert killed.returncode == 0, killed.stderr
    first = lines((tmp_path / "first.log").read_text())
    assert first == expected_kill[: len(first)] and first[-1] == "agentic.step_started 3"
    resumed = lines(killed.stdout)[len(first) :]
    # No planning, and steps 1 and 2 are not run again: the resume starts at step 3.
    assert first + resumed == expected_kill, killed.stdout

    approved = run_bash(approval, tmp_path, env=environment(**env), timeout=180)
    assert approved.returncode == 0, approved.stderr
    assert lines(approved.stdout) == expected_approval


def test_the_walk_through_has_its_script_and_both_backends() -> None:
    assert list(files(PAGE)) == [SCRIPT]
    for backend in ("sqlite", "postgres"):
        commands(backend)


def test_sqlite_walk_through_runs_as_written(tmp_path: Path) -> None:
    walk_through("sqlite", tmp_path)
    assert (tmp_path / "picnic.sqlite").exists()


def test_postgres_walk_through_runs_as_written(tmp_path: Path) -> None:
    with fresh_postgres_database() as conninfo:
        walk_through("postgres", tmp_path, DATABASE_URL=conninfo)
