"""The one seam for model and tool calls, blocking and async: budgets, time limits, retries,
tool errors as messages.

The loop's nodes run under `invoke` (blocking APIs) and `ainvoke` (async APIs, so the event
loop is never blocked); these twins are where the two ways differ. Every limit is applied
here, whoever makes the call: the budget before it (calls, the prompt's tokens, time) and
while it runs (the answer capped at the tokens left; the call abandoned at the earliest of
the attempt's, the call's and the budget's deadlines).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool, Tool
from langgraph.errors import GraphBubbleUp

from agentloop_graph.agents import Spending, agent_config, agent_input, answer_of, replies_of
from agentloop_graph.budget import METER_KEY, BudgetExhausted, Meter, Spent
from agentloop_graph.context import Settings
from agentloop_graph.models import ModelCallTimeout, is_transient
from agentloop_graph.parsing import MAX_RESULT_CHARS, RepeatingAnswer, cap
from agentloop_graph.prompts import PromptInput
from agentloop_graph.state import Cursor, CursorUpdate, no_usage

T = TypeVar("T")

RETRY_BACKOFF = 0.2
"""Seconds before the first retry of a transient model error; doubled each time."""


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
    """Set when a blocking `stream()` is closed: no model or tool call starts afterwards.
    It counts the calls in flight, so that the stream knows whether closing it would wait
    for one. One per run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stopped = False
        self.in_flight = 0

    def set(self) -> None:
        self.stopped = True

    @contextlib.contextmanager
    def calling(self) -> Any:
        """Around one call: refuse it once stopped, and count it while it runs."""
        if self.stopped:
            raise StreamClosed
        with self._lock:
            self.in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1


@dataclass
class NodeRun:
    """What one node execution works with, resolved once for all its calls and events."""

    config: RunnableConfig
    settings: Settings
    meter: Meter
    listened: bool
    """Whether anyone listens to the run's callbacks (a tracer, `astream_events`, ...)."""
    stop: Stop | None
    model_calls: int = 0
    """Model calls this execution made (each retry counts)."""
    usage: UsageMetadata = field(default_factory=no_usage)
    """Tokens this execution's model calls spent."""

    @classmethod
    def start(cls, config: RunnableConfig, settings: Settings, cursor: Cursor | None) -> NodeRun:
        """The node run for `config`: the run's meter brought up to what `cursor` records (a
        new run's, without one)."""
        configurable = config.get("configurable", {})
        meter = configurable.get(METER_KEY)
        if not isinstance(meter, Meter):
            meter = Meter(time.time())
        if cursor is not None:
            meter.started_at = cursor["started_at"]
            meter.catch_up(cursor["model_calls"], cursor["usage"]["total_tokens"])
        stop = configurable.get(STOP_KEY)
        return cls(
            config, settings, meter, _listened(config), stop if isinstance(stop, Stop) else None
        )

    def spend(self, reply: AIMessage) -> AIMessage:
        """Count `reply`'s tokens; `reply`."""
        if usage := reply.usage_metadata:
            self.usage = add_usage(self.usage, usage)
            self.meter.spend(usage["total_tokens"])
        return reply

    def counted(self) -> CursorUpdate:
        """What this execution spent, as the cursor update that adds it to the run's."""
        return {"model_calls": self.model_calls, "usage": self.usage}

    def calling(self) -> Any:
        """Around one call: stop the run if its stream was closed, else count the call."""
        return self.stop.calling() if self.stop is not None else contextlib.nullcontext()


