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
import statistics
import time
from typing import Any

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

Contender = tuple[str, bool, int]
"""(shape, parallel, concurrent runs)."""


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


def checked(out: dict[str, Any], dependencies: Dependencies, parallel: bool) -> dict[str, Any]:
    assert out["status"] == "completed" and len(out["steps"]) == len(dependencies), out
    assert not parallel or out["dependencies"] == dependencies, out["dependencies"]
    return out


async def timed(contender: Contender, latency: float) -> tuple[float, float]:
    """Wall and CPU seconds of the contender's concurrent runs, after one warm-up run."""
    shape, parallel, runs = contender
    graph, _ = loop(SHAPES[shape], parallel, latency)
    checked(await graph.ainvoke({"task": "warm-up"}), SHAPES[shape], parallel)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(graph.ainvoke({"task": f"benchmark task {i}"}) for i in range(runs)))
    return time.perf_counter() - wall, time.process_time() - cpu


def input_chars(dependencies: Dependencies, parallel: bool) -> int:
    """Characters of every message of every prompt the model received in one run."""
    graph, model = loop(dependencies, parallel, latency=0.0)
    checked(graph.invoke({"task": "benchmark task"}), dependencies, parallel)
    return sum(len(message.text) for call in model.calls for message in call.messages)


def print_ratio(label: str, value: float, meaning: str) -> None:
    print(f"{label:<30} = {value:.3f}  ({meaning})")


async def main(runs: int, latency: float, rounds: int) -> None:
    sizes = (1, runs)
    contenders: list[Contender] = [(shape, True, n) for n in sizes for shape in SHAPES]
    contenders += [("fan-out", False, n) for n in sizes]
    rows: list[dict[Contender, tuple[float, float]]] = []
    for round_ in range(rounds):
        order = contenders[::-1] if round_ % 2 else contenders
        rows.append({contender: await timed(contender, latency) for contender in order})

    def median(contender: Contender, index: int = 0) -> float:
        return statistics.median(row[contender][index] for row in rows)

    print(f"8-step plans, {latency * 1000:g} ms per model call, max_parallel={MAX_PARALLEL},")
    print(f"N=1 and N={runs} concurrent runs, medians over {rounds} rounds")
    for contender in contenders:
        shape, parallel, n = contender
        mode = "parallel" if parallel else "sequential"
        path = critical_path(SHAPES[shape], parallel, latency)
        print(
            f"  {shape:<8} {mode:<10} N={n:<3} wall {median(contender):.3f} s, "
            f"CPU {median(contender, 1):.3f} s, critical path {path:.3f} s"
        )
    for n in sizes:
        for shape, dependencies in SHAPES.items():
            path = critical_path(dependencies, True, latency)
            ratio = statistics.median(row[(shape, True, n)][0] / path for row in rows)
            target = 1.15 if n == 1 else 1.3
            print_ratio(f"{shape} N={n} / critical path", ratio, f"target <= {target}")
    for n in sizes:
        pair = [row[("fan-out", True, n)][0] / row[("fan-out", False, n)][0] for row in rows]
        print_ratio(f"fan-out N={n} parallel / seq", statistics.median(pair), "about 0.4 expected")

    wide, narrow = input_chars(WIDE_FAN_OUT, True), input_chars(WIDE_FAN_OUT, False)
    print(f"input characters per run, 40-step fan-out: parallel {wide}, sequential {narrow}")
    print_ratio("input chars parallel / seq", wide / narrow, "target <= 1")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="concurrent runs (besides N=1)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per model call")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if args.rounds < 1 or args.runs < 1 or args.latency <= 0:
        parser.error("--rounds and --runs must be at least 1, --latency above 0")
    asyncio.run(main(args.runs, args.latency, args.rounds))
