"""The loop against Ollama's HTTP API: real `ChatOllama` and `ollama` client, a local server.

Every test goes through the public API (`create_agent_loop`, the CLI) with an `"ollama:..."`
model string and `OLLAMA_HOST` pointing at a `tests.support.fake_ollama` server, so what is
checked is what crosses the wire: request bodies, streamed NDJSON answers, HTTP errors, cut
connections and silent servers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import httpx
import ollama
import pytest

from agentloop_graph import cli, create_agent_loop
from tests.support.fake_ollama import (
    FIXTURES,
    UNCLOSED_CLIENT_WARNINGS,
    Answer,
    Delay,
    Drop,
    FakeOllama,
    Generation,
    Hang,
    HttpError,
    Request,
    Response,
    Scripted,
    StreamError,
    Trickle,
    collect_unclosed_clients,
    error_fixture,
    fixture,
    reply,
)
from tests.support.helpers import Run, free_port

ROOT = Path(__file__).resolve().parent.parent
TASK = "Plan a picnic in the park"
PLAN = [
    "Gather the picnic essentials: blanket, basket, plates, cups and napkins.",
    "Prepare sandwiches, fruit and cold drinks on the morning of the picnic.",
    "Check the weather forecast and choose a shaded spot in the park.",
]
JSON_PLAN = json.loads(fixture("plan_json").content)["steps"]
STEPS = ("step_1", "step_2", "step_3")
EVENT_ORDER = [
    "agentic.plan_ready",
    *["agentic.step_started", "agentic.step_complete"] * 3,
    "agentic.task_complete",
]

# ChatOllama never closes its HTTP clients; the garbage collector does, with a warning each.
pytestmark = [pytest.mark.filterwarnings(entry) for entry in UNCLOSED_CLIENT_WARNINGS]


@pytest.fixture(scope="module")
def one_ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA bundle holding a single certificate of certifi's."""
    bundle = Path(certifi.where()).read_text(encoding="ascii")
    end = "-----END CERTIFICATE-----\n"
    path = tmp_path_factory.mktemp("ca") / "one.pem"
    path.write_text(bundle[: bundle.index(end) + len(end)], encoding="ascii")
    return path


@pytest.fixture(autouse=True)
def local_http(monkeypatch: pytest.MonkeyPatch, one_ca_bundle: Path) -> None:
    """Plain HTTP to 127.0.0.1, direct and quick to set up."""
    # A proxy from the environment must not intercept requests to 127.0.0.1.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # httpx loads the whole certifi bundle (~50 ms) for each client it builds, and ChatOllama
    # builds two; no TLS is spoken here, so a one-certificate bundle only saves that time.
    monkeypatch.setenv("SSL_CERT_FILE", str(one_ca_bundle))


@pytest.fixture
def ollama_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllama]:
    """A scripted Ollama server that `"ollama:..."` model strings resolve to."""
    with FakeOllama(Scripted()) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        yield server
    assert not server.errors


@pytest.fixture(autouse=True, scope="module")
def _finalise_http_clients() -> Iterator[None]:
    """Collect the module's leftover HTTP clients before the next module's tests run."""
    yield
    collect_unclosed_clients()


def happy(*, plan: str = "plan") -> list[Response]:
    """A plan, three step answers and a final answer."""
    return [fixture(plan), *map(fixture, STEPS), fixture("final_answer")]


def loop(**options: Any) -> Any:
    """The loop on llama3.2 through Ollama."""
    return create_agent_loop("ollama:llama3.2", **options)


def execute(graph: Any, mode: str) -> dict[str, Any]:
    """One run to its output with `invoke` or `ainvoke`."""
    if mode == "invoke":
        return graph.invoke({"task": TASK})
    return asyncio.run(graph.ainvoke({"task": TASK}))


def results(out: dict[str, Any]) -> list[str]:
    """The step results of a run, in order."""
    return [step["result"] for step in out["steps"]]


