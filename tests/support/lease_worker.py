"""A worker process for the one-run-per-thread suite: starts or resumes a thread on a signal.

    python -m tests.support.lease_worker --backend sqlite --api sync --db FILE --thread ID \
        --log FILE [--go FILE] [--resume] [--latency S]

`--backend` is `sqlite` or `postgres` (`--db` then a conninfo), `--api` is `sync`
(`SqliteSaver` or `PostgresSaver`, `stream`) or `async` (`AsyncSqliteSaver` or
`AsyncPostgresSaver`, `astream`). The worker opens its checkpointer, builds
`tests/support/crash_worker.py`'s scripted model (one `node<TAB>step` line in `--log` per
model call, written before it answers), prints `{"event": "worker.ready"}` and, given `--go`,
waits for that file to exist, so that a test can start two workers' runs at the same instant.
It then streams the run, printing each progress event as one JSON line, and ends with
`{"event": "worker.output", "output": ...}`, or, when the loop refuses the run because
another run holds the thread, with `{"event": "worker.busy", "error": "<message>"}`. With
`--resume` it continues the thread (`None` input) instead of starting the task.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig

from agentloop_graph import ThreadBusyError, create_agent_loop
from tests.support.crash_worker import OUTPUT_EVENT, TASK, follow, output_of, report, scripted_model

READY_EVENT = "worker.ready"
BUSY_EVENT = "worker.busy"
POLL = 0.001
"""Seconds between looks at the `--go` file."""


def ready(go: Path | None) -> None:
    """Say the worker is ready; wait for the `go` file, if any."""
    report({"event": READY_EVENT})
    while go is not None and not go.exists():
        time.sleep(POLL)


def run_sync(args: argparse.Namespace, graph_input: Any, config: RunnableConfig) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    opened = (
        SqliteSaver.from_conn_string(args.db)
        if args.backend == "sqlite"
        else PostgresSaver.from_conn_string(args.db)
    )
    with opened as saver:
        saver.setup()
        graph = create_agent_loop(scripted_model(args.log, args.latency), checkpointer=saver)
        ready(args.go)
        values: dict[str, Any] = {}
        try:
            for chunk in graph.stream(graph_input, config, stream_mode=["custom", "values"]):
                values = follow(chunk, values)
        except ThreadBusyError as busy:
            report({"event": BUSY_EVENT, "error": str(busy)})
            return
    report({"event": OUTPUT_EVENT, "output": output_of(values)})


async def run_async(args: argparse.Namespace, graph_input: Any, config: RunnableConfig) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    opened = (
        AsyncSqliteSaver.from_conn_string(args.db)
        if args.backend == "sqlite"
        else AsyncPostgresSaver.from_conn_string(args.db)
    )
    async with opened as saver:
        await saver.setup()
        graph = create_agent_loop(scripted_model(args.log, args.latency), checkpointer=saver)
        await asyncio.to_thread(ready, args.go)
        values: dict[str, Any] = {}
        try:
            async for chunk in graph.astream(graph_input, config, stream_mode=["custom", "values"]):
                values = follow(chunk, values)
        except ThreadBusyError as busy:
            report({"event": BUSY_EVENT, "error": str(busy)})
            return
    report({"event": OUTPUT_EVENT, "output": output_of(values)})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--api", choices=("sync", "async"), required=True)
    parser.add_argument("--db", required=True, help="SQLite file or PostgreSQL conninfo")
    parser.add_argument("--thread", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--go", type=Path, help="start once this file exists")
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    graph_input = None if args.resume else {"task": TASK}
    config: RunnableConfig = {"configurable": {"thread_id": args.thread}}
    if args.api == "sync":
        run_sync(args, graph_input, config)
    else:
        asyncio.run(run_async(args, graph_input, config))


if __name__ == "__main__":
    main()
