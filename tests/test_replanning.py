"""Replanning (`max_replans`): a failed step has the planner replace the steps not yet started."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentloop_graph import Budget, Context, create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel
from tests.support.helpers import Run, numbered

BROKEN = RuntimeError("the oven is broken")


def kitchen(*replans: Any, executor: Any = None) -> ScriptedChatModel:
    """Plans bake / frost / serve; baking fails; each replan answers from `replans`."""

    def execute(call: ModelCall) -> Any:
        return BROKEN if "bake" in call.prompt.split("\n")[1] else "done"

    return ScriptedChatModel(
        responses={
            "planner": [numbered("bake", "frost", "serve"), *replans],
            "executor": executor or execute,
            "summariser": ["all told"],
        }
    )


def events_of(graph: Any, graph_input: dict[str, Any], is_async: bool, **kwargs: Any) -> list[Any]:
    if not is_async:
        return list(graph.stream(graph_input, stream_mode="custom", **kwargs))

    async def collect() -> list[Any]:
        return [e async for e in graph.astream(graph_input, stream_mode="custom", **kwargs)]

    return asyncio.run(collect())


def test_a_failed_step_has_the_steps_not_yet_started_replanned(run: Run) -> None:
    model = kitchen(numbered("buy a cake", "serve it"))
    loop = create_agent_loop(model, max_adaptations=0, max_replans=1)
    out = run(loop, {"task": "a birthday"})
    assert out["plan"] == ["bake", "buy a cake", "serve it"]
    assert [(s["step_num"], s["description"], s["status"]) for s in out["steps"]] == [
        (1, "bake", "failed"),
        (2, "buy a cake", "completed"),
        (3, "serve it", "completed"),
    ]
    assert out["status"] == "partial"
    assert out["summary"].startswith("a birthday: Completed 2/3 steps, 1 failed.")
    # plan + bake + replan + 2 steps + answer
    assert [c.node for c in model.calls] == [
        "planner",
        "executor",
        "planner",
        "executor",
        "executor",
        "summariser",
    ]
    replan = model.calls_from("planner")[1].prompt
    assert "a birthday" in replan
    assert "1. bake: FAILED (RuntimeError: the oven is broken)" in replan
    assert "2. frost\n3. serve" in replan


@pytest.mark.parametrize("is_async", [False, True])
def test_plan_revised_is_sent_between_the_failure_and_the_new_steps(is_async: bool) -> None:
    loop = create_agent_loop(kitchen(numbered("buy a cake")), max_adaptations=0, max_replans=1)
    events = events_of(loop, {"task": "a birthday"}, is_async)
    names = [e["event"] for e in events]
    assert names == [
        "agentic.plan_ready",
        "agentic.step_started",
        "agentic.step_failed",
        "agentic.step_complete",
        "agentic.plan_revised",
        "agentic.step_started",
        "agentic.step_complete",
        "agentic.task_complete",
    ]
    revised = events[4]
    assert revised == {
        "event": "agentic.plan_revised",
        "task_id": events[0]["task_id"],
        "steps": ["bake", "buy a cake"],
        "total": 2,
        "reason": "RuntimeError: the oven is broken",
        "replan": 1,
        "spent": {"model_calls": 3, "tokens": 0},
    }
    assert events[5]["step"] == 2 and events[5]["total"] == 2


def test_replans_are_bounded_by_max_replans(run: Run) -> None:
    always_failing = ScriptedChatModel(
        responses={
            "planner": [numbered("a", "b", "c"), numbered("d", "e"), numbered("f")],
            "executor": lambda call: BROKEN,
        }
    )
    loop = create_agent_loop(
        always_failing, max_adaptations=0, max_replans=2, summarise_with_model=False
    )
    out = run(loop, {"task": "t"})
    assert len(always_failing.calls_from("planner")) == 3  # the plan and two replans
    assert out["plan"] == ["a", "d", "f"]
    assert [s["status"] for s in out["steps"]] == ["failed"] * 3
    assert out["status"] == "failed"


def test_off_by_default(run: Run) -> None:
    model = kitchen()
    out = run(create_agent_loop(model, max_adaptations=0), {"task": "t"})
    assert len(model.calls_from("planner")) == 1
    assert out["plan"] == ["bake", "frost", "serve"]


def test_a_failed_last_step_is_not_replanned(run: Run) -> None:
    model = ScriptedChatModel(
        responses={"planner": [numbered("a", "b")], "executor": ["ok", BROKEN]}
    )
    loop = create_agent_loop(model, max_adaptations=0, max_replans=3, summarise_with_model=False)
    out = run(loop, {"task": "t"})
    assert len(model.calls_from("planner")) == 1
    assert [s["status"] for s in out["steps"]] == ["completed", "failed"]


@pytest.mark.parametrize("replan", [RuntimeError("planner down"), "no list here\n\n"])
def test_a_replan_that_fails_keeps_the_old_steps(run: Run, replan: Any) -> None:
    model = kitchen(replan if isinstance(replan, Exception) else "")
    loop = create_agent_loop(model, max_adaptations=0, max_replans=1)
    out = run(loop, {"task": "t"})
    assert out["plan"] == ["bake", "frost", "serve"]
    assert [s["status"] for s in out["steps"]] == ["failed", "completed", "completed"]
    assert len(model.calls_from("planner")) == 2


def test_a_longer_revision_is_cut_to_max_steps(run: Run) -> None:
    model = kitchen(numbered("w", "x", "y", "z"))
    loop = create_agent_loop(model, max_steps=3, max_adaptations=0, max_replans=1)
    out = run(loop, {"task": "t"})
    assert out["plan"] == ["bake", "w", "x"]
    assert out["status"] == "partial"
    assert "cut from 5 to 3 steps" in out["summary"]


def test_the_replanner_sees_how_many_steps_it_may_write() -> None:
    model = kitchen(numbered("buy a cake"))
    loop = create_agent_loop(model, max_steps=5, max_adaptations=0, max_replans=1)
    loop.invoke({"task": "t"})
    assert "(at most 4)" in model.calls_from("planner")[1].prompt


def test_context_sets_max_replans_per_run(run: Run) -> None:
    model = kitchen(numbered("buy a cake"))
    loop = create_agent_loop(model, max_adaptations=0)
    out = run(loop, {"task": "t"}, context=Context(max_replans=1))
    assert out["plan"] == ["bake", "buy a cake"]


def test_invalid_max_replans_is_named() -> None:
    with pytest.raises(ValueError, match="max_replans"):
        create_agent_loop(kitchen(), max_replans=-1)
    with pytest.raises(ValueError, match="max_replans"):
        create_agent_loop(kitchen()).invoke({"task": "t"}, context=Context(max_replans=-1))


def test_a_replan_the_budget_refuses_stops_the_run(run: Run) -> None:
    model = kitchen(numbered("buy a cake"))
    # The plan and the failed step fit; the replan would be the third call.
    loop = create_agent_loop(
        model, max_adaptations=0, max_replans=1, budget=Budget(max_model_calls=2)
    )
    out = run(loop, {"task": "t"})
    assert [c.node for c in model.calls] == ["planner", "executor"]
    assert out["plan"] == ["bake", "frost", "serve"]
    assert out["status"] == "failed"
    assert out["summary"].endswith("Stopped: model calls budget spent.")


def test_a_replanner_template_replaces_the_default() -> None:
    model = kitchen(numbered("buy a cake"))
    template = "{task} | {done} | {remaining}"
    loop = create_agent_loop(
        model, max_adaptations=0, max_replans=1, prompts={"replanner": template}
    )
    loop.invoke({"task": "t"})
    assert model.calls_from("planner")[1].prompt.startswith("t | 1. bake: FAILED")


def test_a_sequential_run_after_a_parallel_one_on_a_thread_counts_only_its_own_calls() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    model = kitchen(numbered("buy a cake"), numbered("bake", "frost"), numbered("buy a cake"))
    loop = create_agent_loop(
        model,
        max_adaptations=0,
        max_replans=1,
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "mixed"}}
    loop.invoke({"task": "a"}, config, context=Context(parallel=True))
    events = list(loop.stream({"task": "b"}, config, stream_mode="custom"))
    # plan, bake, replan, buy, answer
    assert events[-1]["budget"]["spent"]["model_calls"] == 5
    assert model.calls_from("planner")[2].prompt.startswith("Break this task")
