"""A Temporal worker process for the Temporal suite: serves `AgentLoopWorkflow` and the
nodes of one graph, registered with `LangGraphPlugin`, until killed.

    python -m tests.support.temporal_worker --address HOST:PORT --task-queue Q \
        --factory agentloop_graph:build_agent_loop --model ollama:llama3.2 \
        [--kwargs JSON] [--options JSON]

`--factory` names a function returning the uncompiled `StateGraph` (called with `--model`,
if given, and the `--kwargs`); `--options` are `WorkerOptions` as JSON (see
`temporal_harness.worker_options`). It prints `worker.ready` once it polls.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client
from temporalio.langgraph import LangGraphPlugin
from temporalio.worker import Worker

from tests.support.temporal_harness import WorkerOptions
from tests.support.temporal_workflow import GRAPH, TOPIC, AgentLoopWorkflow

READY = "worker.ready"


def load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


async def serve(args: argparse.Namespace) -> None:
    options = WorkerOptions(**json.loads(args.options))
    kwargs: dict[str, Any] = json.loads(args.kwargs)
    factory = load(args.factory)
    builder = factory(args.model, **kwargs) if args.model else factory(**kwargs)
    plugin = LangGraphPlugin(
        graphs={GRAPH: builder},
        default_activity_options=options.activity_options(),
        streaming_topic=TOPIC,
        streaming_batch_interval=options.stream_interval_delta(),
    )
    client = await Client.connect(args.address, plugins=[plugin])
    worker = Worker(
        client,
        task_queue=args.task_queue,
        workflows=[AgentLoopWorkflow],
        **options.worker_kwargs(),
    )
    async with worker:
        print(READY, flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.temporal_worker")
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--factory", default="agentloop_graph:build_agent_loop")
    parser.add_argument("--model", default=None)
    parser.add_argument("--kwargs", default="{}")
    parser.add_argument("--options", default="{}")
    asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
