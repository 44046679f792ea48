"""`run_agentic_loop`: the original loop's entry point on the graph."""

from __future__ import annotations

from dataclasses import fields

from agentloop_graph import AgenticResult, AgenticStep, run_agentic_loop
from agentloop_graph.testing import ScriptedChatModel
from tests.support.helpers import numbered


def test_seed_shapes() -> None:
    assert [f.name for f in fields(AgenticStep)] == [
        "step_num",
        "description",
        "result",
        "status",
        "duration_ms",
    ]
    assert [f.name for f in fields(AgenticResult)] == [
        "task_id",
        "task",
        "summary",
        "steps",
        "status",
        "total_duration_ms",
    ]


async def test_run_with_progress_and_adapted_and_failed_steps() -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a", "b", "c")],
            "executor": ["ra", RuntimeError("b broke"), "rb2", RuntimeError("c broke")],
            "adapter": ["b, another way", RuntimeError("no idea")],
            "summariser": ["answer"],
        }
    )
    progress: list[tuple[str, int, int]] = []

    async def on_progress(description: str, step: int, total: int) -> None:
        progress.append((description, step, total))

    result = await run_agentic_loop("t", model=model, on_progress=on_progress)
    assert isinstance(result, AgenticResult)
    assert result.status == "partial"
    assert result.summary == "t: Completed 1/3 steps, 1 adapted, 1 failed."
    assert progress == [("a", 1, 3), ("[Adapted] b", 2, 3), ("c", 3, 3)]
    assert [(s.step_num, s.description, s.status) for s in result.steps] == [
        (1, "a", "completed"),
        (2, "[Adapted] b", "adapted"),
        (3, "c", "failed"),
    ]
    assert result.steps[1].result == "rb2"
    assert result.steps[2].result == (
        "Failed: RuntimeError: c broke; Adaptation also failed: RuntimeError: no idea"
    )
    assert result.total_duration_ms >= 0 and len(result.task_id) >= 8


async def test_max_steps_zero_means_default_and_sync_callbacks_work() -> None:
    model = ScriptedChatModel(
        responses=lambda call: numbered(*"abcdefghijkl") if call.node == "planner" else "ok"
    )
    seen: list[int] = []
    result = await run_agentic_loop(
        "t", model=model, max_steps=0, on_progress=lambda d, i, n: seen.append(i)
    )
    assert len(result.steps) == 10 and result.status == "partial"
    assert seen == list(range(1, 11))


async def test_planning_failure() -> None:
    result = await run_agentic_loop("t", model=ScriptedChatModel(responses=[RuntimeError("down")]))
    assert result.status == "failed"
    assert result.summary.startswith("Planning failed:")
    assert result.steps == []
