"""One node body, run under both `invoke` and `ainvoke`.

A node body is a generator: it yields the effects it needs (a model call, a tool call, a
progress event) and receives their results, then returns its state update. `Node` drives
it with the blocking APIs under `invoke`/`stream` and with the async APIs under
`ainvoke`/`astream`, so each phase is written once and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
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
from langgraph.errors import GraphBubbleUp
from langgraph.runtime import get_runtime
from langgraph.types import StreamWriter

from agentloop_graph.models import ModelCallTimeout, is_transient
from agentloop_graph.progress import ProgressEvent, aemit, emit, has_handlers
from agentloop_graph.settings import Settings, SettingsResolver

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CallModel:
    """Ask `model` to answer `prompt`, before the monotonic `deadline` if set.

    `phase` names the call in traces (`agentloop.<phase>`); `metadata` goes with it.
    """

    model: Runnable[Any, Any]
    prompt: str | list[BaseMessage]
    phase: str
    metadata: dict[str, Any]
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
BodyFactory = Callable[[Any, Settings], Body]


class StepTimeout(Exception):
    """The attempt ran past the step's deadline (`step_timeout`)."""


class _OutOfTime(Exception):
    """A time limit set by the loop ran out (as opposed to a call raising TimeoutError)."""


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise StepTimeout
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
        if future.done():  # the call itself raised TimeoutError
            raise
        raise _OutOfTime from None


async def _await_within(call: Coroutine[Any, Any, T], seconds: float | None) -> T:
    if seconds is None:
        return await call
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            return await call
    except TimeoutError:
        if scope.expired():
            raise _OutOfTime from None
        raise


RETRY_BACKOFF = 0.2
"""Seconds before the first retry of a transient model error; doubled each time."""


def _model_config(config: RunnableConfig, effect: CallModel) -> RunnableConfig:
    # Names, tags and metadata only matter to callback handlers (tracers, event
    # streams); without any, skipping the copies keeps the hot path lean.
    if not has_handlers(config):
        return config
    return {
        **config,
        "run_name": f"agentloop.{effect.phase}",
        "tags": [*config.get("tags", ()), "agentloop"],
        "metadata": {**config.get("metadata", {}), **effect.metadata},
    }


def _call_limit(deadline: float | None, model_timeout: float | None) -> tuple[float | None, bool]:
    """Seconds the next model call may take, and whether the step's deadline sets them."""
    step_left = _remaining(deadline)
    if model_timeout is None or (step_left is not None and step_left <= model_timeout):
        return step_left, True
    return model_timeout, False


def _timed_out(step_bound: bool, model_timeout: float | None) -> Exception:
    if step_bound:
        return StepTimeout()
    return ModelCallTimeout(f"the model did not answer within {model_timeout:g} s")


def _backoff(retry: int, deadline: float | None) -> float:
    delay = RETRY_BACKOFF * 2.0**retry
    left = _remaining(deadline)
    return delay if left is None else min(delay, left)


def _retryable(exc: Exception, retry: int, settings: Settings) -> bool:
    return retry < settings.max_retries and is_transient(exc)


def call_model(effect: CallModel, config: RunnableConfig, settings: Settings) -> Any:
    """Make a model call with the blocking API: time limits, transient errors retried."""
    model, prompt, call_config = effect.model, effect.prompt, _model_config(config, effect)
    for retry in itertools.count():
        seconds, step_bound = _call_limit(effect.deadline, settings.model_timeout)
        try:
            return _with_timeout(lambda: model.invoke(prompt, call_config), seconds)
        except _OutOfTime:
            raise _timed_out(step_bound, settings.model_timeout) from None
        except Exception as exc:
            if not _retryable(exc, retry, settings):
                raise
            time.sleep(_backoff(retry, effect.deadline))
    raise AssertionError("unreachable")


async def acall_model(effect: CallModel, config: RunnableConfig, settings: Settings) -> Any:
    """Async twin of `call_model`."""
    call_config = _model_config(config, effect)
    for retry in itertools.count():
        seconds, step_bound = _call_limit(effect.deadline, settings.model_timeout)
        try:
            return await _await_within(effect.model.ainvoke(effect.prompt, call_config), seconds)
        except _OutOfTime:
            raise _timed_out(step_bound, settings.model_timeout) from None
        except Exception as exc:
            if not _retryable(exc, retry, settings):
                raise
            await asyncio.sleep(_backoff(retry, effect.deadline))
    raise AssertionError("unreachable")


class Node(Runnable[Any, dict[str, Any]]):
    """A graph node whose body runs with sync or async effects, as the caller runs."""

    def __init__(self, name: str, body: BodyFactory, settings: SettingsResolver) -> None:
        self.name = name
        self._body = body
        self._settings = settings

    def invoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        runtime = get_runtime()
        settings = self._settings.resolve(runtime.context)
        body = self._body(input, settings)
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
                result = self._run(effect, runtime.stream_writer, config, settings)
            except GraphBubbleUp:
                raise  # interrupts and parent commands belong to LangGraph, not the body
            except Exception as exc:
                error = exc

    async def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        runtime = get_runtime()
        settings = self._settings.resolve(runtime.context)
        body = self._body(input, settings)
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
                result = await self._arun(effect, runtime.stream_writer, config, settings)
            except GraphBubbleUp:
                raise
            except Exception as exc:
                error = exc

    @staticmethod
    def _run(
        effect: Effect, writer: StreamWriter, config: RunnableConfig, settings: Settings
    ) -> Any:
        if isinstance(effect, Emit):
            emit(writer, config, effect.event)
            return None
        if isinstance(effect, CallModel):
            return call_model(effect, config, settings)
        timeout = _remaining(effect.deadline)
        tool, call, tool_config = effect.tool, effect.call, _tool_config(config, effect)
        try:
            return _with_timeout(lambda: tool.invoke(call, tool_config), timeout)
        except _OutOfTime:
            raise StepTimeout from None
        except GraphBubbleUp:
            raise
        except Exception as exc:
            return _tool_error(call, exc)

    @staticmethod
    async def _arun(
        effect: Effect, writer: StreamWriter, config: RunnableConfig, settings: Settings
    ) -> Any:
        if isinstance(effect, Emit):
            await aemit(writer, config, effect.event)
            return None
        if isinstance(effect, CallModel):
            return await acall_model(effect, config, settings)
        timeout = _remaining(effect.deadline)
        try:
            return await _await_within(
                effect.tool.ainvoke(effect.call, _tool_config(config, effect)), timeout
            )
        except _OutOfTime:
            raise StepTimeout from None
        except GraphBubbleUp:
            raise
        except Exception as exc:
            return _tool_error(effect.call, exc)
