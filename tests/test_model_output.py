"""Any model output ends in a well-formed run: arbitrary text, unicode, malformed tool calls,
megabytes (capped wherever it is kept)."""

from __future__ import annotations

import random
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from langchain_core.tools import tool

from agentloop_graph import create_agent_loop
from agentloop_graph.parsing import MAX_RESULT_CHARS, MAX_TEXT_CHARS
from agentloop_graph.testing import ModelCall, ScriptedChatModel
from tests.support.helpers import OUTPUT_KEYS, Run, numbered

STATUSES = {"completed", "partial", "failed"}


texts = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=50),
    st.sampled_from(["", " ", "\n\n", "<think>", "</think>", "1.", "Step 1:", "**"]),
)


answers = st.one_of(
    texts,
    st.builds(RuntimeError, texts),
    st.builds(
        lambda name, args: AIMessage("", tool_calls=[{"name": name, "args": args, "id": "x"}]),
        st.sampled_from(["add", "nope", ""]),
        st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=2),
    ),
)


def well_formed(out: dict[str, Any]) -> None:
    assert set(out) == OUTPUT_KEYS
    assert out["status"] in STATUSES
    assert isinstance(out["summary"], str) and out["summary"]
    assert len(out["steps"]) <= len(out["plan"])
    for step in out["steps"]:
        assert step["status"] in {"completed", "adapted", "failed"}
        assert len(step["result"]) <= MAX_RESULT_CHARS
        assert step["error"] is None or len(step["error"]) <= MAX_TEXT_CHARS


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=texts, script=st.lists(answers, max_size=12))
def test_any_model_output_ends_in_a_valid_run(plan: str, script: list[Any]) -> None:
    remaining = list(script)

    def respond(call: ModelCall) -> Any:
        if call.node == "planner":
            return plan
        return remaining.pop(0) if remaining else "fine"

    graph = create_agent_loop(
        ScriptedChatModel(responses=respond), tools=[add], max_steps=4, max_tool_rounds=2
    )
    well_formed(graph.invoke({"task": "anything"}))


def test_huge_outputs_are_capped(run: Run) -> None:
    # Random letters: one letter repeated would be a model repeating itself (a failure).
    huge = "".join(random.Random(0).choices(string.ascii_lowercase + " ", k=1_000_000))
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("y" * 100_000, "b")],
            "executor": [RuntimeError("e" * 100_000), huge, huge],
            "adapter": ["z" * 100_000],
            "summariser": ["done"],
        }
    )
    out = run(create_agent_loop(model), {"task": "t"})
    well_formed(out)
    first = out["steps"][0]
    assert len(first["description"]) == MAX_TEXT_CHARS
    assert len(first["adaptation"]) == MAX_TEXT_CHARS
    assert len(first["error"]) == MAX_TEXT_CHARS
    assert len(first["result"]) == MAX_RESULT_CHARS
    assert first["result"].endswith("characters, cut]")
