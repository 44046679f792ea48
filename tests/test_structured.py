"""Structured plans from any model, typed final answers, and plan approval as a typed form."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pydantic import BaseModel
from typing_extensions import TypedDict

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel
from tests.support.helpers import Run, numbered


class Steps(BaseModel):
    steps: list[str]


def plan_schema_of(call: ModelCall) -> dict[str, Any]:
    """The plan schema a planner call was held to (the schema's tool, as LangChain binds it)."""
    (tool,) = call.tool_schemas
    return dict(tool["function"]["parameters"])


def test_any_model_with_structured_output_gets_a_json_plan(run: Run) -> None:
    model = ScriptedChatModel(responses={"planner": [{"steps": ["look", "leap"]}], None: "ok"})
    out = run(create_agent_loop(model), {"task": "t"})
    assert out["plan"] == ["look", "leap"] and out["status"] == "completed"
    schema = plan_schema_of(model.calls_from("planner")[0])
    assert schema["properties"]["steps"]["items"] == {"type": "string"}


def test_a_plan_may_come_as_a_schema_instance(run: Run) -> None:
    model = ScriptedChatModel(responses={"planner": [Steps(steps=["a", "b"])], None: "ok"})
    assert run(create_agent_loop(model), {"task": "t"})["plan"] == ["a", "b"]


def test_a_parallel_plan_asks_for_dependencies(run: Run) -> None:
    plan = {
        "steps": [
            {"description": "fetch A", "depends_on": []},
            {"description": "fetch B", "depends_on": []},
            {"description": "compare", "depends_on": [1, 2]},
        ]
    }
    model = ScriptedChatModel(responses={"planner": [plan], None: "ok"})
    loop = create_agent_loop(model, parallel=True, max_steps=5)
    out = run(loop, {"task": "t"})
    assert out["dependencies"] == [[], [], [1, 2]]
    item = plan_schema_of(model.calls_from("planner")[0])["properties"]["steps"]["items"]
    assert item["properties"]["depends_on"]["maxItems"] == 4
    assert item["required"] == ["description", "depends_on"]


def test_plan_ready_says_how_the_plan_came() -> None:
    for answer, plan_format in (({"steps": ["a"]}, "json"), (numbered("a"), "text")):
        model = ScriptedChatModel(responses={"planner": [answer], None: "ok"})
        events = list(create_agent_loop(model).stream({"task": "t"}, stream_mode="custom"))
        assert events[0]["event"] == "agentic.plan_ready"
        assert events[0]["plan_format"] == plan_format and events[0]["steps"] == ["a"]


class ProseOnly(BaseChatModel):
    """A chat model with no tool calling, so no structured output: it answers in prose."""

    @property
    def _llm_type(self) -> str:
        return "prose"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(numbered("a", "b")))])


def test_a_model_without_structured_output_plans_in_text(run: Run) -> None:
    out = run(create_agent_loop(ProseOnly(), summarise_with_model=False), {"task": "t"})
    assert out["plan"] == ["a", "b"] and out["status"] == "completed"


class Picnic(BaseModel):
    place: str
    guests: int


class PicnicDict(TypedDict):
    place: str
    guests: int


PICNIC_SCHEMA = {
    "title": "picnic",
    "description": "A picnic.",
    "type": "object",
    "properties": {"place": {"type": "string"}, "guests": {"type": "integer"}},
    "required": ["place", "guests"],
}


def typed_model(answer: object) -> ScriptedChatModel:
    return ScriptedChatModel(
        responses={"planner": [numbered("look")], "summariser": [answer], None: "ok"}
    )


@pytest.mark.parametrize("shape", [Picnic, PicnicDict, PICNIC_SCHEMA])
def test_a_typed_final_answer(run: Run, shape: Any) -> None:
    model = typed_model({"place": "the park", "guests": 4})
    out = run(create_agent_loop(model, response_format=shape), {"task": "t"})
    expected = (
        Picnic(place="the park", guests=4)
        if shape is Picnic
        else {
            "place": "the park",
            "guests": 4,
        }
    )
    assert out["structured_response"] == expected
    assert out["answer"] == '{"place": "the park", "guests": 4}'
    assert out["messages"][-1].content == out["answer"]
    assert len(model.calls_from("summariser")[0].tool_schemas) == 1


