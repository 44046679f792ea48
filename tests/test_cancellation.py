"""Stopping a run from outside: a closed blocking stream or a cancelled async one stops the run
at once, and nothing starts afterwards."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel, Slow
from tests.support.helpers import numbered, plan_then


def test_closing_a_blocking_stream_stops_the_run() -> None:
    release = threading.Event()

    def answer_once_released(call: ModelCall) -> str:
        release.wait(10)  # a step's call stays in flight until the test lets it answer
        return "ok"

    model = plan_then(answer_once_released, steps=3)
    stream = create_agent_loop(model).stream({"task": "t"}, stream_mode="custom")
    for event in stream:
        if event["event"] == "agentic.step_started":
            break
    closed_at = time.monotonic()
    stream.close()  # type: ignore[attr-defined]
    assert time.monotonic() - closed_at < 0.2
    calls = len(model.calls)
    release.set()  # the call in flight answers now: nothing may follow it
    time.sleep(0.5)
    assert len(model.calls) == calls <= 2  # the plan and at most the call in flight


async def test_cancelling_a_stream_stops_the_run_promptly() -> None:
    model = ScriptedChatModel(
        responses=lambda call: (
            numbered("a", "b", "c") if call.node == "planner" else Slow(0.3, "ok")
        )
    )
    graph = create_agent_loop(model)
    step_started = asyncio.Event()

    async def consume() -> None:
        async for event in graph.astream({"task": "t"}, stream_mode="custom"):
            if event["event"] == "agentic.step_started":
                step_started.set()

    task = asyncio.create_task(consume())
    await step_started.wait()
    loop = asyncio.get_running_loop()
    cancelled_at = loop.time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.time() - cancelled_at < 0.1
    calls = len(model.calls)
    await asyncio.sleep(1.0)
    assert len(model.calls) == calls  # nothing started after the cancel
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []
