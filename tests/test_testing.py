"""The public test double, `agentloop_graph.testing.ScriptedChatModel`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import (
    ModelCall,
    Response,
    ScriptedChatModel,
    ScriptedModelExhausted,
    Slow,
)
from tests.support.helpers import Run, numbered


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


def test_per_node_functions_and_lists_mix(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("Look", "Leap")],
            "executor": lambda call: f"done in the {call.node}",
            "summariser": lambda call: Slow(0.01, "Landed."),
        }
    )
    out = run(create_agent_loop(model), {"task": "Cross the stream"})
    assert [s["result"] for s in out["steps"]] == ["done in the executor"] * 2
    assert out["answer"] == "Landed."
    assert [c.node for c in model.calls] == ["planner", "executor", "executor", "summariser"]


def test_a_per_node_function_can_raise_and_call_tools(run: Run) -> None:
    def executor(call: ModelCall) -> Response:
        if not any(isinstance(m, ToolMessage) for m in call.messages):
            return AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c"}])
        return RuntimeError("no more") if len(model.calls) > 3 else "Sum found."

    model = ScriptedChatModel(
        responses={"planner": [numbered("Add", "Add again")], "executor": executor}
    )
    out = run(
        create_agent_loop(model, tools=[add], max_adaptations=0, summarise_with_model=False),
        {"task": "t"},
    )
    assert [s["status"] for s in out["steps"]] == ["completed", "failed"]
    assert out["steps"][0]["result"] == "Sum found."


def stream_messages(
    graph: Any, graph_input: dict[str, Any], is_async: bool
) -> tuple[list[Any], dict[str, Any]]:
    """The `(chunk, metadata)` pairs of `stream_mode="messages"` and the run's output,
    through `stream` or `astream`."""
    modes = ["messages", "values"]
    if is_async:

        async def collect() -> list[Any]:
            return [part async for part in graph.astream(graph_input, stream_mode=modes)]

        parts = asyncio.run(collect())
    else:
        parts = list(graph.stream(graph_input, stream_mode=modes))
    values = [value for mode, value in parts if mode == "values"]
    return [value for mode, value in parts if mode == "messages"], values[-1]


@pytest.mark.parametrize("is_async", [False, True], ids=["stream", "astream"])
def test_text_answers_stream_word_by_word(is_async: bool) -> None:
    model = ScriptedChatModel(
        responses={"planner": [numbered("Look")], "executor": ["I looked  both ways."]}
    )
    graph = create_agent_loop(model, summarise_with_model=False)
    parts, _ = stream_messages(graph, {"task": "Cross the stream"}, is_async)
    executor = [
        c.content for c, meta in parts if meta["langgraph_node"] == "executor" and c.content
    ]
    assert executor == ["I ", "looked  ", "both ", "ways."]
    assert [(c.node, c.is_async) for c in model.calls] == [
        ("planner", is_async),
        ("executor", is_async),
    ]


@pytest.mark.parametrize("is_async", [False, True], ids=["stream", "astream"])
def test_streamed_answers_keep_tool_calls_and_usage(is_async: bool) -> None:
    usage = {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}
    call = AIMessage(
        "", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"}], usage_metadata=usage
    )
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("Add")],
            "executor": [call, AIMessage("The sum is 3.", usage_metadata=usage)],
        }
    )
    graph = create_agent_loop(model, tools=[add], summarise_with_model=False)
    parts, out = stream_messages(graph, {"task": "t"}, is_async)
    assert out["steps"][0]["result"] == "The sum is 3."
    assert out["usage"] == {"input_tokens": 10, "output_tokens": 4, "total_tokens": 14}
    second = model.calls_from("executor")[1]
    assert second.tools == ["add"]
    sent, result = second.messages[-2:]
    assert isinstance(sent, AIMessage) and sent.tool_calls == call.tool_calls
    assert isinstance(result, ToolMessage) and result.content == "3"
    streamed = [c for c, meta in parts if meta["langgraph_node"] == "executor"]
    assert [c["name"] for c in streamed[0].tool_call_chunks] == ["add"]
    assert "".join(c.text for c in streamed) == "The sum is 3."


def test_stream_outside_a_graph_records_one_call() -> None:
    model = ScriptedChatModel(responses=["one two three", ValueError("nope")])
    assert [chunk.content for chunk in model.stream("x")] == ["one ", "two ", "three"]
    with pytest.raises(ValueError, match="nope"):
        list(model.stream("y"))
    with pytest.raises(ScriptedModelExhausted):
        list(model.stream("z"))
    assert [c.prompt for c in model.calls] == ["x", "y", "z"]
