"""Values and small functions the test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from agentloop_graph.testing import ModelCall, ScriptedChatModel

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

Run = Callable[..., dict[str, Any]]
"""The `run` fixture: a graph run to its output with `invoke` or `ainvoke`."""


def numbered(*steps: str) -> str:
    """A plan as a model would write it."""
    return "\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1))


def plan_then(answer: Any, steps: int = 2) -> ScriptedChatModel:
    """A model that plans `steps` steps (`s1`, `s2`, ...) and answers every other call with
    `answer`."""
    return ScriptedChatModel(
        responses=lambda call: (
            numbered(*(f"s{i}" for i in range(1, steps + 1))) if call.node == "planner" else answer
        )
    )


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


def free_port() -> int:
    """A port nothing listens on (for a moment)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
