"""The loop's semantics (DESIGN.md "Semantics"), through the public API, sync and async."""

from __future__ import annotations

import asyncio
import time

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel, Slow
from tests.support.helpers import OUTPUT_KEYS, Run, every_step_adapted, numbered


def test_happy_path(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("Find flour", "Bake bread")],
            "executor": ["Found 1 kg of flour.", "Baked one loaf."],
            "summariser": ["A loaf of bread is ready."],
        }
    )
    out = run(create_agent_loop(model), {"task": "Bake bread"})

    assert set(out) == OUTPUT_KEYS
    assert out["task"] == "Bake bread"
    assert out["plan"] == ["Find flour", "Bake bread"]
    assert out["status"] == "completed"
    assert out["summary"] == "Bake bread: Completed 2/2 steps."
    assert out["answer"] == "A loaf of bread is ready."
    assert out["total_duration_ms"] >= 0
    assert [s["result"] for s in out["steps"]] == ["Found 1 kg of flour.", "Baked one loaf."]
    first = out["steps"][0]
    assert first["step_num"] == 1
    assert first["description"] == "Find flour"
    assert first["status"] == "completed"
    assert first["attempts"] == 1
    assert first["error"] is None and first["adaptation"] is None
    assert isinstance(first["duration_ms"], int)
    assert isinstance(out["messages"][-1], AIMessage)
    assert out["messages"][-1].content == "A loaf of bread is ready."
    assert [c.node for c in model.calls] == ["planner", "executor", "executor", "summariser"]
    # Under invoke every call is a sync model call; under ainvoke an async one.
    assert {c.is_async for c in model.calls} == {run.is_async}  # type: ignore[attr-defined]


def test_model_call_count_protocol(run: Run) -> None:
    # 1 plan + 1 per executor attempt + 1 per adapter call + 1 summary.
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a", "b", "c")],
            "executor": ["ra", RuntimeError("down"), "rb2", "", "still nothing"],
            "adapter": ["b, another way", "c, another way"],
            "summariser": ["done"],
        }
    )
    out = run(create_agent_loop(model), {"task": "t"})
    nodes = [c.node for c in model.calls]
    assert nodes.count("planner") == 1
    assert nodes.count("executor") == 5
    assert nodes.count("adapter") == 2
    assert nodes.count("summariser") == 1
    assert [s["status"] for s in out["steps"]] == ["completed", "adapted", "adapted"]


def test_planning_failure(run: Run) -> None:
    model = ScriptedChatModel(responses=[ConnectionError("server went away")])
    out = run(create_agent_loop(model), {"task": "t"})
    assert set(out) == OUTPUT_KEYS
    assert out["status"] == "failed"
    assert out["summary"].startswith("Planning failed:")
    assert "server went away" in out["summary"]
    assert out["plan"] == [] and out["steps"] == [] and out["answer"] is None
    assert out["messages"][-1].content == out["summary"]
    assert len(model.calls) == 1


@pytest.mark.parametrize("plan", ["", "   \n", "<think>1. hidden</think>"])
def test_plan_without_steps(run: Run, plan: str) -> None:
    model = ScriptedChatModel(responses=[plan])
    out = run(create_agent_loop(model), {"task": "t"})
    assert out["status"] == "failed"
    assert out["summary"] == "Planning produced no steps."
    assert len(model.calls) == 1


def test_truncated_plan_is_partial(run: Run) -> None:
    model = ScriptedChatModel(
        responses={"planner": [numbered("a", "b", "c", "d")], "executor": ["ra", "rb"]}
    )
    out = run(create_agent_loop(model, max_steps=2, summarise_with_model=False), {"task": "t"})
    assert out["plan"] == ["a", "b"]
    assert out["status"] == "partial"
    assert (
        out["summary"] == "t: Completed 2/2 steps. The plan was cut from 4 to 2 steps (max_steps)."
    )
    assert "at most 2" in model.calls[0].prompt


def test_adapted_step(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("Open the door")],
            "executor": [ValueError("door is locked"), "Opened it with the key."],
            "adapter": ["Use the key to open the door"],
        }
    )
    out = run(create_agent_loop(model, summarise_with_model=False), {"task": "Go in"})
    (step,) = out["steps"]
    assert step["status"] == "adapted"
    assert step["description"] == "Open the door"
    assert step["adaptation"] == "Use the key to open the door"
    assert step["error"] == "ValueError: door is locked"
    assert step["attempts"] == 2
    assert step["result"] == "Opened it with the key."
    assert out["status"] == "completed"
    assert out["summary"] == "Go in: Completed 0/1 steps, 1 adapted."
    adapter_call = model.calls_from("adapter")[0]
    assert "Open the door" in adapter_call.prompt
    assert "door is locked" in adapter_call.prompt
    assert "Step 1/1: Use the key to open the door" in model.calls_from("executor")[1].prompt


