"""Bounded cost: run budgets checked before every model call, answer caps, stalls."""

from __future__ import annotations

import time
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import tool

from agentloop_graph import Budget, Context, create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel, Slow
from tests.support.helpers import Run, numbered


def steps_model(steps: int = 3, usage: int = 0, latency: float = 0.0) -> ScriptedChatModel:
    """Plans `steps` steps and answers every call, each reply reporting `usage` tokens."""

    def answer(call: ModelCall) -> Any:
        text = numbered(*(f"s{i}" for i in range(1, steps + 1))) if call.node == "planner" else "ok"
        reply = AIMessage(
            text,
            usage_metadata={"input_tokens": usage, "output_tokens": 0, "total_tokens": usage},
        )
        return Slow(latency, reply) if latency else reply

    return ScriptedChatModel(responses=answer)


def complete_event(graph: Any, graph_input: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    events = list(graph.stream(graph_input, stream_mode="custom", **kwargs))
    assert events[-1]["event"] == "agentic.task_complete"
    return events[-1]


@pytest.mark.parametrize(
    ("limit", "statuses", "answered"),
    [
        # plan + 3 steps + answer = 5 calls
        (5, ["completed"] * 3, True),
        (4, ["completed"] * 3, False),  # only the answer is refused
        (3, ["completed", "completed", "failed"], False),
        (2, ["completed", "failed"], False),
        (1, ["failed"], False),
    ],
)
def test_model_call_budget_edges(run: Run, limit: int, statuses: list[str], answered: bool) -> None:
    model = steps_model()
    out = run(create_agent_loop(model, budget=Budget(max_model_calls=limit)), {"task": "t"})
    assert len(model.calls) == limit
    assert [s["status"] for s in out["steps"]] == statuses
    assert (out["answer"] is not None) is answered
    if answered:
        assert out["status"] == "completed" and "Stopped" not in out["summary"]
        return
    assert out["summary"].endswith("Stopped: model calls budget spent.")
    if statuses[-1] == "failed":
        assert out["steps"][-1]["error"] == "budget exhausted: model calls"
    expected = "completed" if "failed" not in statuses else "partial"
    assert out["status"] == (expected if "completed" in statuses else "failed")


def test_a_budget_stop_starts_no_adaptation_and_no_later_step(run: Run) -> None:
    model = ScriptedChatModel(
        responses={"planner": [numbered("a", "b", "c")], "executor": [RuntimeError("no")]}
    )
    out = run(create_agent_loop(model, budget=Budget(max_model_calls=2)), {"task": "t"})
    # The plan, then step 1's attempt fails; its adaptation would be call 3.
    assert [call.node for call in model.calls] == ["planner", "executor"]
    (step,) = out["steps"]
    assert step["status"] == "failed" and step["error"] == "budget exhausted: model calls"
    assert out["status"] == "failed"
    assert out["summary"] == "t: Completed 0/3 steps, 1 failed. Stopped: model calls budget spent."


def test_token_budget_stops_once_spent(run: Run) -> None:
    model = steps_model(steps=4, usage=100)
    out = run(create_agent_loop(model, budget=Budget(max_tokens=250)), {"task": "t"})
    # 100 after the plan, 200 after step 1, 300 after step 2: step 3 is refused.
    assert len(model.calls) == 3
    assert [s["status"] for s in out["steps"]] == ["completed", "completed", "failed"]
    assert out["steps"][-1]["error"] == "budget exhausted: tokens"
    assert out["summary"].endswith("Stopped: tokens budget spent.")
    assert out["usage"]["total_tokens"] == 300


def test_time_budget_stops_once_spent(run: Run) -> None:
    model = steps_model(steps=5, latency=0.15)
    started = time.monotonic()
    out = run(create_agent_loop(model, budget=Budget(max_seconds=0.4)), {"task": "t"})
    assert time.monotonic() - started < 1.5
    assert out["steps"][-1]["error"] == "budget exhausted: time"
    assert out["summary"].endswith("Stopped: time budget spent.")
    assert out["status"] == "partial" and out["answer"] is None


def test_the_budget_counts_every_call_of_a_tool_loop(run: Run) -> None:
    @tool
    def look(query: str) -> str:
        """Look something up."""
        return f"found {query}"

    calls = [
        AIMessage("", tool_calls=[{"name": "look", "args": {"query": f"q{i}"}, "id": str(i)}])
        for i in range(3)
    ]
    model = ScriptedChatModel(responses={"planner": [numbered("a")], "executor": [*calls, "done"]})
    graph = create_agent_loop(model, tools=[look], budget=Budget(max_model_calls=3))
    out = run(graph, {"task": "t"})
    assert [call.node for call in model.calls] == ["planner", "executor", "executor"]
    assert out["steps"][0]["error"] == "budget exhausted: model calls"


def test_budget_per_run_through_context_and_reported(run: Run) -> None:
    graph = create_agent_loop(steps_model(usage=10))
    out = run(graph, {"task": "t"}, context={"budget": {"max_model_calls": 2}})
    assert [s["status"] for s in out["steps"]] == ["completed", "failed"]
    full = run(graph, {"task": "t"})
    assert full["status"] == "completed"
    event = complete_event(graph, {"task": "t"}, context=Context(budget=Budget(max_model_calls=3)))
    assert event["budget"]["limits"] == {
        "max_model_calls": 3,
        "max_tokens": None,
        "max_seconds": None,
    }
    spent = event["budget"]["spent"]
    assert spent["model_calls"] == 3 and spent["tokens"] == 30 and spent["seconds"] >= 0


def test_unbudgeted_runs_report_their_spending() -> None:
    event = complete_event(create_agent_loop(steps_model(usage=7)), {"task": "t"})
    assert event["budget"]["limits"] == dict.fromkeys(
        ("max_model_calls", "max_tokens", "max_seconds")
    )
    assert event["budget"]["spent"]["model_calls"] == 5
    assert event["budget"]["spent"]["tokens"] == 35


@pytest.mark.parametrize(
    ("limits", "name"),
    [
        ({"max_model_calls": 0}, "max_model_calls"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_seconds": 0}, "max_seconds"),
        ({"max_seconds": float("nan")}, "max_seconds"),
        ({"max_model_calls": 1.5}, "max_model_calls"),
    ],
)
def test_invalid_budgets_name_the_limit(limits: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Budget(**limits)
    with pytest.raises(ValueError, match=name):
        create_agent_loop(ScriptedChatModel(), budget=limits)  # type: ignore[arg-type]
    graph = create_agent_loop(steps_model())
    with pytest.raises(ValueError, match=name):
        graph.invoke({"task": "t"}, context={"budget": limits})


def test_a_budget_with_an_unknown_limit_names_it() -> None:
    graph = create_agent_loop(steps_model())
    with pytest.raises(ValueError, match=r"unknown limits \['max_calls'\]; Budget has"):
        graph.invoke({"task": "t"}, context={"budget": {"max_calls": 3}})


def test_a_model_repeating_itself_fails_the_attempt(run: Run) -> None:
    loop = "1.1.1: " * 300
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a")],
            "executor": [loop, "a real answer"],
            "adapter": ["a, said once"],
            "summariser": ["done"],
        }
    )
    out = run(create_agent_loop(model), {"task": "t"})
    (step,) = out["steps"]
    assert step["status"] == "adapted" and step["error"] == "the model repeated itself"
    assert step["result"] == "a real answer"


def test_an_identical_tool_call_is_answered_not_run_again(run: Run) -> None:
    ran: list[str] = []

    @tool
    def send(to: str) -> str:
        """Send a message."""
        ran.append(to)
        return f"sent to {to}"

    call = {"name": "send", "args": {"to": "bob"}, "id": "1"}
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a")],
            "executor": [
                AIMessage("", tool_calls=[call]),
                AIMessage("", tool_calls=[{**call, "id": "2"}]),
                "done",
            ],
        }
    )
    out = run(create_agent_loop(model, tools=[send], summarise_with_model=False), {"task": "t"})
    assert ran == ["bob"]
    assert out["steps"][0]["status"] == "completed"
    repeated = model.calls_from("executor")[2].messages[-1]
    assert repeated.status == "error" and "already made" in repeated.text


@pytest.mark.parametrize("revision", ["Open the door", "open the  door.", "Kick it"])
def test_an_adapter_proposing_nothing_new_ends_the_step(run: Run, revision: str) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("Open the door")],
            "executor": [RuntimeError("locked"), RuntimeError("still locked")],
            "adapter": ["Kick it", revision],
        }
    )
    out = run(
        create_agent_loop(model, max_adaptations=3, summarise_with_model=False), {"task": "t"}
    )
    (step,) = out["steps"]
    assert step["status"] == "failed"
    assert step["error"] == "the adapter proposed no new approach"
    # A new attempt only for a new revision: the first attempt and the "Kick it" one.
    assert len(model.calls_from("executor")) == 2 == step["attempts"]
