"""Timeline pictures of a run: one bar per step, coloured by how the step ended.

Needs matplotlib: `pip install 'agentloop-graph[viz]'`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

STATUS_COLORS: Mapping[str, str] = MappingProxyType(
    {"completed": "#2e7d32", "adapted": "#ef8f00", "failed": "#c62828"}
)
"""Bar colour for each step status."""

_LABEL_CHARS = 48
_TITLE_CHARS = 72


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "agentloop_graph.viz draws with matplotlib, which is not installed: "
            "pip install 'agentloop-graph[viz]'"
        ) from exc


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _figsize(step_count: int) -> tuple[float, float]:
    return 10.0, 1.6 + 0.45 * max(step_count, 1)


def _bar_note(step: Mapping[str, Any]) -> str:
    note = f"{step['duration_ms']} ms"
    if step["attempts"] > 1:
        note += f", {step['attempts']} attempts"
    return note


def _title(output: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> str:
    total = output.get("total_duration_ms")
    run = f"{output.get('status') or 'unfinished'} · {len(steps)} steps"
    if total is not None:
        run += f" · run took {total} ms"
    return f"{_shorten(str(output.get('task') or ''), _TITLE_CHARS)}\n{run}"


def plot_timeline(output: Mapping[str, Any], *, ax: Axes | None = None) -> Axes:
    """Draw a run's steps as a timeline: one horizontal bar per step.

    Each step has its own row, in plan order, and its bar starts when the step's first
    attempt began (`started_ms`, ms since planning began), so the steps of a parallel run
    (`parallel=True`) that ran at once overlap in time, side by side on their rows. Records
    without `started_ms` (outputs of older versions) are laid end to end in plan order.
    Each bar is coloured by the step's status (see `STATUS_COLORS`) and notes its
    duration and, when there was more than one, its executor attempts. The title names
    the task and the run's status.

    Args:
        output: The loop's output (what `invoke` returns): `task`, `status`,
            `total_duration_ms` and `steps`, a list of step records.
        ax: Axes to draw on; a new pyplot figure is made when None.

    Returns:
        The Axes drawn on.

    Raises:
        ImportError: matplotlib is not installed.

    Example:
        >>> from agentloop_graph import create_agent_loop
        >>> from agentloop_graph.viz import plot_timeline
        >>> output = create_agent_loop("demo").invoke({"task": "Plan a picnic, fail step 2"})
        >>> ax = plot_timeline(output)
        >>> len(ax.patches)
        4
    """
    _require_matplotlib()
    from matplotlib.patches import Patch

    steps = sorted(output["steps"], key=lambda step: step["step_num"])
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=_figsize(len(steps)), layout="constrained")
    widths = [step["duration_ms"] for step in steps]
    timed = all("started_ms" in step for step in steps)
    if timed:
        starts = [step["started_ms"] for step in steps]
    else:  # older records: no start times, and steps ran one after another
        starts = [sum(widths[:i]) for i in range(len(steps))]
    colors = [STATUS_COLORS[step["status"]] for step in steps]
    rows = range(len(steps))
    # An edge in the bar's own colour keeps a 0 ms step visible as a thin line.
    bars = ax.barh(rows, widths, left=starts, height=0.6, color=colors, edgecolor=colors)
    for bar, step in zip(bars, steps, strict=True):
        ax.annotate(
            _bar_note(step),
            (bar.get_x() + bar.get_width(), bar.get_y() + bar.get_height() / 2),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    labels = [
        f"{step['step_num']}. {_shorten(step['description'], _LABEL_CHARS)}" for step in steps
    ]
    ax.set_yticks(list(rows), labels=labels)
    ax.set_ylim(max(len(steps), 1) - 0.5, -0.5)
    # Room on the right for the note of the bar that ends last.
    end = max((start + width for start, width in zip(starts, widths, strict=True)), default=0)
    ax.set_xlim(0, max(end, 1) * 1.3)
    ax.set_xlabel(
        "ms since planning began" if timed else "step time in ms (steps end to end, in plan order)"
    )
    ax.set_title(_title(output, steps), loc="left")
    ax.legend(
        handles=[Patch(color=color, label=status) for status, color in STATUS_COLORS.items()],
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        frameon=False,
    )
    return ax


def save_timeline(
    output: Mapping[str, Any], path: str | os.PathLike[str], *, dpi: float = 150
) -> None:
    """Draw a run's timeline (see `plot_timeline`) into an image file.

    The figure is made without pyplot, so nothing is left open and no GUI backend is
    touched: safe in scripts and servers.

    Args:
        output: The loop's output (what `invoke` returns).
        path: Where to write; the extension picks the format (`.png`, `.svg`, `.pdf`, ...).
        dpi: Resolution for raster formats.

    Raises:
        ImportError: matplotlib is not installed.

    Example:
        >>> from agentloop_graph import create_agent_loop
        >>> from agentloop_graph.viz import save_timeline
        >>> output = create_agent_loop("demo").invoke({"task": "Plan a picnic"})
        >>> save_timeline(output, "picnic.png")  # doctest: +SKIP
    """
    _require_matplotlib()
    from matplotlib.figure import Figure

    figure = Figure(figsize=_figsize(len(output["steps"])), layout="constrained")
    plot_timeline(output, ax=figure.add_subplot())
    figure.savefig(path, dpi=dpi)
