"""Against the loop a user writes by hand: CPU and wall time of `create_agent_loop` over a
hand-written LangGraph plan-and-execute loop that makes the same model calls and writes the
same progress events.

The hand-written loop is what a LangGraph user would write in an afternoon: a `planner` node
that asks for the plan held to the loop's plan schema (the `plan` tool bound, the model call
`with_structured_output` makes; a numbered list in its text is read when no call comes), an
`executor` node that does the next step and loops through a conditional edge (an async
router under `ainvoke`, a plain function under `invoke`) until every step is done, and a
`summariser` node that asks for the final answer. Each node writes the project's event
dicts (`agentic.plan_ready`, `agentic.step_started`, `agentic.step_complete`,
`agentic.task_complete`, with the same keys) with `get_stream_writer()`. Its parallel form
`Send`s every ready step to the `executor` node, joins the wave in a `join` node and routes
from there to the next ready steps or the summariser. It has none of the project's
guarantees (no retries, timeouts, adaptation, budgets or thread holds): it shows what those
cost.

Cases, each project / hand-written (same model calls, with the same prompts and tools bound,
and the same events, checked before timing):
1. async:    N=200 concurrent `ainvoke` runs (asyncio.gather) of 5-step plans, sequential.
2. invoke:   N=100 runs of 5-step plans one after another with blocking `invoke`.
3. SQLite:   20-step runs with a `SqliteSaver` (a file in a temporary directory), blocking
             `invoke`, each on a new thread id, `durability="sync"` on both sides.
4. parallel: a fan-out of 8 independent steps (`parallel=True, max_parallel=8`) against the
             hand-written `Send` fan-out with a join, at N=1 and N=50 concurrent `ainvoke`.
5. executor=: N=50 concurrent `ainvoke` runs of 5-step plans whose steps are done by a small
             agent graph (`create_agent_loop(..., executor=agent)`, against calling the same
             agent in the hand-written `executor` node).

The model is `ScriptedChatModel` answering by node at no latency (the plan as a `plan` tool
call), so what is timed is the CPU each loop spends around its model calls. Both sides run
in this one process in rounds, the project first in even rounds and the hand-written loop
first in odd ones, each with a fresh model and graph and after one warm-up run; each figure
is the median over rounds of the ratio taken within a round, with its [min..max]. CPU time
(`time.process_time()`, every thread of the process) is the figure the targets apply to;
wall time is printed beside it.

CPU time on a shared or virtual machine moves from run to run. `--instructions` counts the
instructions each side executes instead (valgrind's callgrind, only around the timed runs,
one process per side and case): ratios that move by thousandths between runs, whatever else
the machine is doing, though not the same thing as time (they leave out cache misses and
system calls).

    python benchmarks/handwritten.py [--rounds 11] [--quick] [--case TEXT] [--instructions]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall
from langchain_core.runnables import Runnable
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Send
from typing_extensions import TypedDict

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel

RESULT = "A result of about sixty characters, as a short step gives."
ANSWER = "The final answer, from the results of the steps."
MAX_PARALLEL = 8
PREVIEW = 200
"""Characters of a result quoted in a later step's prompt and in `step_complete`."""

Side = Literal["project", "hand-written"]
SIDES: tuple[Side, Side] = ("project", "hand-written")


def plan_call(steps: int, parallel: bool) -> AIMessage:
    """A plan of `steps` steps as a model held to the plan's schema gives it: a call of the
    `plan` tool; in parallel, each step waiting for none."""
    items = [f"Do part {n}" for n in range(1, steps + 1)]
    if parallel:
        items = [{"description": item, "depends_on": []} for item in items]
    call = ToolCall(name="plan", args={"steps": items}, id="plan")
    return AIMessage("", tool_calls=[call])


def scripted_model(steps: int, parallel: bool = False) -> ScriptedChatModel:
    """The deterministic model of both sides: it answers by node, at no latency."""
    plan = plan_call(steps, parallel)

    def answer(call: ModelCall) -> str | AIMessage:
        return {"planner": plan, "summariser": ANSWER}.get(call.node or "", RESULT)

    return ScriptedChatModel(responses=answer)


def agent_graph(model: ScriptedChatModel) -> Any:
    """A small agent: a graph with a `messages` key and one node calling the model."""

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    return builder.compile()


