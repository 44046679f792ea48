"""Graphs that only the Aegra suite serves (`tests/support/aegra_langgraph.json`).

- `slow_loop`: the agent loop with the demo model answering after
  `AGENTLOOP_TEST_LATENCY` seconds (default 0.5), every model call appended as one JSON
  line to `AGENTLOOP_TEST_CALL_LOG` (when set): thread, node, step, process and run id.
  A call is logged before its answer is awaited, so a call cut short by a kill counts.
- `probe`: three plain nodes (`first`, `slow`, `last`; `slow` sleeps
  `AGENTLOOP_PROBE_SLEEP` seconds) that log, to `AGENTLOOP_PROBE_LOG`, what a node sees of
  its run: `get_runtime().execution_info`, `config["metadata"]` and `config["configurable"]`,
  and the state it was given; the graph also logs the arguments the server passes to
  `astream` (input, stream modes, durability, checkpointer), and checkpoints each node
  before the next starts, as the loop does. It tells what a re-delivered run looks like
  from inside the graph.

The server loads this file by path, so it imports nothing from `tests`.
"""

from __future__ import annotations

import json
import operator
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import get_runtime
from typing_extensions import TypedDict

from agentloop_graph import create_agent_loop
from agentloop_graph.demo import DemoChatModel

_STEP = re.compile(r"^Step (\d+)/\d+(?: failed)?: ", re.MULTILINE)


def _append(path: str | None, record: dict[str, Any]) -> None:
    """Append one JSON line; a single small `write` in append mode, so lines never mix."""
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(record, default=repr) + "\n")


class LoggedDemoModel(DemoChatModel):
    """The demo model, logging each call before answering."""

    log: str | None = None

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        metadata = getattr(run_manager, "metadata", None) or {}
        step = _STEP.search(messages[-1].text if messages else "")
        _append(
            self.log,
            {
                "thread": metadata.get("thread_id"),
                "node": metadata.get("langgraph_node"),
                "step": int(step.group(1)) if step else None,
                "pid": os.getpid(),
                "run_id": metadata.get("run_id"),
                "time": time.time(),
            },
        )
        return await super()._agenerate(messages, stop, run_manager, **kwargs)


def make_slow_loop() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The loop with a slow, logging demo model."""
    model = LoggedDemoModel(
        latency=float(os.environ.get("AGENTLOOP_TEST_LATENCY", "0.5")),
        log=os.environ.get("AGENTLOOP_TEST_CALL_LOG") or None,
    )
    return create_agent_loop(model)


class ProbeState(TypedDict, total=False):
    note: str
    visited: Annotated[list[str], operator.add]


def _probe_node(name: str, sleep: float = 0.0) -> Any:
    async def node(state: ProbeState, config: RunnableConfig) -> ProbeState:
        info = get_runtime().execution_info
        assert info is not None, "LangGraph >= 1.2 sets execution_info for every node"
        configurable = {
            key: value
            for key, value in (config.get("configurable") or {}).items()
            if isinstance(value, str | int | float | bool | type(None))
        }
        _append(
            os.environ.get("AGENTLOOP_PROBE_LOG"),
            {
                "where": "node",
                "node": name,
                "pid": os.getpid(),
                "execution_info": {
                    "run_id": info.run_id,
                    "thread_id": info.thread_id,
                    "checkpoint_ns": info.checkpoint_ns,
                    "checkpoint_id": info.checkpoint_id,
                    "task_id": info.task_id,
                    "node_attempt": info.node_attempt,
                },
                "config_run_id": config.get("run_id"),
                "metadata": {
                    k: v
                    for k, v in (config.get("metadata") or {}).items()
                    if isinstance(v, str | int | float | bool | type(None))
                },
                "configurable": configurable,
                "state": dict(state),
            },
        )
        if sleep:
            import asyncio

            await asyncio.sleep(sleep)
        return {"visited": [name]}

    return node


class ProbeGraph(CompiledStateGraph[Any, Any, Any, Any]):
    """Logs the arguments the server's `astream` call brings, then streams as usual.

    Like the loop, it writes each checkpoint before its next node starts when the server
    names no `durability` (LangGraph's own default, "async", may still be writing the
    last one when a kill lands, and the re-delivery would then repeat that node too).
    """

    def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        _append(
            os.environ.get("AGENTLOOP_PROBE_LOG"),
            {
                "where": "astream",
                "pid": os.getpid(),
                "input": input,
                "thread_id": ((config or {}).get("configurable") or {}).get("thread_id"),
                "config_run_id": (config or {}).get("run_id"),
                "configurable_run_id": ((config or {}).get("configurable") or {}).get("run_id"),
                "metadata_run_id": ((config or {}).get("metadata") or {}).get("run_id"),
                "stream_mode": kwargs.get("stream_mode"),
                "durability": kwargs.get("durability"),
                "subgraphs": kwargs.get("subgraphs"),
                "checkpointer": type(self.checkpointer).__name__,
            },
        )
        if kwargs.get("durability") is None:
            kwargs["durability"] = "sync"
        return super().astream(input, config, **kwargs)


def make_probe() -> CompiledStateGraph[Any, Any, Any, Any]:
    """first -> slow -> last, each node logging what it sees."""
    builder = StateGraph(ProbeState)
    builder.add_node("first", _probe_node("first"))
    builder.add_node(
        "slow", _probe_node("slow", float(os.environ.get("AGENTLOOP_PROBE_SLEEP", "3")))
    )
    builder.add_node("last", _probe_node("last"))
    builder.add_edge(START, "first")
    builder.add_edge("first", "slow")
    builder.add_edge("slow", "last")
    builder.add_edge("last", END)
    graph = builder.compile(name="probe")
    graph.__class__ = ProbeGraph
    return graph
