"""`agentloop run --url`: the run on an Agent Server, through `langgraph-sdk`.

The fast tests stand a scripted client in for `langgraph-sdk` (it runs the demo loop in
this process and answers as a server would); the slow ones send runs to a real
`langgraph dev` server (the `server_url` fixture, as `tests/test_studio.py` uses). The Aegra suite
(`tests/test_aegra.py`) sends one through Aegra as well.
"""

from __future__ import annotations

import io
import json
import re
import socket
import sys
import types
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agentloop_graph import cli, create_agent_loop

PICNIC = "Plan a picnic"
FAIL_STEP_2 = "Plan a picnic, fail step 2"


class _Part(NamedTuple):
    event: str
    data: Any


class _Runs:
    """`client.runs` of a server that runs the demo loop in this process."""

    def __init__(self) -> None:
        self.graph = create_agent_loop("demo", checkpointer=InMemorySaver())
        self.requests: list[dict[str, Any]] = []

    def stream(self, thread_id: str, assistant_id: str, **kwargs: Any) -> Iterator[_Part]:
        self.requests.append({"thread_id": thread_id, "assistant_id": assistant_id, **kwargs})
        modes = [m for m in kwargs["stream_mode"] if m in ("custom", "values")]
        command = kwargs.get("command")
        start = Command(resume=command["resume"]) if command else kwargs["input"]
        config = {"configurable": {"thread_id": thread_id}}
        yield _Part("metadata", {"run_id": "r1"})
        for mode, chunk in self.graph.stream(
            start, config, context=kwargs["context"], stream_mode=modes
        ):
            if mode == "values" and "__interrupt__" in chunk:
                chunk = {
                    "__interrupt__": [
                        {"value": i.value, "id": i.id} for i in chunk["__interrupt__"]
                    ]
                }
            yield _Part(mode, json.loads(json.dumps(chunk, default=str)))


class _Client:
    def __init__(self) -> None:
        self.runs = _Runs()
        self.threads = types.SimpleNamespace(create=lambda: {"thread_id": "t1"})
        self.closed = False

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> _Client:
    """`langgraph-sdk` replaced by a client of a server that runs the demo loop here."""
    client = _Client()
    sdk = types.ModuleType("langgraph_sdk")
    sdk.get_sync_client = lambda **options: client  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "langgraph_sdk", sdk)
    monkeypatch.setattr(cli, "check_server", lambda url: None)
    return client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- fast: a scripted client ---------------------------------------------------------


