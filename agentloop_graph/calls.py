"""Model and tool calls, blocking and async: time limits, retries, tool errors as messages.

The loop's nodes run under `invoke` (blocking APIs) and `ainvoke` (async APIs, so the
event loop is never blocked); these twins are where the two ways differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from langchain_core.messages import AIMessage, ToolCall, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp

from agentloop_graph.budget import CALLS_KEY, BudgetExhausted, CallCount, Meter, Spent
from agentloop_graph.context import Settings
from agentloop_graph.models import ModelCallTimeout, is_transient
from agentloop_graph.progress import has_handlers

T = TypeVar("T")

RETRY_BACKOFF = 0.2
"""Seconds before the first retry of a transient model error; doubled each time."""


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One model call: `model` answers `prompt` before the monotonic `deadline`, if set.

    `phase` names the call in traces (`agentloop.<phase>`); `metadata` goes with it.
    """

    model: Runnable[Any, Any]
    prompt: str | list[Any]
    phase: str
    metadata: dict[str, Any]
    meter: Meter
    """The run's spending, checked against its budget before the call and updated after."""
    deadline: float | None = None


class StepTimeout(Exception):
    """The attempt ran past the step's deadline (`step_timeout`)."""


class StreamClosed(BaseException):
    """The run's blocking stream was closed: the run stops where it is.

    A `BaseException`, like `asyncio.CancelledError`, so that no step records it as a
    failure: the run ends as a cancelled async run does, resumable from its last
    finished node.
    """


STOP_KEY = "__agentloop_stop"
"""Where a blocking run's `Stop` travels in `config["configurable"]`."""


class Stop:
    """Set when a blocking `stream()` is closed: the call in flight is abandoned at once
    and no model or tool call starts afterwards. One per run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._waiting: set[Future[Any]] = set()

    def set(self) -> None:
        """Stop the run: wake every call waiting on an answer."""
        with self._lock:
            self._stopped = True
            waiting, self._waiting = self._waiting, set()
        for future in waiting:
            with contextlib.suppress(InvalidStateError):  # it has just answered
                future.set_exception(StreamClosed())

    def wait(self, future: Future[T], timeout: float | None) -> T:
        """`future`'s result within `timeout` seconds, unless the run stops first."""
        with self._lock:
            if self._stopped:
                raise StreamClosed
            self._waiting.add(future)
        try:
            return future.result(timeout)
        finally:
            with self._lock:
                self._waiting.discard(future)


class _OutOfTime(Exception):
    """A time limit set by the loop ran out (as opposed to a call raising TimeoutError)."""


def seconds_left(deadline: float | None) -> float | None:
    """Seconds until the monotonic `deadline` (None: no deadline).

    Raises:
        StepTimeout: The deadline has passed.
    """
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise StepTimeout
    return left


def _stop_of(config: RunnableConfig) -> Stop | None:
    stop = config.get("configurable", {}).get(STOP_KEY)
    return stop if isinstance(stop, Stop) else None


def _with_timeout(fn: Callable[[], T], timeout: float | None, stop: Stop | None) -> T:
    if timeout is None and stop is None:
        return fn()
    # A blocking call cannot be interrupted: give it a daemon thread and stop waiting at
    # the deadline (or when the stream is closed). Its late answer is dropped, and it
    # cannot hold up interpreter exit.
    future: Future[T] = Future()
    future.set_running_or_notify_cancel()
    context = contextvars.copy_context()

    def call() -> None:
        try:
            result = context.run(fn)
        except BaseException as exc:
            with contextlib.suppress(InvalidStateError):
                future.set_exception(exc)
        else:
            with contextlib.suppress(InvalidStateError):
                future.set_result(result)

    threading.Thread(target=call, name="agentloop-call", daemon=True).start()
    try:
        return future.result(timeout) if stop is None else stop.wait(future, timeout)
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


def _model_config(config: RunnableConfig, request: ModelRequest) -> RunnableConfig:
    # Names, tags and metadata only matter to callback handlers (tracers, event
    # streams); without any, skipping the copies keeps the hot path lean.
    if not has_handlers(config):
        return config
    return {
        **config,
        "run_name": f"agentloop.{request.phase}",
        "tags": [*config.get("tags", ()), "agentloop"],
        "metadata": {**config.get("metadata", {}), **request.metadata},
    }


def _limit(request: ModelRequest, settings: Settings) -> tuple[float | None, Exception]:
    """Seconds the next call may take, and the error to raise when they run out."""
    step_left = seconds_left(request.deadline)
    timeout = settings.model_timeout
    if timeout is None or (step_left is not None and step_left <= timeout):
        return step_left, StepTimeout()
    return timeout, ModelCallTimeout(f"the model did not answer within {timeout:g} s")


def _backoff(retry: int, deadline: float | None) -> float:
    delay = RETRY_BACKOFF * 2.0**retry
    left = seconds_left(deadline)
    return delay if left is None else min(delay, left)