# The hand-written loop ---------------------------------------------------------------------

PLAN_PROMPT = (
    "Break this task into numbered steps (at most {max_steps}). "
    "Return ONLY the numbered list, one step per line, nothing else.\n\nTask: {task}"
)
PARALLEL_HINT = (
    "\n\nSteps may run at the same time. End each step with the numbers of the steps whose "
    "results it needs, as (after 1, 2), or with (after none) if it needs none."
)
STEP_PROMPT = (
    "Task: {task}\nStep {step}/{total}: {description}\nRecent progress:\n{recent}\n\n"
    "Execute this step and report what you did and what you found."
)
SUMMARY_PROMPT = (
    "Task: {task}\nResults of the steps:\n{results}\n\n"
    "Write the final answer to the task from these results."
)
NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.+?)\s*$", re.MULTILINE)
AFTER = re.compile(r"\s*\(after (none|\d+(?:\s*,\s*\d+)*)\)$")


def plan_schema(max_steps: int, parallel: bool) -> dict[str, Any]:
    """The plan the planner is held to: a list of steps; in parallel, each with the steps it
    waits for. Written out as a user would, the same as the loop's (`check_fair` compares
    the tools each call binds)."""
    item: dict[str, Any] = {"type": "string"}
    if parallel:
        waits = {"type": "array", "items": {"type": "integer"}, "maxItems": max_steps - 1}
        properties = {"description": {"type": "string", "minLength": 1}, "depends_on": waits}
        item = {"type": "object", "properties": properties, "required": list(properties)}
    return {
        "title": "plan",
        "description": "The steps that do the task, in order.",
        "type": "object",
        "properties": {"steps": {"type": "array", "items": item, "minItems": 1}},
        "required": ["steps"],
    }


def planner_model(model: ScriptedChatModel, max_steps: int, parallel: bool) -> Runnable[Any, Any]:
    """The model held to the plan's schema: it answers with a call of the `plan` tool (the
    model call `with_structured_output` makes, without its parsing chain around it)."""
    return model.bind_tools([plan_schema(max_steps, parallel)], tool_choice="any")


Usage = dict[str, int]


def usage_of(reply: BaseMessage) -> Usage:
    found = getattr(reply, "usage_metadata", None) or {}
    return {key: found.get(key, 0) for key in ("input_tokens", "output_tokens", "total_tokens")}


def total_usage(usages: list[Usage]) -> Usage:
    return {key: sum(usage[key] for usage in usages) for key in usages[0]}


class Record(TypedDict):
    step: int
    description: str
    result: str
    usage: Usage


class LoopState(TypedDict, total=False):
    task: str
    task_id: str
    started_at: float
    plan: list[str]
    dependencies: list[list[int]]
    plan_usage: Usage
    steps: Annotated[list[Record], operator.add]
    answer: str
    summary: str
    status: str


class Branch(TypedDict):
    """What the parallel loop sends a step: the step and the records it waits for."""

    task: str
    task_id: str
    step: int
    total: int
    description: str
    after: list[Record]
    spent: dict[str, int]
    """What the run had spent when the step was sent, as the project's events say."""


def spent_so_far(state: LoopState) -> dict[str, int]:
    """The plan's call and each ended step's: the model calls and tokens spent."""
    usage = total_usage([state["plan_usage"], *(r["usage"] for r in state["steps"])])
    return {"model_calls": 1 + len(state["steps"]), "tokens": usage["total_tokens"]}


def plan_prompt(state: LoopState, max_steps: int, parallel: bool) -> str:
    prompt = PLAN_PROMPT.format(max_steps=max_steps, task=state["task"])
    return prompt + PARALLEL_HINT if parallel else prompt


