"""The executor calling the tools it is given: results and errors fed back, rounds bounded."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.types import Command

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ScriptedChatModel
from tests.support.helpers import Run, numbered


def call(name: str, args: dict[str, Any], call_id: str = "c1") -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": call_id}])


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@tool
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"exploded: {reason}")


def tool_messages(model: ScriptedChatModel, index: int) -> list[ToolMessage]:
    return [m for m in model.calls_from("executor")[index].messages if isinstance(m, ToolMessage)]


def test_tool_loop_runs_tools_and_feeds_results_back(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("Compute 6*7")],
            "executor": [call("multiply", {"a": 6, "b": 7}), "The product is 42."],
        }
    )
    graph = create_agent_loop(model, tools=[multiply], summarise_with_model=False)
    out = run(graph, {"task": "math"})
    assert out["steps"][0]["result"] == "The product is 42."
    assert out["steps"][0]["attempts"] == 1
    first, second = model.calls_from("executor")
    assert first.tools == ["multiply"]
    (result,) = tool_messages(model, 1)
    assert result.content == "42"
    assert result.tool_call_id == "c1"
    assert second.messages[0].text.startswith("Task: math")


def test_tool_errors_go_back_to_the_model(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("Try it")],
            "executor": [call("explode", {"reason": "why not"}), "The tool failed; reporting."],
        }
    )
    out = run(create_agent_loop(model, tools=[explode], summarise_with_model=False), {"task": "t"})
    assert out["steps"][0]["status"] == "completed"
    (error,) = tool_messages(model, 1)
    assert error.status == "error"
    assert "exploded: why not" in str(error.content)


def test_unknown_tool_and_bad_arguments_are_reported(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("Try it")],
            "executor": [
                AIMessage(
                    "",
                    tool_calls=[
                        {"name": "delete_files", "args": {}, "id": "c1"},
                        {"name": "multiply", "args": {"a": "six"}, "id": "c2"},
                    ],
                ),
                "done",
            ],
        }
    )
    out = run(create_agent_loop(model, tools=[multiply], summarise_with_model=False), {"task": "t"})
    assert out["steps"][0]["result"] == "done"
    unknown, bad = tool_messages(model, 1)
    assert unknown.status == "error" and "no tool named 'delete_files'" in str(unknown.content)
    assert bad.status == "error" and bad.tool_call_id == "c2"


def test_tool_rounds_run_out(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("Loop forever")],
            "executor": [call("multiply", {"a": 1, "b": i}, f"c{i}") for i in range(3)],
        }
    )
    graph = create_agent_loop(
        model, tools=[multiply], max_tool_rounds=2, max_adaptations=0, summarise_with_model=False
    )
    out = run(graph, {"task": "t"})
    step = out["steps"][0]
    assert step["status"] == "failed"
    assert step["error"] == "the tool loop ran out of rounds (2)"
    assert len(model.calls_from("executor")) == 3


def test_tools_must_be_tools() -> None:
    with pytest.raises(TypeError, match="tools"):
        create_agent_loop(ScriptedChatModel(), tools=[42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="two tools named 'multiply'"):
        create_agent_loop(ScriptedChatModel(), tools=[multiply, multiply])


@tool
def remember(fact: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> Command[Any]:
    """Remember a fact (in the state of the graph that calls it)."""
    return Command(update={"messages": [ToolMessage("noted", tool_call_id=tool_call_id)]})


def test_a_tool_answering_with_a_command_is_reported_plainly(run: Run) -> None:
    # A `Command` updates the calling graph's state: the loop has none to update.
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("Remember it")],
            "executor": [call("remember", {"fact": "x"}), "could not remember"],
        }
    )
    run(create_agent_loop(model, tools=[remember], summarise_with_model=False), {"task": "t"})
    (error,) = tool_messages(model, 1)
    assert error.status == "error"
    assert error.content == (
        "Error: the tool returned a Command instead of a result; the loop cannot use it"
    )
