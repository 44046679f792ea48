"""Plan approval: the run pauses after planning until a person answers."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agentloop_graph import Context, create_agent_loop
from agentloop_graph.testing import ScriptedChatModel
from tests.support.helpers import Run, numbered, plan_then


def model() -> ScriptedChatModel:
    return ScriptedChatModel(
        responses=lambda call: (
            numbered("a", "b") if call.node == "planner" else f"did it ({call.node})"
        )
    )


def paused(
    run: Run, **options: Any
) -> tuple[Any, ScriptedChatModel, dict[str, Any], dict[str, Any]]:
    scripted = model()
    graph = create_agent_loop(scripted, approve_plan=True, checkpointer=InMemorySaver(), **options)
    config = {"configurable": {"thread_id": "approval"}}
    out = run(graph, {"task": "t"}, config=config)
    return graph, scripted, config, out


def test_pauses_with_the_plan_before_any_step(run: Run) -> None:
    graph, scripted, config, out = paused(run)
    (pending,) = out["__interrupt__"]
    assert pending.value == {"task_id": out["task_id"], "task": "t", "plan": ["a", "b"]}
    assert out["steps"] == [] and out["status"] is None
    assert [c.node for c in scripted.calls] == ["planner"]
    assert graph.get_state(config).next == ("executor",)


def test_approve_runs_the_plan_without_planning_again(run: Run) -> None:
    graph, scripted, config, _ = paused(run)
    out = run(graph, Command(resume=True), config=config)
    assert out["status"] == "completed" and out["plan"] == ["a", "b"]
    assert [c.node for c in scripted.calls] == ["planner", "executor", "executor", "summariser"]


def test_an_edited_plan_runs_instead(run: Run) -> None:
    graph, scripted, config, _ = paused(run, max_steps=2)
    out = run(graph, Command(resume=["x", " y ", "z"]), config=config)
    assert out["plan"] == ["x", "y"]
    assert [s["description"] for s in out["steps"]] == ["x", "y"]
    assert out["status"] == "partial"  # the edited plan was longer than max_steps
    assert "Step 1/2: x" in scripted.calls_from("executor")[0].prompt


def test_rejecting_cancels(run: Run) -> None:
    graph, scripted, config, _ = paused(run)
    out = run(graph, Command(resume=False), config=config)
    assert out["status"] == "cancelled"
    assert out["summary"] == "t: Plan rejected; no step ran."
    assert out["steps"] == [] and out["answer"] is None
    assert out["messages"][-1].content == out["summary"]
    assert [c.node for c in scripted.calls] == ["planner"]


def test_cancelled_run_ends_with_task_complete() -> None:
    graph = create_agent_loop(model(), approve_plan=True, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "events"}}
    list(graph.stream({"task": "t"}, config, stream_mode="custom"))
    events = list(graph.stream(Command(resume=False), config, stream_mode="custom"))
    assert [e["event"] for e in events] == ["agentic.task_complete"]
    assert events[0]["status"] == "cancelled"


@pytest.mark.parametrize("answer", ["yes", [], ["ok", ""], 1])
def test_other_answers_ask_again_and_never_jam_the_thread(run: Run, answer: object) -> None:
    graph, scripted, config, _ = paused(run)
    out = run(graph, Command(resume=answer), config=config)
    (pending,) = out["__interrupt__"]
    assert pending.value["plan"] == ["a", "b"]
    assert pending.value["error"].startswith("resume a plan approval with True")
    out = run(graph, Command(resume=True), config=config)
    assert out["status"] == "completed"
    assert [c.node for c in scripted.calls].count("planner") == 1


def test_approval_per_run_through_context(run: Run) -> None:
    graph = create_agent_loop(model(), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "ctx"}}
    out = run(graph, {"task": "t"}, config=config, context=Context(approve_plan=True))
    assert "__interrupt__" in out
    out = run(graph, Command(resume=True), config=config, context=Context(approve_plan=True))
    assert out["status"] == "completed"


def test_a_tool_can_ask_a_person_and_the_step_resumes(run: Run) -> None:
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.types import interrupt

    @tool
    def ask_person(question: str) -> str:
        """Ask the person running the loop."""
        return str(interrupt(question))

    call = {"name": "ask_person", "args": {"question": "Which colour?"}, "id": "1"}
    scripted = ScriptedChatModel(
        responses=lambda c: (
            numbered("Choose a colour")
            if c.node == "planner"
            else AIMessage("", tool_calls=[call])
            if len(c.messages) == 1
            else f"Chose {c.messages[-1].text}"
        )
    )
    graph = create_agent_loop(
        scripted, tools=[ask_person], checkpointer=InMemorySaver(), summarise_with_model=False
    )
    config = {"configurable": {"thread_id": "ask"}}
    out = run(graph, {"task": "t"}, config=config)
    assert out["__interrupt__"][0].value == "Which colour?"
    out = run(graph, Command(resume="blue"), config=config)
    assert out["steps"][0]["result"] == "Chose blue"
    assert out["steps"][0]["attempts"] == 1


def test_plan_approval_without_a_checkpointer_is_refused_before_planning(run: Run) -> None:
    model = plan_then("ok")
    with pytest.raises(ValueError, match="approve_plan needs a checkpointer"):
        run(create_agent_loop(model, approve_plan=True), {"task": "t"})
    with pytest.raises(ValueError, match="approve_plan needs a checkpointer"):
        run(create_agent_loop(model), {"task": "t"}, context=Context(approve_plan=True))
    assert model.calls == []
