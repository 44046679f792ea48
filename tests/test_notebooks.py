"""The notebooks run top to bottom offline, with or without their extras and an Ollama server,
use only the public API, and are committed with their outputs."""

from __future__ import annotations

import ast
import functools
import importlib.util
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.fake_ollama import FakeOllama, Scripted

pytestmark = pytest.mark.slow

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
LOCAL_MODELS = NOTEBOOKS / "03_local_models.ipynb"
PICTURES = {"01_quickstart": 1, "04_parallel": 2, "05_agents": 1}
"""Timeline pictures each notebook shows inline (none where it is not listed)."""
INSTALL_HINT = "pip install 'agentloop-graph[viz]'"
FALLBACK_NOTE = "Falling back to the offline demo model: "
PUBLIC_MODULES = {
    "agentloop_graph",
    "agentloop_graph.viz",
    "agentloop_graph.testing",
    # `DemoChatModel`: the demo model as an object, for agents built with `create_agent`.
    "agentloop_graph.demo",
}
PROXY_VARIABLES = [
    name
    for base in ("ALL_PROXY", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
    for name in (base, base.lower())
]
HAS_SOCKSIO = importlib.util.find_spec("socksio") is not None


@functools.cache
def load_build() -> ModuleType:
    """`notebooks/build.py`, which runs notebooks exactly as their outputs were made."""
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A local port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def printed(notebook: nbformat.NotebookNode) -> str:
    return "".join(
        output.get("text", "") for cell in code_cells(notebook) for output in cell.outputs
    )


def images(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [
        output
        for cell in code_cells(notebook)
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]


def fallback_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith(FALLBACK_NOTE)]
    assert len(lines) == 1, f"one line says the notebook falls back, and why:\n{text}"
    return lines[0]


def assert_ran_every_cell(notebook: nbformat.NotebookNode) -> None:
    # A cell that raised has already failed the test (nbclient's CellExecutionError, naming
    # the cell and its traceback); this checks that none was skipped.
    cells = code_cells(notebook)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]


def test_the_five_notebooks_are_there() -> None:
    assert [path.name for path in PATHS] == [
        "01_quickstart.ipynb",
        "02_compose.ipynb",
        "03_local_models.ipynb",
        "04_parallel.ipynb",
        "05_agents.ipynb",
    ]


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.stem)
def test_committed_with_outputs_of_one_run_top_to_bottom(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert_ran_every_cell(notebook)
    assert all(cell.outputs for cell in code_cells(notebook)), "every code cell shows what it does"
    assert len(images(notebook)) == PICTURES.get(path.stem, 0)
    assert INSTALL_HINT not in printed(notebook), "committed as run with the extras installed"


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.stem)
def test_cells_use_only_the_public_api_and_no_magics(path: Path) -> None:
    # `%matplotlib inline` fails where matplotlib is missing, before the package's own
    # ImportError could say what to install; Jupyter shows figures inline without it.
    modules = set()
    for cell in code_cells(nbformat.read(path, as_version=4)):
        assert not [
            line for line in cell.source.splitlines() if line.lstrip().startswith(("%", "!"))
        ]
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module)
            elif isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
    ours = {module for module in modules if module.partition(".")[0] == "agentloop_graph"}
    assert ours and ours <= PUBLIC_MODULES


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.stem)
def test_runs_top_to_bottom(path: Path) -> None:
    notebook = load_build().execute(path, timeout=300)
    assert_ran_every_cell(notebook)
    assert len(images(notebook)) == PICTURES.get(path.stem, 0), "timelines are shown inline"
    if path == LOCAL_MODELS:
        text = printed(notebook)
        assert FALLBACK_NOTE in text or "Using ollama:" in text


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.stem)
def test_runs_top_to_bottom_without_matplotlib(path: Path) -> None:
    # As after a plain `pip install -e .`: each picture cell prints what to install instead.
    notebook = load_build().execute(path, without=["matplotlib"], timeout=300)
    assert_ran_every_cell(notebook)
    assert not images(notebook)
    assert printed(notebook).count(INSTALL_HINT) == PICTURES.get(path.stem, 0)


def one_cell_notebook(text: str, picture: str) -> nbformat.NotebookNode:
    """A notebook whose one cell printed `text` and showed a picture of bytes `picture`."""
    cell = nbformat.v4.new_code_cell("run_it()", execution_count=1)
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=text),
        nbformat.v4.new_output(
            "display_data", data={"image/png": picture, "text/plain": "<Figure size 1000x340>"}
        ),
    ]
    return nbformat.v4.new_notebook(cells=[cell])


def test_a_rebuild_keeps_outputs_that_differ_only_in_timings_and_pixels() -> None:
    build = load_build()
    saved = one_cell_notebook("step  took ms\n   1      102\nrun took 1.4 s, 1.6x faster\n", "AAA")
    fresh = one_cell_notebook("step  took ms\n   1       98\nrun took 1.5 s, 1.7x faster\n", "BBB")
    assert build.differences(saved, fresh) == ""
    build.keep_unchanged_outputs(saved, fresh)
    assert fresh.cells[0].outputs == saved.cells[0].outputs


