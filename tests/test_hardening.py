"""Promises under attack: nesting, odd characters, bad input, closing streams, bounds."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from agentloop_graph import Context, create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel, Slow
from tests.support.databases import fresh_postgres_database
from tests.support.helpers import OUTPUT_KEYS, Run, numbered

ODD = "nul\x00 and a lone surrogate \ud800 here"


def plan_then(answer: Any, steps: int = 2) -> ScriptedChatModel:
    return ScriptedChatModel(
        responses=lambda call: (
            numbered(*(f"s{i}" for i in range(1, steps + 1))) if call.node == "planner" else answer
        )
    )


# 1. Nested in a checkpointed parent, finished steps are durable whatever its durability.


class SlowSaver(InMemorySaver):
    """A checkpointer whose writes take a while, as a remote database's can."""

    def put(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)
        return super().put(*args, **kwargs)

    async def aput(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)
        return await super().aput(*args, **kwargs)


class Parent(TypedDict, total=False):
    task: str
    steps: list[dict[str, Any]]
    status: str | None


def test_a_nested_loop_checkpoints_each_step_before_the_next(run: Run) -> None:
    saver = SlowSaver()
    config: RunnableConfig = {"configurable": {"thread_id": "nested"}}
    seen: list[int] = []

    def answer(call: ModelCall) -> str:
        if call.node == "planner":
            return numbered("a", "b", "c")
        if "Step 3/3" in call.prompt:
            # What a resume would find if the process died now.
            state = parent.get_state(config, subgraphs=True)
            seen.append(len(state.tasks[0].state.values["steps"]))
        return "ok"

    builder = StateGraph(Parent)
    builder.add_node("loop", create_agent_loop(ScriptedChatModel(responses=answer)))
    builder.add_edge(START, "loop")
    builder.add_edge("loop", END)
    parent = builder.compile(checkpointer=saver)
    out = run(parent, {"task": "t"}, config=config)  # the parent's default durability
    assert out["status"] == "completed"
    assert seen == [2]


# 2. Any text the loop stores is storable by every checkpointer.


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


def odd_model() -> ScriptedChatModel:
    return ScriptedChatModel(
        responses={
            "planner": [numbered(f"plan {ODD}", "b")],
            "executor": [RuntimeError(f"boom {ODD}"), f"result {ODD}", "fine"],
            "adapter": [f"again {ODD}"],
            "summariser": [f"answer {ODD}"],
        }
    )


