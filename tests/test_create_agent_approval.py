"""The loop as a tool of LangChain's `create_agent`, with people approving.

`HumanInTheLoopMiddleware` pauses the outer agent before the `plan_and_execute` call runs;
with `approve_plan=True` the loop's own plan approval pauses it again, from inside the tool.
The loop has no checkpointer of its own: it runs with the agent's config, so it keeps its
checkpoints in the agent's (under the tool call's namespace), and its `interrupt` reaches
whoever runs the agent.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agentloop_graph import create_agent_loop, plan_and_execute_tool
from agentloop_graph.demo import DemoChatModel
from agentloop_graph.testing import ScriptedChatModel
from tests.support.helpers import Run

REQUEST = {"messages": [HumanMessage("Plan a picnic in three steps")]}
"""A request the demo model hands to `plan_and_execute` (it mentions a plan and steps)."""
ANSWER = (
    "completed: [demo] Final answer for 'Plan a picnic in three steps': "
    "every step was worked through in order."
)
APPROVE = Command(resume={"decisions": [{"type": "approve"}]})


def agent_with_loop(loop: Any, *, approval: bool = True, **options: Any) -> Any:
    middleware = [HumanInTheLoopMiddleware(interrupt_on={"plan_and_execute": True})]
    return create_agent(
        options.pop("model", DemoChatModel()),
        tools=[plan_and_execute_tool(loop)],
        middleware=middleware if approval else [],
        checkpointer=InMemorySaver(),
        **options,
    )


def thread(name: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}


def test_the_agent_asks_before_the_loop_runs_and_relays_its_answer(run: Run) -> None:
    loop_model = DemoChatModel(record_calls=True)
    agent = agent_with_loop(create_agent_loop(loop_model))
    paused = run(agent, REQUEST, config=thread("t"))
    (request,) = paused["__interrupt__"][0].value["action_requests"]
    assert request["name"] == "plan_and_execute"
    assert request["args"] == {"task": "Plan a picnic in three steps"}
    assert loop_model.calls == []  # nothing ran before the person answered

    out = run(agent, APPROVE, config=thread("t"))
    assert "__interrupt__" not in out
    _, _, result, reply = out["messages"]
    assert isinstance(result, ToolMessage) and result.text == ANSWER
    assert result.artifact["status"] == "completed" and len(result.artifact["steps"]) == 4
    assert reply.text == f"[demo] Here is what the agent loop reported: {ANSWER}"
    assert [call.node for call in loop_model.calls] == [
        "planner",
        *["executor"] * 4,
        "summariser",
    ]


def test_a_rejected_call_never_starts_the_loop(run: Run) -> None:
    loop_model = DemoChatModel(record_calls=True)
    agent = agent_with_loop(create_agent_loop(loop_model))
    run(agent, REQUEST, config=thread("t"))
    reject = {"type": "reject", "message": "Not today."}
    out = run(agent, Command(resume={"decisions": [reject]}), config=thread("t"))
    result = out["messages"][2]
    assert isinstance(result, ToolMessage) and result.status == "error"
    assert result.text.endswith("with reason: Not today.")
    assert loop_model.calls == []


def test_the_loops_plan_approval_reaches_the_agents_caller(run: Run) -> None:
    saver = InMemorySaver()
    agent = create_agent(
        DemoChatModel(),
        tools=[plan_and_execute_tool(create_agent_loop("demo", approve_plan=True))],
        middleware=[HumanInTheLoopMiddleware(interrupt_on={"plan_and_execute": True})],
        checkpointer=saver,
    )
    run(agent, REQUEST, config=thread("t"))
    # Approving the call starts the loop, which stops at its own approval: the agent's
    # caller gets the loop's interrupt, with the plan.
    paused = run(agent, APPROVE, config=thread("t"))
    (interrupt,) = paused["__interrupt__"]
    assert interrupt.value["task"] == "Plan a picnic in three steps"
    assert len(interrupt.value["plan"]) == 4
    assert interrupt.response_schema["title"] == "Plan approval"
    # The loop saved its paused run in the agent's checkpointer, under the tool call's task.
    namespaces = {c.config["configurable"]["checkpoint_ns"] for c in saver.list(None)}
    assert any(ns.startswith("tools:") for ns in namespaces)

    out = run(agent, Command(resume=["Pack the basket", "Walk to the park"]), config=thread("t"))
    assert "__interrupt__" not in out
    result = out["messages"][2]
    assert isinstance(result, ToolMessage)
    assert result.artifact["task_id"] == interrupt.value["task_id"]  # resumed, not restarted
    assert result.artifact["plan"] == ["Pack the basket", "Walk to the park"]
    assert result.text.startswith("completed: ")


def test_two_loops_in_one_turn_ask_separately(run: Run) -> None:
    calls = [
        {"name": "plan_and_execute", "args": {"task": task}, "id": task}
        for task in ("Plan a picnic", "Plan a party")
    ]
    model = ScriptedChatModel(responses=[AIMessage("", tool_calls=calls), "Both planned."])
    agent = agent_with_loop(
        create_agent_loop("demo", approve_plan=True), approval=False, model=model
    )
    paused = run(agent, {"messages": [HumanMessage("go")]}, config=thread("t"))
    # create_agent runs each tool call as a task of its own: one interrupt per loop.
    asked = {interrupt.value["task"]: interrupt.id for interrupt in paused["__interrupt__"]}
    assert set(asked) == {"Plan a picnic", "Plan a party"}
    answers = {asked["Plan a picnic"]: True, asked["Plan a party"]: False}
    out = run(agent, Command(resume=answers), config=thread("t"))
    results = {m.tool_call_id: m.text for m in out["messages"] if isinstance(m, ToolMessage)}
    assert results["Plan a picnic"].startswith("completed: ")
    assert results["Plan a party"] == "cancelled: Plan a party: Plan rejected; no step ran."


def test_plan_approval_needs_the_agent_to_have_a_checkpointer() -> None:
    agent = create_agent(
        DemoChatModel(),
        tools=[plan_and_execute_tool(create_agent_loop("demo", approve_plan=True))],
    )
    with pytest.raises(ValueError, match="approve_plan needs a checkpointer"):
        agent.invoke(REQUEST)
