from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agentloop_graph.testing import ModelCall

OUTPUT_KEYS = {
    "task_id",
    "task",
    "plan",
    "steps",
    "summary",
    "answer",
    "status",
    "total_duration_ms",
    "usage",
    "messages",
}
"""Every run's output has exactly these keys (DESIGN.md, plus `usage`)."""

GRAPH_NODES = {"__start__", "planner", "executor", "adapter", "summariser", "__end__"}
"""The nodes of the loop's drawing (DESIGN.md's node names)."""


def numbered(*steps: str) -> str:
    """A plan as a model would write it."""
    return "\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1))


def every_step_adapted(call: ModelCall) -> str | Exception:
    """A model for a 10-step plan whose every step fails once and is adapted: 42 node
    executions in one run."""
    if call.node == "planner":
        return numbered(*(f"s{i}" for i in range(1, 11)))
    if call.node == "adapter":
        return "the same step, another way"
    if call.node == "executor" and "another way" not in call.prompt:
        return RuntimeError("first try fails")
    return "ok"


Run = Callable[..., dict[str, Any]]


@pytest.fixture(params=["invoke", "ainvoke"])
def run(request: pytest.FixtureRequest) -> Run:
    """Run a graph to its output with the sync or the async API (twin tests)."""

    def _run(graph: Any, graph_input: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if request.param == "invoke":
            return graph.invoke(graph_input, **kwargs)  # type: ignore[no-any-return]
        return asyncio.run(graph.ainvoke(graph_input, **kwargs))  # type: ignore[no-any-return]

    _run.is_async = request.param == "ainvoke"  # type: ignore[attr-defined]
    return _run
