"""The `executor` node: one attempt at the open step, tool loop included."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp
from langgraph.types import interrupt

from agentloop_graph.budget import BudgetExhausted, Meter
from agentloop_graph.calls import (
    ModelRequest,
    acall_model,
    acall_tool,
    call_model,
    call_tool,
    tool_error,
)
from agentloop_graph.context import Settings
from agentloop_graph.dependencies import in_sequence, parse_dependency_plan
from agentloop_graph.parallel import is_branch, recorded, replan_due, waited_for
from agentloop_graph.parsing import (
    MAX_RESULT_CHARS,
    MAX_TEXT_CHARS,
    RepeatingAnswer,
    cap,
    clean_answer,
    reasoning_of,
    repeats_itself,
)
from agentloop_graph.progress import ProgressEvent, StepFailed, StepStarted, aemit, emit
from agentloop_graph.prompts import RECENT_STEPS, PromptInput, executor_prompt
from agentloop_graph.state import Cursor, StepInput, StepStatus
from agentloop_graph.steps import StepFailure, end_step, failure_text, open_step, spend

MAX_CALLS_PER_ROUND = 16
"""Tool calls run from one model reply; further calls in it get an error message."""


@dataclass
class Attempt:
    """One attempt at the open step, as the tool loop works through it."""

    step: int
    total: int
    description: str
    number: int
    started_at: float
    prompt: PromptInput
    deadline: float | None
    trace: dict[str, Any]
    meter: Meter
    replies: list[AIMessage] = field(default_factory=list)
    """Every model reply of the attempt, so the tokens of a failed attempt count too."""
    calls_made: set[str] = field(default_factory=set)
    """Fingerprints of the tool calls already run in this attempt."""

    def request(self, settings: Settings, conversation: PromptInput) -> ModelRequest:
        """The next model call of the attempt."""
        return ModelRequest(
            settings.models.executor_with_tools,
            conversation,
            "executor",
            self.trace,
            self.meter,
            self.deadline,
        )

    def next_conversation(self, conversation: PromptInput, reply: AIMessage) -> list[BaseMessage]:
        """The conversation so far, with the model's tool-calling `reply` recorded."""
        if isinstance(conversation, str):
            return [HumanMessage(conversation), reply]
        return [*conversation, reply]

    def answer(self, reply: AIMessage, settings: Settings, rounds: int) -> str | None:
        """The attempt's answer if `reply` ends it, None if its tool calls should run.

        Raises:
            StepFailure: The answer is empty, or the tool loop is out of rounds.
        """
        if reply.tool_calls:
            if rounds == settings.max_tool_rounds:
                raise StepFailure(f"the tool loop ran out of rounds ({settings.max_tool_rounds})")
            return None
        text = clean_answer(reply.text)
        if not text:
            raise StepFailure("the model returned an empty answer")
        if repeats_itself(text):
            raise StepFailure("the model repeated itself")
        return cap(text, MAX_RESULT_CHARS)

    def tool_for(self, call: ToolCall, index: int, settings: Settings) -> BaseTool | ToolMessage:
        """The tool to run for `call`, or the error message the model gets instead."""
        tool = settings.tools.get(call["name"])
        if tool is None:
            # Unknown and not-allowed tools look alike to the model, on purpose.
            known = ", ".join(sorted(settings.tools)) or "none"
            return tool_error(
                call, f"Error: there is no tool named {call['name']!r} (tools: {known})"
            )
        if index >= MAX_CALLS_PER_ROUND:
            return tool_error(
                call, f"Error: at most {MAX_CALLS_PER_ROUND} tool calls run per reply; not run"
            )
        fingerprint = _fingerprint(call)
        if fingerprint in self.calls_made:
            return tool_error(
                call, "Error: this exact call was already made in this step; use its result"
            )
        self.calls_made.add(fingerprint)
        return tool

    def idempotency_key(self, call: ToolCall) -> str:
        """`task_id:step:attempt:<call>`: the same for the same call after a resume,
        different for a different call (its tool name and arguments)."""
        trace = self.trace
        return f"{trace['task_id']}:{trace['step']}:{trace['attempt']}:{_fingerprint(call)}"


