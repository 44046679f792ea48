from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage

from agentloop_graph.parsing import clean_answer
from agentloop_graph.plans import parse_plan, read_plan


def parse_json_plan(text: str) -> list[str] | None:
    """The steps of a plan written as JSON, or None if the answer is not JSON."""
    plan = read_plan(AIMessage(text), parallel=False)
    return plan.steps if plan.format == "json" else None


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("1. Boil water\n2. Add tea", ["Boil water", "Add tea"]),
        ("1) Boil water\n2) Add tea", ["Boil water", "Add tea"]),
        ("Step 1: Boil water\nStep 2: Add tea", ["Boil water", "Add tea"]),
        ("step 1 - Boil water\nSTEP 2 - Add tea", ["Boil water", "Add tea"]),
        ("**Step 1:** Boil water\n**Step 2:** Add tea", ["Boil water", "Add tea"]),
        ("1. **Boil** water\n2. __Add__ tea", ["Boil water", "Add tea"]),
        ("1. **Gather**: data\n   - a sub-point\n2. Write", ["Gather: data", "Write"]),
        ("### 1. Boil water\n### 2. Add tea", ["Boil water", "Add tea"]),
        ("- 1. Boil water\n- 2. Add tea", ["Boil water", "Add tea"]),
        (
            "Sure! Here is a plan for you:\n\n1. Boil water\n2. Add tea\n\nLet me know!",
            ["Boil water", "Add tea"],
        ),
        ("<think>1. not a step\n2. nor this</think>\n1. Boil water", ["Boil water"]),
        ("<THINK>hmm</THINK>1. Boil water", ["Boil water"]),
        ("1. Boil water\n<think>cut off mid-thought 2. x", ["Boil water"]),
        ("Boil water\n\n  Add tea  \n", ["Boil water", "Add tea"]),
        ("- Boil water\n* Add tea\n+ Serve", ["Boil water", "Add tea", "Serve"]),
        ("1. 1.5 litres of water\n2. Add tea", ["1.5 litres of water", "Add tea"]),
        ("1.\n2. Add tea", ["Add tea"]),
        ("", []),
        ("   \n\n", []),
        ("<think>only thoughts</think>", []),
        ("<think>never closed 1. x\n2. y", []),
    ],
)
def test_parse_plan(text: str, steps: list[str]) -> None:
    assert parse_plan(text) == steps


def test_parse_plan_keeps_numbers_in_step_text() -> None:
    assert parse_plan("1. Read chapters 3 and 4\n2. Summarise 2023") == [
        "Read chapters 3 and 4",
        "Summarise 2023",
    ]


def test_clean_answer_strips_reasoning_and_space() -> None:
    assert clean_answer("<think>\nlet me see\n</think>\n\n  The answer.  ") == "The answer."
    assert clean_answer("<think>only reasoning") == ""


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ('{"steps": ["Boil water", "Add tea"]}', ["Boil water", "Add tea"]),
        ('{"steps": ["1. Boil water", "Step 2: **Add** tea"]}', ["Boil water", "Add tea"]),
        ('<think>hm</think>{"steps": ["a"]}', ["a"]),
        ('{"steps": ["a", "b \\"quoted\\"", "c is cut', ["a", 'b "quoted"']),
        # A JSON answer is never read as text: without text steps it has none.
        ('{"steps": []}', []),
        ('{"steps": [1, 2]}', []),
        ('{"plan": ["a"]}', []),
        ('{"steps": ["a", "b', ["a"]),
        ("1. Boil water", None),
        ("", None),
    ],
)
def test_parse_json_plan(text: str, steps: list[str] | None) -> None:
    assert parse_json_plan(text) == steps
