"""Scale-out: runs per minute of the loop served by one Aegra process, then by two.

N background runs of `slow_loop` (the loop with the demo model answering every call after
`--latency` seconds: a plan, four steps and a final answer, six calls a run), each on its
own thread, created round robin through the processes' HTTP APIs as clients behind a load
balancer would. The processes share one PostgreSQL database and one Redis; each runs at
most `--jobs` runs at once (`WORKER_COUNT=1`, `N_JOBS_PER_WORKER=jobs`), so one process
is bound to `jobs * 60 / (6 * latency)` runs a minute by the model alone, and a second
process should double that. Throughput is N over the span from the first run's creation
to the last run's end, as the server records them; a warm-up batch (`--warmup` runs
per process) goes first each time. The servers' CPU time per run is printed beside it.

    python benchmarks/aegra.py [--runs 200] [--latency 0.5] [--jobs 10] [--warmup JOBS]

PostgreSQL comes from `AGENTLOOP_TEST_POSTGRES` (default: the local `test` database as
`postgres`; a scratch database is created beside it and dropped), Redis from
`AGENTLOOP_TEST_REDIS` (default `redis://127.0.0.1:6379/0`), and the servers' venv from
`AGENTLOOP_AEGRA_VENV` (default `${XDG_CACHE_HOME:-~/.cache}/agentloop-graph/venv-aegra`,
see docs/deploy.md). Exits with status 3 when PostgreSQL or Redis cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from concurrency import print_ratio  # noqa: E402
from langgraph_sdk import get_client  # noqa: E402

from tests.support.aegra import (  # noqa: E402
    DEFAULT_REDIS,
    REDIS_ENV,
    AegraCluster,
    redis_unreachable,
    scratch_database,
)

CALLS_PER_RUN = 6
UNREACHABLE = 3
HTTP_CONCURRENCY = 20
"""Requests the client has in flight at once, like a modest pool of callers."""


def _when(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def batch(urls: list[str], runs: int, tag: str, patience: float) -> float:
    """Create `runs` runs round robin over `urls`, wait for them all; the span in seconds."""
    clients = [get_client(url=url, api_key=None, timeout=60) for url in urls]
    gate = asyncio.Semaphore(HTTP_CONCURRENCY)

    async def submit(i: int) -> tuple[str, str]:
        c = clients[i % len(clients)]
        async with gate:
            thread = await c.threads.create(metadata={"benchmark": tag})
            run = await c.runs.create(
                thread["thread_id"], "slow_loop", input={"task": f"Plan picnic number {i}"}
            )
        return thread["thread_id"], run["run_id"]

    created = await asyncio.gather(*(submit(i) for i in range(runs)))
    deadline = time.monotonic() + patience
    while True:
        busy = await clients[0].threads.search(
            metadata={"benchmark": tag}, status="busy", limit=runs
        )
        if not busy:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(busy)} of {runs} runs still busy after {patience:g} s")
        await asyncio.sleep(0.5)

    async def record(thread: str, run_id: str) -> dict[str, Any]:
        async with gate:
            return dict(await clients[0].runs.get(thread, run_id))

    records = await asyncio.gather(*(record(t, r) for t, r in created))
    failed = [r for r in records if r["status"] != "success"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {runs} runs did not succeed: {failed[0]}")
    start = min(_when(r["created_at"]) for r in records)
    end = max(_when(r["updated_at"]) for r in records)
    return end - start


def cpu_seconds(pids: list[int]) -> float | None:
    """User and system CPU time the processes have used so far (None off Linux)."""
    try:
        total = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except OSError:
        return None
    return total / os.sysconf("SC_CLK_TCK")


def measure(
    cluster: AegraCluster, runs: int, warmup: int, timeout: float
) -> tuple[float, float | None]:
    """Runs per minute of the cluster's processes, and their CPU seconds per run."""
    urls = [p.url for p in cluster.processes]
    pids = [p.pid for p in cluster.processes]
    if warmup:
        asyncio.run(batch(urls, warmup * len(urls), f"warmup-{uuid.uuid4().hex[:8]}", timeout))
    before = cpu_seconds(pids)
    span = asyncio.run(batch(urls, runs, f"bench-{uuid.uuid4().hex[:8]}", timeout))
    after = cpu_seconds(pids)
    per_run = None if before is None or after is None else (after - before) / runs
    return runs * 60 / span, per_run


def main(runs: int, latency: float, jobs: int, warmup: int) -> int:
    redis_url = os.environ.get(REDIS_ENV, DEFAULT_REDIS)
    if reason := redis_unreachable(redis_url):
        print(reason, file=sys.stderr)
        return UNREACHABLE
    admin = os.environ.get("AGENTLOOP_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres")
    if "dbname" not in admin and "://" not in admin:
        admin += " dbname=test"
    timeout = 120 + runs * CALLS_PER_RUN * latency
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(scratch_database(admin, prefix="agentloop_bench"))
        except Exception as exc:  # psycopg.OperationalError, or psycopg missing
            print(f"PostgreSQL is not reachable at {admin!r}: {exc}", file=sys.stderr)
            return UNREACHABLE
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="aegra-bench-"))
        env = {
            "WORKER_COUNT": "1",
            "N_JOBS_PER_WORKER": str(jobs),
            "AGENTLOOP_TEST_LATENCY": str(latency),
        }
        cluster = stack.enter_context(
            AegraCluster(url, workdir=Path(workdir), redis_url=redis_url, env=env)
        )
        cluster.start(1)
        one, one_cpu = measure(cluster, runs, warmup, timeout)
        cluster.start(1)
        two, two_cpu = measure(cluster, runs, warmup, timeout)

    bound = jobs * 60 / (CALLS_PER_RUN * latency)
    print(
        f"N={runs} runs, {CALLS_PER_RUN} model calls each at {latency * 1000:g} ms, "
        f"at most {jobs} runs at once per process"
    )
    for label, rate, cpu, allowed in (
        ("1 process", one, one_cpu, bound),
        ("2 processes", two, two_cpu, 2 * bound),
    ):
        spent = "" if cpu is None else f", {cpu * 1000:.0f} ms of server CPU per run"
        print(f"{label:<12}{rate:8.1f} runs/min  (the model alone allows {allowed:.0f}{spent})")
    print(f"on {os.cpu_count()} cores, shared by the servers, PostgreSQL, Redis and this client")
    print_ratio("2 processes", "1 process", two / one, 2, "twice the runs", ">= 1.8")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument(
        "--warmup", type=int, default=None, help="runs per process (default: --jobs)"
    )
    args = parser.parse_args()
    warmup = args.jobs if args.warmup is None else args.warmup
    if args.runs < 1 or args.jobs < 1 or args.latency <= 0 or warmup < 0:
        parser.error("--runs and --jobs must be at least 1, --latency above 0, --warmup >= 0")
    sys.exit(main(args.runs, args.latency, args.jobs, warmup))
