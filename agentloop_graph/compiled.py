"""The compiled loop: a `CompiledStateGraph` that also looks after its threads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot

from agentloop_graph.settings import Context

RECURSION_LIMIT = 10_000
"""The loop bounds its own work (`max_steps`, `max_adaptations`); LangGraph's recursion
limit only has to stay out of its way."""


class UnfinishedRunError(ValueError):
    """A new task was sent to a thread whose run has not finished."""


class AgentLoopGraph(CompiledStateGraph[Any, Context, Any, Any]):
    """`create_agent_loop`'s graph: a `CompiledStateGraph` with two guarantees added.

    - A new task on a checkpointed thread whose run is unfinished (interrupted, waiting
      for plan approval, or stopped by a crash) is refused with `UnfinishedRunError`
      before anything is written, instead of silently starting over on that thread.
      Resume the run with `None` or `Command(resume=...)`, or use another `thread_id`.
    - With a checkpointer, runs write each checkpoint before the next node starts
      (`durability="sync"` unless the caller chooses otherwise), so a crash never
      repeats a finished step.
    - `astream_events` runs without a recursion limit of their own get a generous one:
      LangChain fills in 25 there, which a long run with adaptations can exceed.
    """

    def _durable(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs.get("durability") is None and self.checkpointer not in (None, True, False):
            return {**kwargs, "durability": "sync"}
        return kwargs

    def _thread_to_check(self, input: Any, config: RunnableConfig | None) -> bool:
        configurable = (config or {}).get("configurable") or {}
        return (
            input is not None
            and not isinstance(input, Command)
            and self.checkpointer not in (None, True, False)
            and "thread_id" in configurable
            # Nested in a parent graph, the parent owns the thread.
            and not configurable.get("checkpoint_ns")
        )

    @staticmethod
    def _refuse_if_unfinished(state: StateSnapshot, config: RunnableConfig | None) -> None:
        if state.next:
            thread = ((config or {}).get("configurable") or {}).get("thread_id")
            raise UnfinishedRunError(
                f"thread {thread!r} has an unfinished run (next: {', '.join(state.next)}); "
                "resume it with None or Command(resume=...) as input, "
                "or start the new task on another thread_id"
            )

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        if self._thread_to_check(input, config):
            self._refuse_if_unfinished(self.get_state(config or {}), config)
        return super().stream(input, config, **self._durable(kwargs))

    def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        kwargs = self._durable(kwargs)
        if self._thread_to_check(input, config):
            return self._checked_astream(input, config, **kwargs)
        return super().astream(input, config, **kwargs)

    async def _checked_astream(
        self, input: Any, config: RunnableConfig | None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        self._refuse_if_unfinished(await self.aget_state(config or {}), config)
        async for chunk in super().astream(input, config, **kwargs):
            yield chunk

    def astream_events(  # type: ignore[override]
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        if config is None or "recursion_limit" not in config:
            config = {**(config or {}), "recursion_limit": RECURSION_LIMIT}
        return cast(AsyncIterator[Any], super().astream_events(input, config, **kwargs))
