"""Your own agents do the steps: `executor=` and a roster the planner assigns (`executors=`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command

from agentloop_graph import Budget, StepAgent, create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel, Slow
from tests.support.helpers import Run, numbered


def planner(plan: str | dict[str, Any] | None = None) -> ScriptedChatModel:
    """The loop's own model: plans (two steps unless told), and writes the final answer."""
    answer = numbered("look", "leap") if plan is None else plan
    return ScriptedChatModel(responses={"planner": [answer], None: lambda call: "all done"})


def step_of(prompt: str) -> str:
    """`Step i/N: <description>` is the second line of a step's prompt."""
    return prompt.split("\n")[1]


def echo_graph(label: str = "graph") -> Any:
    """A plain compiled graph with a `messages` key that answers each step in one node."""

    def answer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(f"{label} did {step_of(state['messages'][-1].text)}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return builder.compile(name=label)


@tool
def measure(thing: str) -> str:
    """Measure a thing."""
    return f"{thing} is 3 m long"


def tool_agent(**options: Any) -> tuple[Any, ScriptedChatModel]:
    """A `create_agent` agent that calls `measure` once per step, then answers."""

    def answer(call: ModelCall) -> Any:
        if call.messages[-1].type == "tool":
            return f"measured: {call.messages[-1].text}"
        step = step_of(call.messages[-1].text)
        return AIMessage("", tool_calls=[{"name": "measure", "args": {"thing": step}, "id": step}])

    model = ScriptedChatModel(responses=answer, report_usage=True)
    return create_agent(model, tools=[measure], name="measurer", **options), model


def test_a_create_agent_agent_does_every_step(run: Run) -> None:
    agent, model = tool_agent()
    loop_model = planner()
    out = run(create_agent_loop(loop_model, executor=agent), {"task": "t"})
    assert out["status"] == "completed"
    assert [s["result"] for s in out["steps"]] == [
        "measured: Step 1/2: look is 3 m long",
        "measured: Step 2/2: leap is 3 m long",
    ]
    assert [s["agent"] for s in out["steps"]] == ["measurer", "measurer"]
    # Two calls per step (the tool call, the answer), counted as the loop's own.
    assert [c.node for c in model.calls] == ["model"] * 4
    assert all(c.is_async == run.is_async for c in model.calls)  # type: ignore[attr-defined]
    agent_tokens = sum(s["usage"]["total_tokens"] for s in out["steps"])
    assert agent_tokens > 0 and out["usage"]["total_tokens"] == agent_tokens
    assert [c.node for c in loop_model.calls] == ["planner", "summariser"]


def test_a_plain_compiled_graph_is_an_agent_too(run: Run) -> None:
    out = run(create_agent_loop(planner(), executor=echo_graph()), {"task": "t"})
    assert [s["result"] for s in out["steps"]] == [
        "graph did Step 1/2: look",
        "graph did Step 2/2: leap",
    ]
    assert {s["agent"] for s in out["steps"]} == {"graph"}


def test_one_agent_is_no_roster_the_planner_is_told_of(run: Run) -> None:
    model = planner()
    out = run(create_agent_loop(model, executor=echo_graph("writer")), {"task": "t"})
    prompt = model.calls_from("planner")[0].prompt
    assert "agent" not in prompt and "[writer]" not in prompt
    assert out["plan"] == ["look", "leap"]


def test_events_name_the_agent() -> None:
    loop = create_agent_loop(planner(), executor=echo_graph("writer"))
    events = list(loop.stream({"task": "t"}, stream_mode="custom"))
    named = [e for e in events if e["event"].startswith("agentic.step_")]
    assert named and {e["agent"] for e in named} == {"writer"}
    assert "agents" not in events[0]  # no roster: the planner assigns nothing


def roster() -> list[Any]:
    return [
        StepAgent("researcher", "Finds facts.", echo_graph("researcher")),
        {"name": "writer", "description": "Writes prose.", "runnable": echo_graph("writer")},
    ]


def test_the_planner_is_told_the_roster_and_assigns_steps_in_text(run: Run) -> None:
    model = planner("1. [writer] draft\n2. [researcher] check\n3. [nobody] file\n4. print")
    out = run(create_agent_loop(model, executors=roster()), {"task": "t"})
    assert [s["agent"] for s in out["steps"]] == [
        "writer",
        "researcher",
        "researcher",
        "researcher",
    ]
    assert [s["description"] for s in out["steps"]] == ["draft", "check", "file", "print"]
    assert out["steps"][0]["result"] == "writer did Step 1/4: draft"
    prompt = model.calls_from("planner")[0].prompt
    assert "- researcher: Finds facts." in prompt and "- writer: Writes prose." in prompt


def test_a_structured_plan_assigns_steps_by_its_agent_field(run: Run) -> None:
    plan = {
        "steps": [
            {"description": "[writer] draft", "agent": "researcher"},  # the field wins
            {"description": "polish", "agent": "writer"},
        ]
    }
    model = planner(plan)
    loop = create_agent_loop(model, executors=roster())
    out = run(loop, {"task": "t"})
    assert [(s["description"], s["agent"]) for s in out["steps"]] == [
        ("draft", "researcher"),
        ("polish", "writer"),
    ]
    (call,) = model.calls_from("planner")
    schema = call.tool_schemas[0]["function"]["parameters"]
    agent_field = schema["properties"]["steps"]["items"]["properties"]["agent"]
    assert agent_field["enum"] == ["researcher", "writer"]
    loop = create_agent_loop(planner(plan), executors=roster())
    ready = next(iter(loop.stream({"task": "t"}, stream_mode="custom")))
    assert ready["agents"] == ["researcher", "writer"] and ready["plan_format"] == "json"


def test_a_parallel_run_calls_different_agents_at_once() -> None:
    def slow(label: str) -> Any:
        async def answer(state: MessagesState) -> dict[str, Any]:
            await asyncio.sleep(0.2)
            return {"messages": [AIMessage(f"{label} done")]}

        builder = StateGraph(MessagesState)
        builder.add_node("answer", answer)
        builder.add_edge(START, "answer")
        builder.add_edge("answer", END)
        return StepAgent(label, f"The {label}.", builder.compile())

    plan = "1. [a] one (after none)\n2. [b] two (after none)\n3. [a] three (after 1, 2)"
    loop = create_agent_loop(planner(plan), executors=[slow("a"), slow("b")], parallel=True)
    out = asyncio.run(loop.ainvoke({"task": "t"}))
    assert [s["agent"] for s in out["steps"]] == ["a", "b", "a"]
    first, second, _ = out["steps"]
    # Steps 1 and 2 overlapped: each began before the other ended.
    assert second["started_ms"] < first["started_ms"] + first["duration_ms"]
    assert out["dependencies"] == [[], [], [1, 2]]


def test_a_revised_step_goes_to_the_same_agent(run: Run) -> None:
    attempts: list[str] = []

    def flaky(state: MessagesState) -> dict[str, Any]:
        step = step_of(state["messages"][-1].text)
        attempts.append(step)
        if len(attempts) == 1:
            raise RuntimeError("the agent slipped")
        return {"messages": [AIMessage(f"did {step}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("work", flaky)
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    model = ScriptedChatModel(
        responses={"planner": [numbered("look")], "adapter": ["look twice"], None: "ok"}
    )
    out = run(create_agent_loop(model, executor=builder.compile(name="flaky")), {"task": "t"})
    assert attempts == ["Step 1/1: look", "Step 1/1: look twice"]
    (step,) = out["steps"]
    assert step["status"] == "adapted" and step["agent"] == "flaky"
    assert step["error"] == "RuntimeError: the agent slipped"


def test_replanning_tells_the_replanner_the_roster(run: Run) -> None:
    def failing(state: MessagesState) -> dict[str, Any]:
        raise RuntimeError("no such book")

    builder = StateGraph(MessagesState)
    builder.add_node("work", failing)
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    agents = [
        StepAgent("reader", "Reads books.", builder.compile()),
        StepAgent("writer", "Writes prose.", echo_graph("writer")),
    ]
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("[reader] read", "[reader] summarise"), "1. [writer] improvise"],
            None: "ok",
        }
    )
    loop = create_agent_loop(model, executors=agents, max_adaptations=0, max_replans=1)
    events = list(loop.stream({"task": "t"}, stream_mode="custom"))
    revised = next(e for e in events if e["event"] == "agentic.plan_revised")
    assert revised["agents"] == ["reader", "writer"]
    assert "- writer: Writes prose." in model.calls_from("planner")[1].prompt
    assert events[-1]["status"] == "partial"


def test_human_approval_of_a_tool_call_inside_a_step(run: Run) -> None:
    agent, _ = tool_agent(middleware=[HumanInTheLoopMiddleware(interrupt_on={"measure": True})])
    measured: list[str] = []
    original = measure.func

    def counting(thing: str) -> str:
        measured.append(thing)
        return original(thing)  # type: ignore[misc]

    measure.func = counting
    try:
        loop = create_agent_loop(
            planner(numbered("look")), executor=agent, checkpointer=InMemorySaver()
        )
        config = {"configurable": {"thread_id": "hitl"}}
        paused = run(loop, {"task": "t"}, config=config)
        (pending,) = paused["__interrupt__"]
        assert pending.value["action_requests"][0]["name"] == "measure"
        assert measured == []
        out = run(loop, Command(resume={"decisions": [{"type": "approve"}]}), config=config)
    finally:
        measure.func = original
    assert out["status"] == "completed"
    assert measured == ["Step 1/1: look"]  # the tool ran once, after approval
    assert out["steps"][0]["result"] == "measured: Step 1/1: look is 3 m long"


def test_the_agent_streams_under_the_executor_namespace() -> None:
    agent, _ = tool_agent()
    loop = create_agent_loop(planner(numbered("look")), executor=agent)
    namespaces = {
        namespace[0].split(":")[0]
        for namespace, _ in loop.stream({"task": "t"}, stream_mode="updates", subgraphs=True)
        if namespace
    }
    assert namespaces == {"executor"}
    loop = create_agent_loop(planner(numbered("look")), executor=agent)
    tokens = [
        metadata["langgraph_node"]
        for (namespace, (chunk, metadata)) in loop.stream(
            {"task": "t"}, stream_mode="messages", subgraphs=True
        )
        if namespace
    ]
    assert "model" in tokens


def test_a_spent_budget_stops_the_agent_before_its_next_model_call(run: Run) -> None:
    agent, model = tool_agent()
    # The plan, then the agent's first call (its tool call): the third call is refused.
    loop = create_agent_loop(planner(), executor=agent, budget=Budget(max_model_calls=2))
    out = run(loop, {"task": "t"})
    assert len(model.calls) == 1
    (step,) = out["steps"]
    assert step["status"] == "failed" and step["error"] == "budget exhausted: model calls"
    assert out["summary"].endswith("Stopped: model calls budget spent.")


def test_step_timeout_abandons_an_agent(run: Run) -> None:
    model = ScriptedChatModel(responses=lambda call: Slow(5, "too late"))
    slow_agent = create_agent(model, name="slow")
    loop = create_agent_loop(planner(numbered("look")), executor=slow_agent, step_timeout=0.3)
    out = run(loop, {"task": "t"})
    (step,) = out["steps"]
    assert step["status"] == "failed" and "timed out after 0.3 s" in step["error"]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"executor": "an agent"}, TypeError, "executor must be a Runnable"),
        ({"executor": echo_graph(), "tools": [measure]}, ValueError, "bring their own tools"),
        (
            {"executor": echo_graph(), "executors": [StepAgent("a", "", echo_graph())]},
            ValueError,
            "not both",
        ),
        ({"executors": [{"name": "a"}]}, TypeError, "lacks"),
        ({"executors": [StepAgent("", "", echo_graph())]}, ValueError, "non-empty"),
        (
            {"executors": [StepAgent("a", "", echo_graph()), StepAgent("a", "", echo_graph())]},
            ValueError,
            "more than once",
        ),
    ],
)
def test_bad_agents_are_refused(options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        create_agent_loop("demo", **options)