def test_odd_characters_are_stored_by_postgres(postgres_url: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(postgres_url) as saver:
        saver.setup()
        graph = create_agent_loop(odd_model(), checkpointer=saver)
        config: RunnableConfig = {"configurable": {"thread_id": "odd"}}
        out = graph.invoke({"messages": [HumanMessage(f"task {ODD}")]}, config)
        stored = graph.get_state(config).values
    assert out["status"] == "completed"
    assert [s["status"] for s in out["steps"]] == ["adapted", "completed"]
    for text in (out["task"], out["answer"], out["steps"][0]["error"], stored["summary"]):
        assert "\x00" not in text and "\ud800" not in text and "\ufffd" in text
    assert stored["steps"] == out["steps"]


async def test_odd_characters_are_stored_by_postgres_async(postgres_url: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async with AsyncPostgresSaver.from_conn_string(postgres_url) as saver:
        await saver.setup()
        graph = create_agent_loop(odd_model(), checkpointer=saver)
        config: RunnableConfig = {"configurable": {"thread_id": "odd"}}
        out = await graph.ainvoke({"task": f"task {ODD}"}, config)
    assert out["status"] == "completed" and "\ufffd" in out["answer"]


# 3. A refused input leaves the thread as it was.


def test_a_refused_input_writes_nothing(run: Run) -> None:
    saver = InMemorySaver()
    graph = create_agent_loop(plan_then("ok"), checkpointer=saver, summarise_with_model=False)
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}
    for bad in ({"task": " "}, {"task": 3}, {}, {"messages": [AIMessage("hello")]}, "a task"):
        with pytest.raises(ValueError, match=r"task|input"):
            run(graph, bad, config=config)
    assert graph.get_state(config).next == ()
    assert list(saver.list(config)) == []
    assert run(graph, {"task": "good"}, config=config)["status"] == "completed"


# 4. Closing a blocking stream stops the run at once.


def test_closing_a_blocking_stream_stops_the_run() -> None:
    model = plan_then(Slow(1.0, "ok"), steps=3)
    stream = create_agent_loop(model).stream({"task": "t"}, stream_mode="custom")
    for event in stream:
        if event["event"] == "agentic.step_started":
            break
    closed_at = time.monotonic()
    stream.close()  # type: ignore[attr-defined]
    assert time.monotonic() - closed_at < 0.2
    calls = len(model.calls)
    time.sleep(1.5)
    assert len(model.calls) == calls <= 2  # the plan and at most the call in flight


# 5. The task is the input's `task`, else its last human message, exactly.


def test_a_reused_thread_runs_the_task_the_input_names(run: Run) -> None:
    graph = create_agent_loop(plan_then("ok"), checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "reused"}}
    assert run(graph, {"task": "Task A"}, config=config)["task"] == "Task A"
    out = run(graph, {"messages": [HumanMessage("Task B"), AIMessage("ok")]}, config=config)
    assert out["task"] == "Task B"
    with pytest.raises(ValueError, match="task is missing"):
        run(graph, {"messages": [AIMessage("hello")]}, config=config)


# 6. Tool rounds and tool calls per round are bounded.


def rounds_model(rounds: int, calls_per_round: int = 1) -> ScriptedChatModel:
    def call(round_: int, index: int) -> dict[str, Any]:
        return {"name": "count", "args": {"n": round_ * 1000 + index}, "id": f"{round_}-{index}"}

    replies: list[Any] = [
        AIMessage("", tool_calls=[call(r, i) for i in range(calls_per_round)])
        for r in range(rounds)
    ]
    return ScriptedChatModel(responses={"planner": [numbered("a")], "executor": [*replies, "done"]})


def counting_tool(ran: list[int]) -> Any:
    @tool
    def count(n: int) -> str:
        """Count a call."""
        ran.append(n)
        return "counted"

    return count


@pytest.mark.parametrize("limit", [0, 1, 3])
def test_max_tool_rounds_bounds_rounds_of_tool_execution(run: Run, limit: int) -> None:
    ran: list[int] = []
    model = rounds_model(rounds=limit)  # exactly `limit` rounds, then an answer
    graph = create_agent_loop(
        model, tools=[counting_tool(ran)], max_tool_rounds=limit, summarise_with_model=False
    )
    out = run(graph, {"task": "t"})
    assert len(ran) == limit and out["steps"][0]["status"] == "completed"
    # The last round's results reached the model.
    if limit:
        assert model.calls_from("executor")[-1].messages[-1].text == "counted"


def test_one_round_too_many_fails_without_running_it(run: Run) -> None:
    ran: list[int] = []
    model = rounds_model(rounds=3)
    graph = create_agent_loop(
        model,
        tools=[counting_tool(ran)],
        max_tool_rounds=2,
        max_adaptations=0,
        summarise_with_model=False,
    )
    out = run(graph, {"task": "t"})
    assert len(ran) == 2
    assert out["steps"][0]["error"] == "the tool loop ran out of rounds (2)"


def test_tool_calls_in_one_reply_are_bounded(run: Run) -> None:
    ran: list[int] = []
    model = rounds_model(rounds=1, calls_per_round=100)
    graph = create_agent_loop(model, tools=[counting_tool(ran)], summarise_with_model=False)
    out = run(graph, {"task": "t"})
    assert len(ran) == 16 and out["steps"][0]["status"] == "completed"
    refused = model.calls_from("executor")[-1].messages[-84:]
    assert all(m.status == "error" and "at most 16" in m.text for m in refused)


