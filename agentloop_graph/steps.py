"""What the executor and the adapter share: failures, token counts, the end of a step."""

from __future__ import annotations

import time
from collections.abc import Mapping

from langchain_core.messages import AIMessage

from agentloop_graph.budget import BudgetExhausted, Meter
from agentloop_graph.calls import StepTimeout
from agentloop_graph.models import describe_error
from agentloop_graph.parsing import MAX_TEXT_CHARS, cap
from agentloop_graph.progress import RESULT_PREVIEW, StepComplete
from agentloop_graph.state import Cursor, StepInput, StepRecord, StepStatus, add_usage, next_cursor

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


def spend(cursor: Cursor, replies: list[AIMessage], meter: Meter) -> Cursor:
    """`cursor` with the tokens of `replies` added to the open step's and the run's, and
    the model calls `meter` counted."""
    return {
        **cursor,
        "step_usage": add_usage(cursor["step_usage"], replies),
        "run_usage": add_usage(cursor["run_usage"], replies),
        "model_calls": meter.model_calls,
    }


def open_step(state: StepInput) -> int:
    """The 1-based number of the step being worked on (a parallel run's branch names it)."""
    named: Mapping[str, object] = state
    step = named.get("step")
    return step if isinstance(step, int) else len(state["steps"]) + 1


def end_step(
    state: StepInput,
    cursor: Cursor,
    *,
    status: StepStatus,
    result: str,
    error: str | None,
    attempts: int,
    started_at: float,
    reasoning: str | None = None,
    root_cause: bool = True,
    max_replans: int = 0,
) -> tuple[dict[str, object], StepComplete]:
    """The update that records how the open step ended and moves on, and its event.

    `cursor` is the open step's, its token counts brought up to date. A failed step's
    `error` keeps the step's first failure beside the last (`root_cause`), unless the last
    says all there is to say (a spent budget, no new approach). A failed step with steps
    after it sends the run to the planner while it has replans left (`max_replans`).
    """
    step = open_step(state)
    first = cursor["first_error"]
    if status == "failed" and root_cause and first is not None and error not in (None, first):
        # The root cause stays beside the last failure, as the original loop kept both.
        half = (MAX_TEXT_CHARS - len(ALSO_FAILED)) // 2
        error = f"{cap(first, half)}{ALSO_FAILED}{cap(error, half)}"
    record: StepRecord = {
        "step_num": step,
        "description": state["plan"][step - 1],
        "result": result,
        "status": status,
        "duration_ms": int((time.time() - started_at) * 1000),
        "started_ms": int((started_at - cursor["started_at"]) * 1000),
        "attempts": attempts,
        "error": error,
        "adaptation": cursor["description"],
        "reasoning": reasoning,
        "usage": cursor["step_usage"],
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
        "usage": cursor["step_usage"],
    }
    after = next_cursor(cursor)
    if (
        status == "failed"
        and cursor["stopped"] is None
        and cursor["replans"] < max_replans
        and step < len(state["plan"])
    ):
        after["replan_reason"] = error
    return {"steps": [record], "cursor": after}, event
