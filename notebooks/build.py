"""Run the notebooks top to bottom and save them with their outputs.

    .venv/bin/python notebooks/build.py                            # every notebook here
    .venv/bin/python notebooks/build.py notebooks/01_quickstart.ipynb

Each notebook runs in a fresh kernel on the interpreter running this script, whatever
kernels Jupyter has registered elsewhere (the kernel inherits this process's environment,
PYTHONPATH included), and cell timings are not recorded, so a re-run changes only what the
cells print. Figures show inline, as in any Jupyter front end, whatever MPLBACKEND says here.
Needs the `notebooks` dependency group.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import nbformat
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent
KERNEL_NAME = "agentloop-graph"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def kernel_argv(without: Collection[str] = ()) -> list[str]:
    """The kernel's command line; the modules in `without` cannot be imported in it.

    They are blocked (None in `sys.modules`) before the kernel starts, so importing them
    fails as if they were not installed, and `importlib.util.find_spec` finds nothing.
    """
    if not without:
        return [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    start = (
        f"import runpy, sys; sys.modules.update(dict.fromkeys({sorted(without)!r})); "
        "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-c", start, "-f", "{connection_file}"]


def execute(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    without: Collection[str] = (),
    timeout: int = 600,
) -> nbformat.NotebookNode:
    """Run the notebook at `path` and return it with its outputs (the file is not written).

    Args:
        path: The notebook; it runs with its own folder as the working directory.
        env: Extra environment variables for the kernel.
        without: Modules the kernel cannot import, as if they were not installed: to check
            that a notebook copes without its extras, e.g. `("matplotlib",)`.
        timeout: Seconds allowed per cell.

    Returns:
        The executed notebook.

    Raises:
        nbclient.exceptions.CellExecutionError: A cell raised.
    """
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as kernels:
        # The spec names this interpreter, so the kernel imports the same installed package.
        spec = {"argv": kernel_argv(without), "env": {"MPLBACKEND": INLINE_BACKEND, **(env or {})}}
        write_kernel_spec(Path(kernels) / KERNEL_NAME, overrides=spec)
        manager = AsyncKernelManager(
            kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels])
        )
        NotebookClient(
            notebook,
            km=manager,
            timeout=timeout,
            record_timing=False,
            resources={"metadata": {"path": str(path.parent)}},
        ).execute(cleanup_kc=True)  # nbclient leaves a kernel it was handed running
    coalesce_streams(notebook)
    return notebook


def coalesce_streams(notebook: nbformat.NotebookNode) -> None:
    """Join each cell's consecutive stdout (or stderr) outputs into one, in place.

    Where the kernel splits a cell's printing varies from run to run; front ends show the
    pieces joined anyway, so saving them joined keeps a re-run from changing the file.
    """
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        outputs: list[nbformat.NotebookNode] = []
        for output in cell.outputs:
            last = outputs[-1] if outputs else None
            if (
                output.output_type == "stream"
                and last is not None
                and last.output_type == "stream"
                and last.name == output.name
            ):
                last.text += output.text
            else:
                outputs.append(output)
        cell.outputs = outputs


def main(arguments: Sequence[str]) -> None:
    """Execute the given notebooks (default: all in this folder) and save them in place."""
    paths = [Path(argument) for argument in arguments] or sorted(NOTEBOOKS.glob("*.ipynb"))
    for path in paths:
        print(f"running {path}", flush=True)
        nbformat.write(execute(path), path)


if __name__ == "__main__":
    main(sys.argv[1:])
