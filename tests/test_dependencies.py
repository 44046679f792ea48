from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import AIMessage

from agentloop_graph.parsing import MAX_TEXT_CHARS
from agentloop_graph.plans import kept_dependencies, plan_schema, read_plan, ready_steps, renumber


def parse_dependency_plan(text: str, *, offset: int = 0) -> tuple[list[str], list[list[int]]]:
    plan = read_plan(AIMessage(text), parallel=True, offset=offset)
    return plan.steps, plan.dependencies


def parse_json_dependency_plan(
    text: str, *, offset: int = 0
) -> tuple[list[str], list[list[int]]] | None:
    plan = read_plan(AIMessage(text), parallel=True, offset=offset)
    return (plan.steps, plan.dependencies) if plan.format == "json" else None


def dependency_plan_schema(max_steps: int) -> dict[str, object]:
    return plan_schema(parallel=True, max_steps=max_steps)


def test_unmarked_text_plan_runs_in_sequence() -> None:
    text = "Here is the plan:\n1. Boil water\n2. Add tea\n3. Serve"
    assert parse_dependency_plan(text) == (["Boil water", "Add tea", "Serve"], [[], [1], [2]])


def test_once_a_step_is_marked_unmarked_steps_wait_for_nothing() -> None:
    text = "1. Fetch A\n2. Fetch B\n3. Compare (after 1, 2)\n4. Note the date"
    assert parse_dependency_plan(text) == (
        ["Fetch A", "Fetch B", "Compare", "Note the date"],
        [[], [], [1, 2], []],
    )


@pytest.mark.parametrize(
    "marker",
    [
        "(after 1, 3)",
        "(after 1 and 3)",
        "(after 1, and 3)",
        "(After Steps 1 & 3)",
        "(after step 1, step 3)",
        "(depends on 1, 3)",
        "(depends on: 1, 3)",
        "[after: 1, 3]",
        "[DEPENDS ON 1,3]",
        "(after 3, 1, 1)",
        "(after 1, 3).",
        "**(after 1, 3)**",
    ],
)
def test_marker_forms(marker: str) -> None:
    text = f"1. A\n2. B\n3. C\n4. Compare A and C {marker}"
    steps, dependencies = parse_dependency_plan(text)
    assert steps[3] == "Compare A and C"
    assert dependencies == [[], [], [], [1, 3]]


def test_single_step_and_none_markers() -> None:
    text = "1. A\n2. B (after step 1)\n3. C (depends on none)\n4. D - [depends on: 2]"
    assert parse_dependency_plan(text) == (["A", "B", "C", "D"], [[], [1], [], [2]])


def test_marker_only_at_the_end_of_a_step() -> None:
    text = "1. A\n2. Read (after 1) notes"
    assert parse_dependency_plan(text) == (["A", "Read (after 1) notes"], [[], [1]])


@pytest.mark.parametrize(
    ("marker", "wanted"),
    [("(after 2)", []), ("(after 3)", []), ("(after 0, 9)", []), ("(after 1, 2, 5)", [1])],
)
def test_self_later_and_missing_dependencies_are_dropped(marker: str, wanted: list[int]) -> None:
    assert parse_dependency_plan(f"1. A\n2. B {marker}\n3. C")[1] == [[], wanted, []]


def test_empty_plans() -> None:
    assert parse_dependency_plan("") == ([], [])
    assert parse_dependency_plan("<think>1. x</think>") == ([], [])
    assert parse_dependency_plan("1. (after 1)") == ([], [])


def test_revision_numbers_count_in_the_whole_plan() -> None:
    assert parse_dependency_plan("1. C\n2. D", offset=2) == (["C", "D"], [[2], [3]])
    text = "1. C (after 1)\n2. D (after 2, 3, 4)"
    assert parse_dependency_plan(text, offset=2) == (["C", "D"], [[1], [2, 3]])


def test_schema_asks_for_descriptions_and_dependencies() -> None:
    schema = dependency_plan_schema(4)
    steps = schema["properties"]["steps"]
    assert schema["required"] == ["steps"] and steps["minItems"] == 1
    assert steps["items"]["required"] == ["description", "depends_on"]
    # A step waits at most for every step before it.
    assert steps["items"]["properties"]["depends_on"]["maxItems"] == 3
    assert (
        dependency_plan_schema(1)["properties"]["steps"]["items"]["properties"]["depends_on"][
            "maxItems"
        ]
        == 0
    )


def _plan(*steps: object) -> str:
    return json.dumps({"steps": list(steps)})


def test_json_plan() -> None:
    text = _plan(
        {"description": "1. **Fetch** A", "depends_on": []},
        {"description": "Fetch B"},
        {"description": "Compare", "depends_on": [1, "2", 2.0, True, None, 2]},
        "Write it up",
        {"description": "Check", "depends_on": 3},
        {"description": "Loop", "depends_on": [6, 7, 0, -1]},
    )
    assert parse_json_dependency_plan(f"<think>hmm</think>{text}") == (
        ["Fetch A", "Fetch B", "Compare", "Write it up", "Check", "Loop"],
        [[], [], [1, 2], [], [3], []],
    )