def planned(state: LoopState, reply: AIMessage, max_steps: int, parallel: bool) -> LoopState:
    """The plan read from the planner's reply (its `plan` call, else a numbered list in its
    text); writes `agentic.plan_ready`."""
    structured = reply.tool_calls[0]["args"]["steps"] if reply.tool_calls else None
    steps, dependencies = [], []
    if structured:
        for item in structured[:max_steps]:
            steps.append(item if isinstance(item, str) else item["description"])
            dependencies.append([] if isinstance(item, str) else item["depends_on"])
    else:
        for line in NUMBERED.findall(reply.text)[:max_steps]:
            marker = AFTER.search(line) if parallel else None
            waits = marker[1] if marker else "none"
            steps.append(line[: marker.start()] if marker else line)
            dependencies.append([] if waits == "none" else [int(n) for n in waits.split(",")])
    task_id = uuid.uuid4().hex[:12]
    event = {
        "event": "agentic.plan_ready",
        "task_id": task_id,
        "task": state["task"],
        "steps": steps,
        "total": len(steps),
        "plan_format": "json" if structured else "text",
        "spent": {"model_calls": 1, "tokens": usage_of(reply)["total_tokens"]},
    }
    update: LoopState = {
        "task_id": task_id,
        "started_at": time.time(),
        "plan": steps,
        "plan_usage": usage_of(reply),
    }
    if parallel:
        event["dependencies"] = update["dependencies"] = dependencies
    get_stream_writer()(event)
    return update


def start_step(branch: Branch) -> str:
    """The step's prompt; writes `agentic.step_started`."""
    recent = "\n".join(f"Step {r['step']}: {r['result'][:PREVIEW]}" for r in branch["after"])
    get_stream_writer()(
        {
            "event": "agentic.step_started",
            "task_id": branch["task_id"],
            "step": branch["step"],
            "total": branch["total"],
            "description": branch["description"],
            "attempt": 1,
            "agent": None,
            "spent": branch["spent"],
        }
    )
    return STEP_PROMPT.format(
        task=branch["task"],
        step=branch["step"],
        total=branch["total"],
        description=branch["description"],
        recent=recent or "(none yet)",
    )


def end_step(branch: Branch, reply: BaseMessage) -> LoopState:
    """The step's record; writes `agentic.step_complete`."""
    record: Record = {
        "step": branch["step"],
        "description": branch["description"],
        "result": reply.text,
        "usage": usage_of(reply),
    }
    get_stream_writer()(
        {
            "event": "agentic.step_complete",
            "task_id": branch["task_id"],
            "step": record["step"],
            "total": branch["total"],
            "description": record["description"],
            "result": record["result"][:PREVIEW],
            "status": "completed",
            "error": None,
            "usage": record["usage"],
            "agent": None,
            "ended_by": "answer",
            "reason": None,
            "spent": {
                "model_calls": branch["spent"]["model_calls"] + 1,
                "tokens": branch["spent"]["tokens"] + record["usage"]["total_tokens"],
            },
        }
    )
    return {"steps": [record]}


def next_step(state: LoopState) -> Branch:
    """The sequential loop's next step, quoting the last two results."""
    step = len(state["steps"]) + 1
    return {
        "task": state["task"],
        "task_id": state["task_id"],
        "step": step,
        "total": len(state["plan"]),
        "description": state["plan"][step - 1],
        "after": state["steps"][-2:],
        "spent": spent_so_far(state),
    }


def summary_prompt(state: LoopState) -> str:
    steps = sorted(state["steps"], key=lambda record: record["step"])
    results = "\n".join(f"{r['step']}. {r['description']}: {r['result']}" for r in steps)
    return SUMMARY_PROMPT.format(task=state["task"], results=results)


def summarised(state: LoopState, reply: BaseMessage) -> LoopState:
    """The run's answer and status; writes `agentic.task_complete`."""
    steps, plan = state["steps"], state["plan"]
    usage = total_usage([state["plan_usage"], *(r["usage"] for r in steps), usage_of(reply)])
    summary = f"{state['task']}: Completed {len(steps)}/{len(plan)} steps."
    status = "completed" if len(steps) == len(plan) else "partial"
    seconds = time.time() - state["started_at"]
    get_stream_writer()(
        {
            "event": "agentic.task_complete",
            "task_id": state["task_id"],
            "status": status,
            "steps_completed": len(steps),
            "summary": summary,
            "answer": reply.text[:300],
            "duration_ms": int(seconds * 1000),
            "usage": usage,
            "spent": {"model_calls": len(steps) + 2, "tokens": usage["total_tokens"]},
            "budget": {
                "limits": {"max_model_calls": None, "max_tokens": None, "max_seconds": None},
                "spent": {
                    "model_calls": len(steps) + 2,
                    "tokens": usage["total_tokens"],
                    "seconds": round(seconds, 3),
                },
            },
        }
    )
    return {"answer": reply.text, "summary": summary, "status": status}