def test_adapter_failure_fails_step_and_loop_goes_on(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a", "b")],
            "executor": [RuntimeError("a broke"), "rb"],
            "adapter": [TimeoutError("adapter timed out")],
        }
    )
    out = run(create_agent_loop(model, summarise_with_model=False), {"task": "t"})
    failed, done = out["steps"]
    assert failed["status"] == "failed"
    assert failed["result"] == ""
    # The root cause stays beside the last failure, as in the original loop.
    assert failed["error"] == "RuntimeError: a broke; Adaptation also failed: adapter timed out"
    assert failed["attempts"] == 1
    assert done["status"] == "completed"
    assert out["status"] == "partial"
    assert out["summary"] == "t: Completed 1/2 steps, 1 failed."


def test_no_adaptations_left(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a")],
            "executor": [RuntimeError("nope")],
            "summariser": ["Nothing could be done."],
        }
    )
    out = run(create_agent_loop(model, max_adaptations=0), {"task": "t"})
    (step,) = out["steps"]
    assert step["status"] == "failed"
    assert step["error"] == "RuntimeError: nope"
    assert step["attempts"] == 1
    assert out["status"] == "failed"  # no step succeeded
    assert not model.calls_from("adapter")
    # The summariser still writes an answer: a step ran, even though it failed.
    assert out["answer"] == "Nothing could be done."


def test_max_adaptations_bounds_attempts(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a")],
            "executor": [RuntimeError(f"fail {i}") for i in range(1, 4)],
            "adapter": ["a, second way", "a, third way"],
        }
    )
    out = run(
        create_agent_loop(model, max_adaptations=2, summarise_with_model=False), {"task": "t"}
    )
    (step,) = out["steps"]
    assert step["status"] == "failed"
    assert step["attempts"] == 3
    assert step["error"] == "RuntimeError: fail 1; Adaptation also failed: RuntimeError: fail 3"
    assert step["adaptation"] == "a, third way"
    assert len(model.calls_from("adapter")) == 2


def test_empty_answer_is_a_failure(run: Run) -> None:
    model = ScriptedChatModel(
        responses={"planner": [numbered("a")], "executor": ["<think>mulling</think>  "]}
    )
    out = run(
        create_agent_loop(model, max_adaptations=0, summarise_with_model=False), {"task": "t"}
    )
    assert out["steps"][0]["error"] == "the model returned an empty answer"


def test_reasoning_is_removed_from_results(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a")],
            "executor": ["<think>scratch work</think>The result."],
            "summariser": ["<think>more</think>Final."],
        }
    )
    out = run(create_agent_loop(model), {"task": "t"})
    assert out["steps"][0]["result"] == "The result."
    assert out["answer"] == "Final."


def test_all_steps_failed_is_failed(run: Run) -> None:
    model = ScriptedChatModel(
        responses={"planner": [numbered("a", "b")], "executor": [OSError("x"), OSError("y")]}
    )
    out = run(
        create_agent_loop(model, max_adaptations=0, summarise_with_model=False), {"task": "t"}
    )
    assert out["status"] == "failed"
    assert out["summary"] == "t: Completed 0/2 steps, 2 failed."


def test_summariser_failure_keeps_status(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a")],
            "executor": ["ra"],
            "summariser": [RuntimeError("no answer today")],
        }
    )
    out = run(create_agent_loop(model), {"task": "t"})
    assert out["status"] == "completed"
    assert out["answer"] is None
    assert out["messages"][-1].content == out["summary"] == "t: Completed 1/1 steps."


def test_summarise_without_model(run: Run) -> None:
    model = ScriptedChatModel(responses={"planner": [numbered("a")], "executor": ["ra"]})
    out = run(create_agent_loop(model, summarise_with_model=False), {"task": "t"})
    assert out["answer"] is None
    assert [c.node for c in model.calls] == ["planner", "executor"]


