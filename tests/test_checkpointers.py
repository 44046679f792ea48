"""The loop on LangGraph's checkpointers: in memory, SQLite and PostgreSQL, sync and async.

Each backend gets the same guarantees: a run with an adapted step completes on a thread, the
thread's state holds the run's output, a checkpoint follows every node execution, and a loop
nested in a parent graph checkpoints into the parent's checkpointer, so an interrupted parent
run shows the loop's progress and resumes it, each step checkpointed before the next. Any
text the loop stores is storable (NUL and lone surrogates in PostgreSQL), and a long task
is stored once. PostgreSQL runs in a throwaway database (`tests/support/databases.py`);
without a server these tests skip, or fail under `CI=true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import StateSnapshot
from typing_extensions import TypedDict

from agentloop_graph import StepRecord, create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel, Slow
from tests.support.databases import fresh_postgres_database, unavailable
from tests.support.helpers import OUTPUT_KEYS, Run, numbered, plan_then

BACKENDS = ["memory", "sqlite", "postgres"]

CHECKPOINTS_OF_ADAPTED_RUN = [
    ("__start__",),
    ("planner",),
    ("executor",),
    ("adapter",),
    ("executor",),
    ("executor",),
    ("summariser",),
    (),
]
"""`next` of each checkpoint of the run below, oldest first: the input, then one checkpoint
after each node execution (planner, failed attempt, adapter, revised attempt, step 2,
summariser)."""


class Crash(BaseException):
    """Stands in for the process dying mid-call (think Ctrl-C).

    Not an `Exception`, so the loop cannot mistake it for a failed attempt.
    """


class ParentState(TypedDict, total=False):
    task: str
    status: str | None
    steps: list[StepRecord]


def durable(module: str) -> ModuleType:
    """Import a checkpointer module of the `durable` dependency group."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        unavailable(f"{module} is not installed (dependency group `durable`): {exc}")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def saver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCheckpointSaver[Any]]:
    """A sync checkpointer: `InMemorySaver`, `SqliteSaver` or `PostgresSaver`."""
    if request.param == "memory":
        yield InMemorySaver()
    elif request.param == "sqlite":
        sqlite = durable("langgraph.checkpoint.sqlite")
        with sqlite.SqliteSaver.from_conn_string(str(tmp_path / "checkpoints.db")) as saver:
            yield saver
    else:
        postgres = durable("langgraph.checkpoint.postgres")
        url = request.getfixturevalue("postgres_url")
        with postgres.PostgresSaver.from_conn_string(url) as saver:
            saver.setup()
            yield saver