def sequential_loop(
    model: ScriptedChatModel,
    *,
    max_steps: int,
    blocking: bool = False,
    agent: Runnable[Any, Any] | None = None,
    checkpointer: Any = None,
) -> Any:
    """The hand-written loop: planner -> executor (looping) -> summariser. Async nodes and
    routers for `ainvoke`, plain ones for `invoke`. With `agent`, the executor node asks it
    (one human message in, its last message the result) instead of the model."""

    plans = planner_model(model, max_steps, False)
    if blocking:
        assert agent is None, "the blocking loop asks the model"

        def planner(state: LoopState) -> LoopState:
            reply = plans.invoke(plan_prompt(state, max_steps, False))
            return planned(state, reply, max_steps, False)

        def executor(state: LoopState) -> LoopState:
            step = next_step(state)
            return end_step(step, model.invoke(start_step(step)))

        def summariser(state: LoopState) -> LoopState:
            return summarised(state, model.invoke(summary_prompt(state)))

        def route(state: LoopState) -> Literal["executor", "summariser"]:
            return "executor" if len(state["steps"]) < len(state["plan"]) else "summariser"

    else:

        async def ask_step(prompt: str) -> BaseMessage:
            if agent is None:
                return await model.ainvoke(prompt)
            messages = (await agent.ainvoke({"messages": [HumanMessage(prompt)]}))["messages"]
            return messages[-1]

        async def planner(state: LoopState) -> LoopState:
            reply = await plans.ainvoke(plan_prompt(state, max_steps, False))
            return planned(state, reply, max_steps, False)

        async def executor(state: LoopState) -> LoopState:
            step = next_step(state)
            return end_step(step, await ask_step(start_step(step)))

        async def summariser(state: LoopState) -> LoopState:
            return summarised(state, await model.ainvoke(summary_prompt(state)))

        async def route(state: LoopState) -> Literal["executor", "summariser"]:
            return "executor" if len(state["steps"]) < len(state["plan"]) else "summariser"

    builder = StateGraph(LoopState)
    builder.add_node("planner", planner)
    builder.add_node("executor", executor)
    builder.add_node("summariser", summariser)
    builder.add_edge(START, "planner")
    builder.add_conditional_edges("planner", route)
    builder.add_conditional_edges("executor", route)
    builder.add_edge("summariser", END)
    return builder.compile(checkpointer=checkpointer)


def parallel_loop(model: ScriptedChatModel, *, max_steps: int, max_parallel: int) -> Any:
    """The hand-written parallel loop: the planner's router `Send`s every ready step to the
    executor, a join ends each wave, and its router sends the next ready steps or goes to
    the summariser."""

    plans = planner_model(model, max_steps, True)

    async def planner(state: LoopState) -> LoopState:
        reply = await plans.ainvoke(plan_prompt(state, max_steps, True))
        return planned(state, reply, max_steps, True)

    async def executor(branch: Branch) -> LoopState:
        return end_step(branch, await model.ainvoke(start_step(branch)))

    async def join(state: LoopState) -> LoopState:
        return {}

    async def summariser(state: LoopState) -> LoopState:
        return summarised(state, await model.ainvoke(summary_prompt(state)))

    async def next_wave(state: LoopState) -> list[Send] | Literal["summariser"]:
        ended = {record["step"]: record for record in state["steps"]}
        plan, dependencies = state["plan"], state["dependencies"]
        ready = [
            n
            for n in range(1, len(plan) + 1)
            if n not in ended and all(dep in ended for dep in dependencies[n - 1])
        ]
        branches: list[Branch] = [
            {
                "task": state["task"],
                "task_id": state["task_id"],
                "step": n,
                "total": len(plan),
                "description": plan[n - 1],
                "after": [ended[dep] for dep in dependencies[n - 1]],
                "spent": spent_so_far(state),
            }
            for n in ready[:max_parallel]
        ]
        return [Send("executor", branch) for branch in branches] or "summariser"

    builder = StateGraph(LoopState)
    builder.add_node("planner", planner)
    builder.add_node("executor", executor)
    builder.add_node("join", join)
    builder.add_node("summariser", summariser)
    builder.add_edge(START, "planner")
    builder.add_conditional_edges("planner", next_wave, ["executor", "summariser"])
    builder.add_edge("executor", "join")
    builder.add_conditional_edges("join", next_wave, ["executor", "summariser"])
    builder.add_edge("summariser", END)
    return builder.compile()


