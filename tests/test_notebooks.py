"""The notebooks run top to bottom offline, and are committed with their outputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from agentloop_graph.models import ollama_base_url

pytestmark = pytest.mark.slow

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
FALLBACK_NOTE = "No Ollama server answered at"


def load_build() -> ModuleType:
    """`notebooks/build.py`, which runs notebooks exactly as their outputs were made."""
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ollama_answers() -> bool:
    try:
        httpx.get(f"{ollama_base_url()}/api/tags", timeout=2.0).raise_for_status()
    except httpx.HTTPError:
        return False
    return True


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def printed(notebook: nbformat.NotebookNode) -> str:
    return "".join(
        output.get("text", "") for cell in code_cells(notebook) for output in cell.outputs
    )


def test_the_three_notebooks_are_there() -> None:
    assert [path.name for path in PATHS] == [
        "01_quickstart.ipynb",
        "02_compose.ipynb",
        "03_local_models.ipynb",
    ]


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.stem)
def test_committed_with_outputs_of_one_run_top_to_bottom(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    cells = code_cells(notebook)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    assert all(cell.outputs for cell in cells), "every code cell shows what it does"
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.stem)
def test_runs_top_to_bottom(path: Path) -> None:
    # CellExecutionError, naming the cell and its traceback, fails the test.
    notebook = load_build().execute(path, env={"MPLBACKEND": "Agg"}, timeout=300)
    cells = code_cells(notebook)
    assert all(cell.execution_count for cell in cells)
    if path.stem == "01_quickstart":
        images = [o for c in cells for o in c.outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, "the timeline is shown inline"
    if path.stem == "03_local_models" and not ollama_answers():
        assert FALLBACK_NOTE in printed(notebook)
