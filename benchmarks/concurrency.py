"""Speed under load: N concurrent runs of one compiled loop against its floor and baseline.

- project:  `create_agent_loop(...)`, N concurrent `ainvoke` runs of one compiled graph.
- floor:    a bare LangGraph graph with the same node executions (planner, one executor
            per step, summariser), each making the same scripted chat-model `ainvoke`
            call, async routing after the planner and each executor run, and nothing else.
- contract floor: the floor with the loop's state: the same channels (the contract's output
            keys and the loop's cursor), node input schemas and writes as the project.
            It shows what the state costs LangGraph, apart from anything the loop does.
- baseline: the original loop's execution model: every model call a blocking call pushed
            through `asyncio.to_thread` on the default pool, steps in sequence.

Every model call waits a fixed latency. Floor, contract floor and project are timed in
interleaved rounds; each figure is the median of the ratios measured within a round.

    python benchmarks/concurrency.py [--runs 200] [--steps 5] [--latency 0.05]
        [--rounds 15] [--baseline-rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Overwrite
from typing_extensions import TypedDict

from agentloop_graph import create_agent_loop
from agentloop_graph.state import (
    AgentLoopState,
    InputState,
    OutputState,
    PlannerInput,
    StepInput,
    StepRecord,
    SummariserInput,
    new_cursor,
    no_usage,
)
from agentloop_graph.testing import ModelCall, ScriptedChatModel


def scripted_model(steps: int, latency: float) -> ScriptedChatModel:
    plan = "\n".join(f"{i}. Do part {i}" for i in range(1, steps + 1))

    def answer(call: ModelCall) -> str:
        return plan if call.prompt.startswith("Break this task") else "done"

    return ScriptedChatModel(responses=answer, latency=latency)


class FloorState(TypedDict):
    done: int


def floor_graph(model: ScriptedChatModel, steps: int) -> Any:
    async def planner(state: FloorState) -> FloorState:
        await model.ainvoke("Break this task into steps")
        return {"done": 0}

    async def executor(state: FloorState) -> FloorState:
        await model.ainvoke("Execute this step")
        return {"done": state["done"] + 1}

    async def summariser(state: FloorState) -> FloorState:
        await model.ainvoke("Write the final answer")
        return {"done": state["done"]}

    async def route(state: FloorState) -> Literal["executor", "summariser"]:
        return "executor" if state["done"] < steps else "summariser"

    builder = StateGraph(FloorState)
    builder.add_node("planner", planner)
    builder.add_node("executor", executor)
    builder.add_node("summariser", summariser)
    builder.add_edge(START, "planner")
    # The loop's shape: routed after the planner and after every executor run.
    builder.add_conditional_edges("planner", route)
    builder.add_conditional_edges("executor", route)
    builder.add_edge("summariser", END)
    return builder.compile()


def contract_floor_graph(model: ScriptedChatModel, steps: int) -> Any:
    async def planner(state: PlannerInput) -> dict[str, Any]:
        await model.ainvoke("Break this task into steps")
        plan = [f"Do part {i}" for i in range(1, steps + 1)]
        cursor = new_cursor(approved=True, started_at=time.time())
        reset = dict.fromkeys(("summary", "answer", "status", "total_duration_ms", "usage"))
        return {
            **reset,
            "task_id": "floor",
            "plan": plan,
            "steps": Overwrite([]),
            "cursor": Overwrite(cursor),
        }

    async def executor(state: StepInput) -> dict[str, Any]:
        await model.ainvoke("Execute this step")
        step = len(state["steps"]) + 1
        record: StepRecord = {
            "step_num": step,
            "description": state["plan"][step - 1],
            "result": "done",
            "status": "completed",
            "duration_ms": 0,
            "started_ms": 0,
            "attempts": 1,
            "error": None,
            "adaptation": None,
            "reasoning": None,
            "usage": no_usage(),
            "agent": None,
        }
        counts = {"model_calls": 1, "usage": no_usage(), "open": {str(step): None}}
        return {"steps": [record], "cursor": counts}

    async def summariser(state: SummariserInput) -> dict[str, Any]:
        await model.ainvoke("Write the final answer")
        return {
            "summary": "done",
            "status": "completed",
            "answer": "done",
            "total_duration_ms": 0,
            "usage": no_usage(),
            "messages": [AIMessage("done")],
        }

    async def route(state: StepInput) -> Literal["executor", "summariser"]:
        return "executor" if len(state["steps"]) < len(state["plan"]) else "summariser"

    builder = StateGraph(AgentLoopState, input_schema=InputState, output_schema=OutputState)
    builder.add_node("planner", planner, input_schema=PlannerInput)
    builder.add_node("executor", executor, input_schema=StepInput)
    builder.add_node("summariser", summariser, input_schema=SummariserInput)
    builder.add_edge(START, "planner")
    builder.add_conditional_edges("planner", route)
    builder.add_conditional_edges("executor", route)
    builder.add_edge("summariser", END)
    return builder.compile()


async def baseline_run(model: ScriptedChatModel, steps: int) -> None:
    await asyncio.to_thread(model.invoke, "Break this task into steps")
    for _ in range(steps):
        await asyncio.to_thread(model.invoke, "Execute this step")
    await asyncio.to_thread(model.invoke, "Write the final answer")


def verdict(value: float, target: str) -> str:
    """`target <= 1.05: met` (or `NOT met`): `value` against a target such as `<= 1.05`."""
    compare, bound = target.split()
    met = value <= float(bound) if compare == "<=" else value >= float(bound)
    return f"target {target}: {'met' if met else 'NOT met'}"


def print_ratio(
    top: str, bottom: str, value: float, digits: int, meaning: str = "", target: str = ""
) -> None:
    """One figure line: `top / bottom = value`, what it means, and whether it meets `target`
    (as printed, to `digits` places)."""
    label = f"{top} / {bottom}"
    notes = [meaning, verdict(round(value, digits), target) if target else ""]
    said = "; ".join(note for note in notes if note)
    print(f"{label:<24} = {value:.{digits}f}" + (f"  ({said})" if said else ""))


async def timed(runs: int, one: Callable[[int], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(runs)))
    return time.perf_counter() - start


def runners(steps: int, latency: float) -> dict[str, Callable[[int], Awaitable[Any]]]:
    """One run of each contender, by name, all sharing one fresh scripted model."""
    model = scripted_model(steps, latency)
    project = create_agent_loop(model, max_steps=steps)
    floor = floor_graph(model, steps)
    contract_floor = contract_floor_graph(model, steps)
    return {
        "floor": lambda i: floor.ainvoke({"done": 0}),
        "contract floor": lambda i: contract_floor.ainvoke({"task": f"benchmark task {i}"}),
        "project": lambda i: project.ainvoke({"task": f"benchmark task {i}"}),
        "baseline": lambda i: baseline_run(model, steps),
    }


async def main(runs: int, steps: int, latency: float, rounds: int, baseline_rounds: int) -> None:
    result = await runners(steps, latency)["project"](0)
    assert result["status"] == "completed" and len(result["steps"]) == steps, result

    # Each round times the floors and the project back to back (reversing the order every
    # other round) and, in the first `baseline_rounds` rounds, the baseline too. Ratios are
    # taken within a round, then their median: the machine's drift cancels out. Every round
    # gets a fresh model (it logs its calls) so no round inherits a bigger heap to collect.
    rows: list[dict[str, float]] = []
    for round_ in range(rounds):
        contenders = runners(steps, latency)
        names = ["floor", "contract floor", "project"]
        if round_ < baseline_rounds:
            names.append("baseline")
        if round_ % 2:
            names.reverse()
        row: dict[str, float] = {}
        for name in names:
            await contenders[name](0)  # warm up this round's graph
            gc.collect()
            row[name] = await timed(runs, contenders[name])
        rows.append(row)

    def median(name: str) -> float:
        return statistics.median(row[name] for row in rows if name in row)

    def ratio(top: str, bottom: str) -> float:
        return statistics.median(row[top] / row[bottom] for row in rows if top in row)

    print(f"N={runs} runs, {steps}-step plans, {latency * 1000:g} ms per model call")
    for name in ("floor", "contract floor", "project"):
        print(f"{name:<15}median {median(name):.3f} s over {rounds} rounds")
    print(f"{'baseline':<15}median {median('baseline'):.3f} s over {baseline_rounds} rounds")
    for top, bottom, digits, meaning, target in (
        ("project", "floor", 3, "", "<= 1.05"),
        ("baseline", "project", 2, "", ">= 6.5"),
        ("baseline", "floor", 2, "what the floor allows", ""),
        ("contract floor", "floor", 3, "what the state costs", ""),
        ("project", "contract floor", 3, "what the loop itself costs", "<= 1.02"),
    ):
        print_ratio(top, bottom, ratio(top, bottom), digits, meaning, target)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline-rounds", type=int, default=3)
    args = parser.parse_args()
    if args.rounds < 1 or args.baseline_rounds < 1:
        parser.error("--rounds and --baseline-rounds must be at least 1")
    asyncio.run(main(args.runs, args.steps, args.latency, args.rounds, args.baseline_rounds))
