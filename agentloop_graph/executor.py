"""The `executor` node: one attempt at the open step, tool loop included."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.messages.ai import add_usage
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp

from agentloop_graph.agents import StepAgent
from agentloop_graph.approval import review
from agentloop_graph.budget import BudgetExhausted
from agentloop_graph.calls import (
    ModelRequest,
    NodeRun,
    acall_agent,
    acall_model,
    acall_tool,
    call_agent,
    call_model,
    call_tool,
    tool_error,
)
from agentloop_graph.context import Settings
from agentloop_graph.parallel import between_waves
from agentloop_graph.parsing import (
    MAX_RESULT_CHARS,
    cap,
    clean_answer,
    reasoning_of,
    repeats_itself,
)
from agentloop_graph.progress import ProgressEvent, StepFailed, StepStarted, aemit, emit
from agentloop_graph.prompts import RECENT_STEPS, PromptInput, executor_prompt
from agentloop_graph.state import StepInput, StepProgress, open_step, progress_of
from agentloop_graph.steps import StepFailure, agent_of, end_step, failure_text

MAX_CALLS_PER_ROUND = 16
"""Tool calls run from one model reply; further calls in it get an error message."""


@dataclass
class Attempt:
    """One attempt at the open step, as the tool loop works through it."""

    step: int
    total: int
    description: str
    number: int
    progress: StepProgress
    prompt: PromptInput
    deadline: float | None
    trace: dict[str, Any]
    agent: StepAgent | None
    """The agent doing the step, or None for the built-in executor."""
    last_reply: AIMessage | None = None
    calls_made: set[str] = field(default_factory=set)
    """Fingerprints of the tool calls already run in this attempt."""

    def request(self, settings: Settings, conversation: PromptInput) -> ModelRequest:
        """The next model call of the attempt."""
        tools = list(settings.tools.values())
        return ModelRequest(
            "executor",
            settings.models.executor,
            conversation,
            self.trace,
            runnable=settings.models.executor_with_tools,
            shape=(lambda model: model.bind_tools(tools)) if tools else None,
            deadline=self.deadline,
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
        self.last_reply = reply
        if reply.tool_calls:
            if rounds == settings.max_tool_rounds:
                raise StepFailure(f"the tool loop ran out of rounds ({settings.max_tool_rounds})")
            return None
        return self.result(reply.text)

    def result(self, text: str) -> str:
        """The step's result from an answer's text.

        Raises:
            StepFailure: The answer is empty, or one passage repeated.
        """
        text = clean_answer(text)
        if not text:
            who = "agent" if self.agent else "model"
            raise StepFailure(f"the {who} returned an empty answer")
        if repeats_itself(text):
            raise StepFailure(f"the {'agent' if self.agent else 'model'} repeated itself")
        return cap(text, MAX_RESULT_CHARS)

    def text(self) -> str:
        """The prompt as one text, as an agent gets it (its own system prompt, not ours)."""
        prompt = self.prompt
        return prompt if isinstance(prompt, str) else prompt[-1].text

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


def _begin(state: StepInput, run: NodeRun) -> tuple[Attempt, StepStarted]:
    settings, plan = run.settings, state["plan"]
    step = open_step(state)
    progress = progress_of(state, time.time())
    number = progress["attempt"] + 1
    description = progress["description"] or plan[step - 1]
    # A parallel run's step is sent the records of the steps it waits for; a sequential
    # run's step sees the last few.
    quoted = state["steps"] if "step" in state else state["steps"][-RECENT_STEPS:]
    agent = agent_of(state, settings)
    attempt = Attempt(
        step=step,
        total=len(plan),
        description=description,
        number=number,
        progress=progress,
        prompt=executor_prompt(
            settings.prompts, state["task"], step, len(plan), description, quoted
        ),
        deadline=time.monotonic() + settings.step_timeout if settings.step_timeout else None,
        trace={"task_id": state["task_id"], "step": step, "attempt": number},
        agent=agent,
    )
    started: StepStarted = {
        "event": "agentic.step_started",
        "task_id": state["task_id"],
        "step": step,
        "total": len(plan),
        "description": description,
        "attempt": number,
        "agent": agent.name if agent else None,
    }
    return attempt, started


def _end(
    state: StepInput, run: NodeRun, attempt: Attempt, outcome: str | Exception
) -> tuple[dict[str, Any], list[ProgressEvent]]:
    """The update an attempt's outcome (its answer, or why it failed) makes, and its events."""
    settings = run.settings
    progress: StepProgress = {
        **attempt.progress,
        "attempt": attempt.number,
        "usage": add_usage(attempt.progress["usage"], run.usage),
    }
    if isinstance(outcome, str):
        reasoning = reasoning_of(attempt.last_reply) if attempt.last_reply else None
        update, complete = end_step(state, run, progress, result=outcome, reasoning=reasoning)
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
        "agent": attempt.agent.name if attempt.agent else None,
    }
    if isinstance(outcome, BudgetExhausted):  # no adaptation: it would need a model call too
        update, complete = end_step(
            state,
            run,
            progress,
            reason=error,
            ended_by="budget",
            stopped=outcome.spent,
            root_cause=False,
        )
    elif attempt.number - 1 < settings.max_adaptations:
        retry: StepProgress = {
            **progress,
            "error": error,
            "first_error": progress["first_error"] or error,
            "needs_adaptation": True,
        }
        return {"cursor": {**run.counted(), "open": {str(attempt.step): retry}}}, [failed]
    else:
        update, complete = end_step(state, run, progress, reason=error, ended_by="attempts")
    return update, [failed, complete]


def _attempt(attempt: Attempt, run: NodeRun) -> str:
    """Ask the model, running the tools it calls, until it answers in text; or ask the
    step's agent."""
    if attempt.agent is not None:
        text = call_agent(attempt.agent.runnable, attempt.text(), run, attempt.deadline)
        return attempt.result(text)
    settings = run.settings
    conversation: PromptInput = attempt.prompt
    for rounds in range(settings.max_tool_rounds + 1):
        reply = call_model(attempt.request(settings, conversation), run)
        if isinstance(reply, Exception):
            raise reply
        if (answer := attempt.answer(reply, settings, rounds)) is not None:
            return answer
        conversation = attempt.next_conversation(conversation, reply)
        for index, call in enumerate(reply.tool_calls):
            tool = attempt.tool_for(call, index, settings)
            if isinstance(tool, BaseTool):
                tool = call_tool(tool, call, run, attempt.idempotency_key(call), attempt.deadline)
            conversation.append(tool)
    raise AssertionError("unreachable: the last round fails in Attempt.answer")


async def _aattempt(attempt: Attempt, run: NodeRun) -> str:
    """Async twin of `_attempt`."""
    if attempt.agent is not None:
        text = await acall_agent(attempt.agent.runnable, attempt.text(), run, attempt.deadline)
        return attempt.result(text)
    settings = run.settings
    conversation: PromptInput = attempt.prompt
    for rounds in range(settings.max_tool_rounds + 1):
        reply = await acall_model(attempt.request(settings, conversation), run)
        if isinstance(reply, Exception):
            raise reply
        if (answer := attempt.answer(reply, settings, rounds)) is not None:
            return answer
        conversation = attempt.next_conversation(conversation, reply)
        for index, call in enumerate(reply.tool_calls):
            tool = attempt.tool_for(call, index, settings)
            if isinstance(tool, BaseTool):
                key = attempt.idempotency_key(call)
                tool = await acall_tool(tool, call, run, key, attempt.deadline)
            conversation.append(tool)
    raise AssertionError("unreachable: the last round fails in Attempt.answer")


def execute(state: StepInput, run: NodeRun) -> dict[str, Any]:
    """Make one attempt at the open step and record what came of it; or, before the plan's
    first step, ask a person to approve it; or, in a parallel run, take the turn between
    two waves."""
    if not state["cursor"]["approved"]:
        return review(state, run)
    if (update := between_waves(state, run.settings)) is not None:
        return update
    attempt, started = _begin(state, run)
    emit(run, started)
    try:
        outcome: str | Exception = _attempt(attempt, run)
    except GraphBubbleUp:
        raise  # an interrupt from a tool, or a parent command: LangGraph's to handle
    except Exception as exc:
        outcome = exc
    update, events = _end(state, run, attempt, outcome)
    emit(run, *events)
    return update


async def aexecute(state: StepInput, run: NodeRun) -> dict[str, Any]:
    """Async twin of `execute`."""
    if not state["cursor"]["approved"]:
        return review(state, run)
    if (update := between_waves(state, run.settings)) is not None:
        return update
    attempt, started = _begin(state, run)
    await aemit(run, started)
    try:
        outcome: str | Exception = await _aattempt(attempt, run)
    except GraphBubbleUp:
        raise  # an interrupt from a tool, or a parent command: LangGraph's to handle
    except Exception as exc:
        outcome = exc
    update, events = _end(state, run, attempt, outcome)
    await aemit(run, *events)
    return update
