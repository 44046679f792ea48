"""How the loop calls models: roles, retries, time limits, tokens, reasoning, traces."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage

from agentloop_graph import create_agent_loop
from agentloop_graph.models import is_transient
from agentloop_graph.testing import ModelCall, ScriptedChatModel, Slow
from tests.support.helpers import Run, numbered


class ServerError(Exception):
    """An error that carries an HTTP status, as provider clients' errors do."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


def tokens(text: str, given: int, taken: int) -> AIMessage:
    usage = {"input_tokens": given, "output_tokens": taken, "total_tokens": given + taken}
    return AIMessage(text, usage_metadata=usage)


def test_each_phase_can_have_its_own_model(run: Run) -> None:
    planner = ScriptedChatModel(responses=[numbered("a", "b")])
    executor = ScriptedChatModel(responses=[RuntimeError("x"), "ra", "rb"])
    adapter = ScriptedChatModel(responses=["a again"])
    summariser = ScriptedChatModel(responses=["all done"])
    graph = create_agent_loop(
        ScriptedChatModel(),
        planner_model=planner,
        executor_model=executor,
        adapter_model=adapter,
        summariser_model=summariser,
    )
    out = run(graph, {"task": "t"})
    assert out["answer"] == "all done"
    assert [c.node for c in planner.calls] == ["planner"]
    assert [c.node for c in executor.calls] == ["executor"] * 3
    assert [c.node for c in adapter.calls] == ["adapter"]
    assert [c.node for c in summariser.calls] == ["summariser"]


def test_role_model_strings_are_resolved() -> None:
    with pytest.raises(ValueError, match="planner_model 'nonsense'"):
        create_agent_loop(ScriptedChatModel(), planner_model="nonsense")
    with pytest.raises(TypeError, match="executor_model must be"):
        create_agent_loop(ScriptedChatModel(), executor_model=3)  # type: ignore[arg-type]


def test_planner_built_from_a_string_plans_at_temperature_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from langchain_ollama import ChatOllama

    seen: list[Any] = []

    def record(self: ChatOllama, *args: Any, **kwargs: Any) -> Any:
        seen.append(self.temperature)
        raise ConnectionRefusedError("no server in this test")

    monkeypatch.setattr(ChatOllama, "_generate", record)
    graph = create_agent_loop("ollama:llama3.2", max_retries=0)
    assert graph.invoke({"task": "t"})["status"] == "failed"
    assert seen == [0]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ServerError(500), True),
        (ServerError(503), True),
        (ServerError(429), True),
        (ServerError(404), False),
        (ServerError(400), False),
        (httpx.RemoteProtocolError("peer closed connection"), True),
        (httpx.ReadError("connection reset"), True),
        (ConnectionResetError(), True),
        (httpx.ConnectError("connection refused"), False),
        (ValueError("bad"), False),
        (TimeoutError(), False),
    ],
)
def test_which_errors_are_transient(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.usefixtures("no_retry_backoff")
def test_transient_errors_are_retried(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [ServerError(503), ServerError(429), numbered("a")],
            "executor": [ServerError(500), "ra"],
        }
    )
    out = run(create_agent_loop(model, summarise_with_model=False), {"task": "t"})
    assert out["status"] == "completed"
    assert out["steps"][0]["attempts"] == 1  # retries are not attempts
    assert len(model.calls_from("planner")) == 3


@pytest.mark.usefixtures("no_retry_backoff")
def test_retries_are_bounded(run: Run) -> None:
    model = ScriptedChatModel(responses=[ServerError(502)] * 5)
    out = run(create_agent_loop(model, max_retries=2), {"task": "t"})
    assert out["status"] == "failed"
    assert "HTTP 502" in out["summary"]
    assert len(model.calls) == 3


def test_other_errors_are_not_retried(run: Run) -> None:
    model = ScriptedChatModel(responses=[ServerError(404), "never asked"])
    out = run(create_agent_loop(model), {"task": "t"})
    assert out["status"] == "failed"
    assert len(model.calls) == 1


