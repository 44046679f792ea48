"""The `summariser` node: counts, status, the optional final answer."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.messages.ai import add_usage
from langgraph.types import Overwrite
from pydantic import BaseModel, ValidationError

from agentloop_graph.budget import BudgetExhausted, report
from agentloop_graph.calls import ModelRequest, NodeRun, acall_model, call_model
from agentloop_graph.context import Settings, with_schema
from agentloop_graph.parsing import (
    MAX_RESULT_CHARS,
    MAX_TEXT_CHARS,
    cap,
    clean_answer,
    structured_data,
)
from agentloop_graph.plans import in_sequence
from agentloop_graph.progress import SUMMARY_PREVIEW, TaskComplete, aemit, emit
from agentloop_graph.prompts import summariser_prompt
from agentloop_graph.state import RunStatus, StepRecord, SummariserInput

logger = logging.getLogger(__name__)


def counts_line(task: str, total: int, steps: Sequence[StepRecord]) -> str:
    """`"{task}: Completed {c}/{N} steps[, {a} adapted][, {f} failed]."`"""
    tally = {status: 0 for status in ("completed", "adapted", "failed")}
    for record in steps:
        tally[record["status"]] += 1
    parts = [f"Completed {tally['completed']}/{total} steps"]
    if tally["adapted"]:
        parts.append(f"{tally['adapted']} adapted")
    if tally["failed"]:
        parts.append(f"{tally['failed']} failed")
    return f"{task}: {', '.join(parts)}."


def run_status(truncated: bool, steps: Sequence[StepRecord]) -> RunStatus:
    """`failed` if nothing succeeded, `partial` if something is missing, else `completed`."""
    if not any(record["status"] != "failed" for record in steps):
        return "failed"
    if truncated or any(record["status"] == "failed" for record in steps):
        return "partial"
    return "completed"


def _outcome(state: SummariserInput) -> tuple[str, RunStatus]:
    """The run's summary and status, from its steps (or what ended it early)."""
    if state["status"] is not None:
        # Planning failed or the plan was rejected: the summary is already written.
        return state["summary"] or state["status"], state["status"]
    cursor, plan, steps = state["cursor"], state["plan"], state["steps"]
    summary = counts_line(cap(state["task"], MAX_TEXT_CHARS), len(plan), steps)
    truncated = cursor["planned"] > len(plan)
    if truncated:
        summary += f" The plan was cut from {cursor['planned']} to {len(plan)} steps (max_steps)."
    # Steps the budget never let start are missing too.
    return summary, run_status(truncated or len(steps) < len(plan), steps)


def _request(state: SummariserInput, settings: Settings) -> ModelRequest | None:
    if not (settings.summarise_with_model and state["steps"]):
        return None
    prompt = summariser_prompt(settings.prompts, state["task"], state["steps"])
    model, shape = settings.models.summariser, settings.response_format
    if shape is None:
        return ModelRequest("summariser", model, prompt, {"task_id": state["task_id"]})
    return ModelRequest(
        "summariser",
        model,
        prompt,
        {"task_id": state["task_id"]},
        runnable=settings.models.structured("summariser", shape),
        shape=lambda capped: with_schema(capped, shape) or capped,
    )


def typed_answer(reply: AIMessage, shape: dict[str, Any] | type) -> Any:
    """The final answer in `shape` (a pydantic model, or the dict a `TypedDict` or JSON schema
    describes), or None when the reply holds none that fits."""
    data = structured_data(reply)
    if isinstance(shape, type) and issubclass(shape, BaseModel):
        try:
            return shape.model_validate(data)
        except ValidationError:
            return None
    return data if isinstance(data, dict) else None


def _as_text(answer: Any) -> str:
    """A typed answer's text form, for `answer` and the final message."""
    data = answer.model_dump(mode="json") if isinstance(answer, BaseModel) else answer
    return json.dumps(data, ensure_ascii=False, default=str)


def _apply(
    state: SummariserInput, run: NodeRun, reply: AIMessage | Exception | None, reordered: bool
) -> tuple[dict[str, Any], TaskComplete]:
    """The update that closes the run, and its last event; the steps of a parallel run
    rewritten in plan order if they ended in another (`reordered`)."""
    settings = run.settings
    summary, status = _outcome(state)
    cursor = state["cursor"]
    usage = add_usage(cursor["usage"], run.usage)
    answer: str | None = None
    typed: Any = None
    stopped = cursor["stopped"]
    if isinstance(reply, BudgetExhausted):
        stopped = stopped or reply.spent
    elif isinstance(reply, Exception):
        logger.warning("the final answer could not be written", exc_info=reply)
    elif reply is not None and settings.response_format is not None:
        typed = typed_answer(reply, settings.response_format)
        answer = None if typed is None else cap(_as_text(typed), MAX_RESULT_CHARS)
    elif reply is not None:
        answer = cap(clean_answer(reply.text), MAX_RESULT_CHARS) or None
    if stopped is not None:
        summary += f" Stopped: {stopped} budget spent."
    duration_ms = int((time.time() - cursor["started_at"]) * 1000)
    event: TaskComplete = {
        "event": "agentic.task_complete",
        "task_id": state["task_id"],
        "status": status,
        "steps_completed": len(state["steps"]),
        "summary": summary[:SUMMARY_PREVIEW],
        "answer": None if answer is None else answer[:SUMMARY_PREVIEW],
        "duration_ms": duration_ms,
        "usage": usage,
        "budget": report(settings.budget, run.meter),
    }
    update: dict[str, Any] = {
        "summary": summary,
        "status": status,
        "answer": answer,
        "total_duration_ms": duration_ms,
        "usage": usage,
        "messages": [AIMessage(answer or summary, id=f"{state['task_id']}-answer")],
    }
    if settings.response_format is not None:
        update["structured_response"] = typed
    if reordered:
        update["steps"] = Overwrite(state["steps"])  # in plan order, as `_in_plan_order` made them
    if not cursor["max_parallel"] and (settings.parallel or "dependencies" in state):
        # A parallel run whose planning failed, or a sequential run after a parallel one
        # on its thread: its steps ran one after another, and the earlier run's lists
        # must not stay.
        update["dependencies"] = in_sequence(len(state["plan"]))
    return update, event


def _in_plan_order(state: SummariserInput) -> tuple[SummariserInput, bool]:
    """The run with its steps in plan order, however parallel steps ended; whether that
    order differs from the order they ended in."""
    if not state["cursor"]["max_parallel"]:
        return state, False
    steps = sorted(state["steps"], key=lambda record: record["step_num"])
    reordered = any(a is not b for a, b in zip(steps, state["steps"], strict=True))
    return {**state, "steps": steps}, reordered


def summarise(state: SummariserInput, run: NodeRun) -> dict[str, Any]:
    """Close the run: summary, status, answer, duration, the final AI message."""
    state, reordered = _in_plan_order(state)
    request = _request(state, run.settings)
    reply = None if request is None else call_model(request, run)
    update, event = _apply(state, run, reply, reordered)
    emit(run, event)
    return update


async def asummarise(state: SummariserInput, run: NodeRun) -> dict[str, Any]:
    """Async twin of `summarise`."""
    state, reordered = _in_plan_order(state)
    request = _request(state, run.settings)
    reply = None if request is None else await acall_model(request, run)
    update, event = _apply(state, run, reply, reordered)
    await aemit(run, event)
    return update
