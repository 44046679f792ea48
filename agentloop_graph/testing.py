"""A scripted chat model for testing graphs that embed the loop.

Example:
    >>> from agentloop_graph import create_agent_loop
    >>> from agentloop_graph.testing import ScriptedChatModel
    >>> model = ScriptedChatModel(
    ...     responses={"planner": ["1. Look\\n2. Leap"], "executor": ["looked", "leapt"]}
    ... )
    >>> create_agent_loop(model, summarise_with_model=False).invoke({"task": "t"})["status"]
    'completed'
    >>> [call.node for call in model.calls]
    ['planner', 'executor', 'executor']
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

Response = Union[str, AIMessage, BaseException, "Slow", Callable[["ModelCall"], "Response"]]
"""A scripted answer: text, a message (e.g. with `tool_calls`), an exception to raise,
`Slow(seconds, answer)`, or a function of the call that returns one of those."""


@dataclass(frozen=True)
class Slow:
    """An answer that takes `seconds` to arrive (slept, or awaited under async calls)."""

    seconds: float
    response: Response


@dataclass(frozen=True)
class ModelCall:
    """One call the scripted model received."""

    messages: list[BaseMessage]
    node: str | None
    """The LangGraph node the call was made from (`langgraph_node` metadata)."""
    tools: list[str]
    """Names of the tools bound for the call."""
    is_async: bool

    @property
    def prompt(self) -> str:
        """Text of the last message: the rendered prompt."""
        return self.messages[-1].text if self.messages else ""


class ScriptedModelExhausted(AssertionError):
    """The script has no answer left for a call."""


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers from a script and records every call.

    Args:
        responses: The answers, in the order the calls arrive: a list, a mapping from
            node name to a list (each node consumes its own), or a function of the
            `ModelCall` returning a `Response`.
        latency: Seconds to wait before answering (asyncio sleep under async calls).
    """

    responses: Any = ()
    latency: float = 0.0
    _queues: dict[str | None, deque[Response]] = PrivateAttr(default_factory=dict)
    _calls: list[ModelCall] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def model_post_init(self, context: Any) -> None:
        if isinstance(self.responses, Mapping):
            self._queues = {node: deque(items) for node, items in self.responses.items()}
        elif not callable(self.responses):
            self._queues = {None: deque(self.responses)}

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[ModelCall]:
        """Every call received so far, in order."""
        with self._lock:
            return list(self._calls)

    def calls_from(self, node: str) -> list[ModelCall]:
        """The calls made from one node."""
        return [call for call in self.calls if call.node == node]

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    def _next(self, call: ModelCall) -> tuple[float, AIMessage | BaseException]:
        """The delay before the answer, and the answer; raises a scripted exception."""
        with self._lock:
            self._calls.append(call)
            if callable(self.responses) and not isinstance(self.responses, Mapping):
                response: Response = self.responses
            else:
                queue = self._queues.get(call.node if call.node in self._queues else None)
                if not queue:
                    raise ScriptedModelExhausted(
                        f"no scripted response left for call {len(self._calls)} "
                        f"(node {call.node!r})"
                    )
                response = queue.popleft()
        delay = self.latency
        while not isinstance(response, str | AIMessage | BaseException):
            if isinstance(response, Slow):
                delay, response = delay + response.seconds, response.response
            else:
                response = response(call)
        if isinstance(response, str):
            response = AIMessage(response)
        return delay, response

    def _call(
        self, messages: list[BaseMessage], run_manager: Any, kwargs: Any, is_async: bool
    ) -> ModelCall:
        metadata = getattr(run_manager, "metadata", None) or {}
        tools = [tool["function"]["name"] for tool in kwargs.get("tools", ())]
        return ModelCall(list(messages), metadata.get("langgraph_node"), tools, is_async)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        delay, response = self._next(self._call(messages, run_manager, kwargs, is_async=False))
        if delay:
            time.sleep(delay)
        return _answer(response)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        delay, response = self._next(self._call(messages, run_manager, kwargs, is_async=True))
        if delay:
            await asyncio.sleep(delay)
        return _answer(response)


def _answer(response: AIMessage | BaseException) -> ChatResult:
    if isinstance(response, BaseException):
        raise response
    return ChatResult(generations=[ChatGeneration(message=response)])
