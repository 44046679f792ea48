"""The public test double, `agentloop_graph.testing.ScriptedChatModel`."""

from __future__ import annotations

import time

import pytest
from langchain_core.messages import AIMessage

from agentloop_graph.testing import ScriptedChatModel, ScriptedModelExhausted, Slow


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def test_answers_in_order_and_records_calls() -> None:
    model = ScriptedChatModel(responses=["one", AIMessage("two")])
    assert model.invoke("first").content == "one"
    assert model.invoke("second").content == "two"
    assert [c.prompt for c in model.calls] == ["first", "second"]
    assert [c.is_async for c in model.calls] == [False, False]
    with pytest.raises(ScriptedModelExhausted, match="call 3"):
        model.invoke("third")


async def test_async_calls_and_callable_responses() -> None:
    model = ScriptedChatModel(responses=lambda call: call.prompt.upper())
    assert (await model.ainvoke("shout")).content == "SHOUT"
    assert model.calls[0].is_async


def test_raises_scripted_errors() -> None:
    model = ScriptedChatModel(responses=[ConnectionError("refused")])
    with pytest.raises(ConnectionError, match="refused"):
        model.invoke("x")


def test_per_node_scripts_fall_back_to_none_key() -> None:
    model = ScriptedChatModel(responses={"planner": ["plan"], None: ["anything else"]})
    assert model.invoke("outside a graph").content == "anything else"


def test_bind_tools_records_tool_names_and_tool_calls() -> None:
    call = AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "1"}])
    model = ScriptedChatModel(responses=[call])
    reply = model.bind_tools([add]).invoke("add them")
    assert reply.tool_calls[0]["name"] == "add"
    assert model.calls[0].tools == ["add"]


def test_latency_and_slow_answers() -> None:
    model = ScriptedChatModel(responses=[Slow(0.05, "late")], latency=0.05)
    start = time.monotonic()
    assert model.invoke("x").content == "late"
    assert time.monotonic() - start >= 0.1
