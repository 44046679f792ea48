"""`system_prompt=` and `prompts=`: what each phase's model receives, and bad templates."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import PrivateAttr

from agentloop_graph import Context, create_agent_loop
from agentloop_graph.prompts import ADAPTER, EXECUTOR, PLANNER, SUMMARISER
from agentloop_graph.testing import ModelCall, ScriptedChatModel
from tests.support.helpers import Run, numbered
from tests.support.snapshots import SNAPSHOTS

SYSTEM = "You are a careful assistant. Answer in British English."


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def scripted() -> ScriptedChatModel:
    """Every phase once, a tool loop and an adaptation: planner, executor (a tool call, then
    its answer), executor (fails), adapter, executor (the revised step), summariser."""
    return ScriptedChatModel(
        responses={
            "planner": [numbered("Multiply six by seven", "Write it down")],
            "executor": [
                AIMessage(
                    "", tool_calls=[{"name": "multiply", "args": {"a": 6, "b": 7}, "id": "c1"}]
                ),
                "The product is 42.",
                RuntimeError("no pen"),
                "Written in pencil.",
            ],
            "adapter": ["Write it down in pencil"],
            "summariser": ["Six times seven is 42, written in pencil."],
        }
    )


PHASES = ["planner", "executor", "executor", "executor", "adapter", "executor", "summariser"]


def run_scripted(run: Run, **options: Any) -> list[ModelCall]:
    model = scripted()
    output = run(create_agent_loop(model, tools=[multiply], **options), {"task": "Note 6*7"})
    assert [step["status"] for step in output["steps"]] == ["completed", "adapted"]
    assert [call.node for call in model.calls] == PHASES
    return model.calls


def shape(messages: list[BaseMessage]) -> list[tuple[str, str]]:
    return [(type(message).__name__, message.text) for message in messages]


def test_system_message_precedes_every_phases_prompt(run: Run) -> None:
    plain = run_scripted(run)
    framed = run_scripted(run, system_prompt=SYSTEM)
    assert all(call.is_async == run.is_async for call in framed)  # type: ignore[attr-defined]
    for without, with_system in zip(plain, framed, strict=True):
        first, *rest = with_system.messages
        assert isinstance(first, SystemMessage) and first.text == SYSTEM
        assert isinstance(rest[0], HumanMessage)
        assert shape(rest) == shape(without.messages)
    # The tool loop's second call carries the whole conversation after the system message.
    assert [type(m) for m in framed[2].messages] == [
        SystemMessage,
        HumanMessage,
        AIMessage,
        ToolMessage,
    ]


def test_system_prompt_survives_per_run_overrides(run: Run) -> None:
    model = ScriptedChatModel(
        responses={"planner": [numbered("a", "b")], "executor": ["done"], "summariser": ["ok"]}
    )
    loop = create_agent_loop(model, system_prompt=SYSTEM)
    run(loop, {"task": "t"}, context=Context(max_steps=1))
    assert [call.node for call in model.calls] == ["planner", "executor", "summariser"]
    assert all(call.messages[0] == SystemMessage(SYSTEM) for call in model.calls)


def test_system_prompt_is_not_a_template(run: Run) -> None:
    model = ScriptedChatModel(responses={"planner": [numbered("a")], None: lambda call: "done"})
    run(create_agent_loop(model, system_prompt="Reply as JSON: {task} {"), {"task": "t"})
    assert all(call.messages[0].text == "Reply as JSON: {task} {" for call in model.calls)


def test_custom_templates_replace_only_the_phases_given(run: Run) -> None:
    default = run_scripted(run)
    custom = run_scripted(
        run,
        prompts={
            "planner": "Plan {task!r} in at most {max_steps} steps, as a numbered list.",
            "adapter": "{description} failed with {error}. Another way? {{one line}}",
        },
    )
    by_phase = list(zip(PHASES, default, custom, strict=True))
    for phase, before, after in by_phase:
        if phase in {"executor", "summariser"}:
            assert shape(after.messages) == shape(before.messages)
        else:
            assert after.prompt != before.prompt
    assert custom[0].prompt == "Plan 'Note 6*7' in at most 10 steps, as a numbered list."
    assert (
        custom[4].prompt
        == "Write it down failed with RuntimeError: no pen. Another way? {one line}"
    )


def test_custom_executor_and_summariser_templates(run: Run) -> None:
    custom = run_scripted(
        run,
        system_prompt=SYSTEM,
        prompts={
            "executor": "{task} / {description} ({step:>2} of {total})",
            "summariser": "Results:\n{results}",
        },
    )
    executor = [call for call in custom if call.node == "executor"]
    assert [call.messages[1].text for call in executor] == [
        "Note 6*7 / Multiply six by seven ( 1 of 2)",
        "Note 6*7 / Multiply six by seven ( 1 of 2)",
        "Note 6*7 / Write it down ( 2 of 2)",
        "Note 6*7 / Write it down in pencil ( 2 of 2)",
    ]
    assert custom[-1].messages[1].text == (
        "Results:\n1. Multiply six by seven: The product is 42.\n"
        "2. Write it down: Written in pencil."
    )
    assert all(call.messages[0].text == SYSTEM for call in custom)


class InputRecorder(ScriptedChatModel):
    """Records what the loop hands the model, before LangChain converts it to messages."""

    _inputs: list[object] = PrivateAttr(default_factory=list)

    @property
    def inputs(self) -> list[object]:
        """What each call was given, in order."""
        return list(self._inputs)

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> AIMessage:
        self._inputs.append(input)
        return super().invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> AIMessage:
        self._inputs.append(input)
        return await super().ainvoke(input, config, **kwargs)


SNAPSHOT_SCRIPT = {
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
"""The script `test_snapshots.py` renders its golden prompts with."""


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"system_prompt": None, "prompts": None},
        {"prompts": {}},
        {
            "prompts": {
                "planner": PLANNER,
                "executor": EXECUTOR,
                "adapter": ADAPTER,
                "summariser": SUMMARISER,
            }
        },
    ],
    ids=["unset", "none", "empty", "defaults"],
)
def test_default_prompts_are_plain_text_as_snapshotted(run: Run, options: dict[str, Any]) -> None:
    model = InputRecorder(responses=SNAPSHOT_SCRIPT)
    run(create_agent_loop(model, max_steps=4, **options), {"task": "File my taxes"})
    # Text, not messages: the cheapest input for LangChain, as the benchmarks measure it.
    assert len(model.inputs) == 8
    assert all(isinstance(given, str) for given in model.inputs)
    compared: list[str] = []
    seen: Counter[str | None] = Counter()
    for call in model.calls:
        assert len(call.messages) == 1
        seen[call.node] += 1
        snapshot = SNAPSHOTS / f"prompt_{call.node}_{seen[call.node]}.txt"
        if snapshot.exists():
            assert call.prompt == snapshot.read_text(), snapshot.name
            compared.append(snapshot.name)
    assert len(compared) == len(list(SNAPSHOTS.glob("prompt_*.txt")))


def test_demo_model_runs_with_a_system_prompt_and_custom_templates(run: Run) -> None:
    loop = create_agent_loop(
        "demo",
        system_prompt=SYSTEM,
        prompts={
            "planner": "Task: {task}\nList at most {max_steps} steps, numbered.",
            "executor": "Task: {task}\nStep {step}/{total}: {description}\nGo.",
            "adapter": "Task: {task}\nStep {step}/{total}: {description}\nIt failed: {error}",
            "summariser": "Task: {task}\n{results}\nAnswer the task.",
        },
    )
    output = run(loop, {"task": "Plan a picnic, fail step 2"})
    assert output["status"] == "completed"
    assert [step["status"] for step in output["steps"]][:2] == ["completed", "adapted"]
    assert output["answer"]


ALL_FIELDS = {
    "planner": ["task", "max_steps"],
    "executor": ["task", "step", "total", "description", "recent"],
    "adapter": ["task", "step", "total", "description", "error"],
    "summariser": ["task", "results"],
}
REQUIRED = {
    "planner": ["task"],
    "executor": ["task", "description"],
    "adapter": ["description", "error"],
    "summariser": ["results"],
}


def template(*fields: str) -> str:
    return " ".join(f"{{{field}}}" for field in fields)


@pytest.mark.parametrize(
    ("phase", "field"),
    [(phase, field) for phase, fields in REQUIRED.items() for field in fields],
)
def test_a_template_without_a_required_field_is_rejected(phase: str, field: str) -> None:
    others = [name for name in ALL_FIELDS[phase] if name != field]
    with pytest.raises(ValueError, match=rf"prompts\['{phase}'\] lacks .*\['{field}'\]"):
        create_agent_loop(ScriptedChatModel(), prompts={phase: template(*others)})


def test_every_missing_field_is_named() -> None:
    with pytest.raises(ValueError, match=r"prompts\['adapter'\] .*\['description', 'error'\]"):
        create_agent_loop(ScriptedChatModel(), prompts={"adapter": "Try again: {task}"})


@pytest.mark.parametrize("phase", list(REQUIRED))
def test_required_fields_alone_are_enough(run: Run, phase: str) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a")],
            "executor": [RuntimeError("x"), "done"],
            "adapter": ["a again"],
            "summariser": ["ok"],
        }
    )
    loop = create_agent_loop(model, prompts={phase: "Only: " + template(*REQUIRED[phase])})
    assert run(loop, {"task": "t"})["status"] == "completed"
    prompts = [call.prompt for call in model.calls_from(phase)]
    assert prompts and all(prompt.startswith("Only: ") for prompt in prompts)


@pytest.mark.parametrize(
    ("phase", "text", "match"),
    [
        ("planner", "{task} {foo}", r"prompts\['planner'\] names unknown fields \['foo'\]"),
        ("planner", "{task} {results}", r"prompts\['planner'\] names unknown fields \['results'\]"),
        ("executor", "{task} {description} {error}", r"prompts\['executor'\] .*\['error'\]"),
        ("adapter", "{description} {error} {recent}", r"prompts\['adapter'\] .*\['recent'\]"),
        ("summariser", "{results} {Task}", r"prompts\['summariser'\] .*\['Task'\]"),
        ("summariser", "{results} {step:{width}}", r"unknown fields \['step', 'width'\]"),
    ],
)
def test_a_template_naming_an_unknown_field_is_rejected(phase: str, text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_agent_loop(ScriptedChatModel(), prompts={phase: text})


def test_the_unknown_field_error_lists_the_phases_fields() -> None:
    with pytest.raises(ValueError, match=r"planner supplies \['max_steps', 'task'\]"):
        create_agent_loop(ScriptedChatModel(), prompts={"planner": "{task} {foo}"})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Task: {task", r"prompts\['planner'\] is not a valid template: expected '}'"),
        ("Task: {task} }", r"prompts\['planner'\] is not a valid template: Single '}'"),
        ("Task: {task} {", r"prompts\['planner'\] is not a valid template"),
        ("Task: {task} {}", r"prompts\['planner'\] has the field \{\}"),
        ("Task: {0}", r"prompts\['planner'\] has the field \{0\}"),
        ("Task: {task.upper}", r"prompts\['planner'\] has the field \{task.upper\}"),
        ("Task: {task[0]}", r"prompts\['planner'\] has the field \{task\[0\]\}"),
        ("Task: {task!x}", r"prompts\['planner'\] cannot be rendered"),
        ("Task: {task:d}", r"prompts\['planner'\] cannot be rendered"),
    ],
)
def test_a_malformed_template_is_rejected(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_agent_loop(ScriptedChatModel(), prompts={"planner": text})


def test_an_unknown_phase_is_rejected_naming_the_known_ones() -> None:
    with pytest.raises(
        ValueError,
        match=r"prompts names unknown phases \['plan', 'summarizer'\]; the phases are "
        r"\['planner', 'replanner', 'executor', 'adapter', 'summariser'\]",
    ):
        create_agent_loop(
            ScriptedChatModel(), prompts={"summarizer": "{results}", "plan": "{task}"}
        )


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"prompts": {"planner": None}}, TypeError, r"prompts\['planner'\] must be a string"),
        ({"prompts": "Task: {task}"}, TypeError, "prompts must be a mapping"),
        ({"system_prompt": 42}, TypeError, "system_prompt must be a string or None"),
        ({"system_prompt": SystemMessage("x")}, TypeError, "system_prompt must be a string"),
        ({"system_prompt": " \n"}, ValueError, "system_prompt must not be blank"),
    ],
)
def test_option_types_are_checked(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        create_agent_loop(ScriptedChatModel(), **options)


def test_one_graph_serves_concurrent_runs_with_its_prompts() -> None:
    model = ScriptedChatModel(
        responses=lambda call: numbered("a", "b") if call.node == "planner" else "done"
    )
    loop = create_agent_loop(model, system_prompt=SYSTEM, prompts={"summariser": "{results}"})

    async def both() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(loop.ainvoke({"task": t}) for t in ("x", "y"))))

    assert [out["status"] for out in asyncio.run(both())] == ["completed", "completed"]
    assert all(call.messages[0].text == SYSTEM for call in model.calls)
    assert [call.prompt for call in model.calls_from("summariser")] == [
        "1. a: done\n2. b: done"
    ] * 2