# The cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One comparison: `runs` runs of `steps`-step plans, concurrent (`ainvoke`) or one
    after another (`invoke`), each side built fresh by `build`."""

    label: str
    runs: int
    steps: int
    concurrent: bool
    target: float | None
    """The most project / hand-written CPU may be, or None where none is set."""
    parallel: bool = False
    sqlite: bool = False
    agent: bool = False

    def build(self, side: Side, saver: Any = None) -> tuple[Any, ScriptedChatModel]:
        model = scripted_model(self.steps, self.parallel)
        agent = agent_graph(model) if self.agent else None
        if side == "project":
            options: dict[str, Any] = {"max_steps": self.steps, "checkpointer": saver}
            if self.parallel:
                options |= {"parallel": True, "max_parallel": MAX_PARALLEL}
            if agent is not None:
                options["executor"] = agent
            return create_agent_loop(model, **options), model
        if self.parallel:
            return parallel_loop(model, max_steps=self.steps, max_parallel=MAX_PARALLEL), model
        graph = sequential_loop(
            model,
            max_steps=self.steps,
            blocking=not self.concurrent,
            agent=agent,
            checkpointer=saver,
        )
        return graph, model


@contextmanager
def sqlite_saver(case: Case) -> Iterator[Any]:
    """A `SqliteSaver` on a new file in a temporary directory (None unless `case.sqlite`)."""
    if not case.sqlite:
        yield None
        return
    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(Path(folder) / "checkpoints.db", check_same_thread=False)
        try:
            yield SqliteSaver(conn)
        finally:
            conn.close()


def run_config(case: Case) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's config (a new thread id with a checkpointer) and invoke options."""
    if not case.sqlite:
        return {}, {}
    return {"configurable": {"thread_id": uuid.uuid4().hex}}, {"durability": "sync"}


def check_result(case: Case, out: dict[str, Any]) -> None:
    assert out["status"] == "completed" and len(out["steps"]) == case.steps, out
    assert out["answer"] == ANSWER, out["answer"]


async def one_run(case: Case, graph: Any, task: str, **kwargs: Any) -> dict[str, Any]:
    config, options = run_config(case)
    return await graph.ainvoke({"task": task}, config, **options, **kwargs)


def blocking_run(case: Case, graph: Any, task: str, **kwargs: Any) -> dict[str, Any]:
    config, options = run_config(case)
    return graph.invoke({"task": task}, config, **options, **kwargs)


def events_of(case: Case, side: Side) -> tuple[list[dict[str, Any]], list[ModelCall]]:
    """The custom events of one run of `side`, and its model's calls."""
    with sqlite_saver(case) as saver:
        graph, model = case.build(side, saver)
        config, options = run_config(case)
        if case.concurrent:

            async def stream() -> list[dict[str, Any]]:
                chunks = graph.astream({"task": "t"}, config, stream_mode="custom", **options)
                return [event async for event in chunks]

            events = asyncio.run(stream())
        else:
            events = list(graph.stream({"task": "t"}, config, stream_mode="custom", **options))
    return events, model.calls


def call_of(call: ModelCall) -> tuple[str | None, str, str]:
    """What makes two model calls the same: the node, the prompt and the tools bound (the
    plan's schema among them)."""
    return call.node, call.prompt, json.dumps(call.tool_schemas, sort_keys=True)


def check_fair(case: Case) -> None:
    """Both sides make the same model calls (plan, one per step, summary: the same nodes,
    prompts and tools bound) and write the same events (kinds, counts, keys, the same plan);
    in sequence, in the same order."""
    (project, project_calls), (mine, my_calls) = (events_of(case, side) for side in SIDES)
    assert len(project_calls) == len(my_calls) == case.steps + 2, (project_calls, my_calls)
    project_seen = [call_of(call) for call in project_calls]
    my_seen = [call_of(call) for call in my_calls]
    assert Counter(project_seen) == Counter(my_seen), (project_seen, my_seen)
    assert case.parallel or project_seen == my_seen, (project_seen, my_seen)
    kinds = [event["event"] for event in project]
    assert Counter(kinds) == Counter(event["event"] for event in mine), (project, mine)
    assert case.parallel or kinds == [event["event"] for event in mine], (project, mine)
    assert len(kinds) == 2 * case.steps + 2, kinds
    keys = {event["event"]: set(event) for event in project}
    assert keys == {event["event"]: set(event) for event in mine}, (keys, mine)
    plans = [{**events[0], "task_id": None} for events in (project, mine)]
    assert plans[0] == plans[1], plans  # the same plan, read from the same kind of answer