def _fingerprint(call: ToolCall) -> str:
    arguments = json.dumps(call["args"], sort_keys=True, default=str)
    return hashlib.sha256(f"{call['name']}\0{arguments}".encode()).hexdigest()[:16]


def _tool_result(message: ToolMessage) -> ToolMessage:
    if isinstance(message.content, str) and len(message.content) > MAX_RESULT_CHARS:
        return message.model_copy(update={"content": cap(message.content, MAX_RESULT_CHARS)})
    return message


def _valid_plan(answer: object) -> bool:
    return (
        isinstance(answer, list)
        and bool(answer)
        and all(isinstance(step, str) and step.strip() for step in answer)
    )


def _review(state: StepInput, settings: Settings) -> dict[str, Any]:
    """Pause until a person answers on the plan; the update their answer makes.

    It runs in the executor, not the planner: a node resumed after `interrupt` runs again
    from its top, and the planner's top is a model call. An answer that is not one of
    the three kinds pauses the run again, saying what was wrong, so a typo never jams
    the thread.
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
        summary = f"{cap(state['task'], MAX_TEXT_CHARS)}: Plan rejected; no step ran."
        return {"status": "cancelled", "summary": summary}
    plan = [cap(step.strip(), MAX_TEXT_CHARS) for step in answer]
    kept = plan[: settings.max_steps]
    update = {"plan": kept, "cursor": {**cursor, "approved": True, "planned": len(plan)}}
    if not cursor["max_parallel"]:
        return update
    # The person's steps may say what they wait for, as a planner's do: `(after 1)`.
    steps, dependencies = parse_dependency_plan("\n".join(f"1. {step}" for step in kept))
    if len(steps) != len(kept):
        steps, dependencies = kept, in_sequence(len(kept))
    return {**update, "plan": steps, "dependencies": dependencies}


def _begin(state: StepInput, settings: Settings) -> tuple[Attempt, StepStarted]:
    cursor, plan = state["cursor"], state["plan"]
    step = open_step(state)
    number = cursor["attempt"] + 1
    description = cursor["description"] or plan[step - 1]
    after = waited_for(state)
    done, quoted = (state["steps"], RECENT_STEPS) if after is None else (after, len(after))
    attempt = Attempt(
        step=step,
        total=len(plan),
        description=description,
        number=number,
        started_at=cursor["step_started_at"] or time.time(),
        prompt=executor_prompt(
            settings.prompts, state["task"], step, len(plan), description, done, quoted
        ),
        deadline=time.monotonic() + settings.step_timeout if settings.step_timeout else None,
        trace={"task_id": state["task_id"], "step": step, "attempt": number},
        meter=Meter.of(cursor),
    )
    started: StepStarted = {
        "event": "agentic.step_started",
        "task_id": state["task_id"],
        "step": step,
        "total": len(plan),
        "description": description,
        "attempt": number,
    }
    return attempt, started


def _end(
    state: StepInput, settings: Settings, attempt: Attempt, outcome: str | Exception
) -> tuple[dict[str, Any], list[ProgressEvent]]:
    """The update an attempt's outcome (its answer, or why it failed) makes, and its events."""
    cursor: Cursor = spend(state["cursor"], attempt.replies, attempt.meter)
    if isinstance(outcome, str):
        status: StepStatus = "adapted" if attempt.number > 1 else "completed"
        reasoning = reasoning_of(attempt.replies[-1])
        update, complete = end_step(
            state,
            cursor,
            status=status,
            result=outcome,
            error=cursor["error"],
            attempts=attempt.number,
            started_at=attempt.started_at,
            reasoning=reasoning,
        )
        return update, [complete]
    error = failure_text(settings.models.executor, settings.step_timeout, outcome)
    failed: StepFailed = {
        "event": "agentic.step_failed",
        "task_id": state["task_id"],
        "step": attempt.step,
        "total": attempt.total,
        "description": attempt.description,
        "error": error,
        "attempt": attempt.number,
    }
    if isinstance(outcome, BudgetExhausted):  # no adaptation: it would need a model call too
        cursor = {**cursor, "stopped": outcome.spent}
    elif attempt.number - 1 < settings.max_adaptations:
        retry: Cursor = {
            **cursor,
            "attempt": attempt.number,
            "step_started_at": attempt.started_at,
            "error": error,
            "first_error": cursor["first_error"] or error,
            "needs_adaptation": True,
        }
        return {"cursor": retry}, [failed]
    update, complete = end_step(
        state,
        cursor,
        status="failed",
        result="",
        error=error,
        attempts=attempt.number,
        started_at=attempt.started_at,
        root_cause=cursor["stopped"] is None,
        max_replans=settings.max_replans,
    )
    return update, [failed, complete]


