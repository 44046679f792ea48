"""What the executor and the adapter share: failures, token counts, the end of a step."""

from __future__ import annotations

import time

from langchain_core.messages import AIMessage

from agentloop_graph.calls import StepTimeout
from agentloop_graph.models import describe_error
from agentloop_graph.parsing import MAX_TEXT_CHARS, cap
from agentloop_graph.progress import RESULT_PREVIEW, StepComplete
from agentloop_graph.state import Cursor, StepInput, StepRecord, StepStatus, add_usage, next_cursor


class StepFailure(Exception):
    """A model answer the loop cannot use (empty, or a tool loop that never ended)."""


def failure_text(model: object, step_timeout: float | None, exc: Exception) -> str:
    """The `error` text a failed attempt or adapter call leaves in its step record."""
    if isinstance(exc, StepFailure):
        return str(exc)
    if isinstance(exc, StepTimeout):
        return f"the attempt timed out after {step_timeout:g} s"
    return cap(describe_error(model, exc), MAX_TEXT_CHARS)


def spend(cursor: Cursor, replies: list[AIMessage]) -> Cursor:
    """`cursor` with the tokens of `replies` added to the open step's and the run's."""
    return {
        **cursor,
        "step_usage": add_usage(cursor["step_usage"], replies),
        "run_usage": add_usage(cursor["run_usage"], replies),
    }


def open_step(state: StepInput) -> int:
    """The 1-based number of the step being worked on."""
    return len(state["steps"]) + 1


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
) -> tuple[dict[str, object], StepComplete]:
    """The update that records how the open step ended and moves on, and its event.

    `cursor` is the open step's, its token counts brought up to date.
    """
    step = open_step(state)
    first = cursor["first_error"]
    if status == "failed" and first is not None and first != error:
        # The root cause stays beside the last failure, as the original loop kept both.
        error = f"{first}; Adaptation also failed: {error}"
    record: StepRecord = {
        "step_num": step,
        "description": state["plan"][step - 1],
        "result": result,
        "status": status,
        "duration_ms": int((time.time() - started_at) * 1000),
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
        "usage": cursor["step_usage"],
    }
    return {"steps": [record], "cursor": next_cursor(cursor)}, event