# 9. Bad settings get a clear error naming them.


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("step_timeout", float("nan")),
        ("step_timeout", float("inf")),
        ("model_timeout", float("nan")),
        ("model_timeout", float("inf")),
        ("approve_plan", "no"),
        ("summarise_with_model", "no"),
        ("max_tool_rounds", -1),
    ],
)
def test_invalid_options_name_themselves(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=option):
        create_agent_loop(ScriptedChatModel(), **{option: value})


@pytest.mark.parametrize(
    "context",
    [{"approve_plan": "no"}, {"summarise_with_model": "no"}, {"step_timeout": float("inf")}],
)
def test_invalid_context_fields_name_themselves(context: dict[str, Any]) -> None:
    (name,) = context
    model = plan_then("ok")
    with pytest.raises(ValueError, match=name):
        create_agent_loop(model).invoke({"task": "t"}, context=context)
    assert model.calls == []


def test_unknown_context_fields_and_tools_none_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown fields \['max_step'\]"):
        create_agent_loop(plan_then("ok")).invoke({"task": "t"}, context={"max_step": 2})
    with pytest.raises(TypeError, match="tools must be a list"):
        create_agent_loop(ScriptedChatModel(), tools=None)  # type: ignore[arg-type]


def test_plan_approval_without_a_checkpointer_is_refused_before_planning(run: Run) -> None:
    model = plan_then("ok")
    with pytest.raises(ValueError, match="approve_plan needs a checkpointer"):
        run(create_agent_loop(model, approve_plan=True), {"task": "t"})
    with pytest.raises(ValueError, match="approve_plan needs a checkpointer"):
        run(create_agent_loop(model), {"task": "t"}, context=Context(approve_plan=True))
    assert model.calls == []


# 10. A long task is stored once, and what is derived from it is capped.


def test_a_long_task_is_stored_once(tmp_path: Path) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    task = "Plan it: " + "word " * 200_000  # 1 MB
    database = tmp_path / "checkpoints.db"
    with SqliteSaver.from_conn_string(str(database)) as saver:
        graph = create_agent_loop(plan_then("ok", steps=4), checkpointer=saver)
        out = graph.invoke({"task": task}, {"configurable": {"thread_id": "long"}})
    assert out["status"] == "completed" and out["task"] == task.strip()
    assert database.stat().st_size < 4_000_000  # one copy, not one per checkpoint
    assert len(out["summary"]) < 2_100 and len(out["messages"][-1].text) < 16_500
    assert set(out) == OUTPUT_KEYS


# 11. Tools get the attempt's deadline and can stop in time.


def test_a_cooperative_tool_stops_at_the_attempts_deadline(run: Run) -> None:
    stopped = threading.Event()

    @tool
    def crawl(config: RunnableConfig) -> str:
        """Crawl until the attempt's deadline."""
        deadline = config["configurable"]["deadline"]
        while time.time() < deadline - 0.05:
            time.sleep(0.01)
        stopped.set()
        return "crawled what there was time for"

    call = {"name": "crawl", "args": {}, "id": "1"}
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a")],
            "executor": [AIMessage("", tool_calls=[call]), "done in time"],
        }
    )
    graph = create_agent_loop(
        model, tools=[crawl], step_timeout=0.5, max_adaptations=0, summarise_with_model=False
    )
    started = time.monotonic()
    out = run(graph, {"task": "t"})
    assert stopped.is_set() and 0.3 < time.monotonic() - started < 1.5
    assert out["steps"][0]["status"] == "completed"  # it stopped before the deadline


def test_a_durability_without_a_checkpointer_is_no_warning(run: Run) -> None:
    # As Agent Servers pass it for stateless runs; warnings are errors in this suite.
    out = run(create_agent_loop(plan_then("ok")), {"task": "t"}, durability="sync")
    assert out["status"] == "completed"
