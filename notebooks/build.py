"""Run the notebooks top to bottom and save them with their outputs.

    .venv/bin/python notebooks/build.py                            # every notebook here
    .venv/bin/python notebooks/build.py notebooks/01_quickstart.ipynb
    .venv/bin/python notebooks/build.py --check                    # are the saved outputs current?

Each notebook runs in a fresh kernel on the interpreter running this script, whatever
kernels Jupyter has registered elsewhere (the kernel inherits this process's environment,
PYTHONPATH included), and cell timings are not recorded. Figures show inline, as in any
Jupyter front end, whatever MPLBACKEND says here. Needs the `notebooks` dependency group.

Some outputs differ from run to run however nothing changed: the durations a cell prints and
the pixels of a timeline picture. Outputs are therefore compared with every number in their
text masked and pictures compared by kind only (`comparable`). A re-run keeps a cell's saved
outputs when they compare equal to the new ones, so it rewrites only cells whose outputs
really changed, and `--check` runs the notebooks without writing and fails, showing what
differs, when a saved notebook no longer matches a fresh run.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent
KERNEL_NAME = "agentloop-graph"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
VOLATILE = (
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "0x…"),  # memory addresses
    (re.compile(r"\b[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\d+(?:[.,]\d+)*"), "#"),  # durations, speed-ups and the like
    (re.compile(r"[ \t]+"), " "),  # the padding of table columns holding them
)
"""What is masked in outputs' text before they are compared, in this order."""


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


def masked(text: str) -> list[str]:
    """The lines of `text`, with what varies from run to run (see `VOLATILE`) masked."""
    for pattern, mask in VOLATILE:
        text = pattern.sub(mask, text)
    return text.splitlines()


def comparable(cell: nbformat.NotebookNode) -> dict[str, Any]:
    """What of a cell must match between two runs: its source and its outputs, text masked
    and pictures by kind only."""
    outputs = []
    for output in cell.get("outputs", []):
        shown: dict[str, Any] = {"output_type": output.output_type}
        if "name" in output:
            shown["name"] = output.name
        if "text" in output:
            shown["text"] = masked(output.text)
        if "data" in output:
            shown["data"] = {
                kind: masked(value) if kind.startswith("text/") else kind
                for kind, value in output.data.items()
            }
        if "ename" in output:
            shown["error"] = masked(f"{output.ename}: {output.evalue}")
        outputs.append(shown)
    return {"cell_type": cell.cell_type, "source": cell.source, "outputs": outputs}


def differences(saved: nbformat.NotebookNode, fresh: nbformat.NotebookNode) -> str:
    """A diff of what differs between two runs of a notebook beyond `VOLATILE`; empty if none."""

    def lines(notebook: nbformat.NotebookNode) -> list[str]:
        cells = [comparable(cell) for cell in notebook.cells]
        return json.dumps(cells, indent=1, ensure_ascii=False, sort_keys=True).splitlines(
            keepends=True
        )

    return "".join(difflib.unified_diff(lines(saved), lines(fresh), "saved", "fresh run"))


def keep_unchanged_outputs(saved: nbformat.NotebookNode, fresh: nbformat.NotebookNode) -> None:
    """Put the saved outputs back into `fresh` wherever they compare equal, in place."""
    if len(saved.cells) != len(fresh.cells):
        return
    for old, new in zip(saved.cells, fresh.cells, strict=True):
        if new.cell_type == "code" and comparable(old) == comparable(new):
            new.outputs = old.outputs


def main(arguments: Sequence[str] | None = None) -> int:
    """Execute the notebooks and save them in place, or with --check compare them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="default: every notebook here")
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when a saved notebook differs from a fresh run",
    )
    args = parser.parse_args(arguments)
    stale = []
    for path in args.paths or sorted(NOTEBOOKS.glob("*.ipynb")):
        print(f"running {path}", flush=True)
        saved, fresh = nbformat.read(path, as_version=4), execute(path)
        if args.check:
            if diff := differences(saved, fresh):
                stale.append(path)
                print(diff, flush=True)
        else:
            keep_unchanged_outputs(saved, fresh)
            nbformat.write(fresh, path)
    if stale:
        print(
            f"out of date: {', '.join(map(str, stale))}; rebuild with notebooks/build.py",
            file=sys.stderr,
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
