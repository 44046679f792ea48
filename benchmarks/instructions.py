"""Instructions per run, counted by valgrind's callgrind: floor, contract floor, project.

Wall times on a shared 2-core machine move by more than the 5% the speed target allows;
instruction counts do not move with the machine's load. Each graph of `concurrency.py`
(N concurrent runs of one compiled graph, a scripted model waiting a fixed latency per call)
runs in a child process under `valgrind --tool=callgrind`, once for one batch of N runs and
once for two; the difference is one warm batch, without interpreter start-up, imports and
first-run costs. Garbage collection is counted; cache misses and waiting are not, so a
ratio here is a share of the work done, not of the wall time.

    python benchmarks/instructions.py [--runs 100] [--steps 5]

Needs valgrind. Callgrind runs Python about 50x slower: expect a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from concurrency import print_ratio, runners

GRAPHS = ("floor", "contract floor", "project")
LATENCY = 0.05


async def run_batches(name: str, runs: int, steps: int, batches: int) -> None:
    """The measured work: `batches` times N concurrent runs of graph `name`."""
    run = runners(steps, LATENCY)[name]
    for _ in range(batches):
        await asyncio.gather(*(run(i) for i in range(runs)))


def instructions(name: str, runs: int, steps: int, batches: int) -> int:
    """Instructions callgrind counts for a child process running `run_batches`."""
    child = [sys.executable, __file__, "--child", name, f"--runs={runs}", f"--steps={steps}"]
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            *child,
            f"--batches={batches}",
        ],
        # A fixed hash seed makes set and dict orders, and so the counts, repeatable.
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no count for {name}:\n{done.stderr}")
    return int(found[1])


def main(runs: int, steps: int) -> None:
    jobs = [(name, batches) for name in GRAPHS for batches in (1, 2)]
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        counts = pool.map(lambda job: instructions(job[0], runs, steps, job[1]), jobs)
        by_job = dict(zip(jobs, counts, strict=True))
    per_run = {name: (by_job[name, 2] - by_job[name, 1]) / runs for name in GRAPHS}
    print(f"N={runs} runs, {steps}-step plans, instructions per run (callgrind)")
    for name in GRAPHS:
        print(f"{name:<15}{per_run[name]:,.0f}")
    for top, bottom in (
        ("project", "floor"),
        ("contract floor", "floor"),
        ("project", "contract floor"),
    ):
        print_ratio(top, bottom, per_run[top] / per_run[bottom], 3)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--child", choices=GRAPHS, help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(run_batches(args.child, args.runs, args.steps, args.batches))
    elif shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt install valgrind)")
    else:
        main(args.runs, args.steps)
