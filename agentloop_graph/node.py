"""One node body, run under both `invoke` and `ainvoke`.

A node body is a generator: it yields the effects it needs (a model call, a tool call, a
progress event) and receives their results, then returns its state update. `Node` drives
it with the blocking APIs under `invoke`/`stream` and with the async APIs under
`ainvoke`/`astream`, so each phase is written once and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.messages import BaseMessage, ToolCall, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.runtime import get_runtime
from langgraph.types import StreamWriter

from agentloop_graph.progress import ProgressEvent, aemit, emit
from agentloop_graph.settings import Settings, SettingsResolver
from agentloop_graph.state import AgentLoopState

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CallModel:
    """Ask `model` to answer `prompt`, before the monotonic `deadline` if set."""

    model: Runnable[Any, Any]
    prompt: str | list[BaseMessage]
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class CallTool:
    """Run `tool` for `call`; errors come back as an error `ToolMessage`.

    The tool finds `idempotency_key` in its config's `configurable`: the same key for the
    same call of the same attempt, across a crash and a resume, so it can de-duplicate.
    """

    tool: BaseTool
    call: ToolCall
    idempotency_key: str
    deadline: float | None = None


def _tool_config(config: RunnableConfig, effect: CallTool) -> RunnableConfig:
    configurable = {**config.get("configurable", {}), "idempotency_key": effect.idempotency_key}
    return {**config, "configurable": configurable}


@dataclass(frozen=True, slots=True)
class Emit:
    """Publish a progress event."""

    event: ProgressEvent


Effect = CallModel | CallTool | Emit
Body = Generator[Effect, Any, dict[str, Any]]
BodyFactory = Callable[[AgentLoopState, Settings], Body]


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _tool_error(call: ToolCall, exc: BaseException) -> ToolMessage:
    return ToolMessage(
        f"Error: {type(exc).__name__}: {exc}",
        tool_call_id=call["id"] or "",
        name=call["name"],
        status="error",
    )


def _with_timeout(fn: Callable[[], T], timeout: float | None) -> T:
    if timeout is None:
        return fn()
    # A blocking call cannot be interrupted: give it a daemon thread and stop waiting at
    # the deadline. Its late answer is dropped, and it cannot hold up interpreter exit.
    future: Future[T] = Future()
    context = contextvars.copy_context()

    def call() -> None:
        try:
            future.set_result(context.run(fn))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=call, name="agentloop-call", daemon=True).start()
    try:
        return future.result(timeout)
    except FutureTimeout:
        raise TimeoutError from None


async def _await_within(call: Coroutine[Any, Any, T], seconds: float | None) -> T:
    if seconds is None:
        return await call
    return await asyncio.wait_for(call, seconds)


class Node(Runnable[AgentLoopState, dict[str, Any]]):
    """A graph node whose body runs with sync or async effects, as the caller runs."""

    def __init__(self, name: str, body: BodyFactory, settings: SettingsResolver) -> None:
        self.name = name
        self._body = body
        self._settings = settings

    def invoke(
        self, input: AgentLoopState, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        runtime = get_runtime()
        body = self._body(input, self._settings.resolve(runtime.context))
        config = config or {}
        result: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = body.throw(error) if error is not None else body.send(result)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            result, error = None, None
            try:
                result = self._run(effect, runtime.stream_writer, config)
            except Exception as exc:
                error = exc

    async def ainvoke(
        self, input: AgentLoopState, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        runtime = get_runtime()
        body = self._body(input, self._settings.resolve(runtime.context))
        config = config or {}
        result: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = body.throw(error) if error is not None else body.send(result)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            result, error = None, None
            try:
                result = await self._arun(effect, runtime.stream_writer, config)
            except Exception as exc:
                error = exc

    @staticmethod
    def _run(effect: Effect, writer: StreamWriter, config: RunnableConfig) -> Any:
        if isinstance(effect, Emit):
            emit(writer, config, effect.event)
            return None
        timeout = _remaining(effect.deadline)
        if isinstance(effect, CallModel):
            model, prompt = effect.model, effect.prompt
            return _with_timeout(lambda: model.invoke(prompt, config), timeout)
        tool, call, tool_config = effect.tool, effect.call, _tool_config(config, effect)
        try:
            return _with_timeout(lambda: tool.invoke(call, tool_config), timeout)
        except TimeoutError:
            raise
        except Exception as exc:
            return _tool_error(call, exc)

    @staticmethod
    async def _arun(effect: Effect, writer: StreamWriter, config: RunnableConfig) -> Any:
        if isinstance(effect, Emit):
            await aemit(writer, config, effect.event)
            return None
        timeout = _remaining(effect.deadline)
        if isinstance(effect, CallModel):
            return await _await_within(effect.model.ainvoke(effect.prompt, config), timeout)
        try:
            return await _await_within(
                effect.tool.ainvoke(effect.call, _tool_config(config, effect)), timeout
            )
        except TimeoutError:
            raise
        except Exception as exc:
            return _tool_error(effect.call, exc)
