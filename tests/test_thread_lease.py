"""One run per thread: a second run on a busy thread is refused before it does anything.

Two runs on one thread at the same instant (new tasks or resumes), through the blocking and
the async API on each checkpointer: one runs, the other raises `ThreadBusyError` before any
model call, and the thread takes runs again once the first ends, however it ends. SQLite
files and PostgreSQL hold the thread in the database's terms (a file lock, an advisory lock),
so two checkpointers on one database exclude each other as two processes do
(`tests/test_thread_lease_processes.py` runs those).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from agentloop_graph import ThreadBusyError, UnfinishedRunError, create_agent_loop
from agentloop_graph.testing import ModelCall, Response, ScriptedChatModel, Slow
from tests.support.databases import fresh_postgres_database
from tests.support.helpers import numbered

Saver = BaseCheckpointSaver[Any]
KINDS = ["memory", "sqlite", "sqlite-memory", "postgres", "postgres-pool"]
"""Every way the loop holds a thread: in process (`InMemorySaver`, in-memory SQLite), a file
lock, an advisory lock on a connection of its own or with the checkpointer's pool."""
SHARED_KINDS = ["sqlite", "postgres"]
"""Checkpointers that other processes reach through their own connections."""
EACH_HOLD = ["memory", *SHARED_KINDS]
"""One checkpointer per way of holding a thread."""
ONE_RUN = ["planner", "executor", "executor"]
"""The model calls of one run of `slow_model`'s plan (no summariser call)."""
LATENCY = 0.1
"""Seconds per executor answer: long enough for a second run to find the thread held."""
BUSY = "is in use by another run; try again when that run ends, or use another thread_id"
PG_OPTIONS = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
"""What the PostgreSQL checkpointers need of a connection (their `from_conn_string`'s)."""


class Crash(BaseException):
    """Stands in for the process dying mid-call: not an `Exception`, so no step catches it."""


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@contextlib.contextmanager
def sync_saver(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Saver]:
    """A new blocking checkpointer of `kind`; SQLite files and PostgreSQL ones share storage."""
    if kind == "memory":
        yield InMemorySaver()
    elif kind.startswith("sqlite"):
        db = ":memory:" if kind == "sqlite-memory" else str(tmp_path / "checkpoints.db")
        with SqliteSaver.from_conn_string(db) as saver:
            yield saver
    elif kind == "postgres":
        with PostgresSaver.from_conn_string(request.getfixturevalue("postgres_url")) as saver:
            saver.setup()
            yield saver
    else:
        url = request.getfixturevalue("postgres_url")
        with ConnectionPool(url, kwargs=PG_OPTIONS, max_size=4, open=False) as pool:
            saver = PostgresSaver(pool)
            saver.setup()
            yield saver


@contextlib.asynccontextmanager
async def async_saver(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Saver]:
    """`sync_saver`'s async twin."""
    if kind == "memory":
        yield InMemorySaver()
    elif kind.startswith("sqlite"):
        db = ":memory:" if kind == "sqlite-memory" else str(tmp_path / "checkpoints.db")
        async with AsyncSqliteSaver.from_conn_string(db) as saver:
            yield saver
    elif kind == "postgres":
        url = request.getfixturevalue("postgres_url")
        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            await saver.setup()
            yield saver
    else:
        url = request.getfixturevalue("postgres_url")
        async with AsyncConnectionPool(url, kwargs=PG_OPTIONS, max_size=4, open=False) as pool:
            saver = AsyncPostgresSaver(pool)
            await saver.setup()
            yield saver


@pytest.fixture(params=KINDS)
def saver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Saver]:
    with sync_saver(request.param, tmp_path, request) as opened:
        yield opened


@pytest.fixture(params=KINDS)
async def asaver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Saver]:
    async with async_saver(request.param, tmp_path, request) as opened:
        yield opened


def new_thread() -> RunnableConfig:
    """A thread of its own: the PostgreSQL database is shared by the module's tests."""
    return {"configurable": {"thread_id": f"thread-{uuid.uuid4().hex}"}}


def slow_model(
    crash: bool = False, started: threading.Event | None = None, latency: float = LATENCY
) -> ScriptedChatModel:
    """Two steps whose executor answers take `latency`; with `crash`, the first call at
    step 2 dies, leaving the thread's run unfinished. `started` is set at the first
    executor call."""
    crashed: list[bool] = []

    def execute(call: ModelCall) -> Response:
        if started is not None:
            started.set()
        if crash and "Step 2/" in call.prompt and not crashed:
            crashed.append(True)
            return Crash("power cut")
        return Slow(latency, "done")

    def plan(call: ModelCall) -> Response:
        return numbered("look", "answer")

    return ScriptedChatModel(responses={"planner": plan, "executor": execute})


