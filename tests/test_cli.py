"""The `agentloop` command, through `agentloop_graph.cli.main` and the installed script."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agentloop_graph import cli
from agentloop_graph.testing import ScriptedChatModel

FAIL_STEP_2 = "Plan a picnic, fail step 2"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _use_model(monkeypatch: pytest.MonkeyPatch, model: ScriptedChatModel) -> None:
    monkeypatch.setattr(cli, "connect", lambda spec: model)


@pytest.fixture
def local_ollama_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment must not intercept the 127.0.0.1 probes.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


class _BrokenOllama(BaseHTTPRequestHandler):
    """Answers the probe like Ollama, then fails every chat call."""

    def do_GET(self) -> None:
        self._reply(200, {"models": []})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._reply(500, {"error": "model runner crashed"})

    def _reply(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def broken_ollama(local_ollama_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenOllama)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host = f"127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("OLLAMA_HOST", host)
    yield f"http://{host}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_demo_run_prints_plan_steps_adaptation_and_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["run", FAIL_STEP_2, "--model", "demo"]) == 0

    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == cli.DEMO_NOTE
    assert "    2. Collect the facts and inputs the task needs" in lines
    assert [line.split("]")[0] for line in lines if line.startswith("[")] == [
        "[1/4",
        "[2/4",
        "[2/4",
        "[3/4",
        "[4/4",
    ]
    assert "    ✗ failed: DemoModelError: simulated failure of step 2, as the task asked" in lines
    assert any(line.startswith("    ↻ adapted: Alternative approach: Collect") for line in lines)
    assert "[2/4] attempt 2, with the revised step ..." in lines
    assert any(line.startswith("    ✓ done (adapted): [demo] Step 2 done") for line in lines)
    assert f"Summary: {FAIL_STEP_2}: Completed 3/4 steps, 1 adapted." in lines
    assert any(line.startswith("Status: completed") for line in lines)
    assert f"Answer: [demo] Final answer for '{FAIL_STEP_2}'" in out
    assert err == ""


def test_json_prints_only_the_progress_events_in_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["run", FAIL_STEP_2, "--model", "demo", "--json"]) == 0

    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    step = ["agentic.step_started", "agentic.step_complete"]
    adapted_step = [
        "agentic.step_started",
        "agentic.step_failed",
        "agentic.step_adapted",
        "agentic.step_started",
        "agentic.step_complete",
    ]
    assert [event["event"] for event in events] == [
        "agentic.plan_ready",
        *step,
        *adapted_step,
        *step,
        *step,
        "agentic.task_complete",
    ]
    assert events[-1]["status"] == "completed"
    assert len({event["task_id"] for event in events}) == 1
    assert err.strip() == cli.DEMO_NOTE


def test_truncated_plan_is_partial_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The demo obeys the planner's "at most N steps", so truncation needs a wordier model.
    model = ScriptedChatModel(
        responses={
            "planner": ["1. a\n2. b\n3. c\n4. d"],
            "executor": ["did a", "did b"],
            "summariser": ["half done"],
        }
    )
    _use_model(monkeypatch, model)

    assert cli.main(["run", "four things", "--max-steps", "2"]) == 2

    out = capsys.readouterr().out
    assert "Plan (2 steps):" in out
    assert "Summary: four things: Completed 2/2 steps." in out
    assert "Status: partial" in out


def test_step_that_stays_failed_is_marked_and_run_is_partial(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": ["1. a\n2. b"],
            "executor": ["did a", RuntimeError("boom"), RuntimeError("boom again")],
            "adapter": ["b, differently"],
            "summariser": ["a done, b not"],
        }
    )
    _use_model(monkeypatch, model)

    assert cli.main(["run", "two things"]) == 2

    lines = capsys.readouterr().out.splitlines()
    assert lines[lines.index("[2/2] b ...") :][:6] == [
        "[2/2] b ...",
        "    ✗ failed: RuntimeError: boom",
        "    ↻ adapted: b, differently",
        "[2/2] attempt 2, with the revised step ...",
        "    ✗ failed: RuntimeError: boom again",
        "    ✗ step failed, no adaptation left",
    ]
    assert "Answer: a done, b not" in lines


def test_failed_planning_prints_the_reason_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use_model(monkeypatch, ScriptedChatModel(responses=[RuntimeError("model exploded")]))

    assert cli.main(["run", "anything"]) == 1

    out = capsys.readouterr().out
    assert "Summary: Planning failed: RuntimeError: model exploded" in out
    assert "Status: failed" in out
    assert "Answer:" not in out


def test_failed_run_in_json_mode_ends_with_task_complete(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use_model(monkeypatch, ScriptedChatModel(responses=[RuntimeError("model exploded")]))

    assert cli.main(["run", "anything", "--json"]) == 1

    (event,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert event["event"] == "agentic.task_complete"
    assert event["status"] == "failed"


def test_unreachable_ollama_names_the_url_and_the_ways_out(
    local_ollama_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = _free_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")

    assert cli.main(["run", "Plan a picnic"]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("agentloop: error: ")
    assert f"http://127.0.0.1:{port}" in line
    assert "ollama serve" in line
    assert "--model demo" in line
    assert "Traceback" not in err


def test_reachable_ollama_whose_model_fails_reports_planning_failure(
    broken_ollama: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "Plan a picnic", "--model", "ollama:llama3.2"]) == 1

    out, err = capsys.readouterr()
    assert "Summary: Planning failed:" in out
    assert "model runner crashed" in out
    assert "Status: failed" in out
    assert err == ""


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["run", "   ", "--model", "demo"], "the task is empty"),
        (["run", "Plan a picnic", "--model", "demo", "--max-steps", "0"], "--max-steps"),
        (["run", "Plan a picnic", "--model", "demo", "--max-steps", "many"], "--max-steps"),
        (["run", "Plan a picnic", "--model", "nonsense"], "'nonsense' is not a model string"),
        (["run", "Plan a picnic", "--model", "ollama:"], "'ollama:' is not a model string"),
        (["run"], "TASK"),
        ([], "COMMAND"),
        (["walk", "Plan a picnic"], "invalid choice: 'walk'"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_1(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 1

    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("agentloop: error: ")
    assert problem in line


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_help_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 0

    out = capsys.readouterr().out
    assert "usage: agentloop" in out
    assert "--model demo" in out


@pytest.mark.slow
def test_installed_console_script_runs_the_demo() -> None:
    script = Path(sys.executable).parent / "agentloop"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}

    done = subprocess.run(
        [str(script), "run", FAIL_STEP_2, "--model", "demo"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(cli.DEMO_NOTE)
    assert "↻ adapted:" in done.stdout
    assert "Status: completed" in done.stdout
    assert done.stderr == ""
