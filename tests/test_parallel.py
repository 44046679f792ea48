"""Plans as dependency graphs (`parallel=True`): ready steps run at once, in waves."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agentloop_graph import Budget, Context, create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel, Slow
from tests.support.helpers import OUTPUT_KEYS, Run

FAN_OUT = "1. fetch A (after none)\n2. fetch B (after none)\n3. fetch C\n4. compare (after 1, 2, 3)"
"""Three steps that wait for nothing (an unmarked one included, once any step is marked),
and one that joins them."""


def step_of(call: ModelCall) -> str:
    """The step an executor call attempts (`Step i/N: <description>` is its second line)."""
    return call.prompt.split("\n")[1].split(": ", 1)[1]


def scripted(plan: str = FAN_OUT, latency: dict[str, float] | None = None, **more: Any) -> Any:
    def answer(call: ModelCall) -> Any:
        if call.node == "planner":
            return plan
        if call.node == "summariser":
            return "all done"
        if call.node == "executor":
            step = step_of(call)
            reply = more.get(step, f"found {step}")
            return Slow(latency[step], reply) if latency and step in latency else reply
        return more.get("adapter", "another way")

    return ScriptedChatModel(responses=answer)


def events_of(graph: Any, is_async: bool, **kwargs: Any) -> list[dict[str, Any]]:
    if not is_async:
        return list(graph.stream({"task": "t"}, stream_mode="custom", **kwargs))

    async def collect() -> list[dict[str, Any]]:
        return [e async for e in graph.astream({"task": "t"}, stream_mode="custom", **kwargs)]

    return asyncio.run(collect())


def by_step(events: list[dict[str, Any]]) -> dict[int, list[str]]:
    steps: dict[int, list[str]] = {}
    for event in events:
        if "step" in event:
            steps.setdefault(event["step"], []).append(event["event"].removeprefix("agentic."))
    return steps


def test_independent_steps_run_at_once_and_the_join_after_them(run: Run) -> None:
    model = scripted()
    out = run(create_agent_loop(model, parallel=True), {"task": "t"})
    assert out["dependencies"] == [[], [], [], [1, 2, 3]]
    assert out["status"] == "completed"
    assert [s["result"] for s in out["steps"]] == [
        "found fetch A",
        "found fetch B",
        "found fetch C",
        "found compare",
    ]
    # The join's prompt quotes the results of the steps it waits for, all of them.
    join = next(c for c in model.calls_from("executor") if step_of(c) == "compare")
    assert "Step 1: found fetch A\nStep 2: found fetch B\nStep 3: found fetch C" in join.prompt
    assert set(out) == OUTPUT_KEYS | {"dependencies"}


@pytest.mark.parametrize("is_async", [False, True])
def test_a_wave_starts_together_and_events_keep_their_order_within_a_step(is_async: bool) -> None:
    latency = {"fetch A": 0.3, "fetch B": 0.1, "fetch C": 0.2}
    graph = create_agent_loop(scripted(latency=latency), parallel=True)
    events = events_of(graph, is_async)
    names = [(e["event"], e.get("step")) for e in events]
    assert names[:4] == [
        ("agentic.plan_ready", None),
        ("agentic.step_started", 1),
        ("agentic.step_started", 2),
        ("agentic.step_started", 3),
    ]
    # They ran at once: each finished in the order of its latency.
    finished = [step for event, step in names if event == "agentic.step_complete"]
    assert finished == [2, 3, 1, 4]
    assert all(seq == ["step_started", "step_complete"] for seq in by_step(events).values())
    assert events[0]["dependencies"] == [[], [], [], [1, 2, 3]]
    assert names[-1] == ("agentic.task_complete", None)


def test_steps_come_out_in_plan_order_whatever_order_they_ended(run: Run) -> None:
    slow_first = run(
        create_agent_loop(scripted(latency={"fetch A": 0.2}), parallel=True), {"task": "t"}
    )
    slow_last = run(
        create_agent_loop(scripted(latency={"fetch C": 0.2}), parallel=True), {"task": "t"}
    )
    for out in (slow_first, slow_last):
        assert [s["step_num"] for s in out["steps"]] == [1, 2, 3, 4]

    def without_times(out: dict[str, Any]) -> dict[str, Any]:
        steps = [{**s, "duration_ms": 0, "started_ms": 0} for s in out["steps"]]
        return {**out, "steps": steps, "total_duration_ms": 0, "task_id": "", "messages": []}

    assert without_times(slow_first) == without_times(slow_last)


def test_at_most_max_parallel_steps_run_at_once() -> None:
    plan = "\n".join(f"{n}. s{n} (after none)" for n in range(1, 6))
    # Each step takes a moment, so that steps sent together overlap whatever the threads do.
    latency = {f"s{n}": 0.05 for n in range(1, 6)}
    graph = create_agent_loop(scripted(plan, latency), parallel=True, max_parallel=2)
    running, most = set(), 0
    for event in graph.stream({"task": "t"}, stream_mode="custom"):
        if event["event"] == "agentic.step_started":
            running.add(event["step"])
        elif event["event"] == "agentic.step_complete":
            running.discard(event["step"])
        most = max(most, len(running))
    assert most == 2


def test_an_unmarked_plan_runs_in_sequence(run: Run) -> None:
    model = scripted("1. a\n2. b\n3. c")
    out = run(create_agent_loop(model, parallel=True), {"task": "t"})
    assert out["dependencies"] == [[], [1], [2]]
    assert [step_of(c) for c in model.calls_from("executor")] == ["a", "b", "c"]


def test_a_step_runs_even_when_a_step_it_waits_for_failed(run: Run) -> None:
    model = scripted(**{"fetch B": RuntimeError("B is down")})
    loop = create_agent_loop(model, parallel=True, max_adaptations=0)
    out = run(loop, {"task": "t"})
    assert [s["status"] for s in out["steps"]] == ["completed", "failed", "completed", "completed"]
    assert out["status"] == "partial"
    join = next(c for c in model.calls_from("executor") if step_of(c) == "compare")
    assert "Step 2: FAILED (RuntimeError: B is down)" in join.prompt


@pytest.mark.parametrize("is_async", [False, True])
def test_a_failed_step_is_adapted_on_its_own(is_async: bool) -> None:
    tries: dict[str, int] = {}

    def answer(call: ModelCall) -> Any:
        if call.node == "planner":
            return FAN_OUT
        if call.node == "adapter":
            return "fetch B from the mirror"
        if call.node == "summariser":
            return "done"
        step = step_of(call)
        tries[step] = tries.get(step, 0) + 1
        return RuntimeError("B is down") if step == "fetch B" else f"found {step}"

    model = ScriptedChatModel(responses=answer)
    events = events_of(create_agent_loop(model, parallel=True), is_async)
    assert by_step(events)[2] == [
        "step_started",
        "step_failed",
        "step_adapted",
        "step_started",
        "step_complete",
    ]
    assert by_step(events)[1] == ["step_started", "step_complete"]
    complete = [e for e in events if e["event"] == "agentic.step_complete"]
    assert {e["step"]: e["status"] for e in complete}[2] == "adapted"
    # The join waited for the adapted step.
    assert [e["step"] for e in complete][-1] == 4


def test_context_turns_parallel_on_for_one_run(run: Run) -> None:
    loop = create_agent_loop(scripted())
    sequential = run(loop, {"task": "t"})
    assert "dependencies" not in sequential and set(sequential) == OUTPUT_KEYS
    parallel = run(loop, {"task": "t"}, context=Context(parallel=True, max_parallel=2))
    assert parallel["dependencies"] == [[], [], [], [1, 2, 3]]


def test_a_parallel_run_whose_planning_failed_still_has_dependencies(run: Run) -> None:
    failing = ScriptedChatModel(responses=lambda call: RuntimeError("no plan"))
    failed = run(create_agent_loop(failing, parallel=True), {"task": "t"})
    assert failed["status"] == "failed" and failed["dependencies"] == []
    assert set(failed) == OUTPUT_KEYS | {"dependencies"}


def test_a_run_after_a_parallel_one_on_its_thread_keeps_none_of_its_dependencies(
    run: Run,
) -> None:
    loop = create_agent_loop(scripted(), checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t"}}
    first = run(loop, {"task": "t"}, config=thread, context=Context(parallel=True))
    assert first["dependencies"] == [[], [], [], [1, 2, 3]]
    second = run(loop, {"task": "t"}, config=thread, context=Context(max_steps=2))
    assert len(second["plan"]) == 2
    assert second["dependencies"] == [[], [1]]


def test_a_spent_budget_fails_the_step_it_refuses_and_starts_no_other(run: Run) -> None:
    plan = FAN_OUT + "\n5. report (after 4)"
    model = scripted(plan)
    # The plan and the first wave's three attempts fit; the join's would be the fifth call.
    loop = create_agent_loop(model, parallel=True, budget=Budget(max_model_calls=4))
    out = run(loop, {"task": "t"})
    assert len(model.calls) == 4
    assert [s["status"] for s in out["steps"]] == ["completed"] * 3 + ["failed"]
    assert out["steps"][3]["error"] == "budget exhausted: model calls"
    assert out["status"] == "partial"
    assert out["summary"].endswith("Stopped: model calls budget spent.")


def test_steps_running_at_once_never_pass_the_call_budget_together(run: Run) -> None:
    # The plan fits, then three steps start at once with room for two calls between them.
    model = scripted(latency={"fetch A": 0.1, "fetch B": 0.1, "fetch C": 0.1})
    loop = create_agent_loop(model, parallel=True, budget=Budget(max_model_calls=3))
    out = run(loop, {"task": "t"})
    assert len(model.calls) == 3
    assert [s["status"] for s in out["steps"]].count("completed") == 2
    (refused,) = [s for s in out["steps"] if s["status"] == "failed"]
    assert refused["error"] == "budget exhausted: model calls"
    assert out["summary"].endswith("Stopped: model calls budget spent.")


def test_model_calls_and_tokens_add_up_across_steps() -> None:
    graph = create_agent_loop(scripted(), parallel=True)
    events = list(graph.stream({"task": "t"}, stream_mode="custom"))
    assert events[-1]["budget"]["spent"]["model_calls"] == 6  # plan, 4 steps, answer


def test_plan_approval_in_a_parallel_run() -> None:
    graph = create_agent_loop(
        scripted(), parallel=True, approve_plan=True, checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": "p"}}
    graph.invoke({"task": "t"}, config)
    edited = ["look (after none)", "leap (after none)", "land (after 1, 2)"]
    out = graph.invoke(Command(resume=edited), config)
    assert out["plan"] == ["look", "leap", "land"]
    assert out["dependencies"] == [[], [], [1, 2]]
    assert out["status"] == "completed"


def test_parallel_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_parallel"):
        create_agent_loop(scripted(), parallel=True, max_parallel=0)
    with pytest.raises(ValueError, match="parallel"):
        create_agent_loop(scripted(), parallel="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_parallel"):
        create_agent_loop(scripted()).invoke({"task": "t"}, context=Context(max_parallel=-1))


def replanned(revision: str, **failing: Any) -> ScriptedChatModel:
    """The fan-out plan; the steps in `failing` fail; a replan answers `revision`."""

    def answer(call: ModelCall) -> Any:
        if call.node == "planner":
            return revision if "Steps ended so far" in call.prompt else FAN_OUT
        if call.node == "summariser":
            return "all done"
        step = step_of(call)
        outcome = failing.get(step, f"found {step}")
        return Slow(0.2, outcome) if step == "fetch A" else outcome

    return ScriptedChatModel(responses=answer)


@pytest.mark.parametrize("is_async", [False, True])
def test_a_replan_waits_for_the_running_steps_and_replaces_those_not_started(
    is_async: bool,
) -> None:
    # fetch B fails at once while fetch A is still running; compare has not started.
    model = replanned(
        "1. fetch B from the mirror (after none)\n2. compare (after 1, 3, 4)",
        **{"fetch B": RuntimeError("B is down")},
    )
    graph = create_agent_loop(model, parallel=True, max_replans=1, max_adaptations=0)
    events = events_of(graph, is_async)
    names = [(e["event"].removeprefix("agentic."), e.get("step")) for e in events]
    revised_at = names.index(("plan_revised", None))
    # Every step of the first wave ended before the replan; the new steps ran after it.
    assert {step for name, step in names[:revised_at] if name == "step_complete"} == {1, 2, 3}
    assert names[revised_at + 1 :] == [
        ("step_started", 4),
        ("step_complete", 4),
        ("step_started", 5),
        ("step_complete", 5),
        ("task_complete", None),
    ]
    revised = events[revised_at]
    assert revised["steps"] == [
        "fetch A",
        "fetch B",
        "fetch C",
        "fetch B from the mirror",
        "compare",
    ]
    assert revised["dependencies"] == [[], [], [], [], [1, 3, 4]]
    assert revised["renumbered"] == {} and revised["replan"] == 1
    assert revised["reason"] == "RuntimeError: B is down"
    replan = model.calls_from("planner")[1].prompt
    assert "2. fetch B: FAILED (RuntimeError: B is down)" in replan
    assert "Steps not yet started:\n4. compare" in replan


def test_ended_steps_that_are_not_the_plans_first_are_renumbered(run: Run) -> None:
    # fetch B fails at once; "later" waits for slow A, so when the replan runs, steps 1, 2
    # and 4 have ended and step 3 has not started.
    plan = "1. slow A (after none)\n2. fetch B (after none)\n3. later (after 1)\n4. fetch D"

    def answer(call: ModelCall) -> Any:
        if call.node == "planner":
            return "1. instead (after 1, 3)" if "Steps ended so far" in call.prompt else plan
        if call.node == "summariser":
            return "done"
        step = step_of(call)
        if step == "fetch B":
            return RuntimeError("B is down")
        return Slow(0.2, f"found {step}") if step == "slow A" else f"found {step}"

    model = ScriptedChatModel(responses=answer)
    loop = create_agent_loop(model, parallel=True, max_replans=1, max_adaptations=0)
    events = list(loop.stream({"task": "t"}, stream_mode="custom"))
    revised = next(e for e in events if e["event"] == "agentic.plan_revised")
    assert revised["steps"] == ["slow A", "fetch B", "fetch D", "instead"]
    assert revised["renumbered"] == {1: 1, 2: 2, 4: 3}
    assert revised["dependencies"] == [[], [], [], [1, 3]]
    # The replanner saw the ended steps as they are numbered in the revised plan.
    replan = model.calls_from("planner")[1].prompt
    assert "3. fetch D: found fetch D" in replan and "Steps not yet started:\n4. later" in replan
    out = run(loop, {"task": "t"})
    assert out["plan"] == ["slow A", "fetch B", "fetch D", "instead"]
    assert [(s["step_num"], s["description"]) for s in out["steps"]] == [
        (1, "slow A"),
        (2, "fetch B"),
        (3, "fetch D"),
        (4, "instead"),
    ]
    instead = next(c for c in model.calls_from("executor") if step_of(c) == "instead")
    assert "Step 1: found slow A\nStep 3: found fetch D" in instead.prompt


def test_replans_in_a_parallel_run_are_bounded(run: Run) -> None:
    model = replanned("1. again (after none)", **{"fetch B": RuntimeError("down")})
    loop = create_agent_loop(model, parallel=True, max_replans=1, max_adaptations=0)
    out = run(loop, {"task": "t"})
    assert len(model.calls_from("planner")) == 2
    assert out["plan"][-1] == "again"


def test_concurrent_parallel_runs_of_one_graph_stay_isolated() -> None:
    def respond(call: ModelCall) -> str:
        task = call.prompt.split("Task: ", 1)[1].splitlines()[0]
        if call.node == "planner":
            return (
                f"1. {task} A (after none)\n2. {task} B (after none)\n3. {task} join (after 1, 2)"
            )
        if call.node == "executor":
            return f"did {step_of(call)}"
        return f"answer for {task}"

    graph = create_agent_loop(ScriptedChatModel(responses=respond, latency=0.01), parallel=True)

    def check(out: dict[str, Any], task: str) -> None:
        assert out["task"] == task and out["dependencies"] == [[], [], [1, 2]]
        assert [s["result"] for s in out["steps"]] == [
            f"did {task} {s}" for s in ("A", "B", "join")
        ]
        assert out["answer"] == f"answer for {task}"

    async def many() -> list[dict[str, Any]]:
        return await asyncio.gather(*(graph.ainvoke({"task": f"task-{i}"}) for i in range(30)))

    for i, out in enumerate(asyncio.run(many())):
        check(out, f"task-{i}")
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: graph.invoke({"task": f"thread-{i}"}), range(8)))
    for i, out in enumerate(outs):
        check(out, f"thread-{i}")