def test_json_plan_with_offset_and_long_steps() -> None:
    text = _plan({"description": "x" * 5000, "depends_on": [1, 3, 4]})
    steps, dependencies = parse_json_dependency_plan(text, offset=3) or ([], [])
    assert len(steps[0]) == MAX_TEXT_CHARS
    assert dependencies == [[1, 3]]


@pytest.mark.parametrize(
    "text",
    [
        '{"plan": []}',
        '{"steps": "Boil water"}',
        _plan({"depends_on": [1]}),
        _plan(3),
        _plan(),
        _plan(""),
        '{"steps": [{"description": "Boil',
    ],
)
def test_a_json_answer_without_a_step_is_a_plan_of_none(text: str) -> None:
    # Never read as text instead: the lines of a JSON object are no steps.
    assert parse_json_dependency_plan(text) == ([], [])


@pytest.mark.parametrize("text", ["1. Boil water\n2. Add tea", "[1, 2]", "Sure: {...}"])
def test_not_a_json_plan(text: str) -> None:
    assert parse_json_dependency_plan(text) is None


def test_truncated_json_plan_keeps_complete_steps() -> None:
    text = _plan({"description": "A", "depends_on": []}, "B", {"description": "C"})
    cut = text[: text.index('"C"') + 2]
    assert parse_json_dependency_plan(cut) == (["A", "B"], [[], []])
    cut = text.replace('"B"', '{"description": "B", "depends_on": [1')[:-20]
    assert parse_json_dependency_plan(cut) == (["A"], [[]])
    assert parse_json_dependency_plan(text + "\nHope this helps!") == (["A", "B", "C"], [[]] * 3)


def test_ready_steps() -> None:
    dependencies = [[], [], [1, 2], [], [3]]
    assert ready_steps(dependencies, set(), set(), limit=10) == [1, 2, 4]
    assert ready_steps(dependencies, set(), set(), limit=2) == [1, 2]
    assert ready_steps(dependencies, set(), {1}, limit=2) == [2]
    assert ready_steps(dependencies, {1}, {2, 4}, limit=2) == []
    assert ready_steps(dependencies, {1, 2}, {4}, limit=3) == [3]
    assert ready_steps(dependencies, {1, 2, 3, 4}, set(), limit=1) == [5]
    assert ready_steps(dependencies, {1, 2, 3, 4, 5}, set(), limit=1) == []


def test_renumber_a_prefix_moves_nothing() -> None:
    assert renumber({1, 2}) == {}
    assert renumber(set()) == {}
    assert kept_dependencies([[], [1], [2]], {1, 2}) == [[], [1]]


def test_renumber_moves_ended_steps_first() -> None:
    dependencies = [[], [], [1], [3, 2], []]
    ended = {1, 3, 5}
    assert renumber(ended) == {1: 1, 3: 2, 5: 3}
    assert kept_dependencies(dependencies, ended) == [[], [1], []]
    revision = parse_dependency_plan("1. Retry B (after 2)\n2. Finish (after 3, 4)", offset=3)[1]
    assert kept_dependencies(dependencies, ended) + revision == [[], [1], [], [2], [3, 4]]


_LINE = st.one_of(
    st.text(max_size=30),
    st.builds(
        "{}. {} {}{} {}{}".format,
        st.integers(0, 12),
        st.text("ab *-", max_size=8),
        st.sampled_from(["(", "[", ""]),
        st.sampled_from(["after", "depends on:", "after step", "depends on"]),
        st.lists(st.integers(-2, 15), max_size=4).map(lambda xs: ", ".join(map(str, xs))),
        st.sampled_from([")", "]", ").", ""]),
    ),
)


def _assert_acyclic(steps: list[str], dependencies: list[list[int]], offset: int) -> None:
    assert len(dependencies) == len(steps)
    for number, deps in enumerate(dependencies, offset + 1):
        assert all(1 <= dep < number for dep in deps)
        assert deps == sorted(set(deps))


@given(st.lists(_LINE, max_size=12).map("\n".join), st.integers(0, 5))
def test_any_text_gives_an_acyclic_plan(text: str, offset: int) -> None:
    _assert_acyclic(*parse_dependency_plan(text, offset=offset), offset)


_ITEM = st.fixed_dictionaries(
    {"description": st.text(max_size=10), "depends_on": st.lists(st.integers(-3, 15), max_size=5)}
)


@given(st.lists(st.one_of(_ITEM, st.text(max_size=10)), max_size=10), st.integers(0, 5))
def test_any_json_plan_is_acyclic(items: list[object], offset: int) -> None:
    plan = parse_json_dependency_plan(_plan(*items), offset=offset)
    _assert_acyclic(*(plan or ([], [])), offset)
