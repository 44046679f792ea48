"""The `summariser` node: counts, status, the optional final answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from langchain_core.messages import AIMessage

from agentloop_graph.node import Body, CallModel, Emit
from agentloop_graph.parsing import clean_answer
from agentloop_graph.progress import SUMMARY_PREVIEW
from agentloop_graph.prompts import summariser_prompt
from agentloop_graph.settings import Settings
from agentloop_graph.state import Cursor, RunStatus, StepRecord, SummariserInput, add_usage

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


def summarise(state: SummariserInput, settings: Settings) -> Body:
    """Close the run: summary, status, answer, duration, the final AI message."""
    cursor: Cursor = state["cursor"]
    steps: list[StepRecord] = state["steps"]
    status: RunStatus
    if state["status"] is not None:
        # Planning failed or the plan was rejected: the summary is already written.
        summary, status = state["summary"] or state["status"], state["status"]
    else:
        summary = counts_line(state["task"], len(state["plan"]), steps)
        status = run_status(cursor["truncated"], steps)
    answer: str | None = None
    usage = cursor["run_usage"]
    if settings.summarise_with_model and steps:
        prompt = summariser_prompt(state["task"], steps)
        try:
            reply = yield CallModel(
                settings.models.summariser, prompt, "summariser", {"task_id": state["task_id"]}
            )
        except Exception:
            logger.warning("the final answer could not be written", exc_info=True)
        else:
            answer = clean_answer(reply.text) or None
            usage = add_usage(usage, [reply])
    duration_ms = int((time.time() - cursor["started_at"]) * 1000)
    yield Emit(
        {
            "event": "agentic.task_complete",
            "task_id": state["task_id"],
            "status": status,
            "steps_completed": len(steps),
            "summary": summary[:SUMMARY_PREVIEW],
            "duration_ms": duration_ms,
            "usage": usage,
        }
    )
    return {
        "summary": summary,
        "status": status,
        "answer": answer,
        "total_duration_ms": duration_ms,
        "usage": usage,
        "messages": [AIMessage(answer or summary)],
    }
