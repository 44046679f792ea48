"""The original loop's entry point, running on the graph.

Code written against the original `run_agentic_loop` switches by changing its import.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.language_models import BaseChatModel

from agentloop_graph.graph import create_agent_loop
from agentloop_graph.models import DEFAULT_MODEL

DEFAULT_MAX_STEPS = 10

ProgressCallback = Callable[[str, int, int], Awaitable[None] | None]


@dataclass
class AgenticStep:
    """Result of a single step in the agentic loop."""

    step_num: int
    description: str
    result: str
    status: str  # "completed" | "failed" | "adapted"
    duration_ms: int


@dataclass
class AgenticResult:
    """Final result of the entire agentic loop."""

    task_id: str
    task: str
    summary: str
    steps: list[AgenticStep] = field(default_factory=list)
    status: str = "completed"  # "completed" | "partial" | "failed"
    total_duration_ms: int = 0


def _seed_description(description: str, status: str) -> str:
    return f"[Adapted] {description}" if status == "adapted" else description


async def run_agentic_loop(
    task: str,
    *,
    model: BaseChatModel | str = DEFAULT_MODEL,
    session_id: str = "agentic",
    max_steps: int = 0,
    on_progress: ProgressCallback | None = None,
) -> AgenticResult:
    """Execute a multi-step task with planning, execution and adaptation.

    Args:
        task: Full description of the task to execute.
        model: Chat model or model string, as for `create_agent_loop`.
        session_id: Recorded in the run's metadata, to find its traces.
        max_steps: Most steps to execute; 0 means the default (10).
        on_progress: Called (and awaited if async) with `(description, step_num, total)`
            after each step; adapted steps are described as `"[Adapted] <step>"`.

    Returns:
        The run as an `AgenticResult`.

    Example:
        >>> import asyncio
        >>> from agentloop_graph import run_agentic_loop
        >>> asyncio.run(run_agentic_loop("Plan a picnic", model="demo")).status
        'completed'
    """
    graph = create_agent_loop(model, max_steps=max_steps if max_steps > 0 else DEFAULT_MAX_STEPS)
    final: dict[str, Any] = {}
    async for mode, chunk in graph.astream(
        {"task": task},
        {"metadata": {"session_id": session_id}},
        stream_mode=["custom", "values"],
    ):
        if mode == "values":
            final = cast(dict[str, Any], chunk)
            continue
        event = cast(dict[str, Any], chunk)
        if on_progress is not None and event["event"] == "agentic.step_complete":
            description = _seed_description(event["description"], event["status"])
            outcome = on_progress(description, event["step"], event["total"])
            if inspect.isawaitable(outcome):
                await outcome
    return AgenticResult(
        task_id=final["task_id"],
        task=final["task"],
        summary=final["summary"],
        steps=[
            AgenticStep(
                step_num=record["step_num"],
                description=_seed_description(record["description"], record["status"]),
                result=record["result"] or f"Failed: {record['error']}",
                status=record["status"],
                duration_ms=record["duration_ms"],
            )
            for record in final["steps"]
        ],
        status=final["status"],
        total_duration_ms=final["total_duration_ms"],
    )
