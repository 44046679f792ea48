"""The loop as a node of larger graphs, and on threads of a checkpointer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from typing_extensions import TypedDict

from agentloop_graph import UnfinishedRunError, create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel
from tests.support.helpers import Run, every_step_adapted, numbered, plan_then


def echo_model() -> ScriptedChatModel:
    """Plans two steps named after the task and answers from the prompt."""

    def respond(call: ModelCall) -> str:
        task = call.prompt.split("Task: ", 1)[1].splitlines()[0]
        if call.node == "planner":
            return numbered(f"look into {task}", f"answer {task}")
        if call.node == "summariser":
            return f"Answer to {task}"
        return "ok"

    return ScriptedChatModel(responses=respond)


class Shared(TypedDict, total=False):
    task: str
    summary: str | None
    status: str | None
    report: str


def test_loop_as_node_of_parent_sharing_keys(run: Run) -> None:
    def report(state: Shared) -> dict[str, Any]:
        return {"report": f"{state['status']}: {state['summary']}"}

    builder = StateGraph(Shared)
    builder.add_node("loop", create_agent_loop(echo_model()))
    builder.add_node("report", report)
    builder.add_edge(START, "loop")
    builder.add_edge("loop", "report")
    builder.add_edge("report", END)
    out = run(builder.compile(), {"task": "taxes"})
    assert out == {
        "task": "taxes",
        "summary": "taxes: Completed 2/2 steps.",
        "status": "completed",
        "report": "completed: taxes: Completed 2/2 steps.",
    }


def chat_app(loop: Any, checkpointer: Any = None) -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("loop", loop)
    builder.add_edge(START, "loop")
    builder.add_edge("loop", END)
    return builder.compile(checkpointer=checkpointer)


def test_loop_in_messages_state_app(run: Run) -> None:
    app = chat_app(create_agent_loop(echo_model()))
    out = run(app, {"messages": [HumanMessage("Plan my week")]})
    human, answer = out["messages"]
    assert human.content == "Plan my week"
    assert isinstance(answer, AIMessage)
    assert answer.content == "Answer to Plan my week"


def test_messages_app_on_a_thread_takes_each_new_human_message_as_the_task(run: Run) -> None:
    model = echo_model()
    app = chat_app(create_agent_loop(model), InMemorySaver())
    config = {"configurable": {"thread_id": "chat"}}
    run(app, {"messages": [HumanMessage("first question")]}, config=config)
    out = run(app, {"messages": [HumanMessage("second question")]}, config=config)
    assert [m.content for m in out["messages"]] == [
        "first question",
        "Answer to first question",
        "second question",
        "Answer to second question",
    ]


def test_new_input_on_a_thread_starts_a_new_task(run: Run) -> None:
    model = echo_model()
    graph = create_agent_loop(model, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    first = run(graph, {"task": "alpha"}, config=config)
    second = run(graph, {"task": "beta"}, config=config)
    assert second["task"] == "beta"
    assert second["task_id"] != first["task_id"]
    assert second["plan"] == ["look into beta", "answer beta"]
    assert [s["step_num"] for s in second["steps"]] == [1, 2]
    third = run(graph, {"messages": [HumanMessage("gamma")]}, config=config)
    assert third["task"] == "gamma"
    assert [m.content for m in third["messages"]][-2:] == ["gamma", "Answer to gamma"]
    # Same task again: the stale `task` key with no newer human message is the task.
    again = run(graph, {"task": "gamma"}, config=config)
    assert again["task"] == "gamma"


def test_checkpoint_after_every_executor_attempt() -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a", "b")],
            "executor": [RuntimeError("x"), "ra", "rb"],
            "adapter": ["a again"],
        }
    )
    graph = create_agent_loop(model, summarise_with_model=False, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "cp"}}
    graph.invoke({"task": "t"}, config)
    # One checkpoint before each node execution: every attempt can be resumed from.
    history = reversed(list(graph.get_state_history(config)))
    nodes = [snapshot.tasks[0].name for snapshot in history if snapshot.tasks]
    assert nodes == [
        "__start__",
        "planner",
        "executor",
        "adapter",
        "executor",
        "executor",
        "summariser",
    ]


def test_a_new_task_on_an_unfinished_thread_is_refused(run: Run) -> None:
    from langgraph.types import Command

    model = echo_model()
    graph = create_agent_loop(model, approve_plan=True, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "busy"}}
    run(graph, {"task": "alpha"}, config=config)
    before = graph.get_state(config)
    with pytest.raises(UnfinishedRunError, match="thread 'busy' has an unfinished run"):
        run(graph, {"task": "beta"}, config=config)
    # Nothing was written: the paused run is intact and resumes.
    assert graph.get_state(config).values == before.values
    out = run(graph, Command(resume=True), config=config)
    assert out["task"] == "alpha" and out["status"] == "completed"
    # Once finished, the thread takes new tasks again.
    assert "__interrupt__" in run(graph, {"task": "beta"}, config=config)


class Crash(BaseException):
    """Stands in for the process dying mid-call: not an `Exception`, so no step catches it."""


@pytest.mark.parametrize(
    "crashing",
    [
        "planner",  # the last checkpoint holds the new run's input
        "executor",  # one step in
        "summariser",  # every step ended, the answer was next
    ],
)
def test_a_run_stopped_on_a_reused_thread_keeps_it_until_resumed(run: Run, crashing: str) -> None:
    crashed: list[str] = []

    def respond(call: ModelCall) -> str | BaseException:
        second = "second" in call.prompt
        if call.node == crashing and second and not crashed:
            crashed.append(call.node)
            return Crash("power cut")
        return numbered("a", "b") if call.node == "planner" else "ok"

    graph = create_agent_loop(ScriptedChatModel(responses=respond), checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "reused"}}
    assert run(graph, {"task": "first"}, config=config)["status"] == "completed"
    with pytest.raises(Crash):  # blocking: LangChain's async path wraps what is not an Exception
        graph.invoke({"task": "second"}, config)
    with pytest.raises(UnfinishedRunError, match=rf"unfinished run \(next: {crashing}\)"):
        run(graph, {"task": "third"}, config=config)
    assert run(graph, None, config=config)["task"] == "second"
    assert run(graph, {"task": "third"}, config=config)["status"] == "completed"


def test_long_runs_under_astream_events_are_not_cut_by_the_default_limit() -> None:
    graph = create_agent_loop(ScriptedChatModel(responses=every_step_adapted))

    async def last_event() -> dict[str, Any]:
        events = [e async for e in graph.astream_events({"task": "t"}, version="v2")]
        return events[-1]["data"]["output"]

    assert asyncio.run(last_event())["summary"] == "t: Completed 0/10 steps, 10 adapted."


def test_a_reused_thread_runs_the_task_the_input_names(run: Run) -> None:
    graph = create_agent_loop(plan_then("ok"), checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "reused"}}
    assert run(graph, {"task": "Task A"}, config=config)["task"] == "Task A"
    out = run(graph, {"messages": [HumanMessage("Task B"), AIMessage("ok")]}, config=config)
    assert out["task"] == "Task B"
    with pytest.raises(ValueError, match="task is missing"):
        run(graph, {"messages": [AIMessage("hello")]}, config=config)