def test_a_final_answer_that_does_not_fit_is_none(run: Run) -> None:
    model = typed_model({"place": "the park"})  # no guests
    out = run(create_agent_loop(model, response_format=Picnic), {"task": "t"})
    assert out["structured_response"] is None and out["answer"] is None
    assert out["status"] == "completed"


def test_no_step_no_typed_answer(run: Run) -> None:
    model = ScriptedChatModel(responses={"planner": [RuntimeError("down")]})
    out = run(create_agent_loop(model, response_format=Picnic), {"task": "t"})
    assert out["status"] == "failed" and out["structured_response"] is None
    assert [c.node for c in model.calls] == ["planner"]


def test_without_response_format_there_is_no_structured_response(run: Run) -> None:
    out = run(create_agent_loop("demo"), {"task": "Plan a picnic"})
    assert "structured_response" not in out


def test_the_demo_model_answers_in_the_shape_asked() -> None:
    out = create_agent_loop("demo", response_format=Picnic).invoke({"task": "Plan a picnic"})
    assert isinstance(out["structured_response"], Picnic)


# Plan approval: a typed form, and revisions too.


def approval_loop(**options: Any) -> tuple[Any, ScriptedChatModel, dict[str, Any]]:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("bake", "frost", "serve"), numbered("buy a cake", "serve")],
            "executor": lambda call: (
                RuntimeError("the oven is broken") if "bake" in call.prompt else "done"
            ),
            None: "ok",
        }
    )
    loop = create_agent_loop(model, approve_plan=True, checkpointer=InMemorySaver(), **options)
    return loop, model, {"configurable": {"thread_id": "form"}}


def test_the_approval_interrupt_describes_its_form(run: Run) -> None:
    loop, _, config = approval_loop()
    (pending,) = run(loop, {"task": "t"}, config=config)["__interrupt__"]
    schema = pending.response_schema
    assert schema["properties"]["decision"]["enum"] == ["approve", "edit", "reject"]
    assert schema["required"] == ["decision"]


@pytest.mark.parametrize(
    ("answer", "steps", "status"),
    [
        ({"decision": "approve"}, ["bake", "frost", "serve"], "partial"),
        ({"decision": "edit", "steps": ["frost", "serve"]}, ["frost", "serve"], "completed"),
        ({"decision": "reject"}, [], "cancelled"),
    ],
)
def test_a_forms_answer_resumes_the_run(
    run: Run, answer: dict[str, Any], steps: list[str], status: str
) -> None:
    loop, _, config = approval_loop(max_adaptations=0)
    run(loop, {"task": "t"}, config=config)
    out = run(loop, Command(resume=answer), config=config)
    assert [s["description"] for s in out["steps"]] == steps and out["status"] == status


def revised(run: Run) -> tuple[Any, dict[str, Any], Any]:
    """A run whose first step failed and whose plan was revised, paused for the revision."""
    loop, _, config = approval_loop(max_adaptations=0, max_replans=1)
    run(loop, {"task": "t"}, config=config)
    out = run(loop, Command(resume=True), config=config)
    (pending,) = out["__interrupt__"]
    return loop, config, pending


def test_a_revised_plan_is_asked_for_before_its_steps_run(run: Run) -> None:
    loop, config, pending = revised(run)
    assert pending.value["revision"] == 1
    assert pending.value["reason"] == "RuntimeError: the oven is broken"
    assert pending.value["plan"] == ["bake", "buy a cake", "serve"]
    assert [s["description"] for s in loop.get_state(config).values["steps"]] == ["bake"]
    out = run(loop, Command(resume=True), config=config)
    assert [s["description"] for s in out["steps"]] == ["bake", "buy a cake", "serve"]
    assert out["status"] == "partial"


def test_an_edited_revision_replaces_the_steps_not_started(run: Run) -> None:
    loop, config, _ = revised(run)
    out = run(loop, Command(resume=["order a cake"]), config=config)
    assert out["plan"] == ["bake", "order a cake"]
    assert [s["status"] for s in out["steps"]] == ["failed", "completed"]


def test_a_rejected_revision_cancels_keeping_the_ended_steps(run: Run) -> None:
    loop, config, _ = revised(run)
    out = run(loop, Command(resume={"decision": "reject"}), config=config)
    assert out["status"] == "cancelled"
    assert [s["description"] for s in out["steps"]] == ["bake"]
    assert out["summary"] == "t: Completed 0/3 steps, 1 failed. The revised plan was rejected."