def stream_run(graph: Any, mode: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Progress events and final state of one run, streamed with the sync or async API."""
    events: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    modes = ["custom", "values"]

    def take(kind: str, chunk: Any) -> None:
        nonlocal values
        if kind == "custom":
            events.append(chunk)
        else:
            values = chunk

    if mode == "stream":
        for kind, chunk in graph.stream({"task": TASK}, stream_mode=modes):
            take(kind, chunk)
    else:

        async def consume() -> None:
            async for kind, chunk in graph.astream({"task": TASK}, stream_mode=modes):
                take(kind, chunk)

        asyncio.run(consume())
    return events, values


# --- whole runs --------------------------------------------------------------------------


def test_a_whole_run(run: Run, ollama_server: FakeOllama) -> None:
    ollama_server.play(*happy())
    out = run(loop(), {"task": TASK})
    assert out["status"] == "completed"
    assert out["plan"] == PLAN
    assert results(out) == [fixture(name).content for name in STEPS]
    assert out["answer"] == fixture("final_answer").content
    requests = ollama_server.chat_requests
    assert len(requests) == 5 and not ollama_server.unscripted
    assert {r.model for r in requests} == {"llama3.2"}
    assert all(r.stream for r in requests)
    assert TASK in requests[0].prompt
    assert [f"Step {i}/3" in r.prompt for i, r in enumerate(requests[1:4], 1)] == [True] * 3


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_streamed_run(mode: str, ollama_server: FakeOllama) -> None:
    ollama_server.play(*happy())
    events, out = stream_run(loop(), mode)
    assert [e["event"] for e in events] == EVENT_ORDER
    assert events[0]["steps"] == PLAN
    assert [e["status"] for e in events if e["event"] == "agentic.step_complete"] == [
        "completed"
    ] * 3
    assert events[-1]["status"] == out["status"] == "completed"


def test_the_planner_asks_for_a_json_plan_at_temperature_0(ollama_server: FakeOllama) -> None:
    ollama_server.play(*happy(plan="plan_json"))
    loop().invoke({"task": TASK})
    planner, *rest = ollama_server.chat_requests
    assert planner.options.get("temperature") == 0
    schema = planner.format
    assert isinstance(schema, dict) and schema.get("type") == "object"
    steps = schema["properties"]["steps"]
    assert steps["type"] == "array" and steps["items"]["type"] == "string"
    assert not planner.tools
    assert all(r.format is None for r in rest)


@pytest.mark.parametrize(
    ("recording", "plan_format", "mode"),
    [("plan_json", "json", "astream"), ("plan", "text", "stream")],
)
def test_structured_plan_or_numbered_list(
    ollama_server: FakeOllama, recording: str, plan_format: str, mode: str
) -> None:
    ollama_server.play(*happy(plan=recording))
    events, out = stream_run(loop(), mode)
    if plan_format == "json":
        assert out["plan"] == JSON_PLAN
    else:
        assert out["plan"] == PLAN
    ready = events[0]
    assert ready["event"] == "agentic.plan_ready"
    assert ready["plan_format"] == plan_format
    # One planning call, whichever way the reply was read.
    requests = ollama_server.chat_requests
    assert len(requests) == 5
    assert "Step 1/3" in requests[1].prompt


def weather_forecast(place: str, day: str) -> str:
    """The weather forecast for a place on a day.

    Args:
        place: Where.
        day: Which day.
    """
    return f"{place}, {day}: sunny, 24 °C, light breeze"


def test_tool_calls_round_trip(run: Run, ollama_server: FakeOllama) -> None:
    ollama_server.play(
        fixture("plan"),
        fixture("tool_call"),
        fixture("after_tool"),
        fixture("step_2"),
        fixture("step_3"),
        fixture("final_answer"),
    )
    out = run(loop(tools=[weather_forecast]), {"task": TASK})
    assert out["status"] == "completed"
    assert results(out)[0] == fixture("after_tool").content
    planner, call, answer, *_ = ollama_server.chat_requests
    assert not planner.tools
    assert call.tool_names == ["weather_forecast"]
    parameters = call.tools[0]["function"]["parameters"]
    assert set(parameters["properties"]) == {"place", "day"}
    assistant, tool = answer.messages[-2:]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"][0]["function"] == {
        "name": "weather_forecast",
        "arguments": {"place": "Riverside Park", "day": "Saturday"},
    }
    assert tool["role"] == "tool"
    assert tool["content"] == "Riverside Park, Saturday: sunny, 24 °C, light breeze"
    assert answer.tool_names == ["weather_forecast"]


# --- reasoning ---------------------------------------------------------------------------


def assert_no_reasoning(out: dict[str, Any], *thoughts: str) -> None:
    """No think tags, nor any of `thoughts`, in what a run shows its caller."""
    visible = [
        *out["plan"],
        *results(out),
        out["answer"] or "",
        out["summary"] or "",
        *(m.text for m in out["messages"]),
    ]
    for text in visible:
        assert "<think>" not in text and "</think>" not in text
        for thought in thoughts:
            assert thought not in text


def test_inline_think_blocks_never_reach_results(ollama_server: FakeOllama) -> None:
    ollama_server.play(
        fixture("plan"),
        fixture("think_inline"),
        fixture("step_2"),
        fixture("step_3"),
        fixture("final_answer"),
    )
    out = execute(loop(), "invoke")
    assert out["status"] == "completed"
    assert results(out)[0] == fixture("think_inline").content.split("</think>")[1].strip()
    assert_no_reasoning(out, "Sandwiches travel well")


def test_reasoning_is_kept_apart_in_step_records(run: Run, ollama_server: FakeOllama) -> None:
    inline, field = fixture("think_inline"), fixture("thinking_field")
    ollama_server.play(fixture("plan"), inline, field, fixture("step_3"), fixture("final_answer"))
    out = run(loop(model_options={"reasoning": True}), {"task": TASK})
    assert out["status"] == "completed"
    assert all(r.think is True for r in ollama_server.chat_requests)
    first, second, third = out["steps"]
    inline_thought = inline.content.split("</think>")[0].removeprefix("<think>").strip()
    assert first["reasoning"] is None or inline_thought in first["reasoning"]
    assert second["reasoning"] and field.thinking.strip() in second["reasoning"]
    assert second["result"] == field.content
    assert not third["reasoning"]
    assert_no_reasoning(out, "Sandwiches travel well", "I cannot browse")


# --- usage -------------------------------------------------------------------------------


def add(*answers: Answer) -> dict[str, int]:
    """The usage of several answers together."""
    keys = ("input_tokens", "output_tokens", "total_tokens")
    return {key: sum(a.usage[key] for a in answers) for key in keys}


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_token_usage_is_summed_per_step_and_run(mode: str, ollama_server: FakeOllama) -> None:
    empty = reply("", prompt_eval_count=90, eval_count=1)
    script = [
        fixture("plan"),
        empty,
        fixture("adapted_step"),
        fixture("step_1"),
        fixture("step_2"),
        fixture("step_3"),
        fixture("final_answer"),
    ]
    ollama_server.play(*script)
    events, out = stream_run(loop(), mode)
    first, second, third = out["steps"]
    assert first["status"] == "adapted"
    assert first["usage"] == add(empty, fixture("adapted_step"), fixture("step_1"))
    assert second["usage"] == add(fixture("step_2"))
    assert third["usage"] == add(fixture("step_3"))
    assert out["usage"] == add(*script)
    completes = [e for e in events if e["event"] == "agentic.step_complete"]
    assert [e["usage"] for e in completes] == [s["usage"] for s in out["steps"]]
    assert events[-1]["event"] == "agentic.task_complete"
    assert events[-1]["usage"] == out["usage"]


# --- failures ----------------------------------------------------------------------------


def test_no_server_says_how_to_start_one(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("OLLAMA_HOST", url)
    started = time.monotonic()
    out = run(loop(), {"task": TASK})
    # Not retried: three retries would back off for 0.2 + 0.4 + 0.8 s.
    assert time.monotonic() - started < 1.0
    assert out["status"] == "failed"
    summary = out["summary"]
    assert summary.startswith("Planning failed:")
    assert url in summary and "ollama serve" in summary and "--model demo" in summary


def test_a_missing_model_is_not_retried(run: Run, ollama_server: FakeOllama) -> None:
    ollama_server.play(error_fixture("model_not_found"), *happy())
    out = run(loop(), {"task": TASK})
    assert len(ollama_server.chat_requests) == 1
    assert out["status"] == "failed"
    summary = out["summary"]
    assert summary.startswith("Planning failed:")
    assert "not available" in summary and ollama_server.url in summary
    assert "ollama pull llama3.2" in summary


@pytest.mark.parametrize(
    ("error", "mode"),
    [
        ("runner_terminated", "invoke"),
        ("server_busy", "ainvoke"),
        ("rate_limited", "invoke"),
    ],
)
@pytest.mark.usefixtures("no_retry_backoff")
def test_a_transient_http_error_is_retried(
    ollama_server: FakeOllama, error: str, mode: str
) -> None:
    ollama_server.play(error_fixture(error), *happy())
    out = execute(loop(), mode)
    assert out["status"] == "completed" and out["plan"] == PLAN
    first, second, *_ = ollama_server.chat_requests
    assert len(ollama_server.chat_requests) == 6
    assert first.body == second.body


@pytest.mark.parametrize(("reset", "mode"), [(False, "invoke"), (True, "ainvoke")])
@pytest.mark.usefixtures("no_retry_backoff")
def test_a_connection_cut_mid_answer_is_retried(
    ollama_server: FakeOllama, reset: bool, mode: str
) -> None:
    ollama_server.play(
        fixture("plan"),
        Drop(fixture("step_1"), after=6, reset=reset),
        *map(fixture, STEPS),
        fixture("final_answer"),
    )
    out = execute(loop(), mode)
    assert out["status"] == "completed"
    # The retried answer replaces the cut one; nothing of the first half is kept twice.
    assert results(out) == [fixture(name).content for name in STEPS]
    assert len(ollama_server.chat_requests) == 6


@pytest.mark.usefixtures("no_retry_backoff")
def test_retries_run_out(ollama_server: FakeOllama) -> None:
    busy = error_fixture("server_busy")
    ollama_server.play(busy, busy, busy, *happy())
    out = execute(loop(max_retries=2), "ainvoke")
    assert len(ollama_server.chat_requests) == 3
    assert out["status"] == "failed"
    assert out["summary"].startswith("Planning failed:")
    assert "server busy" in out["summary"]


@pytest.mark.parametrize(
    ("errors", "expected", "mode"),
    [
        ([error_fixture("model_not_found")], "ollama pull llama3.2", "invoke"),
        ([error_fixture("server_busy")] * 2, "server busy", "ainvoke"),
    ],
    ids=["404", "503-exhausted"],
)
@pytest.mark.usefixtures("no_retry_backoff")
def test_an_error_in_a_step_fails_that_step(
    ollama_server: FakeOllama, errors: list[Response], expected: str, mode: str
) -> None:
    ollama_server.play(
        fixture("plan"), fixture("step_1"), *errors, fixture("step_3"), fixture("final_answer")
    )
    out = execute(loop(max_adaptations=0, max_retries=1), mode)
    assert [s["status"] for s in out["steps"]] == ["completed", "failed", "completed"]
    assert expected in out["steps"][1]["error"]
    assert out["status"] == "partial"
    assert len(ollama_server.chat_requests) == 3 + len(errors) + 1


def test_a_server_slower_than_step_timeout_fails_the_step(
    run: Run, ollama_server: FakeOllama
) -> None:
    ollama_server.play(
        fixture("plan"),
        fixture("step_1"),
        Delay(2.0, fixture("step_2")),
        fixture("step_3"),
        fixture("final_answer"),
    )
    started = time.monotonic()
    out = run(loop(step_timeout=0.3, max_adaptations=0), {"task": TASK})
    assert time.monotonic() - started < 1.5
    assert [s["status"] for s in out["steps"]] == ["completed", "failed", "completed"]
    assert re.search(r"timed out after 0\.3 ?s", out["steps"][1]["error"])
    assert out["status"] == "partial"


def test_a_silent_server_fails_the_plan_at_model_timeout(ollama_server: FakeOllama) -> None:
    ollama_server.play(Hang(), *happy())
    started = time.monotonic()
    out = execute(loop(model_timeout=0.3), "ainvoke")
    assert time.monotonic() - started < 1.5
    assert out["status"] == "failed"
    assert out["summary"].startswith("Planning failed:")
    assert re.search(r"0\.3 ?s", out["summary"])


def test_a_silent_server_fails_the_step_at_model_timeout(
    run: Run, ollama_server: FakeOllama
) -> None:
    ollama_server.play(
        fixture("plan"),
        Hang(fixture("step_1"), after=3),
        fixture("step_2"),
        fixture("step_3"),
        fixture("final_answer"),
    )
    started = time.monotonic()
    # The limit applies to every call: the planning call must fit it too, on a loaded machine.
    out = run(loop(model_timeout=1.5, max_adaptations=0), {"task": TASK})
    assert time.monotonic() - started < 4.5
    assert [s["status"] for s in out["steps"]] == ["failed", "completed", "completed"]
    assert re.search(r"1\.5 ?s", out["steps"][0]["error"])
    assert out["status"] == "partial"


def test_an_answer_trickling_past_model_timeout_is_cut(ollama_server: FakeOllama) -> None:
    # Chunks keep arriving, so no read ever waits long: only a limit on the whole call helps.
    ollama_server.play(
        fixture("plan"),
        Trickle(fixture("step_1"), interval=0.05),
        fixture("step_2"),
        fixture("step_3"),
        fixture("final_answer"),
    )
    started = time.monotonic()
    out = execute(loop(model_timeout=0.3, max_adaptations=0), "invoke")
    assert time.monotonic() - started < 1.5
    assert [s["status"] for s in out["steps"]] == ["failed", "completed", "completed"]
    assert re.search(r"0\.3 ?s", out["steps"][0]["error"])


# --- models per phase --------------------------------------------------------------------


def test_each_phase_uses_its_own_model(ollama_server: FakeOllama) -> None:
    ollama_server.play(
        fixture("plan"),
        reply(""),
        fixture("adapted_step"),
        *map(fixture, STEPS),
        fixture("final_answer"),
    )
    graph = loop(
        planner_model="ollama:big",
        executor_model="ollama:small",
        adapter_model="ollama:fixer",
        summariser_model="ollama:writer",
        model_options={"num_ctx": 8192, "keep_alive": "5m"},
    )
    out = execute(graph, "ainvoke")
    assert out["status"] == "completed"
    requests = ollama_server.chat_requests
    assert [r.model for r in requests] == [
        "big",
        "small",
        "fixer",
        "small",
        "small",
        "small",
        "writer",
    ]
    assert all(r.options.get("num_ctx") == 8192 for r in requests)
    assert all(r.body.get("keep_alive") == "5m" for r in requests)


def test_phases_without_their_own_model_use_the_main_one(ollama_server: FakeOllama) -> None:
    ollama_server.play(*happy())
    execute(loop(executor_model="ollama:small"), "invoke")
    models = [r.model for r in ollama_server.chat_requests]
    assert models == ["llama3.2", "small", "small", "small", "llama3.2"]


# --- the command line --------------------------------------------------------------------


def test_the_cli_runs_against_ollama(
    ollama_server: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    ollama_server.play(*happy())
    status = cli.main(["run", TASK, "--model", "ollama:llama3.2"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "Plan (3 steps):" in out
    for number, step in enumerate(PLAN, 1):
        assert f"{number}. {step}" in out
    assert "Status: completed" in out
    assert ollama_server.requests[0].path == "/api/tags"


# --- the test server itself --------------------------------------------------------------


def test_fixtures_read_back_through_the_ollama_client(ollama_server: FakeOllama) -> None:
    names = sorted(path.stem for path in FIXTURES.glob("*.ndjson"))
    assert len(names) >= 10
    with ollama.Client(host=ollama_server.url) as client:
        for name in names:
            recorded = fixture(name)
            ollama_server.play(recorded, recorded)
            parts = list(client.chat(model="llama3.2", messages=[], stream=True))
            whole = client.chat(model="llama3.2", messages=[], stream=False)
            assert "".join(p.message.content or "" for p in parts) == recorded.content
            assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
            final = parts[-1]
            assert final.done_reason == "stop" and final.prompt_eval_count and final.eval_count
            assert whole.message.content == recorded.content
            assert (whole.message.thinking or "") == recorded.thinking
            assert len(whole.message.tool_calls or []) == len(recorded.tool_calls)
            assert whole.eval_count == final.eval_count


def test_the_server_lists_and_shows_models(ollama_server: FakeOllama) -> None:
    with ollama.Client(host=ollama_server.url) as client:
        assert [m.model for m in client.list().models] == ["llama3.2:latest", "qwen3:8b"]
        assert "thinking" in (client.show("qwen3:8b").capabilities or [])
        assert client.show("llama3.2").details is not None
        with pytest.raises(ollama.ResponseError) as missing:
            client.show("mistral")
    assert missing.value.status_code == 404
    assert httpx.get(ollama_server.url).text == "Ollama is running"


def test_faults_reach_the_client_as_from_ollama(ollama_server: FakeOllama) -> None:
    step = fixture("step_1")
    ollama_server.play(
        HttpError.model_not_found(),
        StreamError(step, after=2),
        Drop(step, after=2),
        Drop(step, after=2, reset=True),
        Drop(step, after=2),
    )
    with ollama.Client(host=ollama_server.url) as client:

        def chat(stream: bool = True) -> Any:
            answer = client.chat(model="qwen3:8b", messages=[], stream=stream)
            return list(answer) if stream else answer

        with pytest.raises(ollama.ResponseError) as missing:
            chat()
        assert missing.value.status_code == 404
        assert missing.value.error == 'model "qwen3:8b" not found, try pulling it first'
        with pytest.raises(ollama.ResponseError) as crashed:
            chat()
        assert crashed.value.status_code == -1 and "unexpected EOF" in crashed.value.error
        with pytest.raises(httpx.RemoteProtocolError):
            chat()
        with pytest.raises(httpx.ReadError):
            chat()
        with pytest.raises(httpx.RemoteProtocolError):
            chat(stream=False)


def test_a_live_generation_reaches_the_client_as_from_ollama(ollama_server: FakeOllama) -> None:
    def written() -> Iterator[dict[str, Any]]:
        yield from reply("Hello there").stream("llama3.2")

    def refused() -> Iterator[dict[str, Any]]:
        raise ValueError("options must be an object")
        yield {}

    def crashed() -> Iterator[dict[str, Any]]:
        yield from itertools.islice(reply("Hello there").stream("llama3.2"), 1)
        raise RuntimeError("runner died")

    ollama_server.play(Generation(written()), Generation(refused()), Generation(crashed()))
    with ollama.Client(host=ollama_server.url) as client:

        def chat() -> list[Any]:
            return list(client.chat(model="llama3.2", messages=[], stream=True))

        parts = chat()
        assert "".join(p.message.content or "" for p in parts) == "Hello there"
        with pytest.raises(ollama.ResponseError) as bad:
            chat()
        assert bad.value.status_code == 400 and bad.value.error == "options must be an object"
        with pytest.raises(ollama.ResponseError) as failed:
            chat()
        assert failed.value.status_code == -1 and "runner died" in failed.value.error
    (served,) = ollama_server.served
    assert served.content == "Hello there" and served.done_reason == "stop"
    assert served.eval_count == parts[-1].eval_count


def test_stopping_the_server_releases_a_hanging_request() -> None:
    arrived = threading.Event()

    def hang(request: Request) -> Response:
        arrived.set()
        return Hang()

    server = FakeOllama(Scripted(hang)).start()
    errors: list[BaseException] = []

    async def ask() -> None:
        async with ollama.AsyncClient(host=server.url) as client:
            try:
                await client.chat(model="llama3.2", messages=[], stream=False)
            except httpx.HTTPError as exc:
                errors.append(exc)

    async def main() -> None:
        task = asyncio.create_task(ask())
        assert await asyncio.to_thread(arrived.wait, 5.0)
        assert len(server.chat_requests) == 1
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        await task
        assert time.monotonic() - started < 1.0

    asyncio.run(main())
    assert [type(error) for error in errors] == [httpx.RemoteProtocolError]


def test_the_server_runs_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    command = [
        sys.executable,
        "-m",
        "tests.support.fake_ollama",
        "--port",
        "0",
        "--fixtures",
        str(FIXTURES),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        monkeypatch.setenv("OLLAMA_HOST", url)
        out = create_agent_loop("ollama:llama3.2").invoke({"task": TASK})
        assert out["status"] == "completed"
        assert out["plan"] in (PLAN, JSON_PLAN)
        assert out["answer"] == fixture("final_answer").content
    finally:
        process.terminate()
        process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def test_requests_are_recorded_as_sent(ollama_server: FakeOllama) -> None:
    ollama_server.play(fixture("step_1"))
    with ollama.Client(host=ollama_server.url) as client:
        client.chat(
            model="qwen3:8b",
            messages=[{"role": "user", "content": "hello"}],
            options={"temperature": 0},
            format={"type": "object"},
            think=True,
        )
    (request,) = ollama_server.chat_requests
    assert request.model == "qwen3:8b" and request.prompt == "hello"
    assert request.options == {"temperature": 0} and request.format == {"type": "object"}
    assert request.think is True and request.stream is False
    assert json.loads(json.dumps(request.body)) == request.body


LOOPING = "1.1.1: " * 2000
"""A small model's loop: 14,000 characters streamed a piece at a time, for minutes on a
real server with no answer cap."""


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_an_answer_that_starts_repeating_itself_is_cut_off_as_it_streams(
    ollama_server: FakeOllama, mode: str
) -> None:
    ollama_server.play(
        fixture("plan"),
        Trickle(reply("Here is the list. " + LOOPING), interval=0.001),  # 2 s in full
        reply("Write the checklist once."),
        *map(fixture, STEPS),
        fixture("final_answer"),
    )
    started = time.monotonic()
    out = execute(loop(), mode)
    assert time.monotonic() - started < 2
    first = out["steps"][0]
    assert first["status"] == "adapted" and first["error"] == "the model repeated itself"
    # The looping answer was never sent in full: the client left, and the server stopped.
    assert all("1.1.1: 1.1.1:" not in served.content for served in ollama_server.served)
    assert out["status"] == "completed"
    # The tokens the cut-off answer streamed count in the step's usage, as spent.
    assert first["usage"]["output_tokens"] >= 100


def test_only_the_loops_own_ollama_models_are_cut_off(ollama_server: FakeOllama) -> None:
    from langchain_ollama import ChatOllama

    ollama_server.play(
        fixture("plan"),
        reply(LOOPING),
        reply("Write the checklist once."),
        *map(fixture, STEPS),
        fixture("final_answer"),
    )
    model = ChatOllama(model="llama3.2", base_url=ollama_server.url)
    out = create_agent_loop(model).invoke({"task": TASK})
    # A model object is the caller's: its answer is judged whole, once it has ended.
    assert any(served.content == LOOPING for served in ollama_server.served)
    assert out["steps"][0]["error"] == "the model repeated itself"


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_a_parallel_plan_is_held_to_the_dependency_schema(
    ollama_server: FakeOllama, mode: str
) -> None:
    plan = {
        "steps": [
            {"description": "Book the park shelter", "depends_on": []},
            {"description": "Buy the food", "depends_on": []},
            {"description": "Pack the car", "depends_on": [1, 2]},
        ]
    }
    ollama_server.play(reply(json.dumps(plan)), *map(fixture, STEPS), fixture("final_answer"))
    graph = loop(parallel=True)
    out = (
        graph.invoke({"task": TASK})
        if mode == "invoke"
        else asyncio.run(graph.ainvoke({"task": TASK}))
    )
    assert out["plan"] == ["Book the park shelter", "Buy the food", "Pack the car"]
    assert out["dependencies"] == [[], [], [1, 2]]
    planner = ollama_server.chat_requests[0]
    item = planner.format["properties"]["steps"]["items"]
    assert item["properties"]["depends_on"] == {
        "type": "array",
        "items": {"type": "integer"},
        "maxItems": 9,  # max_steps - 1: no step waits for more
    }
    assert "(after 1, 2)" in planner.prompt  # the text form is asked for too, for other models
    assert out["status"] == "completed"


@pytest.mark.parametrize("parallel", [False, True])
def test_a_json_plan_with_no_steps_is_no_plan(ollama_server: FakeOllama, parallel: bool) -> None:
    # What a small model held to the plan's schema may answer: never a step of its own.
    ollama_server.play(reply('{ "steps": [ ]} '))
    out = loop(parallel=parallel).invoke({"task": TASK})
    assert (out["status"], out["summary"], out["plan"]) == (
        "failed",
        "Planning produced no steps.",
        [],
    )
    assert len(ollama_server.chat_requests) == 1
