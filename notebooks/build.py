"""Run the notebooks top to bottom and save them with their outputs.

    .venv/bin/python notebooks/build.py                            # every notebook here
    .venv/bin/python notebooks/build.py notebooks/01_quickstart.ipynb

Each notebook runs in a fresh kernel on the interpreter running this script, whatever
kernels Jupyter has registered elsewhere, and cell timings are not recorded, so a re-run
changes only what the cells print. Needs the `notebooks` dependency group.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import nbformat
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent
KERNEL_NAME = "agentloop-graph"


def execute(
    path: Path, *, env: Mapping[str, str] | None = None, timeout: int = 600
) -> nbformat.NotebookNode:
    """Run the notebook at `path` and return it with its outputs (the file is not written).

    Args:
        path: The notebook; it runs with its own folder as the working directory.
        env: Extra environment variables for the kernel.
        timeout: Seconds allowed per cell.

    Returns:
        The executed notebook.

    Raises:
        nbclient.exceptions.CellExecutionError: A cell raised.
    """
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as kernels:
        # The spec names this interpreter, so the kernel imports the same installed package.
        write_kernel_spec(Path(kernels) / KERNEL_NAME, overrides={"env": dict(env or {})})
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
    return notebook


def main(arguments: Sequence[str]) -> None:
    """Execute the given notebooks (default: all in this folder) and save them in place."""
    paths = [Path(argument) for argument in arguments] or sorted(NOTEBOOKS.glob("*.ipynb"))
    for path in paths:
        print(f"running {path}", flush=True)
        nbformat.write(execute(path), path)


if __name__ == "__main__":
    main(sys.argv[1:])
