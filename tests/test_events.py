"""Progress events: exact sequences, both stream surfaces, nested graphs."""

from __future__ import annotations

import asyncio
import random
import string
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ScriptedChatModel
from tests.support.helpers import numbered


def mixed_model() -> ScriptedChatModel:
    """Step 1 adapted, step 2 failed (its adapter call fails), step 3 completed."""
    return ScriptedChatModel(
        responses={
            "planner": [numbered("Fetch data", "Parse data", "Report")],
            "executor": [RuntimeError("fetch refused"), "fetched", OSError("bad bytes"), "report"],
            "adapter": ["Fetch data from the mirror", RuntimeError("no idea")],
            "summariser": ["All told."],
        }
    )


def spent(model_calls: int) -> dict[str, int]:
    """What a run of the scripted model (which reports no tokens) had spent at an event."""
    return {"model_calls": model_calls, "tokens": 0}


EXPECTED = [
    (
        "agentic.plan_ready",
        {
            "task": "t",
            "steps": ["Fetch data", "Parse data", "Report"],
            "total": 3,
            "plan_format": "text",
            "spent": spent(1),
        },
    ),
    (
        "agentic.step_started",
        {
            "step": 1,
            "total": 3,
            "description": "Fetch data",
            "attempt": 1,
            "agent": None,
            "spent": spent(1),
        },
    ),
    (
        "agentic.step_failed",
        {
            "step": 1,
            "total": 3,
            "description": "Fetch data",
            "error": "RuntimeError: fetch refused",
            "attempt": 1,
            "agent": None,
            "spent": spent(2),
        },
    ),
    (
        "agentic.step_adapted",
        {
            "step": 1,
            "total": 3,
            "description": "Fetch data",
            "error": "RuntimeError: fetch refused",
            "adaptation": "Fetch data from the mirror",
            "spent": spent(3),
        },
    ),
    (
        "agentic.step_started",
        {
            "step": 1,
            "total": 3,
            "description": "Fetch data from the mirror",
            "attempt": 2,
            "agent": None,
            "spent": spent(3),
        },
    ),
    (
        "agentic.step_complete",
        {
            "step": 1,
            "total": 3,
            "description": "Fetch data",
            "result": "fetched",
            "status": "adapted",
            "error": "RuntimeError: fetch refused",
            "agent": None,
            "ended_by": "answer",
            "reason": None,
            "spent": spent(4),
        },
    ),
    (
        "agentic.step_started",
        {
            "step": 2,
            "total": 3,
            "description": "Parse data",
            "attempt": 1,
            "agent": None,
            "spent": spent(4),
        },
    ),
    (
        "agentic.step_failed",
        {
            "step": 2,
            "total": 3,
            "description": "Parse data",
            "error": "OSError: bad bytes",
            "attempt": 1,
            "agent": None,
            "spent": spent(5),
        },
    ),
    (
        "agentic.step_complete",
        {
            "step": 2,
            "total": 3,
            "description": "Parse data",
            "result": "",
            "status": "failed",
            "error": "OSError: bad bytes; Adaptation also failed: RuntimeError: no idea",
            "agent": None,
            "ended_by": "adapter",
            "reason": "RuntimeError: no idea",
            "spent": spent(6),
        },
    ),
    (
        "agentic.step_started",
        {
            "step": 3,
            "total": 3,
            "description": "Report",
            "attempt": 1,
            "agent": None,
            "spent": spent(6),
        },
    ),
    (
        "agentic.step_complete",
        {
            "step": 3,
            "total": 3,
            "description": "Report",
            "result": "report",
            "status": "completed",
            "error": None,
            "agent": None,
            "ended_by": "answer",
            "reason": None,
            "spent": spent(7),
        },
    ),
    (
        "agentic.task_complete",
        {
            "status": "partial",
            "steps_completed": 3,
            "summary": "t: Completed 1/3 steps, 1 adapted, 1 failed.",
            "answer": "All told.",
            "spent": spent(8),
        },
    ),
]


def check_sequence(events: list[dict[str, Any]]) -> None:
    assert [e["event"] for e in events] == [name for name, _ in EXPECTED]
    task_ids = {e["task_id"] for e in events}
    assert len(task_ids) == 1 and None not in task_ids
    for event, (_, fields) in zip(events, EXPECTED, strict=True):
        extra = {
            k: v
            for k, v in event.items()
            if k not in ("event", "task_id", "duration_ms", "usage", "budget")
        }
        assert extra == fields
    assert isinstance(events[-1]["duration_ms"], int)
    zero = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    for event in events:
        if event["event"] in ("agentic.step_complete", "agentic.task_complete"):
            assert event["usage"] == zero  # the scripted model reports no tokens


