"""The offline, deterministic demo model behind the `"demo"` model string.

It tells the loop's phases apart by the node that calls it (LangGraph's `langgraph_node` run
metadata), never by the prompts' wording, so it keeps working when the prompt templates are
replaced or a system prompt comes first. Of the prompt (the last human message) it reads only
what every loop prompt carries: the task from a `Task: ...` line (else the whole prompt), the
step from `Step i/N: <description>`, the plan's limit from "at most N".

- `planner`: up to four steps for any task.
- `executor`: `[demo] Step N done: <description>.`
- `adapter`: the failed step, to be done "one small piece at a time".
- `summariser`: a final answer that says which steps failed, if any did.

A task that says `fail step N` makes the first attempt at step N fail, so the adapter path
shows; `break step N` makes every attempt at step N fail, so the step ends failed and the run
partial. Every such phrase in the task counts (`fail step 1, break step 3`).

Outside the loop's nodes (in a chat app's own node, or called directly) it is a chat model:
with a `plan_and_execute` tool bound it hands requests that look multi-step (they mention a
plan, steps, or "then") to that tool, relays what the tool reports, and answers everything
else directly.
"""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

_TASK = re.compile(r"^Task: (.*)$", re.MULTILINE)
# The description is what follows the first colon on the step's line (`Step 2/4: ...`,
# `Step 2/4 failed: ...`); "Step 1: <result>" lines of earlier steps have no "/N".
_STEP = re.compile(r"\bStep (\d+)/\d+(?:[^:\n]*:[ \t]*(.*))?")
_AT_MOST = re.compile(r"at most (\d+)")
_FAIL = re.compile(r"fail step (\d+)", re.IGNORECASE)
_BREAK = re.compile(r"break step (\d+)", re.IGNORECASE)
_RESULT_LINE = re.compile(r"^\d+\. ", re.MULTILINE)
_FAILED_LINE = re.compile(r"^(?:(\d+)\. )?.*?FAILED \((.*)\)[ \t]*$", re.MULTILINE)
_MULTI_STEP = re.compile(r"\b(plan|steps?|then)\b", re.IGNORECASE)
_REVISED = "Alternative approach: "
_LOOP_TOOL = "plan_and_execute"

PLAN = (
    "Pin down what is being asked: {task}",
    "Collect the facts and inputs the task needs",
    "Work out the result from those facts",
    "Check the result and write it up",
)


class DemoModelError(RuntimeError):
    """The failure the demo model simulates when a task asks for one."""


class DemoChatModel(BaseChatModel):
    """Offline chat model that plays every phase of the loop deterministically.

    Example:
        >>> from agentloop_graph import create_agent_loop
        >>> graph = create_agent_loop("demo")
        >>> graph.invoke({"task": "Plan a picnic"})["status"]
        'completed'
    """

    latency: float = 0.0
    """Seconds to wait before each answer, to make live progress visible."""

    @property
    def _llm_type(self) -> str:
        return "agentloop-demo"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; of those, the demo only ever calls `plan_and_execute`."""
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            time.sleep(self.latency)
        return _result(reply(messages, _node(run_manager), kwargs.get("tools", ())))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            await asyncio.sleep(self.latency)
        return _result(reply(messages, _node(run_manager), kwargs.get("tools", ())))


def _node(run_manager: Any) -> str | None:
    metadata = getattr(run_manager, "metadata", None) or {}
    node = metadata.get("langgraph_node")
    return node if isinstance(node, str) else None


def _result(message: AIMessage | str) -> ChatResult:
    message = AIMessage(message) if isinstance(message, str) else message
    return ChatResult(generations=[ChatGeneration(message=message)])


def reply(
    messages: Sequence[BaseMessage],
    node: str | None = None,
    tools: Sequence[Mapping[str, Any]] = (),
) -> AIMessage | str:
    """The demo's answer to `messages`.

    Args:
        messages: The conversation; its last human message is the prompt.
        node: The LangGraph node calling the model (`langgraph_node`), which names the
            loop's phase; any other node, or None, makes it a chat turn.
        tools: The bound tools, as OpenAI tool schemas.

    Returns:
        The answer: text, or a message with a tool call.

    Raises:
        DemoModelError: The task asks for this step attempt to fail.
    """
    prompt = _last_human_text(messages)
    if node == "planner":
        return _plan(prompt)
    if node == "executor":
        return _execute(prompt)
    if node == "adapter":
        _, description = _step(prompt)
        return f"{_REVISED}{description}, one small piece at a time"
    if node == "summariser":
        return _final_answer(prompt)
    return _chat(prompt, messages, tools)


def _last_human_text(messages: Sequence[BaseMessage]) -> str:
    # A system prompt may come first, and tool results after it.
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    return ""


def _task(prompt: str) -> str:
    if match := _TASK.search(prompt):
        return match.group(1).strip()
    # One line, so that a plan step quoting it stays one numbered item.
    return " ".join(prompt.split())


def _step(prompt: str) -> tuple[int | None, str]:
    """The step's number and description; without a step line, the task stands in."""
    match = _STEP.search(prompt)
    description = match.group(2).strip() if match and match.group(2) else ""
    return (int(match.group(1)) if match else None), description or _task(prompt)


def _plan(prompt: str) -> str:
    task = _task(prompt)
    # The task's own words ("in at most 3 hours") are not the plan's limit.
    limit = _AT_MOST.search(_TASK.sub("", prompt))
    steps = [s.format(task=task) for s in PLAN][: int(limit.group(1)) if limit else len(PLAN)]
    return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))


def _fails(task: str, number: int, description: str) -> bool:
    broken = {int(n) for n in _BREAK.findall(task)}
    failing = {int(n) for n in _FAIL.findall(task)}
    return number in broken or (number in failing and not description.startswith(_REVISED))


def _execute(prompt: str) -> str:
    number, description = _step(prompt)
    if number is not None and _fails(_task(prompt), number, description):
        raise DemoModelError(f"simulated failure of step {number}, as the task asked")
    if number is None:
        return f"[demo] Done: {description}."
    return f"[demo] Step {number} done: {description}."


def _name(tool: Mapping[str, Any]) -> str:
    return str(tool["function"]["name"])


def _final_answer(prompt: str) -> str:
    task = _task(prompt)
    failed = _FAILED_LINE.findall(prompt)
    if not failed:
        return f"[demo] Final answer for '{task}': every step was worked through in order."
    # The loop renders one numbered line per step that ran.
    total = max(len(_RESULT_LINE.findall(prompt)), len(failed))
    which = "; ".join(
        f"step {number} failed ({error})" if number else f"a step failed ({error})"
        for number, error in failed
    )
    return (
        f"[demo] Final answer for '{task}': {total - len(failed)} of {total} steps done; {which}."
    )


def _chat(
    prompt: str, messages: Sequence[BaseMessage], tools: Sequence[Mapping[str, Any]]
) -> AIMessage | str:
    if messages and isinstance(messages[-1], ToolMessage):
        return f"[demo] Here is what the agent loop reported: {messages[-1].text}"
    if any(_name(tool) == _LOOP_TOOL for tool in tools) and _MULTI_STEP.search(prompt):
        call = {"name": _LOOP_TOOL, "args": {"task": prompt.strip()}, "id": _call_id(prompt)}
        return AIMessage("", tool_calls=[call])
    return f"[demo] (answered directly) You said: {prompt.strip()}"


def _call_id(text: str) -> str:
    # Deterministic, like everything the demo says.
    return f"call_{zlib.crc32(text.encode()):08x}"
