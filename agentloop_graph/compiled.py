"""The compiled loop: a `CompiledStateGraph` that checks a run's input before it starts.

LangGraph writes a run's input to the thread before any node runs, so what must be
refused before anything is written (a blank task, a new task on a thread whose run is
unfinished, a second run on a thread another run is using) is refused here, where
`stream`/`astream` (and so `invoke`, `ainvoke`, `astream_events` and a parent graph running
the loop as a node) begin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.constants import CONF, CONFIG_KEY_CHECKPOINTER
from langgraph.errors import EmptyInputError
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot

from agentloop_graph.budget import METER_KEY, Meter
from agentloop_graph.calls import STOP_KEY, Stop
from agentloop_graph.context import Context, as_context
from agentloop_graph.leases import Holds, ahold_thread, hold_thread
from agentloop_graph.state import loop_input

RECURSION_LIMIT = 10_000
"""The loop bounds its own work (`max_steps`, `max_adaptations`); LangGraph's recursion
limit only has to stay out of its way."""
DEFAULT_RECURSION_LIMIT = 25
"""What LangChain fills in when a caller sets none (`astream_events`, a parent graph):
being explicit, it would override a limit set with `with_config`."""


def _stopping(chunks: Generator[Any, None, None], stop: Stop) -> Iterator[Any]:
    """`chunks`, the run stopped at once when the reader closes them.

    A blocking run's node runs beside the reader, and closing LangGraph's stream waits for
    it. With a model or tool call in flight that could take minutes, so the stream is then
    closed on a thread of its own: the reader goes on at once, the call's answer is
    dropped, and no call starts after it (`Stop`).
    """
    try:
        for chunk in chunks:  # noqa: UP028 (`yield from` would close `chunks` before `stop`)
            yield chunk
    finally:
        stop.set()
        if stop.in_flight:
            threading.Thread(target=chunks.close, name="agentloop-close", daemon=True).start()
        else:
            chunks.close()


def _run_id(config: RunnableConfig) -> str | None:
    """The id of the run `config` starts, where servers put it (LangGraph writes it into
    every checkpoint's metadata); a server re-delivering a run keeps it."""
    for found in (
        config.get("metadata", {}).get("run_id"),
        config.get(CONF, {}).get("run_id"),
        config.get("run_id"),
    ):
        if found is not None:
            return str(found)
    return None


NOTHING_TO_RESUME = (
    'task is missing: pass {"task": "..."} to start a run (None resumes an unfinished run, '
    "and there is none: no checkpointer, or nothing saved on this thread)"
)


def _is_task(input: Any) -> bool:
    """Whether a run's input is a new task (not a resume: `None` or a `Command`)."""
    return input is not None and not isinstance(input, Command)


class UnfinishedRunError(ValueError):
    """A new task was sent to a thread whose run has not finished."""


def _finished(saved: CheckpointTuple | None) -> bool:
    """Whether the thread's last checkpoint shows its run finished, as far as the checkpoint
    alone tells: none saved, or the last superstep was the summariser's (the only node
    before END): it wrote the run's duration, which a new run's planner clears, and nothing
    was written after it (LangGraph gives every channel a superstep writes one new version,
    above every earlier one).

    Reading the state instead would rebuild it (the `messages` history from its deltas,
    milliseconds on a long thread) just before LangGraph does the same to run; when this
    says no, the state is read to know why (`_resumes`).
    """
    if saved is None:
        return True
    checkpoint = saved.checkpoint
    versions = checkpoint["channel_versions"]
    return (
        saved.metadata.get("source") == "loop"
        and checkpoint["channel_values"].get("total_duration_ms") is not None
        and versions.get("total_duration_ms") == max(versions.values())
    )


class AgentLoopGraph(CompiledStateGraph[Any, Context, Any, Any]):
    """`create_agent_loop`'s graph: a `CompiledStateGraph` that starts runs carefully.

    - A new input is checked and its task made explicit (`task`, else the last human
      message) before anything is written, so a refused input leaves the thread as it was.
    - A new task on a checkpointed thread whose run is unfinished (interrupted, waiting
      for plan approval, or stopped by a crash) is refused with `UnfinishedRunError`;
      resume it with `None` or `Command(resume=...)`, or use another `thread_id`. The
      same run delivered again (a server re-running it after a worker died: the same
      `run_id`) resumes instead.
    - A run on a checkpointed thread holds the thread while it streams: a second run on it
      (a new task or a resume, from this process or, with SQLite or PostgreSQL, another) is
      refused with `ThreadBusyError` before anything is written (see `leases.py`).
    - With a checkpointer, its own or a parent graph's, each checkpoint is written before
      the next node starts (`durability="sync"` unless the caller chooses), so a crash
      never repeats a finished step.
    - The recursion limit stays out of the way of the loop's own bounds.
    """

    def __init__(self, *, holds: Holds | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.holds = Holds() if holds is None else holds
        """The threads this graph's runs hold; copies (`with_config`) share them."""

    def _saver(self, config: RunnableConfig) -> BaseCheckpointSaver[Any] | None:
        """The checkpointer of runs with `config` (this graph's or a parent's), if any."""
        if self.checkpointer is False:
            return None
        saver = config.get(CONF, {}).get(CONFIG_KEY_CHECKPOINTER) or self.checkpointer
        return saver if isinstance(saver, BaseCheckpointSaver) else None

    def _start(
        self, input: Any, config: RunnableConfig | None, kwargs: dict[str, Any]
    ) -> tuple[Any, RunnableConfig, dict[str, Any], BaseCheckpointSaver[Any] | None]:
        """The input, config and options a run starts with, and the checkpointer of the
        thread it owns, if it owns one (then the run holds the thread)."""
        config = RunnableConfig(**(config or {}))
        if config.get("recursion_limit", DEFAULT_RECURSION_LIMIT) <= DEFAULT_RECURSION_LIMIT:
            config["recursion_limit"] = RECURSION_LIMIT
        as_context(kwargs.get("context"))  # a context with unknown fields is refused now
        saver = self._saver(config)
        if saver is not None and kwargs.get("durability") is None:
            kwargs = {**kwargs, "durability": "sync"}
        elif saver is None and "durability" in kwargs:
            # Servers pass one for every run; without a checkpointer LangGraph would warn
            # that it has no effect, on the happy path.
            kwargs = {key: value for key, value in kwargs.items() if key != "durability"}
        if _is_task(input):
            input = loop_input(input)
        elif input is None and saver is None:
            raise ValueError(NOTHING_TO_RESUME)
        config[CONF] = configurable = {**config.get(CONF, {}), METER_KEY: Meter(time.time())}
        # Nested in a parent graph (a checkpoint namespace), the parent owns the thread.
        owned = "thread_id" in configurable and not configurable.get("checkpoint_ns")
        return input, config, kwargs, saver if owned else None

    @staticmethod
    def _resumes(state: StateSnapshot, config: RunnableConfig) -> bool:
        """Whether a new input on this thread resumes its unfinished run: the same run,
        delivered again (a server re-running it after its worker died).

        Raises:
            UnfinishedRunError: The thread's run is unfinished and this is another run.
        """
        # `tasks`, not `next`: a task whose writes are saved is left out of `next`, and a
        # crash before the following checkpoint must still count as unfinished.
        if not state.tasks:
            return False
        run_id = _run_id(config)
        if run_id is not None and run_id == str((state.metadata or {}).get("run_id")):
            return True
        thread = config.get(CONF, {}).get("thread_id")
        waiting = ", ".join(task.name for task in state.tasks)
        raise UnfinishedRunError(
            f"thread {thread!r} has an unfinished run (next: {waiting}); "
            "resume it with None or Command(resume=...) as input, "
            "or start the new task on another thread_id"
        )

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        input, config, kwargs, saver = self._start(input, config, kwargs)
        stop = Stop()
        config[CONF][STOP_KEY] = stop
        if saver is None:
            chunks = cast(Generator[Any, None, None], super().stream(input, config, **kwargs))
        else:
            chunks = self._held_stream(saver, input, config, kwargs)
            next(chunks)
        return _stopping(chunks, stop)

    def _held_stream(
        self,
        saver: BaseCheckpointSaver[Any],
        input: Any,
        config: RunnableConfig,
        kwargs: dict[str, Any],
    ) -> Generator[Any, None, None]:
        """`stream` on a thread the run owns, holding it until the stream ends.

        `stream` takes the first item, a placeholder: by then the thread is held and a new
        task checked, so a refusal raises from the call, and the stream has started, so
        even one dropped unread lets the thread go (when it is collected).
        """
        with hold_thread(saver, config[CONF]["thread_id"], self.holds):
            if (
                _is_task(input)
                and not _finished(saver.get_tuple(config))
                and self._resumes(self.get_state(config), config)
            ):
                input = None
            yield None
            try:
                yield from super().stream(input, config, **kwargs)
            except EmptyInputError:
                raise ValueError(NOTHING_TO_RESUME) from None

    def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        input, config, kwargs, saver = self._start(input, config, kwargs)
        if saver is None:
            return super().astream(input, config, **kwargs)
        return self._held_astream(saver, input, config, kwargs)

    async def _held_astream(
        self,
        saver: BaseCheckpointSaver[Any],
        input: Any,
        config: RunnableConfig,
        kwargs: dict[str, Any],
    ) -> AsyncIterator[Any]:
        """`astream` on a thread the run owns, holding it until the stream ends."""
        async with ahold_thread(saver, config[CONF]["thread_id"], self.holds):
            if (
                _is_task(input)
                and not _finished(await saver.aget_tuple(config))
                and self._resumes(await self.aget_state(config), config)
            ):
                input = None
            try:
                async for chunk in super().astream(input, config, **kwargs):
                    yield chunk
            except EmptyInputError:
                raise ValueError(NOTHING_TO_RESUME) from None