Measure = Callable[[], AbstractContextManager[list[float]]]
"""What is measured around the timed runs: a block yielding a list it fills on exit."""


@contextmanager
def clock() -> Iterator[list[float]]:
    """Wall and CPU seconds of the block, in the list it yields, once the block ends."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    figures: list[float] = []
    yield figures
    figures += [time.perf_counter() - wall, time.process_time() - cpu]


@contextmanager
def counting_instructions() -> Iterator[list[float]]:
    """callgrind counts instructions only inside the block (the process runs under it with
    `--instr-atstart=no`); the count is what valgrind reports as the process ends."""
    gc.collect()
    instr = ["callgrind_control", "--instr", "on", str(os.getpid())]
    subprocess.run(instr, check=True, capture_output=True)
    try:
        yield []
    finally:
        subprocess.run([*instr[:2], "off", instr[3]], check=True, capture_output=True)


async def timed_concurrent(case: Case, side: Side, measure: Measure) -> list[float]:
    """`measure` of `case.runs` concurrent `ainvoke` runs, after a warm-up."""
    graph, model = case.build(side)
    check_result(case, await one_run(case, graph, "warm-up task"))
    tasks = [f"benchmark task {i}" for i in range(case.runs)]
    with measure() as figures:
        await asyncio.gather(*(one_run(case, graph, task) for task in tasks))
    assert len(model.calls) == (case.runs + 1) * (case.steps + 2)
    return figures


def timed_blocking(case: Case, side: Side, measure: Measure) -> list[float]:
    """`measure` of `case.runs` blocking `invoke` runs one after another, after a warm-up."""
    with sqlite_saver(case) as saver:
        graph, model = case.build(side, saver)
        check_result(case, blocking_run(case, graph, "warm-up task"))
        tasks = [f"benchmark task {i}" for i in range(case.runs)]
        with measure() as figures:
            for task in tasks:
                blocking_run(case, graph, task)
    assert len(model.calls) == (case.runs + 1) * (case.steps + 2)
    return figures


def timed(case: Case, side: Side, measure: Measure = clock) -> list[float]:
    if case.concurrent:
        return asyncio.run(timed_concurrent(case, side, measure))
    return timed_blocking(case, side, measure)


def instructions(case: Case, side: Side, quick: bool) -> int:
    """Instructions `side` executes in `case`'s timed runs, counted by callgrind in a process
    of its own (this script, told to run that one measurement)."""
    command = [
        *("valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null"),
        *(sys.executable, __file__, "--count", case.label, side),
        *(["--quick"] if quick else []),
    ]
    # A fixed hash seed: the count then moves only with what the runs draw at random (ids).
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return int(found[1])


def cases(quick: bool) -> list[Case]:
    """The cases timed."""

    def n(full: int, small: int) -> int:
        return small if quick else full

    return [
        Case(f"async N={n(200, 10)}, 5 steps", n(200, 10), 5, True, 1.05),
        Case(f"invoke N={n(100, 5)}, 5 steps", n(100, 5), 5, False, 1.10),
        Case(f"SQLite invoke x{n(5, 1)}, 20 steps", n(5, 1), 20, False, 1.10, sqlite=True),
        Case("parallel fan-out N=1, 8 steps", 1, 8, True, None, parallel=True),
        Case(f"parallel fan-out N={n(50, 5)}, 8 steps", n(50, 5), 8, True, 1.10, parallel=True),
        Case(f"executor= N={n(50, 5)}, 5 steps", n(50, 5), 5, True, 1.10, agent=True),
    ]


def spread(values: list[float]) -> str:
    """`median [min..max]`."""
    return f"{statistics.median(values):.3f} [{min(values):.3f}..{max(values):.3f}]"


def header(chosen: list[Case], how: str) -> None:
    """The command, the machine and the fairness check, before any figure."""
    import langgraph.version

    print("command: " + " ".join(["python", *sys.argv]))
    versions = f"Python {sys.version.split()[0]}, langgraph {langgraph.version.__version__}"
    print(f"{date.today()}, {versions}, {os.cpu_count()} cores, {how}")
    for case in chosen:
        check_fair(case)
    print("checked: both sides make the same model calls and write the same events per run")


def verdict(case: Case, figure: str, ratio: float) -> str:
    assert case.target is not None
    met = "met" if ratio <= case.target else "NOT met"
    return f"{case.label:<34} {figure} {ratio:.3f} <= {case.target:.2f}: {met}"


def main(chosen: list[Case], rounds: int) -> None:
    header(chosen, f"{rounds} rounds")
    # rows[case][side] = one [wall, cpu] per round
    rows: dict[Case, dict[Side, list[list[float]]]] = {
        case: {side: [] for side in SIDES} for case in chosen
    }
    started = time.perf_counter()
    for round_ in range(rounds):
        for case in chosen:
            order = SIDES if round_ % 2 == 0 else SIDES[::-1]
            for side in order:
                rows[case][side].append(timed(case, side))
    took = time.perf_counter() - started

    print()
    print(f"{'case':<34} {'CPU project / hand-written':<27} wall project / hand-written")
    verdicts = []
    for case in chosen:
        project, mine = rows[case]["project"], rows[case]["hand-written"]
        cpu = [p[1] / m[1] for p, m in zip(project, mine, strict=True)]
        wall = [p[0] / m[0] for p, m in zip(project, mine, strict=True)]
        print(f"{case.label:<34} {spread(cpu):<27} {spread(wall)}")
        per_run = {
            side: statistics.median(cpu for _, cpu in rows[case][side]) / case.runs * 1000
            for side in SIDES
        }
        print(
            f"{'':<34} CPU a run: project {per_run['project']:.2f} ms, "
            f"hand-written {per_run['hand-written']:.2f} ms"
        )
        if case.target is not None:
            verdicts.append(verdict(case, "CPU", statistics.median(cpu)))
    print()
    print("targets (median CPU ratio; [min..max] above shows the noise):")
    for line in verdicts:
        print(f"  {line}")
    print(f"timing took {took:.0f} s")


def main_instructions(chosen: list[Case], quick: bool) -> None:
    header(chosen, "instructions counted by valgrind's callgrind")
    started = time.perf_counter()
    print()
    print(f"{'case':<34} {'instructions a run: project':>28} {'hand-written':>13}  ratio")
    verdicts = []
    for case in chosen:
        project, mine = (instructions(case, side, quick) / case.runs for side in SIDES)
        print(f"{case.label:<34} {project:>28,.0f} {mine:>13,.0f}  {project / mine:.3f}")
        if case.target is not None:
            verdicts.append(verdict(case, "instructions", project / mine))
    print()
    print("the CPU targets, against instruction ratios (they move by thousandths between runs):")
    for line in verdicts:
        print(f"  {line}")
    print(f"counting took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 11; --quick 1)")
    parser.add_argument("--quick", action="store_true", help="a smoke test of a few seconds")
    parser.add_argument("--case", metavar="TEXT", help="only the cases whose label has TEXT")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions with valgrind (callgrind) instead of timing rounds",
    )
    # One measurement under callgrind, for --instructions: the case's label and the side.
    parser.add_argument("--count", nargs=2, metavar=("CASE", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    chosen = [case for case in cases(args.quick) if (args.case or "") in case.label]
    if not chosen:
        parser.error(f"no case has {args.case!r} in its label")
    if args.count:
        label, side = args.count
        timed(next(case for case in chosen if case.label == label), side, counting_instructions)
    elif args.instructions:
        if shutil.which("valgrind") is None:
            parser.error("--instructions needs valgrind (Debian, Ubuntu: apt install valgrind)")
        main_instructions(chosen, args.quick)
    else:
        rounds = args.rounds if args.rounds is not None else (1 if args.quick else 11)
        if rounds < 1:
            parser.error("--rounds must be at least 1")
        main(chosen, rounds)
