"""Bad input and bad settings get a clear error naming the problem, before any model call,
and a refused input writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ScriptedChatModel
from tests.support.helpers import Run, plan_then


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_steps": 0}, ValueError, "max_steps"),
        ({"max_steps": -3}, ValueError, "max_steps"),
        ({"max_steps": 2.5}, ValueError, "max_steps"),
        ({"max_adaptations": -1}, ValueError, "max_adaptations"),
        ({"step_timeout": 0}, ValueError, "step_timeout"),
        ({"step_timeout": -1.5}, ValueError, "step_timeout"),
        ({"step_timeout": "10"}, ValueError, "step_timeout"),
        ({"max_tool_rounds": -1}, ValueError, "max_tool_rounds"),
        ({"model": "nonsense"}, ValueError, "model 'nonsense'"),
        ({"model": ""}, ValueError, "model ''"),
        ({"model": "madeup:thing"}, ValueError, "model 'madeup:thing'"),
        ({"model": 42}, TypeError, "model must be a LangChain chat model"),
        ({"model": object()}, TypeError, "model must be a LangChain chat model"),
    ],
)
def test_factory_rejects(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    kwargs.setdefault("model", ScriptedChatModel())
    with pytest.raises(error, match=match):
        create_agent_loop(**kwargs)


@pytest.mark.parametrize(
    ("graph_input", "match"),
    [
        ({}, "task is missing"),
        ({"task": ""}, "task is empty"),
        ({"task": "   \n\t"}, "task is empty"),
        ({"task": 42}, "task must be a string, got int"),
        ({"task": None}, "task is missing"),
        ({"messages": [AIMessage("only the assistant spoke")]}, "task is missing"),
        ({"messages": [("user", "  ")]}, "task is empty"),
    ],
)
def test_run_rejects_bad_task_before_any_model_call(
    run: Run, graph_input: dict[str, Any], match: str
) -> None:
    model = ScriptedChatModel()
    with pytest.raises(ValueError, match=match):
        run(create_agent_loop(model), graph_input)
    assert model.calls == []


@pytest.mark.parametrize(
    ("context", "match"),
    [
        ({"max_steps": 0}, "max_steps"),
        ({"max_adaptations": -2}, "max_adaptations"),
        ({"step_timeout": -1}, "step_timeout"),
        ({"model": "nonsense"}, "context.model 'nonsense'"),
    ],
)
def test_run_rejects_bad_context(run: Run, context: dict[str, Any], match: str) -> None:
    model = ScriptedChatModel()
    with pytest.raises(ValueError, match=match):
        run(create_agent_loop(model), {"task": "t"}, context=context)
    assert model.calls == []


def test_a_refused_input_writes_nothing(run: Run) -> None:
    saver = InMemorySaver()
    graph = create_agent_loop(plan_then("ok"), checkpointer=saver, summarise_with_model=False)
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}
    for bad in ({"task": " "}, {"task": 3}, {}, {"messages": [AIMessage("hello")]}, "a task"):
        with pytest.raises(ValueError, match=r"task|input"):
            run(graph, bad, config=config)
    assert graph.get_state(config).next == ()
    assert list(saver.list(config)) == []
    assert run(graph, {"task": "good"}, config=config)["status"] == "completed"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("step_timeout", float("nan")),
        ("step_timeout", float("inf")),
        ("model_timeout", float("nan")),
        ("model_timeout", float("inf")),
        ("approve_plan", "no"),
        ("summarise_with_model", "no"),
        ("max_tool_rounds", -1),
    ],
)
def test_invalid_options_name_themselves(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=option):
        create_agent_loop(ScriptedChatModel(), **{option: value})


@pytest.mark.parametrize(
    "context",
    [{"approve_plan": "no"}, {"summarise_with_model": "no"}, {"step_timeout": float("inf")}],
)
def test_invalid_context_fields_name_themselves(context: dict[str, Any]) -> None:
    (name,) = context
    model = plan_then("ok")
    with pytest.raises(ValueError, match=name):
        create_agent_loop(model).invoke({"task": "t"}, context=context)
    assert model.calls == []


def test_unknown_context_fields_and_tools_none_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown fields \['max_step'\]"):
        create_agent_loop(plan_then("ok")).invoke({"task": "t"}, context={"max_step": 2})
    with pytest.raises(TypeError, match="tools must be a list"):
        create_agent_loop(ScriptedChatModel(), tools=None)  # type: ignore[arg-type]
