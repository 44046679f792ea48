"""Limits that hold while a call is in flight, and the edges found under attack."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from agentloop_graph import Budget, create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel, Slow
from tests.support.fake_ollama import UNCLOSED_CLIENT_WARNINGS, FakeOllama, Hang, Scripted, fixture
from tests.support.helpers import Run, numbered

pytestmark = [pytest.mark.filterwarnings(f) for f in UNCLOSED_CLIENT_WARNINGS]

LIMIT = 2.0
"""The time budget of the runs that meet a call that never ends."""
GRACE = 1.5
"""How long past the budget such a run may take to end."""


def timed(run: Run, graph: Any, task: str = "t") -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    out = run(graph, {"task": task})
    return out, time.monotonic() - started


def hung(call: ModelCall) -> Any:
    """A model whose steps never answer (an hour each)."""
    return numbered("look", "leap") if call.node == "planner" else Slow(3600, "too late")


def test_a_hung_model_call_ends_at_the_time_budget(run: Run) -> None:
    model = ScriptedChatModel(responses=hung)
    loop = create_agent_loop(model, budget=Budget(max_seconds=LIMIT))
    out, took = timed(run, loop)
    assert took < LIMIT + GRACE
    (step,) = out["steps"]
    assert step["status"] == "failed" and step["error"] == "budget exhausted: time"
    assert out["status"] == "failed"
    assert out["summary"].endswith("Stopped: time budget spent.")
    assert len(model.calls_from("executor")) == 1  # no later step started


@tool
def wait_forever(place: str) -> str:
    """Look something up, and never come back."""
    time.sleep(3600)
    return "too late"


@tool
async def await_forever(place: str) -> str:
    """Look something up asynchronously, and never come back."""
    await asyncio.sleep(3600)
    return "too late"


@pytest.mark.parametrize("hanging", [wait_forever, await_forever])
def test_a_hung_tool_ends_at_the_time_budget(run: Run, hanging: Any) -> None:
    call = {"name": hanging.name, "args": {"place": "here"}, "id": "1"}
    model = ScriptedChatModel(
        responses={"planner": [numbered("look")], "executor": [AIMessage("", tool_calls=[call])]}
    )
    loop = create_agent_loop(model, tools=[hanging], budget=Budget(max_seconds=LIMIT))
    out, took = timed(run, loop)
    assert took < LIMIT + GRACE
    assert out["steps"][0]["error"] == "budget exhausted: time"


@pytest.fixture
def silent_ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllama]:
    """An Ollama server that accepts every request and never answers."""
    with FakeOllama(Scripted()) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        yield server


@pytest.mark.parametrize("hangs_at", ["planning", "a step"])
def test_a_server_that_never_answers_cannot_hold_a_run(
    run: Run, silent_ollama: FakeOllama, hangs_at: str
) -> None:
    if hangs_at == "planning":
        silent_ollama.play(Hang())
    else:
        silent_ollama.play(fixture("plan"), Hang())
    loop = create_agent_loop("ollama:llama3.2", budget=Budget(max_seconds=LIMIT))
    out, took = timed(run, loop)
    assert took < LIMIT + GRACE
    assert out["status"] == "failed"
    assert out["summary"].endswith("Stopped: time budget spent.")
    if hangs_at == "planning":
        assert out["summary"].startswith("Planning failed: budget exhausted: time")
    else:
        assert out["steps"][0]["error"] == "budget exhausted: time"


def wordy(call: ModelCall) -> str:
    """Long answers: a model that would overrun any token budget unless its answer is capped."""
    if call.node == "planner":
        return numbered(*(f"step {n}" for n in range(1, 6)))
    return "word " * 400


@pytest.mark.parametrize("max_tokens", [150, 400, 900, 2000])
def test_reported_tokens_stay_within_the_budget(run: Run, max_tokens: int) -> None:
    # The scripted model counts four characters a token, as the loop estimates a prompt's
    # input: the reported spend can only pass the budget by a counting error, here none.
    model = ScriptedChatModel(responses=wordy, report_usage=True)
    out = run(create_agent_loop(model, budget=Budget(max_tokens=max_tokens)), {"task": "t"})
    assert 0 < out["usage"]["total_tokens"] <= max_tokens
    assert out["summary"].endswith("Stopped: tokens budget spent.")
    answers = [c.max_tokens for c in model.calls]
    assert all(cap is not None and 0 < cap < max_tokens for cap in answers)


def test_a_call_whose_prompt_alone_passes_the_budget_is_not_made(run: Run) -> None:
    model = ScriptedChatModel(responses=wordy, report_usage=True)
    out = run(create_agent_loop(model, budget=Budget(max_tokens=5)), {"task": "t"})
    assert model.calls == []
    assert out["status"] == "failed"
    assert (
        out["summary"] == "Planning failed: budget exhausted: tokens Stopped: tokens budget spent."
    )


DEEP = '{"steps": ' + "[" * 50_000


@pytest.mark.parametrize("answer", [DEEP, '{"steps": [' + "{" * 50_000, "{" * 50_000])
def test_deeply_nested_json_fails_planning_and_the_thread_takes_a_new_task(
    run: Run, answer: str
) -> None:
    model = ScriptedChatModel(responses={"planner": [answer, numbered("ok")], None: "done"})
    loop = create_agent_loop(model, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "deep"}}
    out = run(loop, {"task": "t"}, config=config)
    assert out["status"] == "failed"
    assert run(loop, {"task": "again"}, config=config)["status"] == "completed"


def test_deeply_nested_json_in_a_replan_keeps_the_plan(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a", "b"), DEEP],
            "executor": [RuntimeError("no"), "done b"],
            None: "ok",
        }
    )
    out = run(create_agent_loop(model, max_adaptations=0, max_replans=1), {"task": "t"})
    assert out["plan"] == ["a", "b"] and out["status"] == "partial"


def test_invoke_none_on_a_fresh_thread_names_the_task(run: Run) -> None:
    loop = create_agent_loop("demo", checkpointer=InMemorySaver())
    with pytest.raises(ValueError, match="task is missing"):
        run(loop, None, config={"configurable": {"thread_id": "fresh"}})
    with pytest.raises(ValueError, match="task is missing"):
        run(create_agent_loop("demo"), None)


def _database_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int(pages * size)


@pytest.mark.slow
def test_a_reused_thread_writes_no_more_per_run_as_it_ages(tmp_path: Path) -> None:
    path = tmp_path / "threads.db"
    with SqliteSaver.from_conn_string(str(path)) as saver:
        loop = create_agent_loop("demo", checkpointer=saver)
        config = {"configurable": {"thread_id": "reused"}}
        sizes = []
        for number in range(60):
            loop.invoke({"messages": [("user", f"Plan picnic number {number}")]}, config)
            sizes.append(_database_bytes(path))
        assert len(loop.get_state(config).values["messages"]) == 120
    early = (sizes[14] - sizes[4]) / 10
    late = (sizes[59] - sizes[49]) / 10
    assert late <= early * 1.3, (early, late)


def test_the_thread_keeps_its_history_across_runs(run: Run) -> None:
    loop = create_agent_loop("demo", checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "history"}}
    for task in ("Plan a picnic", "Plan a party"):
        out = run(loop, {"messages": [("user", task)]}, config=config)
    assert [m.type for m in out["messages"]] == ["human", "ai", "human", "ai"]
    assert out["messages"][2].content == "Plan a party"


def test_a_hanging_tool_is_a_step_failure(run: Run) -> None:
    release = threading.Event()

    @tool
    def hang() -> str:
        """Never returns in time."""
        release.wait(5)
        return "too late"

    model = ScriptedChatModel(
        responses={
            "planner": [numbered("wait")],
            "executor": [AIMessage("", tool_calls=[{"name": "hang", "args": {}, "id": "1"}])],
        }
    )
    graph = create_agent_loop(
        model, tools=[hang], step_timeout=0.2, max_adaptations=0, summarise_with_model=False
    )
    # The abandoned call holds a worker thread until released; asyncio.run waits for it.
    threading.Timer(0.5, release.set).start()
    out = run(graph, {"task": "t"})
    assert out["steps"][0]["error"] == "the attempt timed out after 0.2 s"
