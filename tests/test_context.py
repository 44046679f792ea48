"""Per-run settings through `context=`."""

from __future__ import annotations

from agentloop_graph import Context, create_agent_loop
from agentloop_graph.testing import ScriptedChatModel, Slow
from tests.support.helpers import Run, numbered


def three_step_model() -> ScriptedChatModel:
    return ScriptedChatModel(
        responses=lambda call: numbered("a", "b", "c") if call.node == "planner" else "ok"
    )


def test_context_overrides_for_one_run_only(run: Run) -> None:
    model = three_step_model()
    graph = create_agent_loop(model)
    short = run(graph, {"task": "t"}, context=Context(max_steps=1, summarise_with_model=False))
    assert short["plan"] == ["a"] and short["status"] == "partial" and short["answer"] is None
    full = run(graph, {"task": "t"})
    assert full["plan"] == ["a", "b", "c"] and full["answer"] == "ok"


def test_context_as_dict_and_unset_fields_keep_factory_values(run: Run) -> None:
    model = three_step_model()
    graph = create_agent_loop(model, max_steps=2, summarise_with_model=False)
    out = run(graph, {"task": "t"}, context={"max_adaptations": 0})
    assert out["plan"] == ["a", "b"] and out["answer"] is None


def test_context_model_string(run: Run) -> None:
    factory_model = ScriptedChatModel()
    graph = create_agent_loop(factory_model)
    out = run(graph, {"task": "Plan a picnic"}, context={"model": "demo"})
    assert out["status"] == "completed"
    assert out["answer"].startswith("[demo]")
    assert factory_model.calls == []


def test_context_adaptations_and_timeout(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a")],
            "executor": [Slow(2.0, "late"), RuntimeError("again"), "third time"],
            "adapter": ["a2", "a3"],
        }
    )
    graph = create_agent_loop(model, summarise_with_model=False)
    out = run(graph, {"task": "t"}, context=Context(max_adaptations=2, step_timeout=0.2))
    (step,) = out["steps"]
    assert step["status"] == "adapted" and step["attempts"] == 3
    assert step["error"] == "RuntimeError: again"


def test_studio_sees_every_context_field_with_a_description() -> None:
    schema = create_agent_loop(ScriptedChatModel()).get_context_jsonschema()
    assert set(schema["properties"]) == {
        "model",
        "max_steps",
        "max_adaptations",
        "max_replans",
        "parallel",
        "max_parallel",
        "step_timeout",
        "summarise_with_model",
        "approve_plan",
        "tools",
        "budget",
    }
    assert all(field.get("description") for field in schema["properties"].values())
