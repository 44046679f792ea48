"""The loop as a deepagents subagent: `CompiledSubAgent(runnable=create_agent_loop(...))`.

The deep agent hands a task over with its `task` tool; deepagents runs the subagent on
`{"messages": [HumanMessage(description)]}` and returns the last AI message of its output
(the loop's answer) to the deep agent as the tool's result.
"""

from __future__ import annotations

from typing import Any

from deepagents import CompiledSubAgent, create_deep_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from agentloop_graph import create_agent_loop
from agentloop_graph.demo import DemoChatModel
from agentloop_graph.testing import ModelCall, ScriptedChatModel
from tests.support.helpers import Run

TASK = "Plan a picnic for six"
ANSWER = f"[demo] Final answer for '{TASK}': every step was worked through in order."


def delegate(call: ModelCall) -> AIMessage | str:
    """The deep agent's model: hands the request to the loop, then reports its answer."""
    last = call.messages[-1]
    if isinstance(last, ToolMessage):
        return f"The planner says: {last.text}"
    task = {"description": TASK, "subagent_type": "agent-loop"}
    return AIMessage("", tool_calls=[{"name": "task", "args": task, "id": "t1"}])


def deep_agent(loop_model: DemoChatModel) -> Any:
    subagent = CompiledSubAgent(
        name="agent-loop",
        description="Plans a multi-step task, carries out each step and reports the outcome.",
        runnable=create_agent_loop(loop_model),
    )
    return create_deep_agent(ScriptedChatModel(responses=delegate), subagents=[subagent])


def test_the_deep_agent_hands_the_task_to_the_loop_and_gets_its_answer(run: Run) -> None:
    loop_model = DemoChatModel(record_calls=True)
    out = run(deep_agent(loop_model), {"messages": [HumanMessage("Organise a picnic")]})
    # The loop ran in full on the task the deep agent wrote.
    assert [call.node for call in loop_model.calls] == [
        "planner",
        *["executor"] * 4,
        "summariser",
    ]
    assert f"Task: {TASK}" in loop_model.calls[0].prompt
    # Its answer came back as the `task` tool's result, and the deep agent used it.
    _, _, result, reply = out["messages"]
    assert isinstance(result, ToolMessage) and result.tool_call_id == "t1"
    assert result.text == ANSWER
    assert reply.text == f"The planner says: {ANSWER}"


def test_the_loops_progress_reaches_the_deep_agents_caller() -> None:
    agent = deep_agent(DemoChatModel())
    stream = agent.stream(
        {"messages": [HumanMessage("Organise a picnic")]}, stream_mode="custom", subgraphs=True
    )
    events = [(namespace, event) for namespace, event in stream]
    assert [event["event"] for _, event in events] == [
        "agentic.plan_ready",
        *["agentic.step_started", "agentic.step_complete"] * 4,
        "agentic.task_complete",
    ]
    # Under the deep agent's tool node, where deepagents ran the subagent.
    assert all(namespace[0].startswith("tools:") for namespace, _ in events)
    assert events[-1][1]["status"] == "completed"
