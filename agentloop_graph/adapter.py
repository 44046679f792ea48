"""The `adapter` node: proposes another way to do a step that failed."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig

from agentloop_graph.calls import ModelRequest, acall_model, call_model
from agentloop_graph.context import Settings
from agentloop_graph.parsing import MAX_TEXT_CHARS, cap, clean_answer
from agentloop_graph.progress import RESULT_PREVIEW, ProgressEvent, StepAdapted, aemit, emit
from agentloop_graph.prompts import adapter_prompt
from agentloop_graph.state import StepInput
from agentloop_graph.steps import StepFailure, end_step, failure_text, open_step, spend


def _request(state: StepInput, settings: Settings) -> ModelRequest:
    cursor, plan = state["cursor"], state["plan"]
    step = open_step(state)
    attempted = cursor["description"] or plan[step - 1]
    failure = cursor["error"] or "unknown error"
    return ModelRequest(
        settings.models.adapter,
        adapter_prompt(settings.prompts, state["task"], step, len(plan), attempted, failure),
        "adapter",
        {"task_id": state["task_id"], "step": step, "attempt": cursor["attempt"]},
    )


def _apply(
    state: StepInput, settings: Settings, reply: AIMessage | Exception
) -> tuple[dict[str, Any], list[ProgressEvent]]:
    """A revised step to attempt next; if there is none, the step ends as failed."""
    cursor = state["cursor"]
    revised = "" if isinstance(reply, Exception) else cap(clean_answer(reply.text), MAX_TEXT_CHARS)
    cursor = spend(cursor, [] if isinstance(reply, Exception) else [reply])
    if not revised:
        failure = (
            reply
            if isinstance(reply, Exception)
            else StepFailure("the adapter returned an empty step")
        )
        update, complete = end_step(
            state,
            cursor,
            status="failed",
            result="",
            error=failure_text(settings.models.adapter, None, failure),
            attempts=cursor["attempt"],
            started_at=cursor["step_started_at"] or cursor["started_at"],
        )
        return update, [complete]
    step = open_step(state)
    adapted: StepAdapted = {
        "event": "agentic.step_adapted",
        "task_id": state["task_id"],
        "step": step,
        "total": len(state["plan"]),
        "description": state["plan"][step - 1],
        "error": cursor["error"] or "unknown error",
        "adaptation": revised[:RESULT_PREVIEW],
    }
    return {"cursor": {**cursor, "description": revised, "needs_adaptation": False}}, [adapted]


def adapt(state: StepInput, config: RunnableConfig, settings: Settings) -> dict[str, Any]:
    """Ask for a revised step; if that fails, the step ends as failed."""
    reply = call_model(_request(state, settings), config, settings)
    update, events = _apply(state, settings, reply)
    emit(config, *events)
    return update


async def aadapt(state: StepInput, config: RunnableConfig, settings: Settings) -> dict[str, Any]:
    """Async twin of `adapt`."""
    reply = await acall_model(_request(state, settings), config, settings)
    update, events = _apply(state, settings, reply)
    await aemit(config, *events)
    return update
