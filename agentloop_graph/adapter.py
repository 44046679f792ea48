"""The `adapter` node: proposes another way to do a step that failed."""

from __future__ import annotations

from langchain_core.messages import AIMessage

from agentloop_graph.executor import StepFailure, failure_text, finish_step, spend
from agentloop_graph.node import Body, CallModel, Emit
from agentloop_graph.parsing import MAX_TEXT_CHARS, cap, clean_answer
from agentloop_graph.progress import RESULT_PREVIEW
from agentloop_graph.prompts import adapter_prompt
from agentloop_graph.settings import Settings
from agentloop_graph.state import Cursor, StepInput


def adapt(state: StepInput, settings: Settings) -> Body:
    """Ask for a revised step; if that fails, the step ends as failed."""
    cursor: Cursor = state["cursor"]
    plan: list[str] = state["plan"]
    step = len(state["steps"]) + 1
    attempted = cursor["description"] or plan[step - 1]
    failure = cursor["error"] or "unknown error"
    prompt = adapter_prompt(state["task"], step, len(plan), attempted, failure)
    trace = {"task_id": state["task_id"], "step": step, "attempt": cursor["attempt"]}
    replies: list[AIMessage] = []
    try:
        reply = yield CallModel(settings.models.adapter, prompt, "adapter", trace)
        replies.append(reply)
        revised = cap(clean_answer(reply.text), MAX_TEXT_CHARS)
        if not revised:
            raise StepFailure("the adapter returned an empty step")
    except Exception as exc:
        return (
            yield from finish_step(
                state,
                spend(cursor, replies),
                status="failed",
                result="",
                error=failure_text(settings.models.adapter, None, exc),
                attempts=cursor["attempt"],
                started_at=cursor["step_started_at"] or cursor["started_at"],
            )
        )
    yield Emit(
        {
            "event": "agentic.step_adapted",
            "task_id": state["task_id"],
            "step": step,
            "total": len(plan),
            "description": plan[step - 1],
            "error": failure,
            "adaptation": revised[:RESULT_PREVIEW],
        }
    )
    cursor = spend(cursor, replies)
    return {"cursor": {**cursor, "description": revised, "needs_adaptation": False}}
