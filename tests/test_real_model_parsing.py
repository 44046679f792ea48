"""The parsers on answers a real model wrote, saved as fixtures (no model needed).

Each file under `fixtures/real_model/` is SmolLM2-135M-Instruct's raw reply at temperature 0
(served by `tests.support.fake_ollama.RealModel`, with `num_predict` 128) to a prompt from
`agentloop_graph.prompts`:

- `plan_trailing_prose.txt`: the planner prompt for "Plan a short picnic in the park"
  (at most 3 steps): six numbered steps, then prose cut off at the token limit.
- `plan_step_prefixes.txt`: the planner prompt for "Explain how to brew good coffee":
  `1.` then `Step 1:` ... `Step 10:` lines, most of them one repeated phrase.
- `plan_json_overlong.txt`: the planner prompt for "Organise a team offsite for ten people"
  held to `PLAN_SCHEMA` (as `ChatOllama` asks): ten steps, each numbered by the model.
- `plan_json_cut.txt`: the same with a 48-token limit: JSON cut off mid-string.
- `step_bullets.txt`: the executor prompt for step 2/3 "Research the company" of "Prepare for
  a job interview": an echoed `Step 2/3:` header, then `*` bullets, cut off.

Limiting a plan to `max_steps` is the loop's job, so these tests look at parse results only.
"""

from __future__ import annotations

import re
from pathlib import Path

from langchain_core.messages import AIMessage

from agentloop_graph.parsing import clean_answer
from agentloop_graph.plans import parse_plan, read_plan


def parse_json_plan(text: str) -> list[str] | None:
    """The steps of a plan written as JSON, or None if the answer is not JSON."""
    plan = read_plan(AIMessage(text), parallel=False)
    return plan.steps if plan.format == "json" else None


FIXTURES = Path(__file__).parent / "fixtures" / "real_model"
NUMBERING = re.compile(r"^\s*(?:step\s*)?\d+\s*[.):]", re.IGNORECASE)
MARKDOWN = re.compile(r"^\s*[-*+>#]|\*\*|__")


def reply(name: str) -> str:
    """A saved raw reply."""
    return (FIXTURES / name).read_text()


def assert_clean_steps(steps: list[str]) -> None:
    """Non-empty steps without numbering, markdown decoration or dangling colons."""
    assert steps
    for step in steps:
        assert step == step.strip() and step
        assert not NUMBERING.match(step), step
        assert not MARKDOWN.search(step), step
        assert not step.endswith(":"), step


def test_numbered_plan_ignores_the_prose_after_it() -> None:
    steps = parse_plan(reply("plan_trailing_prose.txt"))
    assert_clean_steps(steps)
    assert len(steps) == 6
    assert steps[0].startswith("Choose a suitable location")
    assert not any("Please note" in step for step in steps)


def test_plan_mixing_numbers_and_step_prefixes() -> None:
    steps = parse_plan(reply("plan_step_prefixes.txt"))
    assert_clean_steps(steps)
    assert len(steps) == 11
    assert steps[1].startswith("Brewing good coffee involves")


def test_json_plan_keeps_every_step() -> None:
    steps = parse_json_plan(reply("plan_json_overlong.txt"))
    assert steps is not None
    assert len(steps) == 10
    assert all(step == step.strip() and step for step in steps)


def test_json_plan_steps_carry_no_numbering() -> None:
    steps = parse_json_plan(reply("plan_json_overlong.txt"))
    assert steps is not None
    assert_clean_steps(steps)


def test_json_plan_cut_off_keeps_its_complete_steps() -> None:
    assert parse_json_plan(reply("plan_json_cut.txt")) == [
        "Define a team structure",
        "Choose a team",
        "Meet a team",
        "Meet a team at a team",
    ]


def test_step_answer_with_bullets() -> None:
    text = reply("step_bullets.txt")
    answer = clean_answer(text)
    assert answer == text.strip() and answer.startswith("Step 2/3:")
    # Read as a plan, the bullets become steps without their markers.
    steps = parse_plan(text)
    assert len(steps) == 7
    assert not any(MARKDOWN.search(step) for step in steps)
