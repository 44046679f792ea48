"""`build_agent_loop`: the uncompiled graph that `create_agent_loop` compiles, in the form
Temporal's LangGraph plugin runs (nodes made as `add_node` makes them from functions)."""

from __future__ import annotations

# The one import from LangGraph's internals the loop relies on: if it moves, this fails first.
from langgraph._internal._runnable import RunnableCallable
from langgraph.graph import StateGraph

from agentloop_graph import Context, build_agent_loop, create_agent_loop
from tests.support.helpers import GRAPH_NODES


def test_each_call_builds_a_new_uncompiled_graph() -> None:
    first, second = build_agent_loop("demo"), build_agent_loop("demo")
    assert isinstance(first, StateGraph) and first is not second
    assert first.context_schema is Context


def test_nodes_pair_a_blocking_and_an_async_body_and_run_as_activities() -> None:
    builder = build_agent_loop("demo")
    assert set(builder.nodes) == GRAPH_NODES - {"__start__", "__end__"}
    for spec in builder.nodes.values():
        node = spec.runnable
        assert isinstance(node, RunnableCallable)
        assert node.func is not None and node.afunc is not None
        assert spec.metadata == {"execute_in": "activity"}


def test_the_compiled_loop_is_the_same_graph() -> None:
    compiled = build_agent_loop("demo").compile()
    loop = create_agent_loop("demo")
    assert compiled.get_graph().draw_mermaid() == loop.get_graph().draw_mermaid()
    out = compiled.invoke({"task": "Plan a picnic"})
    assert out["status"] == "completed" and len(out["steps"]) == 4
