"""Golden snapshots: the graph's drawing and every rendered prompt.

Run with UPDATE_SNAPSHOTS=1 to rewrite them after an intended change, then review the diff.
"""

from __future__ import annotations

import pytest

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ScriptedChatModel
from tests.support.helpers import GRAPH_NODES, numbered
from tests.support.snapshots import check_snapshot


def test_mermaid_drawing() -> None:
    graph = create_agent_loop(ScriptedChatModel())
    check_snapshot("graph.mmd", graph.get_graph().draw_mermaid())


def test_nodes_and_edges() -> None:
    drawing = create_agent_loop(ScriptedChatModel()).get_graph()
    assert set(drawing.nodes) == GRAPH_NODES
    edges = {(e.source, e.target, e.conditional) for e in drawing.edges}
    assert edges == {
        ("__start__", "planner", False),
        ("planner", "executor", True),
        ("planner", "summariser", True),
        ("executor", "executor", True),
        ("executor", "adapter", True),
        ("executor", "summariser", True),
        ("executor", "planner", True),
        ("adapter", "executor", True),
        ("adapter", "summariser", True),
        ("adapter", "planner", True),
        ("summariser", "__end__", False),
    }


@pytest.fixture(scope="module")
def prompts() -> dict[str, str]:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("Gather receipts", "Fill in the form", "Check totals", "File it")],
            "executor": [
                "Found 12 receipts.",
                RuntimeError("form not found"),
                "Filled.",
                "Checked.",
                "Filed.",
            ],
            "adapter": ["Download the form from the tax office site, then fill it in"],
            "summariser": ["Taxes filed."],
        }
    )
    create_agent_loop(model, max_steps=4).invoke({"task": "File my taxes"})
    rendered: dict[str, str] = {}
    for call in model.calls:
        key = call.node or "unknown"
        index = sum(1 for name in rendered if name.startswith(key))
        rendered[f"{key}_{index + 1}"] = call.prompt
    return rendered


@pytest.mark.parametrize(
    "name",
    [
        "planner_1",
        "executor_1",
        "executor_2",
        "adapter_1",
        "executor_3",
        "executor_5",
        "summariser_1",
    ],
)
def test_rendered_prompt(prompts: dict[str, str], name: str) -> None:
    check_snapshot(f"prompt_{name}.txt", prompts[name])


def test_rendered_replanner_prompt() -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [
                numbered("Gather receipts", "Fill in the form", "Check totals", "File it"),
                numbered("Ask an accountant to file it"),
            ],
            "executor": ["Found 12 receipts.", RuntimeError("form not found"), "Filed."],
            "summariser": ["Taxes filed."],
        }
    )
    loop = create_agent_loop(model, max_steps=4, max_adaptations=0, max_replans=1)
    loop.invoke({"task": "File my taxes"})
    check_snapshot("replanner_prompt.txt", model.calls_from("planner")[1].prompt)
