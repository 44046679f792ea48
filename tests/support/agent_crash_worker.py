"""A worker process for the agent crash-and-resume test: runs, or resumes, one thread of a
loop whose steps a `create_agent` agent does.

    python -m tests.support.agent_crash_worker --backend sqlite --db FILE --thread ID --log FILE
    python -m tests.support.agent_crash_worker --backend postgres --db CONNINFO ... [--resume]

SQLite runs through the sync API (`SqliteSaver`, `stream`), PostgreSQL through the async one
(`AsyncPostgresSaver`, `astream`). The worker prints each progress event as one JSON line,
flushed as it happens, and the run's output last as `{"event": "worker.output", "output": ...}`.
With `--resume` it continues the thread from its last checkpoint (`None` input).

The loop's model plans `PLAN` and writes the final answer; the agent's model does each step
in three calls: it calls `measure` (quick), then `saw` (which takes `--slow` seconds in step
`SLOW_STEP`), then answers with what both said. Every answer depends only on the prompt, so
every process gives the same ones. Each model and tool call appends `what<TAB>step` to the
`--log` file as it starts (a model call as `model <turn>`), so a call cut short by a kill is
counted, and `saw` in the slow step is the test's cue to kill.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, tool

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ModelCall, Response, ScriptedChatModel
from tests.support.crash_worker import run_postgres, run_sqlite

TASK = "Build a bird box"
PLAN = ("Cut the boards", "Nail the box together", "Hang the box")
SLOW_STEP = 2
"""The step whose `saw` call is slow: the kill lands in it."""

_STEP = re.compile(r"^Step (\d+)/\d+: (.*)$", re.MULTILINE)


class Log:
    """The calls log: one `what<TAB>step` line per model or tool call, as it starts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, what: str, step: object) -> None:
        with self.path.open("a", encoding="utf-8") as calls:
            calls.write(f"{what}\t{step}\n")


def step_of(text: str) -> int:
    """The number of the step whose description `text` is."""
    return PLAN.index(text) + 1


def loop_model(log: Log) -> ScriptedChatModel:
    """The loop's own model: the plan, and the final answer."""

    def answer(call: ModelCall) -> Response:
        log.write(call.node or "-", "-")
        if call.node == "planner":
            return "\n".join(f"{i}. {text}" for i, text in enumerate(PLAN, 1))
        return "The bird box hangs."

    return ScriptedChatModel(responses=answer)


def agent_model(log: Log) -> ScriptedChatModel:
    """The agent's model: `measure`, then `saw`, then the step's answer."""

    def answer(call: ModelCall) -> Response:
        prompt = next(m for m in reversed(call.messages) if isinstance(m, HumanMessage))
        match = _STEP.search(prompt.text)
        assert match is not None, f"no step in the agent's prompt: {prompt.text!r}"
        step, description = int(match.group(1)), match.group(2)
        said = [m.text for m in call.messages if isinstance(m, ToolMessage)]
        log.write(f"model {len(said) + 1}", step)
        if len(said) < 2:
            name = ("measure", "saw")[len(said)]
            call_id = f"{name}-{step}"
            return AIMessage(
                "", tool_calls=[{"name": name, "args": {"board": description}, "id": call_id}]
            )
        return f"{description}: {'; '.join(said)}"

    return ScriptedChatModel(responses=answer, report_usage=True)


def tools(log: Log, slow: float) -> list[BaseTool]:
    @tool
    def measure(board: str) -> str:
        """Measure the board a step works on."""
        log.write("measure", step_of(board))
        return f"{board.lower()} measured"

    @tool
    def saw(board: str) -> str:
        """Saw the board a step works on."""
        step = step_of(board)
        log.write("saw", step)
        if step == SLOW_STEP:
            time.sleep(slow)
        return f"{board.lower()} sawn"

    return [measure, saw]


def graph_of(log: Log, slow: float, saver: Any) -> Any:
    carpenter = create_agent(agent_model(log), tools=tools(log, slow), name="carpenter")
    return create_agent_loop(loop_model(log), executor=carpenter, checkpointer=saver)


def output_of(values: dict[str, Any]) -> dict[str, Any]:
    """The run's output keys, messages as their text, ready for JSON."""
    keys = ("task_id", "task", "plan", "steps", "answer", "status", "usage")
    return {
        **{key: values[key] for key in keys},
        "messages": [message.text for message in values["messages"]],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--db", required=True, help="SQLite file or PostgreSQL conninfo")
    parser.add_argument("--thread", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--slow", type=float, default=0.0, help="seconds saw takes in SLOW_STEP")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    log = Log(args.log)
    graph_input = None if args.resume else {"task": TASK}
    config: RunnableConfig = {"configurable": {"thread_id": args.thread}}
    build = partial(graph_of, log, args.slow)
    if args.backend == "sqlite":
        run_sqlite(args.db, build, graph_input, config, nested=False, output=output_of)
    else:
        asyncio.run(
            run_postgres(args.db, build, graph_input, config, nested=False, output=output_of)
        )


if __name__ == "__main__":
    main()
