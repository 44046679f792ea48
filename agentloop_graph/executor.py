"""The `executor` node: one attempt at the current step, tool loop included."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.types import interrupt

from agentloop_graph.models import describe_error
from agentloop_graph.node import Body, CallModel, CallTool, Effect, Emit, StepTimeout
from agentloop_graph.parsing import (
    MAX_RESULT_CHARS,
    MAX_TEXT_CHARS,
    cap,
    clean_answer,
    reasoning_of,
)
from agentloop_graph.progress import RESULT_PREVIEW
from agentloop_graph.prompts import executor_prompt
from agentloop_graph.settings import Settings
from agentloop_graph.state import (
    Cursor,
    StepInput,
    StepRecord,
    StepStatus,
    add_usage,
    next_cursor,
)


class StepFailure(Exception):
    """A model answer the loop cannot use (empty, or a tool loop that never ended)."""


def spend(cursor: Cursor, replies: list[AIMessage]) -> Cursor:
    """`cursor` with the tokens of `replies` added to the open step's and the run's."""
    return {
        **cursor,
        "step_usage": add_usage(cursor["step_usage"], replies),
        "run_usage": add_usage(cursor["run_usage"], replies),
    }


def _tool_result(message: ToolMessage) -> ToolMessage:
    if isinstance(message.content, str) and len(message.content) > MAX_RESULT_CHARS:
        return message.model_copy(update={"content": cap(message.content, MAX_RESULT_CHARS)})
    return message


def _attempt(
    settings: Settings,
    prompt: str,
    trace: dict[str, Any],
    deadline: float | None,
    replies: list[AIMessage],
) -> Generator[Effect, Any, tuple[str, str | None]]:
    """Ask the model, running the tools it calls, until it answers in text.

    Returns the answer and the model's reasoning; every reply is appended to `replies`,
    so the tokens of a failed attempt count too. Each tool call's idempotency key is
    the attempt's (`task_id:step:attempt`) and the call's position in the attempt,
    which a resumed attempt reproduces.
    """
    key = f"{trace['task_id']}:{trace['step']}:{trace['attempt']}"
    conversation: str | list[BaseMessage] = prompt
    calls_made = 0
    for _ in range(settings.max_tool_rounds + 1):
        reply: AIMessage = yield CallModel(
            settings.executor_model, conversation, "executor", trace, deadline
        )
        replies.append(reply)
        if not reply.tool_calls:
            answer = clean_answer(reply.text)
            if not answer:
                raise StepFailure("the model returned an empty answer")
            return cap(answer, MAX_RESULT_CHARS), reasoning_of(reply)
        messages: list[BaseMessage] = (
            [HumanMessage(prompt), reply]
            if isinstance(conversation, str)
            else [*conversation, reply]
        )
        for call in reply.tool_calls:
            tool = settings.tools.get(call["name"])
            if tool is None:
                # Unknown and not-allowed tools look alike to the model, on purpose.
                known = ", ".join(sorted(settings.tools)) or "none"
                messages.append(
                    ToolMessage(
                        f"Error: there is no tool named {call['name']!r} (tools: {known})",
                        tool_call_id=call["id"] or "",
                        name=call["name"],
                        status="error",
                    )
                )
            else:
                calls_made += 1
                effect = CallTool(tool, call, f"{key}:{calls_made}", deadline)
                messages.append(_tool_result((yield effect)))
        conversation = messages
    raise StepFailure(f"the tool loop ran out of rounds ({settings.max_tool_rounds})")


def failure_text(model: object, step_timeout: float | None, exc: Exception) -> str:
    """The `error` text a failed attempt or adapter call leaves in its step record."""
    if isinstance(exc, StepFailure):
        return str(exc)
    if isinstance(exc, StepTimeout):
        return f"the attempt timed out after {step_timeout:g} s"
    return cap(describe_error(model, exc), MAX_TEXT_CHARS)


def _valid_plan(answer: object) -> bool:
    return (
        isinstance(answer, list)
        and bool(answer)
        and all(isinstance(step, str) and step.strip() for step in answer)
    )


def _review(state: StepInput, settings: Settings) -> dict[str, Any]:
    """Pause until a person answers on the plan; the update their answer makes.

    An answer that is not one of the three kinds pauses the run again, the interrupt
    saying what was wrong, so a typo never jams the thread.
    """
    cursor = state["cursor"]
    question = {"task_id": state["task_id"], "task": state["task"], "plan": state["plan"]}
    answer = interrupt(question)
    while not (isinstance(answer, bool) or _valid_plan(answer)):
        answer = interrupt(
            {
                **question,
                "error": "resume a plan approval with True (run it), False (cancel) or a "
                f"non-empty list of step strings (run that plan), got {answer!r}",
            }
        )
    if answer is True:
        return {"cursor": {**cursor, "approved": True}}
    if answer is False:
        summary = f"{state['task']}: Plan rejected; no step ran."
        return {"status": "cancelled", "summary": summary}
    plan = [cap(step.strip(), MAX_TEXT_CHARS) for step in answer]
    kept = plan[: settings.max_steps]
    truncated = cursor["truncated"] or len(plan) > len(kept)
    return {"plan": kept, "cursor": {**cursor, "approved": True, "truncated": truncated}}


def finish_step(
    state: StepInput,
    cursor: Cursor,
    *,
    status: StepStatus,
    result: str,
    error: str | None,
    attempts: int,
    started_at: float,
    reasoning: str | None = None,
) -> Generator[Effect, Any, dict[str, Any]]:
    """Record how the open step ended, announce it and move on to the next step.

    `cursor` is the open step's, its token counts brought up to date.
    """
    step = len(state["steps"]) + 1
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
    yield Emit(
        {
            "event": "agentic.step_complete",
            "task_id": state["task_id"],
            "step": step,
            "total": len(state["plan"]),
            "description": record["description"],
            "result": result[:RESULT_PREVIEW],
            "status": status,
            "usage": cursor["step_usage"],
        }
    )
    return {"steps": [record], "cursor": next_cursor(cursor)}


def execute(state: StepInput, settings: Settings) -> Body:
    """Make one attempt at the open step and record what came of it."""
    cursor: Cursor = state["cursor"]
    if not cursor["approved"]:
        return _review(state, settings)
    plan: list[str] = state["plan"]
    step = len(state["steps"]) + 1
    description = cursor["description"] or plan[step - 1]
    attempt = cursor["attempt"] + 1
    started_at = cursor["step_started_at"] or time.time()
    task_id = state["task_id"]
    yield Emit(
        {
            "event": "agentic.step_started",
            "task_id": task_id,
            "step": step,
            "total": len(plan),
            "description": description,
            "attempt": attempt,
        }
    )
    prompt = executor_prompt(state["task"], step, len(plan), description, state["steps"])
    deadline = time.monotonic() + settings.step_timeout if settings.step_timeout else None
    trace = {"task_id": task_id, "step": step, "attempt": attempt}
    replies: list[AIMessage] = []
    try:
        result, reasoning = yield from _attempt(settings, prompt, trace, deadline, replies)
    except Exception as exc:
        error = failure_text(settings.models.executor, settings.step_timeout, exc)
    else:
        return (
            yield from finish_step(
                state,
                spend(cursor, replies),
                status="adapted" if attempt > 1 else "completed",
                result=result,
                error=cursor["error"],
                attempts=attempt,
                started_at=started_at,
                reasoning=reasoning,
            )
        )
    cursor = spend(cursor, replies)
    yield Emit(
        {
            "event": "agentic.step_failed",
            "task_id": task_id,
            "step": step,
            "total": len(plan),
            "description": description,
            "error": error,
            "attempt": attempt,
        }
    )
    if attempt - 1 < settings.max_adaptations:
        return {
            "cursor": {
                **cursor,
                "attempt": attempt,
                "step_started_at": started_at,
                "error": error,
                "needs_adaptation": True,
            }
        }
    return (
        yield from finish_step(
            state,
            cursor,
            status="failed",
            result="",
            error=error,
            attempts=attempt,
            started_at=started_at,
        )
    )