def nodes(model: ScriptedChatModel) -> list[str | None]:
    return [call.node for call in model.calls]


def blocking_at_once(graph: Any, inputs: list[Any], config: RunnableConfig) -> list[Any]:
    """`graph.invoke` of each input on `config`'s thread, from threads that start together:
    each run's output or error."""
    together = threading.Barrier(len(inputs))

    def run(graph_input: Any) -> Any:
        together.wait()
        try:
            return graph.invoke(graph_input, config)
        except ThreadBusyError as busy:
            return busy

    with ThreadPoolExecutor(len(inputs)) as pool:
        return list(pool.map(run, inputs))


def one_done_one_busy(outcomes: list[Any]) -> dict[str, Any]:
    """The completed run's output, after checking the other run was refused."""
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(done) == 1 and len(refused) == 1, outcomes
    assert isinstance(refused[0], ThreadBusyError), refused[0]
    assert done[0]["status"] == "completed"
    return dict(done[0])


async def cancelled_in_step_1(graph: Any, config: RunnableConfig, started: threading.Event) -> None:
    """Leave `config`'s thread with an unfinished run: cancelled in step 1's model call."""
    run = asyncio.ensure_future(graph.ainvoke({"task": "the cancelled task"}, config))
    assert await asyncio.to_thread(started.wait, 5)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert (await graph.aget_state(config)).next == ("executor",)


def crashed_thread(graph: Any, config: RunnableConfig) -> None:
    """Leave `config`'s thread with an unfinished run (stopped at step 2)."""
    with pytest.raises(Crash):
        graph.invoke({"task": "the crashed task"}, config)
    assert graph.get_state(config).next == ("executor",)


async def test_two_async_runs_at_once_on_one_thread_one_is_refused_before_any_model_call(
    asaver: Saver,
) -> None:
    model = slow_model()
    graph = create_agent_loop(model, summarise_with_model=False, checkpointer=asaver)
    config = new_thread()
    outcomes = await asyncio.gather(
        graph.ainvoke({"task": "task alpha"}, config),
        graph.ainvoke({"task": "task beta"}, config),
        return_exceptions=True,
    )
    done = one_done_one_busy(outcomes)
    assert nodes(model) == ONE_RUN
    assert done["task"] in model.calls[0].prompt
    assert (await graph.aget_state(config)).values["task_id"] == done["task_id"]
    again = await graph.ainvoke({"task": "task gamma"}, config)
    assert again["status"] == "completed" and again["task"] == "task gamma"


@pytest.mark.parametrize("asaver", EACH_HOLD, indirect=True)
async def test_two_async_resumes_at_once_of_one_unfinished_run_one_is_refused(
    asaver: Saver,
) -> None:
    started = threading.Event()
    model = slow_model(started=started)
    graph = create_agent_loop(model, summarise_with_model=False, checkpointer=asaver)
    config = new_thread()
    await cancelled_in_step_1(graph, config, started)
    before = len(model.calls)
    outcomes = await asyncio.gather(
        graph.ainvoke(None, config), graph.ainvoke(None, config), return_exceptions=True
    )
    one_done_one_busy(outcomes)
    assert nodes(model)[before:] == ["executor", "executor"]  # steps 1 and 2, once each


def test_two_blocking_runs_at_once_on_one_thread_one_is_refused_before_any_model_call(
    saver: Saver,
) -> None:
    model = slow_model()
    graph = create_agent_loop(model, summarise_with_model=False, checkpointer=saver)
    config = new_thread()
    tasks = [{"task": "task alpha"}, {"task": "task beta"}]
    done = one_done_one_busy(blocking_at_once(graph, tasks, config))
    assert nodes(model) == ONE_RUN
    assert done["task"] in model.calls[0].prompt
    assert graph.invoke({"task": "task gamma"}, config)["status"] == "completed"


@pytest.mark.parametrize("saver", EACH_HOLD, indirect=True)
def test_two_blocking_resumes_at_once_of_one_unfinished_run_one_is_refused(
    saver: Saver,
) -> None:
    model = slow_model(crash=True)
    graph = create_agent_loop(model, summarise_with_model=False, checkpointer=saver)
    config = new_thread()
    crashed_thread(graph, config)
    before = len(model.calls)
    one_done_one_busy(blocking_at_once(graph, [None, None], config))
    assert nodes(model)[before:] == ["executor"]  # step 2 ran again, once


