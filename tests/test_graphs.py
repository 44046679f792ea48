"""The Studio entry points in `graphs/`: factories, the loop alone, the composed chat app."""

from __future__ import annotations

import importlib.util
import inspect
import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

import agentloop_graph.models
from agentloop_graph import Context
from agentloop_graph.testing import ScriptedChatModel
from graphs.agent_loop import make_graph as make_agent_loop
from graphs.agents import make_graph as make_agents
from graphs.chat_app import create_chat_app
from graphs.chat_app import make_graph as make_chat_app
from tests.support.helpers import GRAPH_NODES, Run

ROOT = Path(__file__).resolve().parent.parent
DEMO = Context(model="demo")
MULTI_STEP = "Plan a picnic then pack the basket"
LOOP_EVENTS = [
    "agentic.plan_ready",
    *["agentic.step_started", "agentic.step_complete"] * 4,
    "agentic.task_complete",
]


@pytest.fixture(autouse=True)
def offline_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave the default at Ollama, aimed where nothing answers: only `context` picks demo."""
    monkeypatch.delenv("AGENTLOOP_MODEL", raising=False)
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")


def graph_specs() -> dict[str, str]:
    config = json.loads((ROOT / "langgraph.json").read_text())
    return {graph_id: spec["path"] for graph_id, spec in config["graphs"].items()}


def load_by_path(graph_id: str, spec: str) -> tuple[Any, str]:
    """Load a graph module the way the LangGraph server does: from its file, not a package."""
    path, variable = spec.rsplit(":", 1)
    module_spec = importlib.util.spec_from_file_location(f"_studio_{graph_id}", ROOT / path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module, variable


def test_langgraph_json_declares_the_graphs_as_zero_argument_factories() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text())
    assert config["dependencies"] == ["."]
    specs = graph_specs()
    assert set(specs) == {"agent_loop", "chat_app", "agents"}
    for graph_id, spec in specs.items():
        module, variable = load_by_path(graph_id, spec)
        factory = getattr(module, variable)
        assert callable(factory)
        assert not inspect.signature(factory).parameters


def test_loading_the_graph_modules_builds_and_contacts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("called while importing a graph module")

    monkeypatch.setattr(StateGraph, "compile", refuse)
    monkeypatch.setattr(agentloop_graph.models, "resolve_model", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    for graph_id, spec in graph_specs().items():
        module, _ = load_by_path(graph_id, spec)
        assert not [name for name, value in vars(module).items() if isinstance(value, Pregel)]


def test_agent_loop_graph_has_the_four_phase_nodes() -> None:
    graph = make_agent_loop()
    assert graph.name == "agent_loop"
    assert set(graph.get_graph().nodes) == GRAPH_NODES


def test_agent_loop_runs_with_the_runs_model(run: Run) -> None:
    out = run(make_agent_loop(), {"task": "Plan a picnic"}, context=DEMO)
    assert out["status"] == "completed"
    assert out["answer"].startswith("[demo] Final answer for 'Plan a picnic'")


@pytest.mark.parametrize("factory", [make_agent_loop, make_chat_app, make_agents])
def test_agentloop_model_sets_the_default_model(
    factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLOOP_MODEL", "demo")
    graph = factory()
    out = graph.invoke({"messages": [HumanMessage(MULTI_STEP)]})
    assert out["messages"][-1].content.startswith("[demo]")


@pytest.mark.parametrize("factory", [make_agent_loop, make_chat_app, make_agents])
def test_unknown_agentloop_model_fails_when_the_graph_is_built(
    factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLOOP_MODEL", "no-such-model")
    with pytest.raises(ValueError, match="no-such-model"):
        factory()


def test_the_agents_graph_hands_the_steps_to_its_two_agents(run: Run) -> None:
    graph = make_agents()
    assert graph.name == "agents"
    out = run(graph, {"task": "Plan a picnic"}, context=DEMO)
    assert out["status"] == "completed"
    assert [s["agent"] for s in out["steps"]] == ["researcher", "writer"] * 2
    # The agents ran on the run's model, as the loop's phases do: on the default (Ollama,
    # where nothing answers) every step would fail. Each called its own tool.
    assert "look_up said: The park opens at 9" in out["steps"][0]["result"]
    assert "word_count said: " in out["steps"][1]["result"]


def test_the_agents_graph_runs_without_langchain(monkeypatch: pytest.MonkeyPatch) -> None:
    # `langgraph dev` installs the package without extras: a graph that needed `langchain`
    # would keep the server from starting, the other graphs with it.
    for name in ["langchain", *(n for n in sys.modules if n.startswith("langchain."))]:
        monkeypatch.setitem(sys.modules, name, None)
    module, variable = load_by_path("agents", graph_specs()["agents"])
    out = getattr(module, variable)().invoke({"task": "Plan a picnic"}, context=DEMO)
    assert out["status"] == "completed"


def test_agentloop_model_runs_the_agents_graph_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLOOP_MODEL", "demo")
    out = make_agents().invoke({"task": "Plan a picnic"})
    assert [(s["agent"], s["status"]) for s in out["steps"]][:2] == [
        ("researcher", "completed"),
        ("writer", "completed"),
    ]


def test_chat_app_shape() -> None:
    graph = make_chat_app().get_graph()
    assert set(graph.nodes) == {"__start__", "assistant", "tools", "__end__"}
    edges = {(edge.source, edge.target, edge.conditional) for edge in graph.edges}
    assert edges == {
        ("__start__", "assistant", False),
        ("assistant", "tools", True),
        ("assistant", "__end__", True),
        ("tools", "assistant", False),
    }


def test_chat_app_answers_a_simple_request_directly(run: Run) -> None:
    out = run(make_chat_app(), {"messages": [HumanMessage("What is a picnic?")]}, context=DEMO)
    human, reply = out["messages"]
    assert isinstance(human, HumanMessage)
    assert isinstance(reply, AIMessage)
    assert reply.tool_calls == []
    assert reply.content == "[demo] (answered directly) You said: What is a picnic?"


def test_chat_app_hands_a_multi_step_request_to_the_loop(run: Run) -> None:
    out = run(make_chat_app(), {"messages": [HumanMessage(MULTI_STEP)]}, context=DEMO)
    human, call, result, reply = out["messages"]
    assert human.content == MULTI_STEP
    assert isinstance(call, AIMessage)
    assert [(c["name"], c["args"]) for c in call.tool_calls] == [
        ("plan_and_execute", {"task": MULTI_STEP})
    ]
    assert isinstance(result, ToolMessage)
    loop_output = result.artifact
    assert loop_output["status"] == "completed"
    assert loop_output["answer"].startswith(f"[demo] Final answer for '{MULTI_STEP}'")
    assert isinstance(reply, AIMessage)
    assert reply.tool_calls == []
    assert reply.content == (
        f"[demo] Here is what the agent loop reported: completed: {loop_output['answer']}"
    )


def test_assistant_calls_the_model_the_way_the_app_is_run(run: Run) -> None:
    model = ScriptedChatModel(responses={"assistant": ["Hello."]})
    out = run(create_chat_app(model), {"messages": [HumanMessage("hi")]})
    assert out["messages"][-1].content == "Hello."
    (call,) = model.calls
    assert call.node == "assistant"
    assert call.is_async == run.is_async  # type: ignore[attr-defined]
    assert call.tools == ["plan_and_execute"]
    assert isinstance(call.messages[0], SystemMessage)
    assert call.messages[-1].text == "hi"


def test_run_context_picks_the_assistants_model_over_the_default() -> None:
    model = ScriptedChatModel(responses={"assistant": ["from the default"]})
    app = create_chat_app(model)
    out = app.invoke({"messages": [HumanMessage("hi")]}, context=DEMO)
    assert out["messages"][-1].content == "[demo] (answered directly) You said: hi"
    assert model.calls == []


def progress(chunks: list[Any]) -> list[str]:
    """Event names of `(namespace, event)` chunks, checking they come from the tools node."""
    assert all(namespace[0].startswith("tools:") for namespace, _ in chunks)
    return [event["event"] for _, event in chunks]


def test_loop_progress_reaches_the_apps_custom_stream() -> None:
    chunks = list(
        make_chat_app().stream(
            {"messages": [HumanMessage(MULTI_STEP)]},
            context=DEMO,
            stream_mode="custom",
            subgraphs=True,
        )
    )
    assert progress(chunks) == LOOP_EVENTS


async def test_loop_progress_reaches_the_apps_custom_stream_async() -> None:
    stream = make_chat_app().astream(
        {"messages": [HumanMessage(MULTI_STEP)]},
        context=DEMO,
        stream_mode="custom",
        subgraphs=True,
    )
    assert progress([chunk async for chunk in stream]) == LOOP_EVENTS
