"""Bad input gets a clear error naming the problem, before any model call."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ScriptedChatModel
from tests.support.helpers import Run


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