def test_executor_context_is_bounded_to_last_two_results(run: Run) -> None:
    steps = [f"step {i}" for i in range(1, 8)]
    model = ScriptedChatModel(
        responses={"planner": [numbered(*steps)], "executor": [f"result {i}" for i in range(1, 8)]}
    )
    run(create_agent_loop(model, summarise_with_model=False), {"task": "t"})
    prompts = [c.prompt for c in model.calls_from("executor")]
    assert "(none yet)" in prompts[0]
    last = prompts[-1]
    assert "Step 7/7: step 7" in last
    assert "Step 5: result 5" in last and "Step 6: result 6" in last
    assert "result 4" not in last
    # Every prompt has the same shape whatever the plan's length: bounded context.
    assert len(prompts[6]) - len(prompts[3]) < 10


def test_failed_step_shows_as_failed_in_later_context(run: Run) -> None:
    model = ScriptedChatModel(
        responses={"planner": [numbered("a", "b")], "executor": [RuntimeError("a broke"), "rb"]}
    )
    run(create_agent_loop(model, max_adaptations=0, summarise_with_model=False), {"task": "t"})
    assert "Step 1: FAILED (RuntimeError: a broke)" in model.calls_from("executor")[1].prompt


def test_step_timeout_fails_the_attempt(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a")],
            "executor": [Slow(3.0, "too late"), "in time"],
            "adapter": ["a, faster"],
        }
    )
    graph = create_agent_loop(model, step_timeout=0.2, summarise_with_model=False)
    start = time.monotonic()
    out = run(graph, {"task": "t"})
    assert time.monotonic() - start < 2.0  # the slow answer was not waited for
    (step,) = out["steps"]
    assert step["status"] == "adapted"
    assert step["error"] == "the attempt timed out after 0.2 s"
    assert step["result"] == "in time"


def test_step_timeout_is_per_attempt(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a", "b")],
            "executor": [Slow(0.15, "ra"), Slow(0.15, "rb")],
        }
    )
    graph = create_agent_loop(model, step_timeout=0.25, summarise_with_model=False)
    out = run(graph, {"task": "t"})
    assert [s["status"] for s in out["steps"]] == ["completed", "completed"]


def test_task_from_last_human_message(run: Run) -> None:
    model = ScriptedChatModel(responses={"planner": [numbered("a")], "executor": ["ra"]})
    out = run(
        create_agent_loop(model, summarise_with_model=False),
        {"messages": [HumanMessage("old"), AIMessage("hi"), HumanMessage("Plan a trip")]},
    )
    assert out["task"] == "Plan a trip"
    assert [m.content for m in out["messages"]] == [
        "old",
        "hi",
        "Plan a trip",
        "Plan a trip: Completed 1/1 steps.",
    ]


def test_task_key_wins_over_messages(run: Run) -> None:
    model = ScriptedChatModel(responses={"planner": [numbered("a")], "executor": ["ra"]})
    out = run(
        create_agent_loop(model, summarise_with_model=False),
        {"task": "The real task", "messages": [HumanMessage("chatter")]},
    )
    assert out["task"] == "The real task"


def test_concurrent_runs_of_one_graph_stay_isolated() -> None:
    def respond(call: ModelCall) -> str:
        task = call.prompt.split("Task: ", 1)[1].splitlines()[0]
        if call.node == "planner":
            return numbered(f"{task} first", f"{task} second")
        if call.node == "executor":
            step = call.prompt.split("\nStep ", 1)[1].split(":", 1)[1].splitlines()[0].strip()
            return f"did {step}"
        return f"answer for {task}"

    model = ScriptedChatModel(responses=respond, latency=0.01)
    graph = create_agent_loop(model)

    async def main() -> list[dict[str, object]]:
        return await asyncio.gather(*(graph.ainvoke({"task": f"task-{i}"}) for i in range(50)))

    outs = asyncio.run(main())
    assert len({o["task_id"] for o in outs}) == 50
    for i, out in enumerate(outs):
        task = f"task-{i}"
        assert out["task"] == task
        assert out["plan"] == [f"{task} first", f"{task} second"]
        assert [s["result"] for s in out["steps"]] == [f"did {task} first", f"did {task} second"]
        assert out["answer"] == f"answer for {task}"
        assert [m.content for m in out["messages"]] == [f"answer for {task}"]
    assert len(model.calls) == 50 * 4


def test_long_run_of_adapted_steps_is_not_cut_short(run: Run) -> None:
    out = run(create_agent_loop(ScriptedChatModel(responses=every_step_adapted)), {"task": "t"})
    assert out["summary"] == "t: Completed 0/10 steps, 10 adapted."
    assert out["status"] == "completed"
