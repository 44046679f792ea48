"""A worker process for the exactly-once suite: runs, or resumes, one thread of the loop.

    python -m tests.support.idempotent_worker --backend sqlite --db FILE --thread ID \
        --dir DIR [--resume]
    python -m tests.support.idempotent_worker --backend postgres --db CONNINFO --thread ID \
        --dir DIR ...

Each step's executor calls one tool, `record_effect`, which has a side effect: it appends
`key<TAB>effect` to `DIR/effects.tsv`, where `key` is the idempotency key the loop hands it
(`config["configurable"]["idempotency_key"]`). It is written as a careful user would write it:
under an exclusive lock on the file, it skips the effect when the key is already there, and
appends the key and the effect as one line in one write, flushed to disk before it answers. It
also appends `key<TAB>pid<TAB>applied|skipped` to `DIR/calls.tsv` for every call, so a test
can tell calls from effects.

The scripted model plans `PLAN`; within a step its first reply calls the tool and its second
(after the tool's answer) is the step's result. The second reply of step `SLOW_STEP` takes
`--slow` seconds, so a kill can land after that step's side effect and before the step ends.
It appends `node<TAB>step<TAB>turn` to `DIR/model.tsv` at each call, before answering.

Like `tests/support/crash_worker.py`, SQLite runs through the sync API and PostgreSQL through the
async one; the worker prints each progress event as one JSON line and the output last.
`--durability` is passed to `stream`/`astream` (LangGraph's default, `async`, when not given):
`sync` commits each checkpoint before the next step starts, `async` writes it while the next
step runs.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, tool

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ModelCall, Response, ScriptedChatModel, Slow
from tests.support.crash_worker import OUTPUT_EVENT, follow, output_of, report

TASK = "Prepare the village fete"
PLAN = ("Book the field", "Hire a marquee", "Bake the cakes", "Print the posters")
SLOW_STEP = 3
"""The step whose second model call (after its tool call) is slow: the test kills it there."""
EFFECTS, CALLS, MODEL_CALLS = "effects.tsv", "calls.tsv", "model.tsv"

_STEP = re.compile(r"^Step (\d+)/\d+: (.*)$", re.MULTILINE)


def effect_of(step: int) -> str:
    """The side effect step `step` asks the tool to make."""
    return f"effect of step {step}: {PLAN[step - 1]}"


def effects_tool(directory: Path) -> BaseTool:
    """`record_effect`: append an effect to `effects.tsv` at most once per idempotency key."""
    effects, calls = directory / EFFECTS, directory / CALLS

    @tool
    def record_effect(effect: str, config: RunnableConfig) -> str:
        """Record a side effect of the step (an order placed, a message sent)."""
        key = str(config["configurable"]["idempotency_key"])
        with effects.open("a+", encoding="utf-8") as file:
            # One writer at a time; the lock goes with the file when the process dies.
            fcntl.flock(file, fcntl.LOCK_EX)
            file.seek(0)
            applied = {line.split("\t", 1)[0] for line in file.read().splitlines()}
            outcome = "skipped" if key in applied else "applied"
            if outcome == "applied":
                file.write(f"{key}\t{effect}\n")  # key and effect in one line, one write
                file.flush()
                os.fsync(file.fileno())
        with calls.open("a", encoding="utf-8") as log:
            log.write(f"{key}\t{os.getpid()}\t{outcome}\n")
        # The same answer either way: a repeated call cannot tell the model anything new.
        return f"recorded: {effect}"

    return record_effect


def scripted_model(directory: Path, slow: float) -> ScriptedChatModel:
    """The same answers for the same conversation, in any process."""

    def answer(call: ModelCall) -> Response:
        step = _STEP.search(call.messages[0].text) if call.messages else None
        turn = sum(isinstance(m, ToolMessage) for m in call.messages) + 1
        with (directory / MODEL_CALLS).open("a", encoding="utf-8") as log:
            log.write(f"{call.node}\t{step.group(1) if step else '-'}\t{turn}\n")
        if call.node == "planner":
            return "\n".join(f"{i}. {text}" for i, text in enumerate(PLAN, 1))
        if call.node == "summariser":
            return "The fete is ready."
        assert call.node == "executor" and step is not None, call
        number = int(step.group(1))
        if turn == 1:
            args = {"effect": effect_of(number)}
            tool_call = {"name": "record_effect", "args": args, "id": f"call-{number}"}
            return AIMessage("", tool_calls=[tool_call])
        result = f"Did: {step.group(2)} ({call.messages[-1].text})"
        return Slow(slow, result) if number == SLOW_STEP else result

    return ScriptedChatModel(responses=answer)


def build(model: ScriptedChatModel, directory: Path, saver: Any) -> Any:
    return create_agent_loop(model, tools=[effects_tool(directory)], checkpointer=saver)


def run_sqlite(db: str, directory: Path, slow: float, run: dict[str, Any]) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    with SqliteSaver.from_conn_string(db) as saver:
        graph = build(scripted_model(directory, slow), directory, saver)
        values: dict[str, Any] = {}
        for chunk in graph.stream(**run, stream_mode=["custom", "values"]):
            values = follow(chunk, values)
    report({"event": OUTPUT_EVENT, "output": output_of(values)})


async def run_postgres(db: str, directory: Path, slow: float, run: dict[str, Any]) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async with AsyncPostgresSaver.from_conn_string(db) as saver:
        await saver.setup()
        graph = build(scripted_model(directory, slow), directory, saver)
        values: dict[str, Any] = {}
        async for chunk in graph.astream(**run, stream_mode=["custom", "values"]):
            values = follow(chunk, values)
    report({"event": OUTPUT_EVENT, "output": output_of(values)})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--db", required=True, help="SQLite file or PostgreSQL conninfo")
    parser.add_argument("--thread", required=True)
    parser.add_argument("--dir", type=Path, required=True, help="where the logs and effects go")
    parser.add_argument("--slow", type=float, default=1.0)
    parser.add_argument("--durability", choices=("sync", "async", "exit"))
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    config: RunnableConfig = {"configurable": {"thread_id": args.thread}}
    run: dict[str, Any] = {"input": None if args.resume else {"task": TASK}, "config": config}
    if args.durability:
        run["durability"] = args.durability
    if args.backend == "sqlite":
        run_sqlite(args.db, args.dir, args.slow, run)
    else:
        asyncio.run(run_postgres(args.db, args.dir, args.slow, run))


if __name__ == "__main__":
    main()