@pytest.mark.parametrize("saver", EACH_HOLD, indirect=True)
def test_a_busy_thread_refuses_new_tasks_and_resumes_without_writing(saver: Saver) -> None:
    graph = create_agent_loop(slow_model(latency=0), approve_plan=True, checkpointer=saver)
    config = new_thread()
    thread = config["configurable"]["thread_id"]
    paused = graph.invoke({"task": "task alpha"}, config)
    assert "__interrupt__" in paused
    running = graph.stream(Command(resume=True), config, stream_mode="values")
    next(running)
    history = len(list(graph.get_state_history(config)))
    for graph_input in ({"task": "task beta"}, None, Command(resume=True)):
        with pytest.raises(ThreadBusyError, match=f"thread '{thread}' {BUSY}"):
            graph.stream(graph_input, config)  # refused by the call itself
        with pytest.raises(ThreadBusyError):
            graph.invoke(graph_input, config)
    assert len(list(graph.get_state_history(config))) == history
    assert list(running)[-1]["status"] == "completed"
    assert graph.invoke({"task": "task beta"}, config)["__interrupt__"]


def test_the_error_is_a_runtime_error_naming_the_thread() -> None:
    busy = ThreadBusyError("t1")
    assert isinstance(busy, RuntimeError)
    assert busy.thread_id == "t1"
    assert str(busy) == f"thread 't1' {BUSY}"


def closed(graph: Any, config: RunnableConfig) -> Any:
    """A run whose stream is closed after its first chunk; then resume it."""
    chunks = graph.stream({"task": "task alpha"}, config)
    next(chunks)
    chunks.close()
    return None


def dropped_unread(graph: Any, config: RunnableConfig) -> Any:
    """A stream never read (so nothing was written); then send a task."""
    graph.stream({"task": "task alpha"}, config)
    gc.collect()
    return {"task": "task beta"}


def failed(graph: Any, config: RunnableConfig) -> Any:
    """A run that raised (its model crashed); then resume it."""
    crashed_thread(graph, config)
    return None


def refused(graph: Any, config: RunnableConfig) -> Any:
    """A paused run, and a new task refused for it (`UnfinishedRunError`); then resume it."""
    graph.invoke({"task": "task alpha"}, config)
    with pytest.raises(UnfinishedRunError):
        graph.invoke({"task": "task beta"}, config)
    return Command(resume=True)


