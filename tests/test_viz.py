"""Timeline pictures of a run."""

# matplotlib is an optional extra: skip (rather than fail collection) without it, and pick
# the non-interactive backend before pyplot is imported.
# ruff: noqa: E402

from __future__ import annotations

import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel, Slow
from agentloop_graph.viz import STATUS_COLORS, plot_timeline, save_timeline

TASK = "Plan a picnic, fail step 2, break step 3"
FAN_OUT = (
    "1. fetch A (after none)\n2. fetch B (after none)\n3. fetch C (after none)\n"
    "4. compare (after 1, 2, 3)"
)
SECONDS = {"fetch A": 0.3, "fetch B": 0.1, "fetch C": 0.2, "compare": 0.1}
"""How long each step of `FAN_OUT` takes."""


def fan_out(call: ModelCall) -> Any:
    """Plans `FAN_OUT`; each step takes its `SECONDS` (the sequential loop keeps the markers
    in the step's text, so the step is found by how its text starts)."""
    if call.node == "planner":
        return FAN_OUT
    if call.node == "executor":
        text = call.prompt.split("\n")[1].split(": ", 1)[1]  # `Step i/N: <description>`
        step = next(step for step in SECONDS if text.startswith(step))
        return Slow(SECONDS[step], f"found {step}")
    return "all done"


@pytest.fixture(scope="module")
def output() -> dict[str, Any]:
    result: dict[str, Any] = create_agent_loop("demo", max_adaptations=1).invoke({"task": TASK})
    return result


@pytest.fixture
def ax(output: dict[str, Any]) -> Iterator[Axes]:
    axes = plot_timeline(output)
    yield axes
    plt.close(axes.figure)


def test_the_demo_run_has_an_adapted_and_a_failed_step(output: dict[str, Any]) -> None:
    assert [step["status"] for step in output["steps"]] == [
        "completed",
        "adapted",
        "failed",
        "completed",
    ]


def test_one_bar_per_step_coloured_by_status(ax: Axes, output: dict[str, Any]) -> None:
    bars = ax.patches
    assert len(bars) == len(output["steps"]) == 4
    assert [bar.get_facecolor() for bar in bars] == [
        to_rgba(STATUS_COLORS[status]) for status in ("completed", "adapted", "failed", "completed")
    ]


def spans(ax: Axes) -> list[tuple[float, float]]:
    """Where each bar starts and ends, in ms."""
    return [(bar.get_x(), bar.get_x() + bar.get_width()) for bar in ax.patches]


def overlap(one: tuple[float, float], other: tuple[float, float]) -> bool:
    return one[0] < other[1] and other[0] < one[1]


@pytest.fixture(scope="module")
def parallel_output() -> dict[str, Any]:
    loop = create_agent_loop(ScriptedChatModel(responses=fan_out), parallel=True)
    result: dict[str, Any] = loop.invoke({"task": "compare A, B and C"})
    assert result["dependencies"] == [[], [], [], [1, 2, 3]]
    return result


def test_bars_start_when_their_steps_began(ax: Axes, output: dict[str, Any]) -> None:
    for step, bar in zip(output["steps"], ax.patches, strict=True):
        assert bar.get_x() == step["started_ms"]
        assert bar.get_width() == step["duration_ms"]
    assert ax.get_xlabel() == "ms since planning began"


def test_a_parallel_runs_steps_that_ran_at_once_overlap(parallel_output: dict[str, Any]) -> None:
    ax = plot_timeline(parallel_output)
    try:
        *wave, join = spans(ax)
        for one, other in ((wave[0], wave[1]), (wave[0], wave[2]), (wave[1], wave[2])):
            assert overlap(one, other)
        assert join[0] >= max(end for _, end in wave), (
            "the join starts after the steps it waits for"
        )
        # Each step keeps its own row, so bars that overlap in time sit side by side.
        assert len({bar.get_y() for bar in ax.patches}) == 4
        assert [label.get_text() for label in ax.get_yticklabels()] == [
            "1. fetch A",
            "2. fetch B",
            "3. fetch C",
            "4. compare",
        ]
        assert ax.get_xlim()[1] >= join[1]
    finally:
        plt.close(ax.figure)


def test_the_same_plan_run_in_sequence_does_not_overlap() -> None:
    loop = create_agent_loop(ScriptedChatModel(responses=fan_out))
    ax = plot_timeline(loop.invoke({"task": "compare A, B and C"}))
    try:
        for before, after in pairwise(spans(ax)):
            assert after[0] >= before[1]
    finally:
        plt.close(ax.figure)


def test_records_without_start_times_run_end_to_end_in_step_order(
    parallel_output: dict[str, Any],
) -> None:
    # As an older version's output: no `started_ms`, so the bars are laid end to end.
    steps = [
        {k: v for k, v in step.items() if k != "started_ms"} for step in parallel_output["steps"]
    ]
    ax = plot_timeline({**parallel_output, "steps": steps})
    try:
        bars = ax.patches
        assert bars[0].get_x() == 0
        for step, bar in zip(steps, bars, strict=True):
            assert bar.get_width() == step["duration_ms"]
        for before, after in pairwise(bars):
            assert after.get_x() == pytest.approx(before.get_x() + before.get_width())
        assert ax.get_xlabel() == "step time in ms (steps end to end, in plan order)"
    finally:
        plt.close(ax.figure)


def test_labels_name_each_step(ax: Axes, output: dict[str, Any]) -> None:
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels[1:] == [
        "2. Collect the facts and inputs the task needs",
        "3. Work out the result from those facts",
        "4. Check the result and write it up",
    ]
    assert labels[0].startswith("1. Pin down what is being asked: Plan a picnic")
    assert labels[0].endswith("…")
    notes = [text.get_text() for text in ax.texts]
    assert notes[1].endswith("ms, 2 attempts") and notes[2].endswith("ms, 2 attempts")


def test_title_names_the_task_and_status(ax: Axes) -> None:
    title = ax.get_title(loc="left")
    assert title.startswith(f"{TASK}\npartial · 4 steps · run took ")


def test_legend_names_the_three_statuses(ax: Axes) -> None:
    legend = ax.get_legend()
    assert legend is not None
    assert [text.get_text() for text in legend.get_texts()] == ["completed", "adapted", "failed"]
    assert [handle.get_facecolor() for handle in legend.legend_handles] == [
        to_rgba(color) for color in STATUS_COLORS.values()
    ]


def test_draws_on_given_axes(output: dict[str, Any]) -> None:
    figure, given = plt.subplots()
    try:
        assert plot_timeline(output, ax=given) is given
        assert len(given.patches) == 4
    finally:
        plt.close(figure)


def test_run_without_steps_draws_an_empty_timeline() -> None:
    output = {"task": "t", "status": "failed", "total_duration_ms": 3, "steps": []}
    ax = plot_timeline(output)
    try:
        assert len(ax.patches) == 0
        assert ax.get_title(loc="left") == "t\nfailed · 0 steps · run took 3 ms"
    finally:
        plt.close(ax.figure)


def test_save_timeline_writes_a_png_without_pyplot(output: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "timeline.png"
    open_figures = plt.get_fignums()
    save_timeline(output, path)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert plt.get_fignums() == open_figures


def test_missing_matplotlib_says_how_to_install(
    output: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for draw in (lambda: plot_timeline(output), lambda: save_timeline(output, tmp_path / "x.png")):
        with pytest.raises(ImportError, match=r"pip install 'agentloop-graph\[viz\]'"):
            draw()
