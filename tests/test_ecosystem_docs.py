"""docs/ecosystem.md's examples are the ones that work.

A Python block whose first line is `# <name>.py` is a file the other blocks use (an MCP
server): it is saved under that name in the directory the examples run in. The examples
that start an MCP server (one process per tool call) are slow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.tracers.langchain import wait_for_all_tracers
from opentelemetry import trace
from opentelemetry.util._once import Once

from tests.support.langsmith_collector import LangSmithCollector

PAGE = Path(__file__).resolve().parent.parent / "docs" / "ecosystem.md"
TEXT = PAGE.read_text()
FILE = re.compile(r"# (\w+\.py)\n")


def python_blocks() -> list[tuple[str, str]]:
    """Each Python block, with the heading of its section."""
    found = []
    for block in re.finditer(r"```python\n(.*?)```", TEXT, re.DOTALL):
        headings = re.findall(r"^## (.+)$", TEXT[: block.start()], re.MULTILINE)
        found.append((headings[-1] if headings else "", block[1]))
    return found


FILES = {match[1]: code for _, code in python_blocks() if (match := FILE.match(code))}
EXAMPLES = [(section, code) for section, code in python_blocks() if not FILE.match(code)]


@pytest.fixture
def isolated(
    tmp_path: Path,
    langsmith_env: pytest.MonkeyPatch,
    collector: LangSmithCollector,
) -> Iterator[None]:
    """A directory holding the page's files to run in, and LangSmith's endpoint a local
    collector that must hear nothing; afterwards the environment (which an example may
    set) and OpenTelemetry's global tracer provider are as they were."""
    for name, code in FILES.items():
        (tmp_path / name).write_text(code)
    langsmith_env.chdir(tmp_path)
    langsmith_env.setenv("LANGSMITH_ENDPOINT", collector.url)
    # OpenTelemetry lets a process set its provider once; OpenTelemetry's own tests reset
    # these globals between tests the same way.
    langsmith_env.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    langsmith_env.setattr(trace, "_TRACER_PROVIDER", None)
    environment = dict(os.environ)
    try:
        yield
        wait_for_all_tracers()
        assert collector.paths() == [], "an example talked to LangSmith"
    finally:
        os.environ.clear()
        os.environ.update(environment)


def test_the_page_has_its_examples() -> None:
    assert len(EXAMPLES) == 5
    assert set(FILES) == {"weather_server.py"}


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize(
    "code",
    [
        pytest.param(
            code,
            id=f"{section} {number}",
            marks=[pytest.mark.slow] if "MultiServerMCPClient" in code else [],
        )
        for number, (section, code) in enumerate(EXAMPLES, 1)
    ],
)
def test_examples_run(code: str) -> None:
    # The examples assert what they promise; running them offline is the test.
    exec(compile(code, str(PAGE), "exec"), {})
