"""The README's drawing, commands and examples are the ones that work."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from agentloop_graph import create_agent_loop
from tests.support.doc_blocks import ROOT, code_blocks, fake_venv, run_bash

README_PATH = ROOT / "README.md"
README = README_PATH.read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.DOTALL)
SETUP, TEST = code_blocks(README_PATH, "bash")[:2]


def section(title: str) -> str:
    """The README's text under `## title`, up to the next section."""
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_opens_with_the_drawing_then_setup_and_test_commands() -> None:
    first_page = README.split("\n## ", 1)[0]
    assert [lang for lang, _ in re.findall(r"```(\w+)\n(.*?)```", first_page, re.DOTALL)] == [
        "mermaid",
        "bash",
        "bash",
    ]
    assert "agentloop run" in SETUP and "--model demo" in SETUP
    assert "pytest" in TEST


def test_the_drawing_is_the_graph_s_own() -> None:
    drawing = code_blocks(README_PATH, "mermaid")[0]
    assert drawing == create_agent_loop("demo").get_graph().draw_mermaid()


def test_setup_shows_its_progress_and_upgrades_pip_before_installing() -> None:
    # `pip install --group` needs pip >= 25.1; -q would hide a long first install.
    commands = [shlex.split(part) for part in SETUP.replace("\\\n", " ").split("&&")]
    assert not [word for command in commands for word in command if word in ("-q", "--quiet")]
    upgrade = commands.index([".venv/bin/python", "-m", "pip", "install", "-U", "pip"])
    assert upgrade < next(i for i, c in enumerate(commands) if c[-1] == ".")


def test_ci_runs_the_readme_test_command() -> None:
    test_command = TEST.strip()
    runner = (ROOT / ".ci" / "run").read_text()
    assert test_command.rsplit("&& ", 1)[-1] in runner


@pytest.mark.parametrize(
    "code", [code for lang, code in BLOCKS if lang == "python"], ids=lambda c: c.splitlines()[0]
)
def test_python_examples_run(code: str) -> None:
    # The examples assert what they promise; running them offline is the test.
    exec(compile(code, "README.md", "exec"), {})


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        line
        for block in re.findall(r"```bash\n(.*?)```", section("Command line"), re.DOTALL)
        for line in block.splitlines()
    ],
)
def test_command_line_examples_run(command: str, tmp_path: Path) -> None:
    fake_venv(tmp_path)
    done = run_bash(command, tmp_path, timeout=120)
    assert done.returncode in (0, 2), done.stderr  # completed, or partial
    assert "Plan a picnic" in done.stdout
