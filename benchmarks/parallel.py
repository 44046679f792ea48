"""Parallel mode (`parallel=True`): wall time against the critical path, and prompt size.

A parallel run should take as long as its plan's longest dependency chain, not its length:
- critical path: (plan + longest chain of executor calls + summary) x latency, the least
  time a run can take when every model call waits a fixed latency. Each shape's wall time
  over it is printed for one run and for N concurrent `ainvoke` runs (asyncio.gather).
- parallel / sequential: the fan-out's wall time in parallel mode over `parallel=False`
  with the same plan text (about 4 latencies against 10).
- input characters: the characters of every prompt the model received in one run of a
  40-step fan-out (39 independent steps and a join), parallel against sequential. The join
  quotes all 39 results it waits for; a sequential step quotes the last two.
- floor: a bare LangGraph graph (no agentloop_graph code) making the same model calls with
  LangGraph's own fan-out: a `plan` node, each wave of ready steps `Send` to a `step` node
  (a reducer key collects finished step numbers), a `join` node after each wave whose
  conditional edge sends the next wave or goes to `summary`. Every wave's `Send`s run in
  one superstep and the plain edge `step -> join` triggers `join` once in the next one, so
  no deferred node is needed. Its wall time over the critical path is what LangGraph
  allows; project / floor is what the loop adds to it.

Shapes, 8 steps each, `max_parallel=8` (longest chain in brackets):
- chain:   each step after the previous one [8]
- fan-out: steps 1..7 after none, step 8 after 1..7 [2]
- diamond: step 1; steps 2..7 after 1; step 8 after 2..7 [3]

Every contender is timed once per round, with a fresh model and after one warm-up run, in
an order reversed every other round; each figure is the median over rounds of a ratio
taken within a round, so the machine's drift cancels out. No checkpointer.

    python benchmarks/parallel.py [--runs 50] [--latency 0.05] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import operator
import statistics
import time
from typing import Annotated, Any, Literal

from concurrency import verdict
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from typing_extensions import TypedDict

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel

Dependencies = list[list[int]]

SHAPES: dict[str, Dependencies] = {
    "chain": [[]] + [[n - 1] for n in range(2, 9)],
    "fan-out": [[]] * 7 + [list(range(1, 8))],
    "diamond": [[]] + [[1]] * 6 + [list(range(2, 8))],
}
WIDE_FAN_OUT: Dependencies = [[]] * 39 + [list(range(1, 40))]
RESULT = "A result of about sixty characters, as a short step gives."
MAX_PARALLEL = 8

Mode = Literal["parallel", "sequential", "floor"]
Contender = tuple[str, Mode, int]
"""(shape, mode, concurrent runs)."""


def plan_text(dependencies: Dependencies) -> str:
    """A numbered plan whose steps end with `(after 1, 3)` or `(after none)`."""
    after = [", ".join(map(str, deps)) or "none" for deps in dependencies]
    return "\n".join(f"{n}. Do part {n} (after {a})" for n, a in enumerate(after, 1))


def critical_path(dependencies: Dependencies, parallel: bool, latency: float) -> float:
    """(plan + longest chain of executor calls + summary) x latency; a sequential run's
    chain is every step."""
    depth: list[int] = []
    for deps in dependencies:
        depth.append(1 + max((depth[dep - 1] for dep in deps), default=0))
    return (2 + (max(depth) if parallel else len(depth))) * latency


def loop(
    dependencies: Dependencies, parallel: bool, latency: float
) -> tuple[Any, ScriptedChatModel]:
    """A compiled loop whose scripted model plans `dependencies`, and that model."""
    plan = plan_text(dependencies)

    def answer(call: ModelCall) -> str:
        return {"planner": plan, "summariser": "all done"}.get(call.node or "", RESULT)

    model = ScriptedChatModel(responses=answer, latency=latency)
    # A sequential run ignores max_parallel.
    graph = create_agent_loop(
        model, max_steps=len(dependencies), parallel=parallel, max_parallel=MAX_PARALLEL
    )
    return graph, model


class FloorState(TypedDict):
    done: Annotated[list[int], operator.add]


class FloorStep(TypedDict):
    step: int


def floor(dependencies: Dependencies, latency: float) -> tuple[Any, ScriptedChatModel]:
    """The bare LangGraph floor for `dependencies`, and its scripted model."""
    model = ScriptedChatModel(responses=lambda call: RESULT, latency=latency)

    async def plan(state: FloorState) -> FloorState:
        await model.ainvoke("Plan the task")
        return {"done": []}

    async def step(state: FloorStep) -> FloorState:
        await model.ainvoke(f"Do part {state['step']}")
        return {"done": [state["step"]]}

    def join(state: FloorState) -> FloorState:
        return {"done": []}

    async def summary(state: FloorState) -> FloorState:
        await model.ainvoke("Summarise")
        return {"done": []}

    def next_wave(state: FloorState) -> list[Send] | Literal["summary"]:
        done = set(state["done"])
        ready = [
            n for n, deps in enumerate(dependencies, 1) if n not in done and done.issuperset(deps)
        ]
        return [Send("step", {"step": n}) for n in ready] or "summary"

    builder = StateGraph(FloorState)
    builder.add_node("plan", plan)
    builder.add_node("step", step)
    builder.add_node("join", join)
    builder.add_node("summary", summary)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", next_wave, ["step", "summary"])
    builder.add_edge("step", "join")
    builder.add_conditional_edges("join", next_wave, ["step", "summary"])
    builder.add_edge("summary", END)
    return builder.compile(), model


async def check_floor(dependencies: Dependencies) -> None:
    """The floor makes the loop's model calls (plan, one per step, summary) along the same
    critical path: the supersteps with a model call are plan, one per wave, and summary."""
    graph, model = floor(dependencies, latency=0.0)
    waits: set[int] = set()
    async for chunk in graph.astream({"done": []}, stream_mode="debug"):
        if chunk["type"] == "task" and chunk["payload"]["name"] != "join":
            waits.add(chunk["step"])
    assert len(model.calls) == 2 + len(dependencies), model.calls
    assert len(waits) == round(critical_path(dependencies, True, 1.0)), waits


def checked(out: dict[str, Any], dependencies: Dependencies, mode: Mode) -> dict[str, Any]:
    if mode == "floor":
        assert sorted(out["done"]) == list(range(1, len(dependencies) + 1)), out
        return out
    assert out["status"] == "completed" and len(out["steps"]) == len(dependencies), out
    assert mode == "sequential" or out["dependencies"] == dependencies, out["dependencies"]
    return out


async def timed(contender: Contender, latency: float) -> tuple[float, float]:
    """Wall and CPU seconds of the contender's concurrent runs, after one warm-up run."""
    shape, mode, runs = contender
    dependencies = SHAPES[shape]
    if mode == "floor":
        graph, model = floor(dependencies, latency)
        inputs: list[dict[str, Any]] = [{"done": []} for _ in range(runs + 1)]
    else:
        graph, model = loop(dependencies, mode == "parallel", latency)
        inputs = [{"task": f"benchmark task {i}"} for i in range(runs + 1)]
    checked(await graph.ainvoke(inputs.pop()), dependencies, mode)
    # Loop and floor alike: plan, one call per step, summary.
    assert len(model.calls) == 2 + len(dependencies), model.calls
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(graph.ainvoke(one) for one in inputs))
    return time.perf_counter() - wall, time.process_time() - cpu