def test_options_go_as_the_runs_context_and_only_those_given(
    fake_server: _Client, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", PICNIC, "--url", "http://server:2024/", "--model", "demo"]
    assert (
        cli.main([*argv, "--max-steps", "3", "--max-model-calls", "9", "--max-seconds", "30"]) == 0
    )

    assert fake_server.closed
    (request,) = fake_server.runs.requests
    assert request["assistant_id"] == "agent_loop"
    assert request["input"] == {
        "task": PICNIC,
        "messages": [{"role": "user", "content": PICNIC}],
    }
    assert request["context"] == {
        "model": "demo",
        "max_steps": 3,
        "budget": {"max_model_calls": 9, "max_seconds": 30.0},
    }
    assert request["stream_mode"] == ["custom", "values"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[:5] == [
        cli.DEMO_NOTE,
        f"Task: {PICNIC}",
        "Server: http://server:2024 (agent_loop)",
        "Thread: t1",
        "Plan (3 steps):",
    ]
    assert any(
        re.fullmatch(
            r"Spent: 5 model calls, [\d,]+ tokens, \d+\.\d s \(limits: 9 model calls, 30 s\)", line
        )
        for line in lines
    )


def test_without_options_the_server_keeps_its_own_settings(
    fake_server: _Client, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", PICNIC, "--url", "http://server:2024", "--assistant", "my_loop", "--stream"]
    assert cli.main(argv) == 0

    (request,) = fake_server.runs.requests
    assert request["assistant_id"] == "my_loop"
    assert request["context"] == {}
    assert request["stream_mode"] == ["custom", "values", "messages-tuple"]
    assert cli.DEMO_NOTE not in capsys.readouterr().out  # the server chose the model


def test_approve_resumes_the_paused_run_on_the_server(
    fake_server: _Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("e\nPack the basket\n\n"))

    argv = ["run", PICNIC, "--url", "http://server:2024", "--model", "demo", "--approve"]
    assert cli.main(argv) == 0

    first, second = fake_server.runs.requests
    assert first["context"] == second["context"] == {"model": "demo", "approve_plan": True}
    assert second["thread_id"] == first["thread_id"]
    assert second["command"] == {"resume": ["Pack the basket"]} and second["input"] is None
    out = capsys.readouterr().out
    assert "Plan (1 step, edited):\n    1. Pack the basket\n" in out
    assert "[1/1] Pack the basket ..." in out


def test_a_run_the_server_ends_in_an_error_is_one_line(
    fake_server: _Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(thread_id: str, assistant_id: str, **kwargs: Any) -> Iterator[_Part]:
        yield _Part("metadata", {"run_id": "r1"})
        yield _Part("error", {"error": "ValueError", "message": "context has unknown fields"})

    monkeypatch.setattr(fake_server.runs, "stream", failing)

    assert cli.main(["run", PICNIC, "--url", "http://server:2024"]) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "agentloop: error: the run failed on the Agent Server at http://server:2024: "
        "ValueError: context has unknown fields"
    )


def test_under_json_a_failed_server_run_ends_with_an_error_event_naming_the_thread(
    fake_server: _Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(thread_id: str, assistant_id: str, **kwargs: Any) -> Iterator[_Part]:
        yield _Part("error", {"error": "RuntimeError", "message": "worker died"})

    monkeypatch.setattr(fake_server.runs, "stream", failing)

    assert cli.main(["run", PICNIC, "--url", "http://server:2024", "--json"]) == 1

    out, err = capsys.readouterr()
    message = "the run failed on the Agent Server at http://server:2024: RuntimeError: worker died"
    assert err == f"agentloop: error: {message}\n"
    assert [json.loads(line) for line in out.splitlines()] == [
        {"event": "thread", "thread_id": "t1", "url": "http://server:2024"},
        {"event": "error", "error": message, "thread_id": "t1"},
    ]


def test_agentloop_model_is_the_local_default_only(
    fake_server: _Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The server's graphs read AGENTLOOP_MODEL on the server's side; the client's stays here.
    monkeypatch.setenv(cli.MODEL_ENV, "nonsense")

    assert cli.main(["run", PICNIC, "--url", "http://server:2024"]) == 0

    (request,) = fake_server.runs.requests
    assert request["context"] == {}


def test_a_graph_that_is_not_the_loop_prints_its_answer_and_succeeds(
    fake_server: _Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = [
        {"type": "human", "content": PICNIC},
        {"type": "ai", "content": [{"type": "text", "text": "Bring a blanket."}]},
    ]

    def chat(thread_id: str, assistant_id: str, **kwargs: Any) -> Iterator[_Part]:
        yield _Part("values", {"messages": messages[:1]})
        yield _Part("values", {"messages": messages})

    monkeypatch.setattr(fake_server.runs, "stream", chat)
    argv = ["run", PICNIC, "--url", "http://server:2024", "--assistant", "chat"]

    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == ["", "Answer: Bring a blanket."]
    assert not any(line.startswith(("Summary:", "Status:")) for line in lines)

    assert cli.main([*argv, "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1] == {"event": "output", "answer": "Bring a blanket."}


def test_an_unreachable_server_is_one_line_naming_the_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    url = f"http://127.0.0.1:{_free_port()}"

    assert cli.main(["run", PICNIC, "--url", url, "--json"]) == 1

    out, err = capsys.readouterr()
    (line,) = err.splitlines()
    assert line.startswith(f"agentloop: error: cannot reach the Agent Server at {url} ")
    assert "Traceback" not in err
    # Under --json the same message ends stdout as an error event.
    assert [json.loads(printed) for printed in out.splitlines()] == [
        {"event": "error", "error": line.removeprefix("agentloop: error: ")}
    ]


def test_without_langgraph_sdk_it_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "langgraph_sdk", None)  # what `import` then refuses

    assert cli.main(["run", PICNIC, "--url", "http://127.0.0.1:9"]) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line == "agentloop: error: --url needs langgraph-sdk: pip install langgraph-sdk"


# --- slow: langgraph dev -------------------------------------------------------------


@pytest.mark.slow
def test_a_run_on_langgraph_dev_shows_the_same_progress_as_a_local_one(
    server_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["run", FAIL_STEP_2, "--model", "demo"]) == 0
    local = capsys.readouterr().out.splitlines()

    assert cli.main(["run", FAIL_STEP_2, "--model", "demo", "--url", server_url]) == 0
    remote = capsys.readouterr().out.splitlines()

    assert remote.pop(2) == f"Server: {server_url} (agent_loop)"
    assert remote.pop(2).startswith("Thread: ")  # the server's thread, which a local run lacks

    def same(lines: list[str]) -> list[str]:  # durations aside
        return [re.sub(r"\d+\.\d s", "_ s", line) for line in lines]

    assert same(remote) == same(local)


@pytest.mark.slow
def test_json_and_exit_statuses_through_langgraph_dev(
    server_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["run", "Plan a picnic, break step 2", "--model", "demo", "--json"]
    assert cli.main(argv) == 2
    local = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert cli.main([*argv, "--url", server_url]) == 2

    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    thread = events.pop(0)
    assert thread == {"event": "thread", "thread_id": thread["thread_id"], "url": server_url}
    assert [event["event"] for event in events] == [event["event"] for event in local]
    assert events[-1]["status"] == "partial"
    assert (
        events[-1]["budget"]["spent"]["model_calls"] == 8
    )  # plan, 4 steps, a revision, its retry, answer


@pytest.mark.slow
def test_a_budget_stops_a_run_on_langgraph_dev(
    server_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["run", PICNIC, "--model", "demo", "--url", server_url, "--max-model-calls", "3"]
    assert cli.main(argv) == 2

    lines = capsys.readouterr().out.splitlines()
    assert "[3/4] Work out the result from those facts ..." in lines
    assert lines[lines.index("[3/4] Work out the result from those facts ...") + 1] == (
        "    ✗ failed: budget exhausted: model calls"
    )
    assert (
        f"Summary: {PICNIC}: Completed 2/4 steps, 1 failed. Stopped: model calls budget spent."
        in lines
    )
    assert any(line.startswith("Spent: 3 model calls, ") for line in lines)


@pytest.mark.slow
def test_a_plan_approved_on_langgraph_dev_runs(
    server_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("e\nPack the basket\nWalk to the park\n\n"))

    argv = ["run", PICNIC, "--model", "demo", "--url", server_url, "--approve", "--stream"]
    assert cli.main(argv) == 0

    out = capsys.readouterr().out
    assert "Run this plan? y = run it, e = edit it, n = cancel: e\n" in out
    assert (
        "[1/2] Pack the basket ...\n    [demo] Step 1 done: Pack the basket.\n    ✓ done\n" in out
    )
    assert "Writing the answer:\n    [demo] Final answer for 'Plan a picnic'" in out
    assert f"Summary: {PICNIC}: Completed 2/2 steps." in out


@pytest.mark.slow
def test_an_unknown_assistant_on_langgraph_dev_is_one_line(
    server_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["run", PICNIC, "--url", server_url, "--assistant", "nope"]) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"agentloop: error: the Agent Server at {server_url} refused the run: ")
    assert "'nope'" in line


@pytest.mark.slow
def test_the_chat_app_on_langgraph_dev_answers_and_exits_0(
    server_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["run", "Plan a picnic then pack the basket", "--model", "demo", "--url", server_url]
    argv += ["--assistant", "chat_app"]

    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("Answer: [demo] Here is what the agent loop")
    assert not any(line.startswith(("Summary:", "Status:")) for line in lines)

    assert cli.main([*argv, "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "thread"
    assert events[-1]["event"] == "output"
    assert events[-1]["answer"].startswith("[demo] Here is what the agent loop")
