"""The `adapter` node: proposes another way to do a step that failed."""

from __future__ import annotations

import time
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.messages.ai import add_usage

from agentloop_graph.budget import BudgetExhausted
from agentloop_graph.calls import ModelRequest, NodeRun, acall_model, call_model
from agentloop_graph.parsing import MAX_TEXT_CHARS, cap, clean_answer
from agentloop_graph.progress import RESULT_PREVIEW, ProgressEvent, StepAdapted, aemit, emit
from agentloop_graph.prompts import adapter_prompt
from agentloop_graph.state import StepInput, StepProgress, open_step, progress_of
from agentloop_graph.steps import NoNewApproach, StepFailure, end_step, failure_text


def _request(state: StepInput, run: NodeRun, progress: StepProgress) -> ModelRequest:
    step, plan, settings = open_step(state), state["plan"], run.settings
    attempted = progress["description"] or plan[step - 1]
    failure = progress["error"] or "unknown error"
    return ModelRequest(
        "adapter",
        settings.models.adapter,
        adapter_prompt(settings.prompts, state["task"], step, len(plan), attempted, failure),
        {"task_id": state["task_id"], "step": step, "attempt": progress["attempt"]},
    )


def _revision(
    state: StepInput, progress: StepProgress, reply: AIMessage | Exception
) -> Exception | str:
    """The revised step, or why there is none to attempt."""
    if isinstance(reply, Exception):
        return reply
    revised = cap(clean_answer(reply.text), MAX_TEXT_CHARS)
    if not revised:
        return StepFailure("the adapter returned an empty step")
    tried = (state["plan"][open_step(state) - 1], *progress["revisions"])
    if _same_step(revised) in {_same_step(text) for text in tried}:
        # A revision already tried would fail the same way: end the step, don't loop.
        return NoNewApproach("the adapter proposed no new approach")
    return revised


def _same_step(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(".")


def _apply(
    state: StepInput, run: NodeRun, progress: StepProgress, reply: AIMessage | Exception
) -> tuple[dict[str, Any], list[ProgressEvent]]:
    """A revised step to attempt next; if there is none, the step ends as failed."""
    revised = _revision(state, progress, reply)
    progress = {**progress, "usage": add_usage(progress["usage"], run.usage)}
    if isinstance(revised, Exception):
        exhausted = isinstance(revised, BudgetExhausted)
        update, complete = end_step(
            state,
            run,
            progress,
            reason=failure_text(run.settings.models.adapter, None, revised),
            ended_by="budget" if exhausted else "adapter",
            stopped=revised.spent if isinstance(revised, BudgetExhausted) else None,
            root_cause=not isinstance(revised, BudgetExhausted | NoNewApproach),
        )
        return update, [complete]
    step = open_step(state)
    adapted: StepAdapted = {
        "event": "agentic.step_adapted",
        "task_id": state["task_id"],
        "step": step,
        "total": len(state["plan"]),
        "description": state["plan"][step - 1],
        "error": progress["error"] or "unknown error",
        "adaptation": revised[:RESULT_PREVIEW],
    }
    next_try: StepProgress = {
        **progress,
        "description": revised,
        "revisions": [*progress["revisions"], revised],
        "needs_adaptation": False,
    }
    return {"cursor": {**run.counted(), "open": {str(step): next_try}}}, [adapted]


def adapt(state: StepInput, run: NodeRun) -> dict[str, Any]:
    """Ask for a revised step; if that fails, the step ends as failed."""
    progress = progress_of(state, time.time())
    reply = call_model(_request(state, run, progress), run)
    update, events = _apply(state, run, progress, reply)
    emit(run, *events)
    return update


async def aadapt(state: StepInput, run: NodeRun) -> dict[str, Any]:
    """Async twin of `adapt`."""
    progress = progress_of(state, time.time())
    reply = await acall_model(_request(state, run, progress), run)
    update, events = _apply(state, run, progress, reply)
    await aemit(run, *events)
    return update
