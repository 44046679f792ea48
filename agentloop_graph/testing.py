"""A scripted chat model for testing graphs that embed the loop.

It tells the loop's phases apart by the node each call comes from (`langgraph_node` in the
run metadata), so a script per node answers the right phase whatever the prompts say.

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
import json
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, ensure_config
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, PrivateAttr

Response = Union[
    str,
    AIMessage,
    dict[str, Any],
    BaseModel,
    BaseException,
    "Slow",
    Callable[["ModelCall"], "Response"],
]
"""A scripted answer: text, a message (e.g. with `tool_calls`), a structured answer (a dict
or a pydantic object, for a call held to a schema with `with_structured_output`), an
exception to raise, `Slow(seconds, answer)`, or a function of the call that returns one of
those."""


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
    tool_schemas: list[dict[str, Any]] = field(default_factory=list)
    """The bound tools as OpenAI tool schemas (a structured call's schema among them)."""
    max_tokens: int | None = None
    """The answer cap the call asked for, if any."""
    namespace: str = ""
    """The call's LangGraph checkpoint namespace (`langgraph_checkpoint_ns`): for a call
    from an agent doing a loop's step, it begins with the loop's `executor:`."""

    @property
    def prompt(self) -> str:
        """Text of the last message: the rendered prompt."""
        return self.messages[-1].text if self.messages else ""


Script = deque[Response] | Callable[[ModelCall], Response]
"""What answers one node's calls: the answers left to give, or a function of the call."""

_WORDS = re.compile(r"\s*\S+\s*")
"""A word with the spaces around it: the pieces a text answer streams in."""


class ScriptedModelExhausted(AssertionError):
    """The script has no answer left for a call."""


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers from a script and records every call.

    Text answers stream word by word through `stream`/`astream` (and so under LangGraph's
    `stream_mode="messages"` or `astream_events`); `invoke`/`ainvoke` without a streaming
    listener get them whole. Either way `calls` records one call per model call.

    Args:
        responses: The answers: a list consumed in the order the calls arrive; a function
            of the `ModelCall` answering every call; or a mapping from node name to either
            (each node consumes its own list, or is answered by its own function; the key
            `None` answers calls from any other node).
        latency: Seconds to wait before answering (asyncio sleep under async calls).
        report_usage: Report each answer's tokens as a model does (about four characters a
            token, input and output), so budgets and `usage` see them.
        max_tokens: Cap each text answer at this many tokens (four characters each), as a
            model that honours an answer cap does; the loop sets it per call under a token
            budget.
        record_calls: Keep every call in `calls` (a long-lived model, as a server's, may not).

    Example:
        >>> from agentloop_graph import create_agent_loop
        >>> model = ScriptedChatModel(
        ...     responses={"planner": ["1. a\\n2. b"], "executor": lambda call: "done"}
        ... )
        >>> create_agent_loop(model, summarise_with_model=False).invoke({"task": "t"})["status"]
        'completed'
    """

    responses: Any = ()
    latency: float = 0.0
    report_usage: bool = False
    max_tokens: int | None = None
    record_calls: bool = True
    _scripts: dict[str | None, Script] = PrivateAttr(default_factory=dict)
    _calls: list[ModelCall] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def model_post_init(self, context: Any) -> None:
        scripts = self.responses if isinstance(self.responses, Mapping) else {None: self.responses}
        self._scripts = {
            node: script if callable(script) else deque(script) for node, script in scripts.items()
        }

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
        """Record `call`; the delay before its answer, and the answer."""
        with self._lock:
            if self.record_calls:
                self._calls.append(call)
            script = self._scripts.get(call.node if call.node in self._scripts else None)
            if isinstance(script, deque) and script:
                response: Response = script.popleft()
            elif callable(script):
                response = script
            else:
                raise ScriptedModelExhausted(
                    f"no scripted response left for call {len(self._calls)} (node {call.node!r})"
                )
        delay = self.latency
        while not isinstance(response, str | AIMessage | dict | BaseModel | BaseException):
            if isinstance(response, Slow):
                delay, response = delay + response.seconds, response.response
            else:
                response = response(call)
        if isinstance(response, BaseException):
            return delay, response
        return delay, self._message(call, response)

    def _message(
        self, call: ModelCall, response: str | AIMessage | dict[str, Any] | BaseModel
    ) -> AIMessage:
        """`response` as the model's message: a structured answer as a call of the schema's
        tool, text cut at the call's answer cap (a structured answer too long for it, as the
        JSON text a capped model stops writing midway), usage reported if asked for."""
        cap = None if call.max_tokens is None else 4 * call.max_tokens
        if isinstance(response, BaseModel) and not isinstance(response, AIMessage):
            response = response.model_dump()
        if isinstance(response, dict):
            written = json.dumps(response)
            name = call.tools[0] if call.tools else "answer"
            tool_call = {"name": name, "args": response, "id": f"call_{len(self._calls)}"}
            too_long = cap is not None and len(written) > cap
            response = (
                AIMessage(written[:cap]) if too_long else AIMessage("", tool_calls=[tool_call])
            )
        elif isinstance(response, str):
            response = AIMessage(response)
        if cap is not None and len(response.text) > cap:
            response = response.model_copy(update={"content": response.text[:cap]})
        if self.report_usage and response.usage_metadata is None:
            spent_in = sum(_tokens(m.text) for m in call.messages)
            calls = (_tokens(json.dumps(tool_call["args"])) for tool_call in response.tool_calls)
            spent_out = _tokens(response.text) + sum(calls)
            usage = {
                "input_tokens": spent_in,
                "output_tokens": spent_out,
                "total_tokens": spent_in + spent_out,
            }
            response = response.model_copy(update={"usage_metadata": usage})
        return response

    def _call(
        self, messages: list[BaseMessage], run_manager: Any, kwargs: Any, is_async: bool
    ) -> ModelCall:
        # LangChain streams without handing `_stream` the run manager; the run's config,
        # which LangGraph sets for each node, carries the same metadata.
        metadata = getattr(run_manager, "metadata", None) or ensure_config().get("metadata", {})
        schemas = list(kwargs.get("tools", ()))
        tools = [tool["function"]["name"] for tool in schemas]
        cap = kwargs.get("max_tokens", self.max_tokens)
        node = metadata.get("langgraph_node")
        namespace = str(metadata.get("langgraph_checkpoint_ns", ""))
        return ModelCall(list(messages), node, tools, is_async, schemas, cap, namespace)

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
        return ChatResult(generations=[ChatGeneration(message=_raise_or(response))])

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
        return ChatResult(generations=[ChatGeneration(message=_raise_or(response))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        delay, response = self._next(self._call(messages, run_manager, kwargs, is_async=False))
        if delay:
            time.sleep(delay)
        yield from _chunks(_raise_or(response))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        delay, response = self._next(self._call(messages, run_manager, kwargs, is_async=True))
        if delay:
            await asyncio.sleep(delay)
        for chunk in _chunks(_raise_or(response)):
            yield chunk


def _tokens(text: str) -> int:
    # About four characters a token, as for English text with most tokenizers.
    return max(1, len(text) // 4)


def _raise_or(response: AIMessage | BaseException) -> AIMessage:
    if isinstance(response, BaseException):
        raise response
    return response


def _chunks(message: AIMessage) -> list[ChatGenerationChunk]:
    """`message` as a stream: its text word by word, the rest of it on the last chunk.

    LangChain joins the chunks back into `message` (tool calls, usage and metadata included).
    """
    words = _WORDS.findall(message.content) if isinstance(message.content, str) else []
    last = AIMessageChunk(
        content=words[-1] if words else message.content,
        id=message.id,
        tool_calls=message.tool_calls,
        invalid_tool_calls=message.invalid_tool_calls,
        usage_metadata=message.usage_metadata,
        response_metadata=message.response_metadata,
        additional_kwargs=message.additional_kwargs,
        chunk_position="last",
    )
    chunks = [AIMessageChunk(content=word, id=message.id) for word in words[:-1]]
    return [ChatGenerationChunk(message=chunk) for chunk in [*chunks, last]]
