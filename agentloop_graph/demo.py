"""The offline, deterministic demo model behind the `"demo"` model string.

It reads the loop's own prompts, plans up to four steps for any task, answers each step
and writes a final answer, every text marked `[demo]`. A task that says `fail step N`
makes the first attempt at step N fail, so the adapter path shows; `break step N` makes
every attempt at step N fail, so the step ends failed and the run partial.

As a chat model with a `plan_and_execute` tool bound (as in the composed chat app), it hands
requests that look multi-step (they mention a plan, steps, or "then") to that tool and
answers everything else directly.
"""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

_TASK = re.compile(r"^Task: (.*)$", re.MULTILINE)
_STEP = re.compile(r"^Step (\d+)/(\d+)(?: failed)?: (.*)$", re.MULTILINE)
_AT_MOST = re.compile(r"at most (\d+)")
_FAIL = re.compile(r"fail step (\d+)", re.IGNORECASE)
_BREAK = re.compile(r"break step (\d+)", re.IGNORECASE)
_REVISED = "Alternative approach: "
_MULTI_STEP = re.compile(r"\b(plan|steps?|then)\b", re.IGNORECASE)

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
        names = [convert_to_openai_tool(tool)["function"]["name"] for tool in tools]
        return self.bind(tool_names=names)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            time.sleep(self.latency)
        return _result(reply(messages, kwargs.get("tool_names", ())))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            await asyncio.sleep(self.latency)
        return _result(reply(messages, kwargs.get("tool_names", ())))


def _result(message: AIMessage | str) -> ChatResult:
    message = AIMessage(message) if isinstance(message, str) else message
    return ChatResult(generations=[ChatGeneration(message=message)])


def reply(messages: Sequence[BaseMessage], tool_names: Sequence[str] = ()) -> AIMessage | str:
    """The demo's answer to `messages`: a loop prompt, or a chat turn."""
    last = messages[-1] if messages else None
    if isinstance(last, ToolMessage):
        return f"[demo] Here is what the agent loop reported: {last.text}"
    prompt = last.text if last is not None else ""
    task_match = _TASK.search(prompt)
    task = task_match.group(1) if task_match else prompt.strip()
    step = _STEP.search(prompt)
    if prompt.startswith("Break this task into numbered steps"):
        limit = int(m.group(1)) if (m := _AT_MOST.search(prompt)) else len(PLAN)
        steps = [s.format(task=task) for s in PLAN][:limit]
        return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    if step and "Propose one alternative" in prompt:
        return f"{_REVISED}{step.group(3)}, one small piece at a time"
    if step:
        number, description = int(step.group(1)), step.group(3)
        fail = _FAIL.search(task)
        broken = _BREAK.search(task)
        first_try = not description.startswith(_REVISED)
        if (fail and int(fail.group(1)) == number and first_try) or (
            broken and int(broken.group(1)) == number
        ):
            raise DemoModelError(f"simulated failure of step {number}, as the task asked")
        return f"[demo] Step {number} done: {description}."
    if "Write the final answer" in prompt:
        return f"[demo] Final answer for '{task}': every step was worked through in order."
    if "plan_and_execute" in tool_names and _MULTI_STEP.search(prompt):
        call = {
            "name": "plan_and_execute",
            "args": {"task": prompt.strip()},
            "id": _call_id(prompt),
        }
        return AIMessage("", tool_calls=[call])
    return f"[demo] (answered directly) You said: {prompt.strip()}"


def _call_id(prompt: str) -> str:
    # Deterministic, like everything the demo says.
    return f"call_{zlib.crc32(prompt.encode()):08x}"