def _listened(config: RunnableConfig) -> bool:
    callbacks: Any = config.get("callbacks")
    if callbacks is None:
        return False
    return bool(callbacks if isinstance(callbacks, list) else callbacks.handlers)


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One model call: `model` (as `runnable`, when shaped: tools bound, a schema) answers
    `prompt`, before the monotonic `deadline` (the attempt's), if set.

    `phase` names the call in traces (`agentloop.<phase>`); `trace` goes with it.
    """

    phase: str
    model: BaseChatModel
    prompt: PromptInput
    trace: dict[str, Any]
    runnable: Runnable[Any, Any] | None = None
    shape: Callable[[BaseChatModel], Runnable[Any, Any]] | None = None
    """How `runnable` is made from `model`, to make it again from a model whose answer is
    capped (a token budget)."""
    deadline: float | None = None


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


def _on_daemon(fn: Callable[[], T]) -> Future[T]:
    """`fn()` started on a daemon thread of its own: a blocking call cannot be interrupted,
    so a caller that stops waiting for it leaves it behind, and it cannot hold up the exit
    of the interpreter (nor of `asyncio.run`, as the default executor's threads do)."""
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
    return future


def _in_thread(fn: Callable[[], T], timeout: float | None) -> T:
    """`fn()` on a daemon thread, given up at `timeout` seconds (its late answer dropped)."""
    future = _on_daemon(fn)
    try:
        return future.result(timeout)
    except FutureTimeout:
        if future.done():  # the call itself raised TimeoutError
            raise
        raise _OutOfTime from None


def _within(fn: Callable[[], T], timeout: float | None) -> T:
    return fn() if timeout is None else _in_thread(fn, timeout)


async def _await_within(call: Awaitable[T], seconds: float | None) -> T:
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


def _model_config(run: NodeRun, request: ModelRequest) -> RunnableConfig:
    # Names, tags and metadata only matter to callback handlers (tracers, event
    # streams); without any, skipping the copies keeps the hot path lean.
    config = run.config
    if not run.listened:
        return config
    return {
        **config,
        "run_name": f"agentloop.{request.phase}",
        "tags": [*config.get("tags", ()), "agentloop"],
        "metadata": {**config.get("metadata", {}), **request.trace},
    }


def _limit(request: ModelRequest, run: NodeRun) -> tuple[float | None, Exception]:
    """Seconds the next call may take, and the error to raise when they run out: the
    earliest of the attempt's deadline, the budget's and `model_timeout`."""
    limits: list[tuple[float, Exception]] = []
    if (step_left := seconds_left(request.deadline)) is not None:
        limits.append((step_left, StepTimeout()))
    if (budget_left := run.meter.seconds_left(run.settings.budget)) is not None:
        limits.append((max(budget_left, 0.0), BudgetExhausted("time")))
    if (timeout := run.settings.model_timeout) is not None:
        limits.append((timeout, ModelCallTimeout(f"the model did not answer within {timeout:g} s")))
    return min(limits, key=lambda limit: limit[0]) if limits else (None, StepTimeout())


def _backoff(retry: int, deadline: float | None) -> float:
    delay = RETRY_BACKOFF * 2.0**retry
    left = seconds_left(deadline)
    return delay if left is None else min(delay, left)


def count_tokens(model: BaseChatModel, prompt: PromptInput) -> int:
    """The tokens `prompt` will spend as `model`'s input: the model's own count where it
    has one, else about four characters a token."""
    own = type(model).get_num_tokens_from_messages
    if own is not BaseChatModel.get_num_tokens_from_messages and (
        own is not BaseLanguageModel.get_num_tokens_from_messages
    ):
        messages: list[BaseMessage] = prompt if isinstance(prompt, list) else [HumanMessage(prompt)]
        with contextlib.suppress(Exception):  # a model that cannot count offline
            return int(model.get_num_tokens_from_messages(messages))
    text = prompt if isinstance(prompt, str) else "".join(_text(m) for m in prompt)
    return len(text) // 4 + 1


def _text(message: BaseMessage) -> str:
    return message.text


ANSWER_CAPS = ("num_predict", "max_tokens", "max_output_tokens")
"""The fields chat models cap their answers' tokens with (Ollama, most providers, Google)."""


def _capped(model: BaseChatModel, tokens: int) -> BaseChatModel | None:
    """`model` answering in at most `tokens` tokens, or None if it has no cap to set."""
    for name in ANSWER_CAPS:
        if name in type(model).model_fields:
            own = getattr(model, name)
            return model.model_copy(update={name: tokens if own is None else min(own, tokens)})
    return None


def _runnable(request: ModelRequest, run: NodeRun) -> tuple[Runnable[Any, Any], Spent | None]:
    """What to invoke for `request`, with its answer capped at the tokens left, and the
    budget the call would overrun (counting nothing), if any; the call is counted."""
    runnable = request.runnable or request.model
    budget = run.settings.budget
    prompt_tokens = 0
    if budget is not None and budget.max_tokens is not None:
        prompt_tokens = count_tokens(request.model, request.prompt)
    if (spent := run.meter.take(budget, prompt_tokens)) is not None:
        return runnable, spent
    run.model_calls += 1
    left = run.meter.tokens_left(budget)
    if left is not None and (capped := _capped(request.model, left - prompt_tokens)):
        runnable = request.shape(capped) if request.shape else capped
    return runnable, None


def _reply(answer: Any) -> AIMessage:
    """A model's answer as one message: a structured call's parsed object rides along in
    `additional_kwargs["parsed"]`, as some providers put it."""
    if isinstance(answer, dict) and "raw" in answer:
        raw = cast(AIMessage, answer["raw"])
        if answer.get("parsed") is None:
            return raw
        kwargs = {**raw.additional_kwargs, "parsed": answer["parsed"]}
        return raw.model_copy(update={"additional_kwargs": kwargs})
    return cast(AIMessage, answer)


def _failed(request: ModelRequest, run: NodeRun, retry: int, exc: Exception) -> bool:
    """Whether the call ends with `exc` (else it is retried): its tokens are counted."""
    if isinstance(exc, RepeatingAnswer):
        run.spend(exc.reply)  # the tokens streamed were spent all the same
    return retry >= run.settings.max_retries or not is_transient(exc)


def call_model(request: ModelRequest, run: NodeRun) -> AIMessage | Exception:
    """The model's reply through its blocking API, or the error the call ended with.

    Transient errors (a 5xx or 429 answer, a connection cut) are retried with backoff. A
    call (or retry) the run's budget does not allow is not made: the error is
    `BudgetExhausted`.
    """
    config = _model_config(run, request)
    for retry in itertools.count():
        runnable, spent = _runnable(request, run)
        if spent is not None:
            return BudgetExhausted(spent)
        try:
            timeout, out_of_time = _limit(request, run)
            try:
                with run.calling():
                    answer = _within(
                        functools.partial(runnable.invoke, request.prompt, config), timeout
                    )
                return run.spend(_reply(answer))
            except _OutOfTime:
                raise out_of_time from None
        except GraphBubbleUp:
            raise  # interrupts belong to LangGraph
        except Exception as exc:
            if _failed(request, run, retry, exc):
                return exc
            try:
                time.sleep(_backoff(retry, request.deadline))
            except StepTimeout as timeout_exc:
                return timeout_exc
    raise AssertionError("unreachable")


async def acall_model(request: ModelRequest, run: NodeRun) -> AIMessage | Exception:
    """Async twin of `call_model`."""
    config = _model_config(run, request)
    for retry in itertools.count():
        runnable, spent = _runnable(request, run)
        if spent is not None:
            return BudgetExhausted(spent)
        try:
            timeout, out_of_time = _limit(request, run)
            try:
                answer = await _await_within(runnable.ainvoke(request.prompt, config), timeout)
                return run.spend(_reply(answer))
            except _OutOfTime:
                raise out_of_time from None
        except GraphBubbleUp:
            raise
        except Exception as exc:
            if _failed(request, run, retry, exc):
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


def _tool_failed(call: ToolCall, exc: Exception) -> ToolMessage:
    return tool_error(call, f"Error: {type(exc).__name__}: {exc}")


MEDIA_BLOCKS = frozenset({"image", "image_url", "file", "audio", "video"})
"""Content block types a model takes in as media, not as text."""


def _is_media(part: str | dict[Any, Any]) -> bool:
    return isinstance(part, dict) and part.get("type") in MEDIA_BLOCKS


def capped_result(message: ToolMessage) -> ToolMessage:
    """`message` with at most `MAX_RESULT_CHARS` characters of text, whatever its shape
    (text, or a list of content blocks as MCP tools return).

    Media blocks do not count: an image (an MCP screenshot, say) is base64 data the model
    takes in as a picture, so it stays whole rather than being cut into text. An artifact
    stays as it is too, as the model never sees it.
    """
    content = message.content
    if isinstance(content, str):
        if len(content) <= MAX_RESULT_CHARS:
            return message
        return message.model_copy(update={"content": cap(content, MAX_RESULT_CHARS)})
    text = "\n".join(
        part if isinstance(part, str) else str(part.get("text", part))
        for part in content
        if not _is_media(part)
    )
    if len(text) <= MAX_RESULT_CHARS:
        return message
    media = [part for part in content if _is_media(part)]
    capped = cap(text, MAX_RESULT_CHARS)
    return message.model_copy(
        update={"content": [{"type": "text", "text": capped}, *media] if media else capped}
    )


def _tool_answer(call: ToolCall, result: Any) -> ToolMessage:
    """What the model gets for a tool's `result`: the tool message, capped. A tool that
    answers with a LangGraph `Command` (a state update for the graph that calls it) ran,
    but the loop has no such state to update, and nothing in it for the model to read."""
    if isinstance(result, ToolMessage):
        return capped_result(result)
    return tool_error(
        call,
        f"Error: the tool returned a {type(result).__name__} instead of a result; "
        "the loop cannot use it",
    )


def _timeouts(run: NodeRun, deadline: float | None) -> tuple[float | None, Exception]:
    """Seconds a tool call may take, and the error when they run out: the attempt's
    deadline or the budget's, whichever comes first."""
    step_left = seconds_left(deadline)
    budget_left = run.meter.seconds_left(run.settings.budget)
    if budget_left is not None and (step_left is None or budget_left < step_left):
        return max(budget_left, 0.0), BudgetExhausted("time")
    return step_left, StepTimeout()


def _async_only(tool: BaseTool) -> bool:
    """Whether `tool` has only an async implementation (as MCP tools do)."""
    return getattr(tool, "func", True) is None and getattr(tool, "coroutine", None) is not None


def _blocking_only(tool: BaseTool) -> bool:
    """Whether `tool` has only a blocking implementation (its async path runs it on the
    default executor, whose threads `asyncio.run` waits for at its end)."""
    if isinstance(tool, StructuredTool | Tool):
        return tool.coroutine is None
    return type(tool)._arun is BaseTool._arun


def call_tool(
    tool: BaseTool, call: ToolCall, run: NodeRun, key: str, deadline: float | None
) -> ToolMessage:
    """Run `tool` for `call` with its blocking API (an async-only tool's coroutine, run to
    its end in a thread of its own); an error becomes an error message.

    Raises:
        StepTimeout: The step's deadline passed before the tool answered.
        BudgetExhausted: The run's time budget ran out before the tool answered.
    """
    timeout, out_of_time = _timeouts(run, deadline)
    tool_config = _tool_config(run.config, key, deadline)

    def ainvoke() -> Any:
        # On a thread of its own: the caller's may be running an event loop (Jupyter's).
        return asyncio.run(tool.ainvoke(call, tool_config))

    try:
        with run.calling():
            if _async_only(tool):
                result = _in_thread(ainvoke, timeout)
            else:
                try:
                    result = _within(functools.partial(tool.invoke, call, tool_config), timeout)
                except NotImplementedError:
                    # A `BaseTool` written with only `_arun` says so when `_run` is called.
                    if type(tool)._arun is BaseTool._arun:
                        raise
                    result = _in_thread(ainvoke, _timeouts(run, deadline)[0])
        return _tool_answer(call, result)
    except _OutOfTime:
        raise out_of_time from None
    except GraphBubbleUp:
        raise  # a tool may `interrupt()` to ask a person
    except Exception as exc:
        return _tool_failed(call, exc)


async def acall_tool(
    tool: BaseTool, call: ToolCall, run: NodeRun, key: str, deadline: float | None
) -> ToolMessage:
    """Async twin of `call_tool`."""
    timeout, out_of_time = _timeouts(run, deadline)
    tool_config = _tool_config(run.config, key, deadline)
    if _blocking_only(tool):  # so that a hung tool is left behind, not waited for at exit
        running = asyncio.wrap_future(_on_daemon(lambda: tool.invoke(call, tool_config)))
    else:
        running = asyncio.ensure_future(tool.ainvoke(call, tool_config))
    try:
        result = await _await_within(running, timeout)
        return _tool_answer(call, result)
    except _OutOfTime:
        raise out_of_time from None
    except GraphBubbleUp:
        raise
    except Exception as exc:
        return _tool_failed(call, exc)


def _count_unseen(run: NodeRun, output: object, seen: Spending) -> None:
    """Count the agent's model calls this attempt made before a crash: resumed from its
    checkpoint, the agent holds an AI message for each, while `seen` saw only the calls
    made since. (Never fewer: middleware may drop messages.)"""
    replies = replies_of(output)
    for reply in replies[: max(len(replies) - seen.calls, 0)]:
        run.meter.take(None)  # counted, never refused: it was made
        run.model_calls += 1
        run.spend(reply)


def _spending(run: NodeRun) -> Spending:
    """The handler that counts an agent's model calls in `run`, within the run's budget."""

    def take() -> Spent | None:
        spent = run.meter.take(run.settings.budget)
        if spent is None:
            run.model_calls += 1
        return spent

    return Spending(take, run.spend)


def call_agent(agent: Runnable[Any, Any], prompt: str, run: NodeRun, deadline: float | None) -> str:
    """The text of the agent's last AI message, through its blocking API.

    Raises:
        Exception: What the agent raised (`BudgetExhausted` when the budget refused one of
            its model calls), or `StepTimeout` / `BudgetExhausted` at the attempt's or the
            budget's deadline.
    """
    timeout, out_of_time = _timeouts(run, deadline)
    seen = _spending(run)
    config = agent_config(run.config, seen)
    try:
        with run.calling():
            output = _within(functools.partial(agent.invoke, agent_input(prompt), config), timeout)
    except _OutOfTime:
        raise out_of_time from None
    _count_unseen(run, output, seen)
    return answer_of(output)


async def acall_agent(
    agent: Runnable[Any, Any], prompt: str, run: NodeRun, deadline: float | None
) -> str:
    """Async twin of `call_agent`."""
    timeout, out_of_time = _timeouts(run, deadline)
    seen = _spending(run)
    config = agent_config(run.config, seen)
    try:
        output = await _await_within(agent.ainvoke(agent_input(prompt), config), timeout)
    except _OutOfTime:
        raise out_of_time from None
    _count_unseen(run, output, seen)
    return answer_of(output)