@pytest.mark.parametrize(
    ("kind", "ending"),
    [
        *[("memory", ending) for ending in (closed, dropped_unread, failed, refused)],
        *[(kind, ending) for kind in SHARED_KINDS for ending in (closed, failed)],
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_the_thread_is_let_go_however_the_run_ends(
    kind: str,
    ending: Callable[[Any, RunnableConfig], Any],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    with sync_saver(kind, tmp_path, request) as saver:
        model = slow_model(crash=ending is failed, latency=0)
        graph = create_agent_loop(
            model, summarise_with_model=False, approve_plan=ending is refused, checkpointer=saver
        )
        config = new_thread()
        next_input = ending(graph, config)
        assert graph.invoke(next_input, config)["status"] == "completed"


@pytest.mark.parametrize("asaver", EACH_HOLD, indirect=True)
async def test_a_cancelled_run_lets_the_thread_go(asaver: Saver) -> None:
    started = threading.Event()
    graph = create_agent_loop(
        slow_model(started=started), summarise_with_model=False, checkpointer=asaver
    )
    config = new_thread()
    await cancelled_in_step_1(graph, config, started)
    assert (await graph.ainvoke(None, config))["status"] == "completed"


async def test_runs_on_other_threads_or_without_a_checkpointer_are_not_held() -> None:
    model = slow_model()
    saved = create_agent_loop(model, summarise_with_model=False, checkpointer=InMemorySaver())
    outcomes = await asyncio.gather(
        saved.ainvoke({"task": "task alpha"}, new_thread()),
        saved.ainvoke({"task": "task beta"}, new_thread()),
    )
    assert [o["status"] for o in outcomes] == ["completed", "completed"]
    unsaved = create_agent_loop(model, summarise_with_model=False)
    config = new_thread()  # a thread id with nothing stored under it
    outcomes = await asyncio.gather(
        unsaved.ainvoke({"task": "task alpha"}, config),
        unsaved.ainvoke({"task": "task beta"}, config),
    )
    assert [o["status"] for o in outcomes] == ["completed", "completed"]


async def test_copies_of_the_graph_share_its_holds() -> None:
    graph = create_agent_loop(
        slow_model(), summarise_with_model=False, checkpointer=InMemorySaver()
    )
    config = new_thread()
    outcomes = await asyncio.gather(
        graph.ainvoke({"task": "task alpha"}, config),
        graph.with_config(tags=["copy"]).ainvoke({"task": "task beta"}, config),
        return_exceptions=True,
    )
    one_done_one_busy(outcomes)


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_two_checkpointers_on_one_database_exclude_each_other(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """As two processes would: each has its own connection to the database."""
    with sync_saver(kind, tmp_path, request) as one, sync_saver(kind, tmp_path, request) as two:
        first = create_agent_loop(slow_model(), summarise_with_model=False, checkpointer=one)
        model = slow_model()
        second = create_agent_loop(model, summarise_with_model=False, checkpointer=two)
        config = new_thread()
        running = first.stream({"task": "task alpha"}, config, stream_mode="values")
        next(running)
        with pytest.raises(ThreadBusyError):
            second.invoke({"task": "task beta"}, config)
        assert model.calls == []
        assert list(running)[-1]["status"] == "completed"
        assert second.invoke({"task": "task beta"}, config)["status"] == "completed"
    assert list(tmp_path.glob("*.lock")) == []  # lock files go with their holds


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_a_run_right_after_another_on_its_thread_finds_it_free(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """One process's run ends, and at once another's starts on the same thread, again and
    again: the first has let go of the thread by the time its call returns."""
    with sync_saver(kind, tmp_path, request) as one, sync_saver(kind, tmp_path, request) as two:
        loops = [
            create_agent_loop(slow_model(latency=0), summarise_with_model=False, checkpointer=saver)
            for saver in (one, two)
        ]
        config = new_thread()
        for turn in range(20):
            out = loops[turn % 2].invoke({"task": f"task {turn}"}, config)
            assert out["status"] == "completed"


@pytest.mark.parametrize("kind", SHARED_KINDS)
async def test_an_async_run_right_after_another_on_its_thread_finds_it_free(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with (
        async_saver(kind, tmp_path, request) as one,
        async_saver(kind, tmp_path, request) as two,
    ):
        loops = [
            create_agent_loop(slow_model(latency=0), summarise_with_model=False, checkpointer=saver)
            for saver in (one, two)
        ]
        config = new_thread()
        for turn in range(20):
            out = await loops[turn % 2].ainvoke({"task": f"task {turn}"}, config)
            assert out["status"] == "completed"


@pytest.mark.parametrize("kind", ["sqlite", "postgres-pool"])
async def test_blocking_runs_on_an_async_checkpointer_from_a_worker_thread_are_held(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with async_saver(kind, tmp_path, request) as saver:
        started = threading.Event()
        graph = create_agent_loop(
            slow_model(started=started), summarise_with_model=False, checkpointer=saver
        )
        config = new_thread()
        blocking = asyncio.to_thread(graph.invoke, {"task": "task alpha"}, config)
        running = asyncio.ensure_future(blocking)
        assert await asyncio.to_thread(started.wait, 5)
        with pytest.raises(ThreadBusyError):
            await graph.ainvoke({"task": "task beta"}, config)
        assert (await running)["status"] == "completed"
        # It would wait on its own event loop: refused, by the loop or the checkpointer itself.
        refused = "outside the checkpointer's event|only allowed from a different thread"
        with pytest.raises(asyncio.InvalidStateError, match=refused):
            graph.invoke({"task": "task gamma"}, config)


def test_a_postgres_hold_that_cannot_open_its_connection_says_so() -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    role = f"agentloop_lease_{uuid.uuid4().hex[:8]}"
    with fresh_postgres_database() as url:
        database = conninfo_to_dict(url)["dbname"]
        with psycopg.connect(url, autocommit=True) as conn:
            # The checkpointer's own connection is the role's only one.
            conn.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1')
            conn.execute(f'ALTER DATABASE "{database}" OWNER TO "{role}"')
        try:
            with PostgresSaver.from_conn_string(make_conninfo(url, user=role)) as saver:
                saver.setup()
                graph = create_agent_loop("demo", checkpointer=saver)
                with pytest.raises(RuntimeError, match="holding the thread needs a connection"):
                    graph.invoke({"task": "Plan a picnic"}, new_thread())
                assert list(saver.list(None)) == []  # refused before anything was written
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{database}" OWNER TO CURRENT_USER')
                conn.execute(f'DROP OWNED BY "{role}"')
                conn.execute(f'DROP ROLE "{role}"')