def _refusal(request: ModelRequest, config: RunnableConfig, settings: Settings) -> Spent | None:
    """The budget the call about to be made would overrun, or None: the call is counted."""
    if (spent := request.meter.refusal(settings.budget)) is not None:
        return spent
    count = config.get("configurable", {}).get(CALLS_KEY)
    if isinstance(count, CallCount) and not count.take(request.meter, settings.budget):
        return "model calls"
    return None


def call_model(
    request: ModelRequest, config: RunnableConfig, settings: Settings
) -> AIMessage | Exception:
    """The model's reply through its blocking API, or the error the call ended with.

    Transient errors (a 5xx or 429 answer, a connection cut) are retried with backoff. A
    call (or retry) the run's budget does not allow is not made: the error is
    `BudgetExhausted`.
    """
    model, prompt, call_config = request.model, request.prompt, _model_config(config, request)
    stop = _stop_of(config)
    for retry in itertools.count():
        if (spent := _refusal(request, config, settings)) is not None:
            return BudgetExhausted(spent)
        request.meter.model_calls += 1
        try:
            timeout, out_of_time = _limit(request, settings)
            try:
                answer = _with_timeout(lambda: model.invoke(prompt, call_config), timeout, stop)
                return request.meter.spend(cast(AIMessage, answer))
            except _OutOfTime:
                raise out_of_time from None
        except GraphBubbleUp:
            raise  # interrupts belong to LangGraph
        except Exception as exc:
            if retry >= settings.max_retries or not is_transient(exc):
                return exc
            try:
                time.sleep(_backoff(retry, request.deadline))
            except StepTimeout as timeout_exc:
                return timeout_exc
    raise AssertionError("unreachable")


async def acall_model(
    request: ModelRequest, config: RunnableConfig, settings: Settings
) -> AIMessage | Exception:
    """Async twin of `call_model`."""
    call_config = _model_config(config, request)
    for retry in itertools.count():
        if (spent := _refusal(request, config, settings)) is not None:
            return BudgetExhausted(spent)
        request.meter.model_calls += 1
        try:
            timeout, out_of_time = _limit(request, settings)
            try:
                reply = request.model.ainvoke(request.prompt, call_config)
                return request.meter.spend(cast(AIMessage, await _await_within(reply, timeout)))
            except _OutOfTime:
                raise out_of_time from None
        except GraphBubbleUp:
            raise
        except Exception as exc:
            if retry >= settings.max_retries or not is_transient(exc):
                return exc
            try:
                await asyncio.sleep(_backoff(retry, request.deadline))
            except StepTimeout as timeout_exc:
                return timeout_exc
    raise AssertionError("unreachable")


def _tool_config(config: RunnableConfig, key: str, deadline: float | None) -> RunnableConfig:
    # Tools find these beside LangGraph's own keys: the idempotency key to de-duplicate
    # side effects across a resume, the epoch-seconds deadline to stop in time.
    epoch_deadline = None if deadline is None else time.time() + (deadline - time.monotonic())
    configurable = {
        **config.get("configurable", {}),
        "idempotency_key": key,
        "deadline": epoch_deadline,
    }
    return {**config, "configurable": configurable}


def tool_error(call: ToolCall, text: str) -> ToolMessage:
    """The error tool message the model gets instead of a tool's result."""
    return ToolMessage(text, tool_call_id=call["id"] or "", name=call["name"], status="error")


def _failed(call: ToolCall, exc: Exception) -> ToolMessage:
    return tool_error(call, f"Error: {type(exc).__name__}: {exc}")


def call_tool(
    tool: BaseTool, call: ToolCall, config: RunnableConfig, key: str, deadline: float | None
) -> ToolMessage:
    """Run `tool` for `call` with its blocking API; an error becomes an error message.

    Raises:
        StepTimeout: The step's deadline passed before the tool answered.
    """
    timeout = seconds_left(deadline)
    tool_config = _tool_config(config, key, deadline)
    stop = _stop_of(config)
    try:
        return cast(
            ToolMessage, _with_timeout(lambda: tool.invoke(call, tool_config), timeout, stop)
        )
    except _OutOfTime:
        raise StepTimeout from None
    except GraphBubbleUp:
        raise  # a tool may `interrupt()` to ask a person
    except Exception as exc:
        return _failed(call, exc)


async def acall_tool(
    tool: BaseTool, call: ToolCall, config: RunnableConfig, key: str, deadline: float | None
) -> ToolMessage:
    """Async twin of `call_tool`."""
    timeout = seconds_left(deadline)
    tool_config = _tool_config(config, key, deadline)
    try:
        return cast(ToolMessage, await _await_within(tool.ainvoke(call, tool_config), timeout))
    except _OutOfTime:
        raise StepTimeout from None
    except GraphBubbleUp:
        raise
    except Exception as exc:
        return _failed(call, exc)
