"""The README's commands and examples are the ones that work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.DOTALL)


def test_readme_opens_with_setup_and_test_commands() -> None:
    (lang1, setup), (lang2, test) = BLOCKS[:2]
    assert lang1 == lang2 == "bash"
    assert README.index("```") < README.index("\n## ")
    assert "agentloop run" in setup and "--model demo" in setup
    assert "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    test_command = BLOCKS[1][1].strip()
    runner = (ROOT / ".ci" / "run").read_text()
    assert test_command.rsplit("&& ", 1)[-1] in runner


@pytest.mark.parametrize(
    "code", [code for lang, code in BLOCKS if lang == "python"], ids=lambda c: c.splitlines()[0]
)
def test_python_examples_run(code: str) -> None:
    # The examples assert what they promise; running them offline is the test.
    exec(compile(code, "README.md", "exec"), {})