@pytest.fixture(params=BACKENDS)
async def asaver(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """An async checkpointer: `InMemorySaver`, `AsyncSqliteSaver` or `AsyncPostgresSaver`."""
    if request.param == "memory":
        yield InMemorySaver()
    elif request.param == "sqlite":
        sqlite = durable("langgraph.checkpoint.sqlite.aio")
        async with sqlite.AsyncSqliteSaver.from_conn_string(
            str(tmp_path / "checkpoints.db")
        ) as saver:
            yield saver
    else:
        postgres = durable("langgraph.checkpoint.postgres.aio")
        url = request.getfixturevalue("postgres_url")
        async with postgres.AsyncPostgresSaver.from_conn_string(url) as saver:
            await saver.setup()
            yield saver


def new_thread() -> RunnableConfig:
    """A thread of its own: the PostgreSQL database is shared by the module's tests."""
    return {"configurable": {"thread_id": f"thread-{uuid.uuid4().hex}"}}


def adapting_model() -> ScriptedChatModel:
    """Two steps; the first attempt at step 1 fails and its revision succeeds."""
    return ScriptedChatModel(
        responses={
            "planner": [numbered("Gather notes", "Write report")],
            "executor": [RuntimeError("notes are locked"), "notes gathered", "report written"],
            "adapter": ["Gather notes from the backup"],
            "summariser": ["Report done."],
        }
    )


def assert_adapted_run(out: dict[str, Any]) -> None:
    assert out["status"] == "completed"
    assert out["answer"] == "Report done."
    assert [(s["status"], s["result"], s["attempts"]) for s in out["steps"]] == [
        ("adapted", "notes gathered", 2),
        ("completed", "report written", 1),
    ]


def assert_state_holds(snapshot: StateSnapshot, out: dict[str, Any]) -> None:
    assert snapshot.next == ()
    assert {key: snapshot.values[key] for key in out} == out


def interrupting_model(interruption: Any) -> ScriptedChatModel:
    """Three steps; the first attempt at step 2 is interrupted, the resumed one succeeds."""
    return ScriptedChatModel(
        responses={
            "planner": [numbered("a", "b", "c")],
            "executor": ["ra", interruption, "rb", "rc"],
            "summariser": ["done"],
        }
    )


def parent_graph(loop: Any, checkpointer: BaseCheckpointSaver[Any]) -> Any:
    """A parent graph with the loop as a node; only the parent is given the checkpointer."""
    builder = StateGraph(ParentState)
    builder.add_node("loop", loop)
    builder.add_edge(START, "loop")
    builder.add_edge("loop", END)
    return builder.compile(checkpointer=checkpointer)


def loop_namespace(interrupted: StateSnapshot) -> str:
    """The nested loop's checkpoint namespace, checked against its interrupted state."""
    assert interrupted.next == ("loop",)
    (task,) = interrupted.tasks
    loop_state = task.state
    assert isinstance(loop_state, StateSnapshot)
    assert loop_state.next == ("executor",)
    assert [s["result"] for s in loop_state.values["steps"]] == ["ra"]
    namespace: str = loop_state.config["configurable"]["checkpoint_ns"]
    assert namespace.startswith("loop:")
    return namespace


def assert_resumed_nested_run(out: dict[str, Any], model: ScriptedChatModel) -> None:
    assert out["status"] == "completed"
    assert [s["result"] for s in out["steps"]] == ["ra", "rb", "rc"]
    # Only the interrupted attempt at step 2 ran twice.
    assert [call.node for call in model.calls] == [
        "planner",
        "executor",
        "executor",
        "executor",
        "executor",
        "summariser",
    ]


def namespace_of(config: RunnableConfig, namespace: str) -> RunnableConfig:
    return {"configurable": {**config["configurable"], "checkpoint_ns": namespace}}


NESTED_CHECKPOINTS = [
    ("__start__",),
    ("planner",),
    ("executor",),
    ("executor",),
    ("executor",),
    ("summariser",),
    (),
]
"""The nested loop's checkpoints after the resume: the interrupted attempt left none."""


def test_run_with_adapted_step_is_checkpointed_after_every_node(
    saver: BaseCheckpointSaver[Any],
) -> None:
    """Sync API: the run completes, the thread's state holds its output, and a checkpoint
    follows every node execution, each executor attempt included."""
    graph = create_agent_loop(adapting_model(), checkpointer=saver)
    config = new_thread()
    out = graph.invoke({"task": "Report"}, config)
    assert_adapted_run(out)
    assert_state_holds(graph.get_state(config), out)
    history = list(graph.get_state_history(config))
    assert [snapshot.next for snapshot in reversed(history)] == CHECKPOINTS_OF_ADAPTED_RUN


async def test_async_run_with_adapted_step_is_checkpointed_after_every_node(
    asaver: BaseCheckpointSaver[Any],
) -> None:
    """Async twin: the same run and checkpoints through `ainvoke` and an async checkpointer."""
    model = adapting_model()
    graph = create_agent_loop(model, checkpointer=asaver)
    config = new_thread()
    out = await graph.ainvoke({"task": "Report"}, config)
    assert_adapted_run(out)
    assert all(call.is_async for call in model.calls)
    assert_state_holds(await graph.aget_state(config), out)
    history = [snapshot async for snapshot in graph.aget_state_history(config)]
    assert [snapshot.next for snapshot in reversed(history)] == CHECKPOINTS_OF_ADAPTED_RUN


def test_nested_loop_checkpoints_into_the_parent_checkpointer(
    saver: BaseCheckpointSaver[Any],
) -> None:
    """A loop nested without a checkpointer uses its parent's: after a crash mid-step the
    parent's state shows the loop's progress, and resuming the parent finishes the loop
    without repeating the finished step or the planning."""
    model = interrupting_model(Crash("power cut"))
    app = parent_graph(create_agent_loop(model), saver)
    config = new_thread()
    with pytest.raises(Crash):
        app.invoke({"task": "T"}, config)
    namespace = loop_namespace(app.get_state(config, subgraphs=True))
    out = app.invoke(None, config)
    assert_resumed_nested_run(out, model)
    nested = app.get_state_history(namespace_of(config, namespace))
    assert [snapshot.next for snapshot in reversed(list(nested))] == NESTED_CHECKPOINTS


async def test_async_nested_loop_checkpoints_into_the_parent_checkpointer(
    asaver: BaseCheckpointSaver[Any],
) -> None:
    """Async twin: a run cancelled inside step 2 (the stream closed early) resumes the same way."""
    model = interrupting_model(Slow(60, "too late"))
    app = parent_graph(create_agent_loop(model), asaver)
    config = new_thread()
    stream = app.astream({"task": "T"}, config, stream_mode="custom", subgraphs=True)
    async with contextlib.aclosing(stream):
        async for _namespace, event in stream:
            if event["event"] == "agentic.step_started" and event["step"] == 2:
                break
    namespace = loop_namespace(await app.aget_state(config, subgraphs=True))
    out = await app.ainvoke(None, config)
    assert_resumed_nested_run(out, model)
    nested = app.aget_state_history(namespace_of(config, namespace))
    assert [snapshot.next async for snapshot in nested][::-1] == NESTED_CHECKPOINTS


class SlowSaver(InMemorySaver):
    """A checkpointer whose writes take a while, as a remote database's can."""

    def put(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)
        return super().put(*args, **kwargs)

    async def aput(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)
        return await super().aput(*args, **kwargs)


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

    builder = StateGraph(ParentState)
    builder.add_node("loop", create_agent_loop(ScriptedChatModel(responses=answer)))
    builder.add_edge(START, "loop")
    builder.add_edge("loop", END)
    parent = builder.compile(checkpointer=saver)
    out = run(parent, {"task": "t"}, config=config)  # the parent's default durability
    assert out["status"] == "completed"
    assert seen == [2]


ODD = "nul\x00 and a lone surrogate \ud800 here"


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
        config = new_thread()
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
        config = new_thread()
        out = await graph.ainvoke({"task": f"task {ODD}"}, config)
    assert out["status"] == "completed" and "\ufffd" in out["answer"]


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


def test_a_durability_without_a_checkpointer_is_no_warning(run: Run) -> None:
    # As Agent Servers pass it for stateless runs; warnings are errors in this suite.
    out = run(create_agent_loop(plan_then("ok")), {"task": "t"}, durability="sync")
    assert out["status"] == "completed"