def test_model_timeout_bounds_every_call(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a")],
            "executor": [Slow(3.0, "late"), "on time"],
            "adapter": ["a, quicker"],
            "summariser": [Slow(3.0, "late answer")],
        }
    )
    out = run(create_agent_loop(model, model_timeout=0.2, max_retries=0), {"task": "t"})
    step = out["steps"][0]
    assert step["status"] == "adapted"
    assert step["error"] == "the model did not answer within 0.2 s"
    assert out["answer"] is None and out["status"] == "completed"


def test_tokens_are_summed_per_step_and_per_run(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [tokens(numbered("a", "b"), 10, 5)],
            "executor": [RuntimeError("x"), tokens("ra", 20, 7), tokens("rb", 30, 9)],
            "adapter": [tokens("a again", 8, 4)],
            "summariser": [tokens("done", 40, 11)],
        }
    )
    events: list[dict[str, Any]] = []
    graph = create_agent_loop(model)
    if run.is_async:  # type: ignore[attr-defined]
        out = run(graph, {"task": "t"})
    else:
        for mode, chunk in graph.stream({"task": "t"}, stream_mode=["custom", "values"]):
            events.append(chunk) if mode == "custom" else None
            out = chunk
    first, second = out["steps"]
    assert first["usage"] == {"input_tokens": 28, "output_tokens": 11, "total_tokens": 39}
    assert second["usage"] == {"input_tokens": 30, "output_tokens": 9, "total_tokens": 39}
    assert out["usage"] == {"input_tokens": 108, "output_tokens": 36, "total_tokens": 144}
    if events:
        completes = [e["usage"] for e in events if e["event"] == "agentic.step_complete"]
        assert completes == [first["usage"], second["usage"]]
        assert events[-1]["usage"] == out["usage"]


def test_reasoning_is_kept_apart_from_results(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a", "b", "c")],
            "executor": [
                "<think>inline thoughts</think>The result.",
                AIMessage("Plain.", additional_kwargs={"reasoning_content": "separate thoughts"}),
                "No thinking here.",
            ],
        }
    )
    out = run(create_agent_loop(model, summarise_with_model=False), {"task": "t"})
    assert [s["result"] for s in out["steps"]] == ["The result.", "Plain.", "No thinking here."]
    assert [s["reasoning"] for s in out["steps"]] == ["inline thoughts", "separate thoughts", None]


class RunNames(BaseCallbackHandler):
    def __init__(self) -> None:
        self.runs: list[tuple[str, list[str], dict[str, Any]]] = []

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.runs.append((name or "", tags or [], metadata or {}))


def test_model_calls_are_named_tagged_and_carry_step_metadata(run: Run) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": [numbered("a")],
            "executor": [RuntimeError("x"), "ra"],
            "adapter": ["a again"],
            "summariser": ["done"],
        }
    )
    handler = RunNames()
    out = run(create_agent_loop(model), {"task": "t"}, config={"callbacks": [handler]})
    names = [name for name, _, _ in handler.runs]
    assert names == [
        "agentloop.planner",
        "agentloop.executor",
        "agentloop.adapter",
        "agentloop.executor",
        "agentloop.summariser",
    ]
    assert all("agentloop" in tags for _, tags, _ in handler.runs)
    task_ids = {meta["task_id"] for _, _, meta in handler.runs}
    assert task_ids == {out["task_id"]}
    steps = [(meta.get("step"), meta.get("attempt")) for _, _, meta in handler.runs]
    assert steps == [(None, None), (1, 1), (1, 1), (1, 2), (None, None)]
    assert [meta["langgraph_node"] for _, _, meta in handler.runs] == [
        "planner",
        "executor",
        "adapter",
        "executor",
        "summariser",
    ]


def test_scripted_model_calls_know_their_node() -> None:
    seen: list[str | None] = []

    def respond(call: ModelCall) -> str:
        seen.append(call.node)
        return numbered("a") if call.node == "planner" else "ok"

    create_agent_loop(ScriptedChatModel(responses=respond)).invoke({"task": "t"})
    assert seen == ["planner", "executor", "summariser"]