def test_custom_stream_sync() -> None:
    events = list(create_agent_loop(mixed_model()).stream({"task": "t"}, stream_mode="custom"))
    check_sequence(events)


async def test_custom_stream_async() -> None:
    graph = create_agent_loop(mixed_model())
    check_sequence([e async for e in graph.astream({"task": "t"}, stream_mode="custom")])


async def test_astream_events_carry_custom_events() -> None:
    graph = create_agent_loop(mixed_model())
    customs = [
        e
        async for e in graph.astream_events({"task": "t"}, version="v2")
        if e["event"] == "on_custom_event"
    ]
    assert [e["name"] for e in customs] == [name for name, _ in EXPECTED]
    check_sequence([e["data"] for e in customs])


def test_task_id_matches_output() -> None:
    graph = create_agent_loop(mixed_model())
    chunks = list(graph.stream({"task": "t"}, stream_mode=["custom", "values"]))
    final = [c for mode, c in chunks if mode == "values"][-1]
    assert {c["task_id"] for mode, c in chunks if mode == "custom"} == {final["task_id"]}


def test_planning_failure_still_ends_with_task_complete() -> None:
    graph = create_agent_loop(ScriptedChatModel(responses=[RuntimeError("model down")]))
    events = list(graph.stream({"task": "t"}, stream_mode="custom"))
    assert [e["event"] for e in events] == ["agentic.task_complete"]
    assert events[0]["status"] == "failed"
    assert events[0]["summary"].startswith("Planning failed:")
    assert events[0]["steps_completed"] == 0


def test_previews_are_capped() -> None:
    long = "".join(random.Random(0).choices(string.ascii_lowercase + " ", k=1000))
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a")],
            "executor": [RuntimeError("e"), long],
            "adapter": ["y" * 500],
            "summariser": ["z" * 2000],
        }
    )
    task = "t" * 400
    events = list(create_agent_loop(model).stream({"task": task}, stream_mode="custom"))
    by_name = {e["event"]: e for e in events}
    assert by_name["agentic.step_complete"]["result"] == long[:200]
    assert by_name["agentic.step_adapted"]["adaptation"] == "y" * 200
    assert len(by_name["agentic.task_complete"]["summary"]) == 300


class Exploding(BaseCallbackHandler):
    raise_error = True

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        raise RuntimeError("listener crashed")


def test_failing_listener_never_breaks_a_run() -> None:
    graph = create_agent_loop(mixed_model())
    out = graph.invoke({"task": "t"}, {"callbacks": [Exploding()]})
    assert out["status"] == "partial"
    assert len(out["steps"]) == 3


class Parent(TypedDict, total=False):
    task: str
    summary: str | None
    status: str | None


def parent_graph(loop: Any) -> Any:
    builder = StateGraph(Parent)
    builder.add_node("loop", loop)
    builder.add_edge(START, "loop")
    builder.add_edge("loop", END)
    return builder.compile()


def test_nested_events_under_the_loops_namespace() -> None:
    parent = parent_graph(create_agent_loop(mixed_model()))
    chunks = list(parent.stream({"task": "t"}, stream_mode="custom", subgraphs=True))
    namespaces = {namespace for namespace, _ in chunks}
    assert len(namespaces) == 1
    (namespace,) = namespaces
    assert namespace[0].startswith("loop:")
    check_sequence([event for _, event in chunks])


async def test_nested_events_async_and_astream_events() -> None:
    parent = parent_graph(create_agent_loop(mixed_model()))
    chunks = [c async for c in parent.astream({"task": "t"}, stream_mode="custom", subgraphs=True)]
    check_sequence([event for _, event in chunks])
    parent = parent_graph(create_agent_loop(mixed_model()))
    customs = [
        e["data"]
        async for e in parent.astream_events({"task": "t"}, version="v2")
        if e["event"] == "on_custom_event"
    ]
    check_sequence(customs)


def test_concurrent_streams_see_only_their_own_events() -> None:
    graph = create_agent_loop(
        ScriptedChatModel(
            responses=lambda call: numbered("a", "b") if call.node == "planner" else "ok",
            latency=0.01,
        )
    )

    async def one(i: int) -> list[dict[str, Any]]:
        return [e async for e in graph.astream({"task": f"t{i}"}, stream_mode="custom")]

    async def main() -> list[list[dict[str, Any]]]:
        return await asyncio.gather(*(one(i) for i in range(5)))

    for i, events in enumerate(asyncio.run(main())):
        assert events[0]["task"] == f"t{i}"
        assert len(events) == 6
        assert len({e["task_id"] for e in events}) == 1