def _attempt(attempt: Attempt, config: RunnableConfig, settings: Settings) -> str:
    """Ask the model, running the tools it calls, until it answers in text."""
    conversation: PromptInput = attempt.prompt
    for rounds in range(settings.max_tool_rounds + 1):
        reply = call_model(attempt.request(settings, conversation), config, settings)
        if isinstance(reply, RepeatingAnswer):
            attempt.replies.append(reply.reply)  # its tokens were spent all the same
        if isinstance(reply, Exception):
            raise reply
        attempt.replies.append(reply)
        if (answer := attempt.answer(reply, settings, rounds)) is not None:
            return answer
        conversation = attempt.next_conversation(conversation, reply)
        for index, call in enumerate(reply.tool_calls):
            tool = attempt.tool_for(call, index, settings)
            if isinstance(tool, BaseTool):
                key = attempt.idempotency_key(call)
                tool = _tool_result(call_tool(tool, call, config, key, attempt.deadline))
            conversation.append(tool)
    raise AssertionError("unreachable: the last round fails in Attempt.answer")


async def _aattempt(attempt: Attempt, config: RunnableConfig, settings: Settings) -> str:
    """Async twin of `_attempt`."""
    conversation: PromptInput = attempt.prompt
    for rounds in range(settings.max_tool_rounds + 1):
        reply = await acall_model(attempt.request(settings, conversation), config, settings)
        if isinstance(reply, RepeatingAnswer):
            attempt.replies.append(reply.reply)  # its tokens were spent all the same
        if isinstance(reply, Exception):
            raise reply
        attempt.replies.append(reply)
        if (answer := attempt.answer(reply, settings, rounds)) is not None:
            return answer
        conversation = attempt.next_conversation(conversation, reply)
        for index, call in enumerate(reply.tool_calls):
            tool = attempt.tool_for(call, index, settings)
            if isinstance(tool, BaseTool):
                key = attempt.idempotency_key(call)
                tool = _tool_result(await acall_tool(tool, call, config, key, attempt.deadline))
            conversation.append(tool)
    raise AssertionError("unreachable: the last round fails in Attempt.answer")


def _between_waves(state: StepInput, settings: Settings) -> dict[str, Any] | None:
    """The update of an execution that attempts no step, or None for an attempt: plan
    approval, or a parallel run's turn between two waves (its router sends the next)."""
    if not state["cursor"]["approved"]:
        return _review(state, settings)
    if state["cursor"]["max_parallel"] and not is_branch(state):
        return replan_due(state, settings.max_replans)
    return None


def execute(state: StepInput, config: RunnableConfig, settings: Settings) -> dict[str, Any]:
    """Make one attempt at the open step and record what came of it."""
    if (update := _between_waves(state, settings)) is not None:
        return update
    attempt, started = _begin(state, settings)
    emit(config, started)
    try:
        outcome: str | Exception = _attempt(attempt, config, settings)
    except GraphBubbleUp:
        raise  # an interrupt from a tool, or a parent command: LangGraph's to handle
    except Exception as exc:
        outcome = exc
    update, events = _end(state, settings, attempt, outcome)
    emit(config, *events)
    return recorded(state, update)


async def aexecute(state: StepInput, config: RunnableConfig, settings: Settings) -> dict[str, Any]:
    """Async twin of `execute`."""
    if (update := _between_waves(state, settings)) is not None:
        return update
    attempt, started = _begin(state, settings)
    await aemit(config, started)
    try:
        outcome: str | Exception = await _aattempt(attempt, config, settings)
    except GraphBubbleUp:
        raise  # an interrupt from a tool, or a parent command: LangGraph's to handle
    except Exception as exc:
        outcome = exc
    update, events = _end(state, settings, attempt, outcome)
    await aemit(config, *events)
    return recorded(state, update)
