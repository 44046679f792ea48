"""The `adapter` node: proposes another way to do a step that failed."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig

from agentloop_graph.budget import BudgetExhausted, Meter
from agentloop_graph.calls import ModelRequest, acall_model, call_model
from agentloop_graph.context import Settings
from agentloop_graph.parallel import recorded
from agentloop_graph.parsing import MAX_TEXT_CHARS, cap, clean_answer
from agentloop_graph.progress import RESULT_PREVIEW, ProgressEvent, StepAdapted, aemit, emit
from agentloop_graph.prompts import adapter_prompt
from agentloop_graph.state import Cursor, StepInput
from agentloop_graph.steps import (
    NoNewApproach,
    StepFailure,
    end_step,
    failure_text,
    open_step,
    spend,
)


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
        Meter.of(cursor),
    )


def _revision(state: StepInput, reply: AIMessage | Exception) -> Exception | str:
    """The revised step, or why there is none to attempt."""
    if isinstance(reply, Exception):
        return reply
    revised = cap(clean_answer(reply.text), MAX_TEXT_CHARS)
    if not revised:
        return StepFailure("the adapter returned an empty step")
    tried = (state["plan"][open_step(state) - 1], *state["cursor"]["revisions"])
    if _same_step(revised) in {_same_step(text) for text in tried}:
        # A revision already tried would fail the same way: end the step, don't loop.
        return NoNewApproach("the adapter proposed no new approach")
    return revised


def _same_step(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(".")


def _apply(
    state: StepInput, settings: Settings, request: ModelRequest, reply: AIMessage | Exception
) -> tuple[dict[str, Any], list[ProgressEvent]]:
    """A revised step to attempt next; if there is none, the step ends as failed."""
    revised = _revision(state, reply)
    cursor = spend(state["cursor"], [] if isinstance(reply, Exception) else [reply], request.meter)
    if isinstance(revised, Exception):
        if isinstance(revised, BudgetExhausted):
            cursor = {**cursor, "stopped": revised.spent}
        update, complete = end_step(
            state,
            cursor,
            status="failed",
            result="",
            error=failure_text(settings.models.adapter, None, revised),
            attempts=cursor["attempt"],
            started_at=cursor["step_started_at"] or cursor["started_at"],
            root_cause=not isinstance(revised, BudgetExhausted | NoNewApproach),
            max_replans=settings.max_replans,
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
    revisions = [*cursor["revisions"], revised]
    next_try: Cursor = {
        **cursor,
        "description": revised,
        "revisions": revisions,
        "needs_adaptation": False,
    }
    return {"cursor": next_try}, [adapted]


def adapt(state: StepInput, config: RunnableConfig, settings: Settings) -> dict[str, Any]:
    """Ask for a revised step; if that fails, the step ends as failed."""
    request = _request(state, settings)
    update, events = _apply(state, settings, request, call_model(request, config, settings))
    emit(config, *events)
    return recorded(state, update)


async def aadapt(state: StepInput, config: RunnableConfig, settings: Settings) -> dict[str, Any]:
    """Async twin of `adapt`."""
    request = _request(state, settings)
    reply = await acall_model(request, config, settings)
    update, events = _apply(state, settings, request, reply)
    await aemit(config, *events)
    return recorded(state, update)
