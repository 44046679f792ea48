"""A worker process for the crash-and-resume suite: runs, or resumes, one thread of the loop.

    python tests/support/crash_worker.py --backend sqlite --db FILE --thread ID --log FILE \
        [--resume]
    python tests/support/crash_worker.py --backend postgres --db CONNINFO --thread ID \
        --log FILE [--resume]

SQLite runs through the sync API (`SqliteSaver`, `stream`), PostgreSQL through the async one
(`AsyncPostgresSaver`, `astream`). The worker prints each progress event as one JSON line,
flushed as it happens, and the run's output last as `{"event": "worker.output", "output": ...}`.
With `--resume` it continues the thread from its last checkpoint (`None` input) instead of
starting the task. With `--nested` the loop runs as a node of a parent graph that owns the
checkpointer and runs with LangGraph's default durability. With `--parallel` the loop runs
with `parallel=True` and the plan's steps 1-4 wait for nothing (step 5 joins them), so they
run at once; step 2 answers at once while the others take `--latency`.

Every process builds the same scripted model: its answers depend only on the prompt, it
appends `node<TAB>step` to the `--log` file at each call (before answering, so a call cut
short by a kill is counted), and executor answers take `--latency` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ModelCall, Response, ScriptedChatModel, Slow

TASK = "Renovate the garden shed"
PLAN = (
    "Survey the shed",
    "Buy timber",
    "Replace the roof",
    "Paint the walls",
    "Fit a new door",
)
FIRST_TRY_FAILS = PLAN[0]
"""The first attempt at step 1 fails and the adapter revises it, so resumed state includes
an adapted step."""
PARALLEL_PLAN = (*(f"{text} (after none)" for text in PLAN[:-1]), f"{PLAN[-1]} (after 1, 2, 3, 4)")
"""The planner's reply in a parallel run: four independent steps and one joining them."""
QUICK_STEP = PLAN[1]
"""In a parallel run this step answers at once, while the rest of its wave is still busy."""

_STEP = re.compile(r"^Step (\d+)/\d+(?: failed)?: (.*)$", re.MULTILINE)
OUTPUT_EVENT = "worker.output"


def scripted_model(log: Path, latency: float, parallel: bool = False) -> ScriptedChatModel:
    """The model every worker uses: the same answer for the same prompt, in any process."""
    plan = PARALLEL_PLAN if parallel else PLAN

    def answer(call: ModelCall) -> Response:
        step = _STEP.search(call.prompt)
        with log.open("a", encoding="utf-8") as calls:
            calls.write(f"{call.node}\t{step.group(1) if step else '-'}\n")
        if call.node == "planner":
            return "\n".join(f"{i}. {text}" for i, text in enumerate(plan, 1))
        if call.node == "summariser":
            return "The shed is renovated."
        assert step is not None, f"no step in the {call.node} prompt"
        description = step.group(2)
        if call.node == "adapter":
            return f"{description} from the outside"
        if description == FIRST_TRY_FAILS:
            return RuntimeError("the shed is locked")
        quick = parallel and description == QUICK_STEP
        return Slow(0 if quick else latency, f"Did: {description}")

    return ScriptedChatModel(responses=answer)


class ParentState(TypedDict, total=False):
    """A parent graph sharing the loop's output keys."""

    task_id: str
    task: str
    plan: list[str]
    steps: list[dict[str, Any]]
    summary: str | None
    answer: str | None
    status: str | None
    total_duration_ms: int | None
    messages: list[Any]


def graph_of(model: ScriptedChatModel, saver: Any, nested: bool, parallel: bool = False) -> Any:
    """The loop with `saver`, or nested as the `loop` node of a parent graph with `saver`."""
    if not nested:
        return create_agent_loop(model, checkpointer=saver, parallel=parallel)
    builder = StateGraph(ParentState)
    builder.add_node("loop", create_agent_loop(model))
    builder.add_edge(START, "loop")
    builder.add_edge("loop", END)
    return builder.compile(checkpointer=saver)


def report(payload: dict[str, Any]) -> None:
    print(json.dumps(payload), flush=True)


def follow(chunk: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Print a `custom` chunk; the latest state values, updated by a `values` chunk."""
    mode, payload = chunk[-2:]  # with subgraphs=True a namespace comes first
    if mode == "custom":
        report(payload)
        return values
    return dict(payload)


def output_of(values: dict[str, Any]) -> dict[str, Any]:
    """The run's output keys, messages as their text, ready for JSON."""
    keys = ("task_id", "task", "plan", "steps", "summary", "answer", "status", "total_duration_ms")
    return {
        **{key: values[key] for key in keys},
        **({"dependencies": values["dependencies"]} if "dependencies" in values else {}),
        "messages": [message.text for message in values["messages"]],
    }


Build = Callable[[Any], Any]
"""The graph to run, given the checkpointer."""


Output = Callable[[dict[str, Any]], dict[str, Any]]
"""What a worker reports of the run's last state values."""


def run_sqlite(
    db: str,
    build: Build,
    graph_input: Any,
    config: RunnableConfig,
    nested: bool,
    output: Output = output_of,
) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    with SqliteSaver.from_conn_string(db) as saver:
        graph = build(saver)
        values: dict[str, Any] = {}
        modes = ["custom", "values"]
        for chunk in graph.stream(graph_input, config, stream_mode=modes, subgraphs=nested):
            if not nested or chunk[0] == () or chunk[1] == "custom":
                values = follow(chunk, values)
    report({"event": OUTPUT_EVENT, "output": output(values)})


async def run_postgres(
    db: str,
    build: Build,
    graph_input: Any,
    config: RunnableConfig,
    nested: bool,
    output: Output = output_of,
) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async with AsyncPostgresSaver.from_conn_string(db) as saver:
        await saver.setup()
        graph = build(saver)
        values: dict[str, Any] = {}
        modes = ["custom", "values"]
        async for chunk in graph.astream(graph_input, config, stream_mode=modes, subgraphs=nested):
            if not nested or chunk[0] == () or chunk[1] == "custom":
                values = follow(chunk, values)
    report({"event": OUTPUT_EVENT, "output": output(values)})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--db", required=True, help="SQLite file or PostgreSQL conninfo")
    parser.add_argument("--thread", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--nested", action="store_true")
    parser.add_argument("--parallel", action="store_true")
    args = parser.parse_args(argv)
    model = scripted_model(args.log, args.latency, args.parallel)
    build = partial(graph_of, model, nested=args.nested, parallel=args.parallel)
    graph_input = None if args.resume else {"task": TASK}
    config: RunnableConfig = {"configurable": {"thread_id": args.thread}}
    if args.backend == "sqlite":
        run_sqlite(args.db, build, graph_input, config, args.nested)
    else:
        asyncio.run(run_postgres(args.db, build, graph_input, config, args.nested))


if __name__ == "__main__":
    main()
