"""The loop wrapped as a LangChain tool (`plan_and_execute_tool`) inside a chat app."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from agentloop_graph import Context, create_agent_loop, plan_and_execute_tool


def test_tool_returns_outcome_and_the_loops_output_as_artifact() -> None:
    tool = plan_and_execute_tool(model="demo", max_steps=2)
    assert tool.name == "plan_and_execute"
    assert set(tool.args) == {"task"}
    message = tool.invoke(
        {"name": tool.name, "args": {"task": "Plan a picnic"}, "id": "c1", "type": "tool_call"}
    )
    assert isinstance(message, ToolMessage)
    assert message.content.startswith("completed: [demo] Final answer for 'Plan a picnic'")
    assert message.artifact["status"] == "completed"
    assert len(message.artifact["plan"]) == 2


def app_with_tool(tool: Any) -> Any:
    def agent(state: MessagesState) -> dict[str, Any]:
        call = {"name": "plan_and_execute", "args": {"task": "Plan a picnic"}, "id": "c1"}
        return {"messages": [AIMessage("", tool_calls=[call])]}

    builder = StateGraph(MessagesState, context_schema=Context)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([tool]))
    builder.add_edge(START, "agent")
    builder.add_edge("agent", "tools")
    builder.add_edge("tools", END)
    return builder.compile()


def test_progress_reaches_the_callers_stream_sync_and_async() -> None:
    app = app_with_tool(plan_and_execute_tool(create_agent_loop("demo")))
    chunks = list(
        app.stream({"messages": [HumanMessage("hi")]}, stream_mode="custom", subgraphs=True)
    )
    assert chunks[0][1]["event"] == "agentic.plan_ready"
    assert chunks[-1][1]["event"] == "agentic.task_complete"
    assert all(namespace[0].startswith("tools:") for namespace, _ in chunks)

    async def collect() -> list[Any]:
        stream = app.astream(
            {"messages": [HumanMessage("hi")]}, stream_mode="custom", subgraphs=True
        )
        return [chunk async for chunk in stream]

    assert [e["event"] for _, e in asyncio.run(collect())] == [e["event"] for _, e in chunks]


def test_the_nested_loop_follows_the_callers_context() -> None:
    app = app_with_tool(plan_and_execute_tool(create_agent_loop("demo")))
    out = app.invoke({"messages": [HumanMessage("hi")]}, context=Context(max_steps=1))
    assert len(out["messages"][-1].artifact["plan"]) == 1