def test_a_rebuild_takes_outputs_that_changed_and_the_check_shows_them() -> None:
    build = load_build()
    saved = one_cell_notebook("status: completed\n", "AAA")
    fresh = one_cell_notebook("status: partial\n", "AAA")
    diff = build.differences(saved, fresh)
    assert '-     "status: completed"' in diff and '+     "status: partial"' in diff
    build.keep_unchanged_outputs(saved, fresh)
    assert fresh.cells[0].outputs[0].text == "status: partial\n"


FALLBACKS = {
    "nothing listening": ({"OLLAMA_HOST": "127.0.0.1:{port}"}, "ConnectError"),
    "malformed host": ({"OLLAMA_HOST": "http://[::1"}, "InvalidURL"),
    "socks proxy without socksio": (
        {"OLLAMA_HOST": "127.0.0.1:{port}", "ALL_PROXY": "socks5://127.0.0.1:{port}"},
        "ImportError",
    ),
}


@pytest.mark.parametrize("case", FALLBACKS)
def test_local_models_falls_back_and_runs_on(case: str) -> None:
    if case == "socks proxy without socksio" and HAS_SOCKSIO:
        pytest.skip("socksio is installed")
    variables, reason = FALLBACKS[case]
    port = free_port()
    env = {name: value.format(port=port) for name, value in variables.items()}
    notebook = load_build().execute(LOCAL_MODELS, env=env, timeout=300)
    assert_ran_every_cell(notebook)
    assert f"({reason}: " in fallback_line(printed(notebook))


# The server check on its own, run in this process: every reason the server cannot be used
# ends in the fallback, named in one line.


@pytest.fixture
def check_cell(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run the notebook's server check; returns the model it chose and what it printed."""
    for name in [*PROXY_VARIABLES, "OLLAMA_HOST", "AGENTLOOP_OLLAMA_MODEL"]:
        monkeypatch.delenv(name, raising=False)
    cells = code_cells(nbformat.read(LOCAL_MODELS, as_version=4))
    source = next(cell.source for cell in cells if "OLLAMA_HOST" in cell.source)

    def run(**env: str) -> tuple[str, str]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        namespace: dict[str, object] = {}
        exec(compile(source, str(LOCAL_MODELS), "exec"), namespace)
        return str(namespace["MODEL"]), capsys.readouterr().out

    return run


@pytest.fixture
def not_ollama(tmp_path: Path) -> Iterator[str]:
    """A web server that answers `/api/tags` with a 200 page that is not JSON."""
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "tags").write_text("<html>not Ollama</html>")

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            thread.join()


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1:{port}", "ConnectError: "),
        ("http://127.0.0.1:{port}/", "ConnectError: "),
        ("localhost:notaport", "InvalidURL: "),
        ("http://[::1", "InvalidURL: "),
        ("::1", "InvalidURL: "),
        ("http://", "UnsupportedProtocol: "),
        (":11434", "UnsupportedProtocol: "),
    ],
)
def test_server_check_falls_back_for_an_address_it_cannot_use(
    check_cell, host: str, reason: str
) -> None:
    model, text = check_cell(OLLAMA_HOST=host.format(port=free_port()))
    assert model == "demo"
    assert f"({reason}" in fallback_line(text)


def test_server_check_falls_back_for_a_socks_proxy_without_socksio(check_cell) -> None:
    if HAS_SOCKSIO:
        pytest.skip("socksio is installed")
    port = free_port()
    model, text = check_cell(
        OLLAMA_HOST=f"127.0.0.1:{port}", ALL_PROXY=f"socks5://127.0.0.1:{port}"
    )
    assert model == "demo"
    assert "(ImportError: Using SOCKS proxy, but the 'socksio' package" in fallback_line(text)


def test_server_check_falls_back_for_a_proxy_it_cannot_use(check_cell) -> None:
    model, text = check_cell(OLLAMA_HOST="127.0.0.1:11434", HTTP_PROXY="ftp://proxy")
    assert model == "demo"
    assert "(ValueError: Unknown scheme for proxy URL" in fallback_line(text)


def test_server_check_falls_back_for_a_server_that_is_not_ollama(check_cell, not_ollama) -> None:
    model, text = check_cell(OLLAMA_HOST=not_ollama)
    assert model == "demo"
    assert "(JSONDecodeError: " in fallback_line(text)


def test_server_check_falls_back_for_a_model_not_pulled(check_cell) -> None:
    with FakeOllama(Scripted(models=["qwen3:8b"])) as server:
        model, text = check_cell(OLLAMA_HOST=server.url)
    assert model == "demo"
    assert "has no model 'llama3.2' (it has ['qwen3:8b'])" in fallback_line(text)


@pytest.mark.parametrize("listed", ["llama3.2", "llama3.2:latest"])
def test_server_check_uses_a_pulled_model(check_cell, listed: str) -> None:
    with FakeOllama(Scripted(models=[listed])) as server:
        url = server.url
        model, text = check_cell(OLLAMA_HOST=url.removeprefix("http://"))  # scheme optional
    assert model == "ollama:llama3.2"
    assert text == f"Using ollama:llama3.2 from {url}.\n"