def input_chars(dependencies: Dependencies, parallel: bool) -> int:
    """Characters of every message of every prompt the model received in one run."""
    graph, model = loop(dependencies, parallel, latency=0.0)
    checked(
        graph.invoke({"task": "benchmark task"}),
        dependencies,
        "parallel" if parallel else "sequential",
    )
    return sum(len(message.text) for call in model.calls for message in call.messages)


def print_ratio(label: str, value: float, meaning: str = "", target: str = "") -> None:
    notes = [meaning, verdict(round(value, 3), target) if target else ""]
    said = "; ".join(note for note in notes if note)
    print(f"{label:<36} = {value:.3f}" + (f"  ({said})" if said else ""))


async def main(runs: int, latency: float, rounds: int) -> None:
    for dependencies in SHAPES.values():
        await check_floor(dependencies)
    sizes = (1, runs)
    modes: tuple[Mode, Mode] = ("parallel", "floor")
    contenders: list[Contender] = [(s, m, n) for n in sizes for s in SHAPES for m in modes]
    contenders += [("fan-out", "sequential", n) for n in sizes]
    rows: list[dict[Contender, tuple[float, float]]] = []
    for round_ in range(rounds):
        order = contenders[::-1] if round_ % 2 else contenders
        rows.append({contender: await timed(contender, latency) for contender in order})

    def median(contender: Contender, index: int = 0) -> float:
        return statistics.median(row[contender][index] for row in rows)

    def ratio(top: Contender, bottom: Contender | float) -> float:
        def below(row: dict[Contender, tuple[float, float]]) -> float:
            return bottom if isinstance(bottom, float) else row[bottom][0]

        return statistics.median(row[top][0] / below(row) for row in rows)

    print(f"8-step plans, {latency * 1000:g} ms per model call, max_parallel={MAX_PARALLEL},")
    print(f"N=1 and N={runs} concurrent runs, medians over {rounds} rounds")
    for contender in contenders:
        shape, mode, n = contender
        path = critical_path(SHAPES[shape], mode != "sequential", latency)
        print(
            f"  {shape:<8} {mode:<10} N={n:<3} wall {median(contender):.3f} s, "
            f"CPU {median(contender, 1):.3f} s, critical path {path:.3f} s"
        )
    for n in sizes:
        for shape, dependencies in SHAPES.items():
            path = critical_path(dependencies, True, latency)
            project: Contender = (shape, "parallel", n)
            bare: Contender = (shape, "floor", n)
            target = 1.15 if n == 1 else 1.3
            print_ratio(
                f"{shape} N={n} / critical path", ratio(project, path), target=f"<= {target}"
            )
            print_ratio(f"{shape} N={n} floor / critical path", ratio(bare, path), "LangGraph's")
            print_ratio(f"{shape} N={n} project / floor", ratio(project, bare), "the loop's cost")
    for n in sizes:
        parallel: Contender = ("fan-out", "parallel", n)
        pair = ratio(parallel, ("fan-out", "sequential", n))
        print_ratio(f"fan-out N={n} parallel / seq", pair, "about 0.4 expected")

    wide, narrow = input_chars(WIDE_FAN_OUT, True), input_chars(WIDE_FAN_OUT, False)
    print(f"input characters per run, 40-step fan-out: parallel {wide}, sequential {narrow}")
    print_ratio("input chars parallel / seq", wide / narrow, target="<= 1")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="concurrent runs (besides N=1)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per model call")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if args.rounds < 1 or args.runs < 1 or args.latency <= 0:
        parser.error("--rounds and --runs must be at least 1, --latency above 0")
    asyncio.run(main(args.runs, args.latency, args.rounds))
