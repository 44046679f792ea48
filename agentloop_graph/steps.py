"""What the executor and the adapter share: failures, and the end of a step."""

from __future__ import annotations

import time
from typing import Any

from agentloop_graph.agents import StepAgent
from agentloop_graph.budget import BudgetExhausted, Spent
from agentloop_graph.calls import NodeRun, StepTimeout
from agentloop_graph.context import Settings
from agentloop_graph.models import describe_error
from agentloop_graph.parsing import MAX_TEXT_CHARS, cap
from agentloop_graph.progress import RESULT_PREVIEW, EndedBy, StepComplete
from agentloop_graph.state import (
    CursorUpdate,
    StepInput,
    StepProgress,
    StepRecord,
    StepStatus,
    open_step,
)

ALSO_FAILED = "; Adaptation also failed: "


class StepFailure(Exception):
    """A model answer the loop cannot use (empty, or a tool loop that never ended)."""


class NoNewApproach(StepFailure):
    """The adapter proposed a step already tried: another attempt would fail the same way."""


def failure_text(model: object, step_timeout: float | None, exc: Exception) -> str:
    """The `error` text a failed attempt or adapter call leaves in its step record."""
    if isinstance(exc, StepFailure | BudgetExhausted):
        return str(exc)
    if isinstance(exc, StepTimeout):
        return f"the attempt timed out after {step_timeout:g} s"
    return cap(describe_error(model, exc), MAX_TEXT_CHARS)


def agent_of(state: StepInput, settings: Settings) -> StepAgent | None:
    """The agent the open step is for (None: the built-in executor)."""
    agents, step = state["cursor"]["agents"], open_step(state)
    return settings.agent(agents[step - 1] if step <= len(agents) else None)


def end_step(
    state: StepInput,
    run: NodeRun,
    progress: StepProgress,
    *,
    result: str = "",
    reason: str | None = None,
    ended_by: EndedBy = "answer",
    reasoning: str | None = None,
    stopped: Spent | None = None,
    root_cause: bool = True,
) -> tuple[dict[str, Any], StepComplete]:
    """The update that records how the open step ended, and its event.

    A step that got an answer (`result`) is `completed`, or `adapted` after a revision; one
    that failed keeps its first failure beside the one that ended it (`reason`), unless that
    says all there is to say (`root_cause=False`: a spent budget, no new approach). A failed
    step with steps after it sends a sequential run to the planner while replans are left; a
    step the budget refused (`stopped`) stops the run.
    """
    step, cursor, settings = open_step(state), state["cursor"], run.settings
    error = progress["error"]
    status: StepStatus = "adapted" if progress["description"] else "completed"
    if ended_by != "answer":
        status, error = "failed", reason
        first = progress["first_error"]
        if root_cause and first is not None and reason not in (None, first):
            # The root cause stays beside the last failure, as the original loop kept both.
            half = (MAX_TEXT_CHARS - len(ALSO_FAILED)) // 2
            error = f"{cap(first, half)}{ALSO_FAILED}{cap(reason or '', half)}"
    record: StepRecord = {
        "step_num": step,
        "description": state["plan"][step - 1],
        "result": result,
        "status": status,
        "duration_ms": int((time.time() - progress["started_at"]) * 1000),
        "started_ms": int((progress["started_at"] - cursor["started_at"]) * 1000),
        "attempts": progress["attempt"],
        "error": error,
        "adaptation": progress["description"],
        "reasoning": reasoning,
        "usage": progress["usage"],
        "agent": agent.name if (agent := agent_of(state, settings)) else None,
    }
    event: StepComplete = {
        "event": "agentic.step_complete",
        "task_id": state["task_id"],
        "step": step,
        "total": len(state["plan"]),
        "description": record["description"],
        "result": result[:RESULT_PREVIEW],
        "status": status,
        "error": error,
        "usage": progress["usage"],
        "agent": record["agent"],
        "ended_by": ended_by,
        "reason": reason if status == "failed" else None,
    }
    update: CursorUpdate = {**run.counted(), "open": {str(step): None}}
    if stopped is not None:
        update["stopped"] = stopped
    elif (
        status == "failed"
        and not cursor["max_parallel"]
        and cursor["replans"] < settings.max_replans
        and step < len(state["plan"])
    ):
        update["replan_reason"] = error
    return {"steps": [record], "cursor": update}, event
