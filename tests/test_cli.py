"""The `agentloop` command, through `agentloop_graph.cli.main` in this process.

Subprocess tests (Ctrl-C, startup imports, exit statuses, a terminal) are in
`test_cli_process.py`.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from agentloop_graph import checks, cli, create_agent_loop, graph, models
from agentloop_graph.testing import ScriptedChatModel, Slow

FAIL_STEP_2 = "Plan a picnic, fail step 2"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _use_model(monkeypatch: pytest.MonkeyPatch, model: BaseChatModel) -> None:
    monkeypatch.setattr(cli, "connect", lambda spec, **options: (model, {}))


def _answers(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


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
def broken_ollama(local_ollama_env: None) -> Iterator[str]:
    """The `host:port` of a server that answers like Ollama but fails every chat call."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenOllama)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


# --- the run's output ----------------------------------------------------------------


def test_demo_run_prints_plan_steps_adaptation_and_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["run", FAIL_STEP_2, "--model", "demo"]) == 0

    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[:3] == [cli.DEMO_NOTE, f"Task: {FAIL_STEP_2}", "Plan (4 steps):"]
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


def test_the_task_is_printed_before_planning_begins(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []

    def plan(call: Any) -> str:
        seen.append(capsys.readouterr().out)
        return "1. a"

    _use_model(monkeypatch, ScriptedChatModel(responses={"planner": [plan], "executor": ["a"]}))

    cli.main(["run", "the task"])

    assert seen == ["Task: the task\nModel: ollama:llama3.2\n"]


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


def test_json_events_are_the_librarys_own_with_every_field(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Whatever the library puts in an event (`answer` in task_complete, say) reaches
    # the JSON lines: the command prints events, it does not rebuild them.
    script = {"planner": ["1. a\n2. b"], "executor": ["did a", "did b"], "summariser": ["ok"]}
    library = list(
        create_agent_loop(ScriptedChatModel(responses=script)).stream(
            {"task": "t"}, stream_mode="custom"
        )
    )
    _use_model(monkeypatch, ScriptedChatModel(responses=script))

    assert cli.main(["run", "t", "--json"]) == 0

    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [sorted(event) for event in printed] == [sorted(event) for event in library]
    assert printed[-1].get("answer") == library[-1].get("answer")


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


@pytest.mark.parametrize(
    ("adapter", "calls", "why"),
    [
        # The budget refused the adapter's call.
        (["b, differently"], "3", "budget exhausted: model calls"),
        # The adapter proposed the step it was given.
        (["b"], "9", "the adapter proposed no new approach"),
        # The adapter's own call failed.
        ([RuntimeError("no idea")], "9", "RuntimeError: no idea"),
    ],
)
def test_a_step_the_adapter_could_not_revise_says_why_it_ended(
    adapter: list[Any],
    calls: str,
    why: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": ["1. a\n2. b"],
            "executor": ["did a", RuntimeError("boom")],
            "adapter": adapter,
            "summariser": ["ok"],
        }
    )
    _use_model(monkeypatch, model)

    assert cli.main(["run", "two things", "--max-model-calls", calls]) == 2

    lines = capsys.readouterr().out.splitlines()
    assert lines[lines.index("[2/2] b ...") :][:3] == [
        "[2/2] b ...",
        "    ✗ failed: RuntimeError: boom",
        f"    ✗ step failed: {why}",
    ]


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


def test_a_failed_final_answer_is_one_warning_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ScriptedChatModel(
        responses={"planner": ["1. a"], "executor": ["did a"], "summariser": [OSError("gone")]}
    )
    _use_model(monkeypatch, model)

    assert cli.main(["run", "one thing"]) == 0

    out, err = capsys.readouterr()
    assert "Status: completed" in out and "Answer:" not in out
    assert err.splitlines() == [
        "agentloop: warning: the final answer could not be written: OSError('gone')"
    ]


# --- live activity -------------------------------------------------------------------


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_a_still_working_line_follows_each_heartbeat_of_silence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock, spending = _Clock(), cli.Spending()
    console = cli.Console(spending, quiet=False, clock=clock)
    spending.planning()
    console.working("planning")

    def after(seconds: float) -> str:
        clock.now += seconds
        console.tick()
        return capsys.readouterr().out

    assert after(cli.HEARTBEAT - 0.5) == ""
    assert after(0.5) == "    … planning, 10 s so far (1 model call)\n"
    assert after(cli.HEARTBEAT - 0.5) == ""  # silence counts from the last line
    console.say("Plan (1 step):")
    assert after(cli.HEARTBEAT - 0.5) == "Plan (1 step):\n"
    spending.update({"event": "agentic.step_started", "spent": {"model_calls": 1, "tokens": 900}})
    console.working("step 1/1")
    assert after(1) == "    … step 1/1, 1 s so far (1 model call, 900 tokens)\n"
    assert after(cli.HEARTBEAT) == "    … step 1/1, 11 s so far (1 model call, 900 tokens)\n"
    console.working(None)
    assert after(cli.HEARTBEAT) == ""  # nothing running, nothing to say


def _a_heartbeat_every_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's clock moves a heartbeat each time it is read: off a terminal, every tick
    while the model works prints a still-working line, with no wait for the heartbeat."""
    now = itertools.count(step=cli.HEARTBEAT)
    monkeypatch.setattr(cli, "Console", functools.partial(cli.Console, clock=lambda: next(now)))


def test_output_that_is_not_a_terminal_gets_plain_still_working_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _a_heartbeat_every_tick(monkeypatch)
    model = ScriptedChatModel(
        responses={
            "planner": [Slow(0.3, "1. a")],
            "executor": [Slow(0.3, "did a")],
            "summariser": [Slow(0.3, "all done")],
        }
    )
    _use_model(monkeypatch, model)

    assert cli.main(["run", "one slow thing"]) == 0

    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    for label, before, spent in [
        # What the events say was spent: calls counted as they start, a step's once its next
        # event comes; planning's is on its way from the start.
        ("planning", "Plan (1 step):", "1 model call"),
        ("step 1/1", "    ✓ done: did a", "1 model call"),
        ("writing the answer", "", "2 model calls"),
    ]:
        heartbeat = next(i for i, line in enumerate(lines) if line.startswith(f"    … {label},"))
        assert re.fullmatch(rf"    … {label}, \d+ s so far \({spent}\)", lines[heartbeat])
        assert lines.index(before, heartbeat) > heartbeat


def test_activity_follows_the_events() -> None:
    activity = cli.Activity()
    started = {"event": "agentic.step_started", "step": 1, "total": 2, "attempt": 1}
    assert activity.update(started) == "step 1/2"
    assert activity.update({**started, "event": "agentic.step_failed"}) == "revising step 1/2"
    assert activity.update({**started, "attempt": 2}) == "step 1/2, attempt 2"
    done = {"event": "agentic.step_complete", "step": 1, "total": 2}
    assert activity.update(done) is None
    assert activity.update({**started, "step": 2}) == "step 2/2"
    assert activity.update({**done, "step": 2}) == "writing the answer"


def test_activity_of_a_parallel_run_names_every_running_step() -> None:
    activity = cli.Activity()
    started = {"event": "agentic.step_started", "total": 3, "attempt": 1}
    activity.update({**started, "step": 1})
    assert activity.update({**started, "step": 3}) == "steps 1, 3 of 3"
    failed = {"event": "agentic.step_failed", "step": 1, "total": 3}
    assert activity.update(failed) == "steps 1 (revising), 3 of 3"
    # The plan's last step ends first: the others still run, the answer is not next.
    assert activity.update({"event": "agentic.step_complete", "step": 3, "total": 3}) == (
        "revising step 1/3"
    )
    activity.update({"event": "agentic.step_complete", "step": 1, "total": 3})
    assert activity.update({**started, "step": 2}) == "step 2/3"
    assert activity.update({"event": "agentic.step_complete", "step": 2, "total": 3}) == (
        "writing the answer"
    )


# --- --stream ------------------------------------------------------------------------


class _Watchful(BaseChatModel):
    """Streams "alpha omega", and before "omega" waits until that "alpha" is printed."""

    printed: Any
    saw_alpha_first: list[bool] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "watchful"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage("1. one step"))])

    def _stream(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        if "numbered steps" in messages[-1].text:
            yield ChatGenerationChunk(message=AIMessageChunk("1. one step"))
            return
        before = self.printed().count("alpha")
        yield ChatGenerationChunk(message=AIMessageChunk("alpha "))
        seen = threading.Event()
        for _ in range(200):  # up to 10 s: generous, and only slow if streaming is broken
            if self.printed().count("alpha") > before:
                seen.set()
                break
            seen.wait(0.05)
        self.saw_alpha_first.append(seen.is_set())
        yield ChatGenerationChunk(message=AIMessageChunk("omega"))


def test_stream_prints_tokens_as_the_model_writes_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    captured: list[str] = []

    def printed() -> str:
        captured.append(capsys.readouterr().out)
        return "".join(captured)

    model = _Watchful(printed=printed)
    _use_model(monkeypatch, model)

    assert cli.main(["run", "one thing", "--stream"]) == 0

    out = "".join(captured) + capsys.readouterr().out
    # The step's and the answer's tokens each reached stdout before the next one was made.
    assert model.saw_alpha_first == [True, True]
    lines = out.splitlines()
    assert lines[lines.index("[1/1] one step ...") :][:3] == [
        "[1/1] one step ...",
        "    alpha omega",
        "    ✓ done",
    ]
    assert lines[lines.index("Writing the answer:") + 1] == "    alpha omega"
    assert "Answer: alpha omega" in lines


def test_stream_shows_executor_and_summariser_text_but_not_the_plan_twice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GenericFakeChatModel streams word by word; the planner's words stay unprinted.
    answers = iter(["1. scout\n2. leap", "looked\ncarefully", "leapt", "crossed it"])
    _use_model(monkeypatch, GenericFakeChatModel(messages=answers))

    assert cli.main(["run", "cross the stream", "--stream"]) == 0

    out = capsys.readouterr().out
    assert out.count("scout") == 2  # the plan line and the step line, no streamed plan
    assert "[1/2] scout ...\n    looked\n    carefully\n    ✓ done\n" in out
    assert "Writing the answer:\n    crossed it\n" in out
    assert "Answer: crossed it" in out


def test_stream_and_json_do_not_mix(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "x", "--model", "demo", "--stream", "--json"]) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("agentloop: error: argument --json: not allowed with argument")


# --- options -------------------------------------------------------------------------


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0

    assert capsys.readouterr().out == f"agentloop {version('agentloop-graph')}\n"


def test_the_default_model_is_the_librarys() -> None:
    assert cli.DEFAULT_MODEL == models.DEFAULT_MODEL


def test_max_adaptations_0_leaves_a_failed_step_failed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["run", FAIL_STEP_2, "--model", "demo", "--max-adaptations", "0"]) == 2

    out = capsys.readouterr().out
    assert "    ✗ step failed, no adaptation left" in out
    assert "↻ adapted" not in out


def test_max_adaptations_allows_more_attempts(capsys: pytest.CaptureFixture[str]) -> None:
    task = "Plan a picnic, break step 2"
    assert cli.main(["run", task, "--model", "demo", "--max-adaptations", "2"]) == 2

    out = capsys.readouterr().out
    assert "[2/4] attempt 3, with the revised step ..." in out
    assert "attempt 4" not in out


def test_step_timeout_fails_a_slow_attempt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ScriptedChatModel(
        responses={"planner": ["1. a"], "executor": [Slow(5.0, "late")], "summariser": ["no"]}
    )
    _use_model(monkeypatch, model)

    argv = ["run", "one thing", "--step-timeout", "0.2", "--max-adaptations", "0"]
    assert cli.main(argv) == 1

    out = capsys.readouterr().out
    assert "    ✗ failed: the attempt timed out after 0.2 s" in out
    assert "Status: failed" in out


@pytest.mark.usefixtures("no_retry_backoff")
def test_ollama_host_option_wins_over_the_environment(
    broken_ollama: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{_free_port()}")

    argv = ["run", "Plan a picnic", "--model", "ollama:llama3.2", "--ollama-host", broken_ollama]
    assert cli.main(argv) == 1

    out, err = capsys.readouterr()
    # The probe and the model both went to the option's server, which fails chat calls.
    assert "Summary: Planning failed:" in out and "model runner crashed" in out
    assert err == ""


def test_unreachable_ollama_host_option_is_named(
    local_ollama_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_port()

    argv = ["run", "x", "--model", "ollama:llama3.2", "--ollama-host", f":{port}"]
    assert cli.main(argv) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert f"cannot reach the Ollama server at http://127.0.0.1:{port}" in line


# --- plan approval -------------------------------------------------------------------


def test_approve_yes_runs_the_plan(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _answers(monkeypatch, "y\n")

    assert cli.main(["run", "Plan a picnic", "--model", "demo", "--approve"]) == 0

    out = capsys.readouterr().out
    prompt = "Run this plan? y = run it, e = edit it, n = cancel: y\n"
    assert out.index("    4. Check the result and write it up") < out.index(prompt)
    assert out.index(prompt) < out.index("[1/4] ")
    assert "Status: completed" in out


def test_approve_edit_runs_the_typed_steps(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _answers(monkeypatch, "maybe\ne\nPack the basket\n  Walk to the park  \n\n")

    assert cli.main(["run", "Plan a picnic", "--model", "demo", "--approve"]) == 0

    out = capsys.readouterr().out
    assert "Please answer y, e or n." in out
    assert "Plan (2 steps, edited):\n    1. Pack the basket\n    2. Walk to the park\n" in out
    assert [line for line in out.splitlines() if line.startswith("[")] == [
        "[1/2] Pack the basket ...",
        "[2/2] Walk to the park ...",
    ]


def test_an_edited_parallel_plan_says_which_step_each_line_is_about(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _answers(monkeypatch, "e\nfetch A\nfetch B\ncompare (after 1, 2)\n\n")

    argv = ["run", "Plan a picnic", "--model", "demo", "--parallel", "--approve"]
    assert cli.main(argv) == 0

    lines = capsys.readouterr().out.splitlines()
    done = [line for line in lines if "✓ done" in line]
    assert sorted(done) == [
        "    [1/3] ✓ done: [demo] Step 1 done: fetch A.",
        "    [2/3] ✓ done: [demo] Step 2 done: fetch B.",
        "    [3/3] ✓ done: [demo] Step 3 done: compare.",
    ]


def test_approve_edit_with_no_steps_asks_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _answers(monkeypatch, "e\n\ny\n")

    assert cli.main(["run", "Plan a picnic", "--model", "demo", "--approve"]) == 0

    out = capsys.readouterr().out
    assert "A plan needs at least one step." in out
    assert "[4/4] " in out


@pytest.mark.parametrize("answers", ["n\n", "no\n", ""])
def test_approve_no_or_no_answer_cancels_and_exits_1(
    answers: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _answers(monkeypatch, answers)

    assert cli.main(["run", "Plan a picnic", "--model", "demo", "--approve"]) == 1

    out = capsys.readouterr().out
    assert "Summary: Plan a picnic: Plan rejected; no step ran." in out
    assert "Status: cancelled" in out
    assert "[1/4]" not in out
    assert ("end of input" in out) == (answers == "")


def test_approve_in_json_mode_asks_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _answers(monkeypatch, "y\n")

    assert cli.main(["run", "Plan a picnic", "--model", "demo", "--approve", "--json"]) == 0

    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event"] == "agentic.plan_ready"
    assert events[-1]["status"] == "completed"
    assert "Plan (4 steps):" in err and "Run this plan?" in err


# --- errors --------------------------------------------------------------------------


def test_unreachable_ollama_names_the_url_and_the_ways_out(
    local_ollama_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = _free_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")

    assert cli.main(["run", "Plan a picnic"]) == 1

    out, err = capsys.readouterr()
    assert out == "Task: Plan a picnic\n"
    (line,) = err.splitlines()
    assert line.startswith("agentloop: error: ")
    assert f"http://127.0.0.1:{port}" in line
    assert "ollama serve" in line
    assert "--model demo" in line
    assert "Traceback" not in err


@pytest.mark.usefixtures("no_retry_backoff")
def test_reachable_ollama_whose_model_fails_reports_planning_failure(
    broken_ollama: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", broken_ollama)

    assert cli.main(["run", "Plan a picnic", "--model", "ollama:llama3.2"]) == 1

    out, err = capsys.readouterr()
    # Before the run: the model and its server.
    assert out.startswith(
        f"Task: Plan a picnic\nModel: ollama:llama3.2 at http://{broken_ollama}\n"
    )
    assert "Summary: Planning failed:" in out
    assert "model runner crashed" in out
    assert "Status: failed" in out
    assert err == ""


def test_a_socks_proxy_without_socksio_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        import socksio  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("socksio is installed, so httpx can use the proxy")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")

    assert cli.main(["run", "x", "--model", "ollama:llama3.2"]) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("agentloop: error: --model 'ollama:llama3.2' cannot be built: ")
    assert "pip install socksio, or unset ALL_PROXY" in line


def test_a_provider_without_its_api_key_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("langchain_openai")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    assert cli.main(["run", "x", "--model", "openai:gpt-4o-mini"]) == 1

    out, err = capsys.readouterr()
    (line,) = err.splitlines()
    assert line.startswith(
        "agentloop: error: --model 'openai:gpt-4o-mini' cannot be built: set OPENAI_API_KEY ("
    )
    assert out == "Task: x\n"


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["run", "   ", "--model", "demo"], "the task is empty"),
        (["run", "Plan a picnic", "--model", "demo", "--max-steps", "0"], "--max-steps"),
        (["run", "Plan a picnic", "--model", "demo", "--max-steps", "many"], "--max-steps"),
        (["run", "x", "--model", "demo", "--max-adaptations", "-1"], "--max-adaptations"),
        (["run", "x", "--model", "demo", "--max-adaptations", "1.5"], "--max-adaptations"),
        (["run", "x", "--model", "demo", "--step-timeout", "0"], "--step-timeout"),
        (["run", "x", "--model", "demo", "--step-timeout", "-2"], "--step-timeout"),
        (["run", "x", "--model", "demo", "--step-timeout", "nan"], "--step-timeout"),
        (["run", "x", "--model", "demo", "--step-timeout", "inf"], "--step-timeout"),
        (["run", "x", "--model", "demo", "--step-timeout", "soon"], "--step-timeout"),
        (["run", "x", "--model", "ollama:a", "--ollama-host", "h:port"], "--ollama-host 'h:port'"),
        (["run", "x", "--max-model-calls", "0"], "--max-model-calls"),
        (["run", "x", "--max-model-calls", "two"], "--max-model-calls"),
        (["run", "x", "--max-tokens", "-5"], "--max-tokens"),
        (["run", "x", "--max-tokens", "1.5"], "--max-tokens"),
        (["run", "x", "--max-seconds", "0"], "--max-seconds"),
        (["run", "x", "--max-seconds", "nan"], "--max-seconds"),
        (["run", "x", "--max-seconds", "soon"], "--max-seconds"),
        (["run", "x", "--url", "127.0.0.1:2024"], "--url: must be an http:// or https:// URL"),
        (["run", "x", "--url", "http://"], "--url"),
        (["run", "x", "--assistant", "other"], "--assistant needs --url"),
        (["run", "x", "--url", "http://h:1", "--ollama-host", "h"], "--ollama-host is for local"),
        (["run", "Plan a picnic", "--model", "nonsense"], "'nonsense' is not a model string"),
        (["run", "Plan a picnic", "--model", "ollama:"], "'ollama:' is not a model string"),
        (["run", "x", "--model", "nonsense:x"], "names no provider LangChain knows"),
        (["run", "x", "--model", "demo", "--max-parallel", "2"], "--max-parallel needs --parallel"),
        (
            ["run", "x", "--model", "demo", "--ollama-host", "h"],
            "--ollama-host is for ollama: models, and --model 'demo' is not one",
        ),
        (
            ["run", "x", "--model", "openai:gpt-4o-mini", "--ollama-host", "h"],
            "--ollama-host is for ollama: models, and --model 'openai:gpt-4o-mini' is not one",
        ),
        (
            ["run", "x", "--url", "http://h:1", "--model-timeout", "5"],
            "--model-timeout is for local",
        ),
        (["run", "x", "--model", "demo", "--model-timeout", "0"], "--model-timeout must be"),
        (["run"], "give the task: as TASK, - (stdin) or --task-file PATH (see `agentloop run"),
        (["run", "x", "--task-file", "t.txt"], "give the task once (TASK and --task-file both do)"),
        (["run", "--task-file", "/no/such/file"], "cannot read --task-file /no/such/file: "),
        (["run", "-", "--approve"], "--approve reads its answers from stdin"),
        ([], "COMMAND"),
        (["walk", "Plan a picnic"], "invalid choice: 'walk'"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_1(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 1

    out, err = capsys.readouterr()
    assert out in ("", f"Task: {''.join(argv[1:2])}\n")
    (line,) = err.splitlines()
    assert line.startswith("agentloop: error: ")
    assert problem in line
    assert "model_provider" not in line


@pytest.mark.parametrize(
    ("argv", "check"),
    [
        (["--max-steps", "0"], lambda: checks.check_count("--max-steps", 0, 1)),
        (["--max-replans", "1.5"], lambda: checks.check_count("--max-replans", "1.5", 0)),
        (["--max-tokens", "-5"], lambda: checks.check_count("--max-tokens", -5, 1)),
        (["--step-timeout", "nan"], lambda: checks.check_seconds("--step-timeout", float("nan"))),
        (["--max-seconds", "soon"], lambda: checks.check_seconds("--max-seconds", "soon")),
    ],
)
def test_out_of_range_options_are_refused_in_the_librarys_own_words(
    argv: list[str], check: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError) as library:
        check()

    assert cli.main(["run", "x", "--model", "demo", *argv]) == 1

    assert capsys.readouterr().err == (
        f"agentloop: error: {library.value} (see `agentloop run --help`)\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        # Refused by the parser, and after it.
        ["run", "x", "--model", "demo", "--max-steps", "0", "--json"],
        ["run", "x", "--model", "demo", "--max-parallel", "2", "--json"],
        ["run", "--json"],
    ],
)
def test_under_json_a_refused_command_line_ends_with_an_error_event(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 1

    out, err = capsys.readouterr()
    (line,) = err.splitlines()
    assert [json.loads(printed) for printed in out.splitlines()] == [
        {"event": "error", "error": line.removeprefix("agentloop: error: ")}
    ]


def test_under_json_an_unreachable_model_server_ends_with_an_error_event(
    local_ollama_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{_free_port()}")

    assert cli.main(["run", "Plan a picnic", "--json"]) == 1

    out, err = capsys.readouterr()
    event = json.loads(out.splitlines()[-1])
    assert event["event"] == "error"
    assert event["error"].startswith("cannot reach the Ollama server at ")
    assert err == f"agentloop: error: {event['error']}\n"


def test_under_json_a_run_that_raises_ends_with_an_error_event(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def raising(answer: Any) -> Iterator[tuple[str, Any]]:
        yield "custom", {"event": "agentic.plan_ready", "steps": ["a"], "total": 1}
        raise RuntimeError("the database went away")

    monkeypatch.setattr(cli, "_in_process", lambda args, stack: cli.Prepared(raising))

    assert cli.main(["run", "x", "--model", "demo", "--json"]) == 1

    out, err = capsys.readouterr()
    message = "the run stopped: RuntimeError: the database went away"
    assert err.splitlines()[-1] == f"agentloop: error: {message}"
    assert [json.loads(line)["event"] for line in out.splitlines()] == [
        "agentic.plan_ready",
        "error",
    ]
    assert json.loads(out.splitlines()[-1])["error"] == message


def test_under_json_ctrl_c_ends_with_an_error_event(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: Any, stack: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_in_process", interrupted)

    assert cli.main(["run", "x", "--model", "demo", "--json"]) == cli.INTERRUPTED

    out, err = capsys.readouterr()
    assert err.splitlines()[-1] == "agentloop: interrupted"
    assert [json.loads(line) for line in out.splitlines()] == [
        {"event": "error", "error": "interrupted"}
    ]


# --- the task and the model ----------------------------------------------------------


def test_the_task_can_come_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _answers(monkeypatch, "  Plan a picnic\n")

    assert cli.main(["run", "-", "--model", "demo"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "Task: Plan a picnic"
    assert "Summary: Plan a picnic: Completed 4/4 steps." in lines


def test_a_long_task_from_a_file_runs_whole_and_is_shown_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = "Plan a picnic for the whole team\n" + "\n".join(f"- bring {i}" for i in range(40))
    path = tmp_path / "task.txt"
    path.write_text(task + "\n", encoding="utf-8")
    argv = ["run", "--task-file", str(path), "--model", "demo"]

    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[1] == f"Task: Plan a picnic for the whole team… ({len(task):,} characters, 41 lines)"
    )

    assert cli.main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["task"] == task


def test_a_long_one_line_task_is_cut_on_the_task_line(capsys: pytest.CaptureFixture[str]) -> None:
    task = "Plan a picnic " + "and then some more " * 12

    assert cli.main(["run", task, "--model", "demo", "--max-steps", "1"]) == 0

    shown = capsys.readouterr().out.splitlines()[1]
    assert shown == f"Task: {task[: cli.PREVIEW - 1]}… ({len(task.strip()):,} characters)"


def test_agentloop_model_is_the_default_model_and_model_wins(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cli.MODEL_ENV, "demo")
    assert cli.main(["run", "Plan a picnic"]) == 0
    assert capsys.readouterr().out.startswith(f"{cli.DEMO_NOTE}\nTask: Plan a picnic\n")

    monkeypatch.setenv(cli.MODEL_ENV, "nonsense")
    assert cli.main(["run", "Plan a picnic", "--model", "demo"]) == 0
    capsys.readouterr()

    assert cli.main(["run", "Plan a picnic"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("agentloop: error: AGENTLOOP_MODEL 'nonsense' is not a model string")


@pytest.mark.parametrize(
    ("argv", "timeout"),
    [
        # A model on a server gets a time limit per call, so a hung server cannot hang us.
        ([], cli.MODEL_SERVER_TIMEOUT),
        (["--model-timeout", "7.5"], 7.5),
        (["--model", "demo"], None),
        (["--model", "demo", "--model-timeout", "2"], 2.0),
    ],
)
def test_each_model_call_has_a_time_limit_when_the_model_is_on_a_server(
    argv: list[str], timeout: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[dict[str, Any]] = []

    def create(model: Any, **options: Any) -> Any:
        built.append(options)
        return create_agent_loop(model, **options)

    monkeypatch.setattr(graph, "create_agent_loop", create)
    if "demo" not in argv:
        _use_model(monkeypatch, ScriptedChatModel(responses={"planner": ["1. a"], None: ["ok"]}))

    assert cli.main(["run", "one thing", *argv]) == 0

    assert [options["model_timeout"] for options in built] == [timeout]


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_help_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 0

    out = capsys.readouterr().out
    assert "usage: agentloop" in out
    assert "--model demo" in out
    assert "130 interrupted" in out and "cancelled (--approve)" in out


# --- budgets -------------------------------------------------------------------------


def _two_steps() -> ScriptedChatModel:
    """Plan, two steps and an answer: four model calls."""
    return ScriptedChatModel(
        responses={"planner": ["1. a\n2. b"], "executor": ["did a", "did b"], "summariser": ["ok"]}
    )


@pytest.mark.parametrize(
    ("calls", "status", "stopped_at", "lines"),
    [
        # Enough for every call: nothing is stopped.
        (4, 0, None, ["Status: completed", "Answer: ok"]),
        # One short: both steps ran, only the answer was refused.
        (3, 0, "the answer", ["Status: completed"]),
        # Two short: step 2's call was refused, so it failed and the run is partial.
        (2, 2, "step 2", ["[2/2] b ...", "    ✗ failed: budget exhausted: model calls"]),
    ],
)
def test_max_model_calls_stops_the_run_at_its_edge(
    calls: int,
    status: int,
    stopped_at: str | None,
    lines: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = _two_steps()
    _use_model(monkeypatch, model)

    assert cli.main(["run", "two things", "--max-model-calls", str(calls)]) == status

    printed = capsys.readouterr().out.splitlines()
    assert len(model.calls) == min(calls, 4)
    for line in lines:
        assert any(shown.startswith(line) for shown in printed), line
    (summary,) = [line for line in printed if line.startswith("Summary: ")]
    assert summary.endswith("Stopped: model calls budget spent.") == (stopped_at is not None)
    (spent,) = [line for line in printed if line.startswith("Spent: ")]
    assert re.fullmatch(
        rf"Spent: {min(calls, 4)} model calls, 0 tokens, \d+\.\d s \(limits: {calls} model calls\)",
        spent,
    )
    assert ("Answer: ok" in printed) == (stopped_at is None)


def test_a_demo_run_stopped_by_its_budget_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", FAIL_STEP_2, "--model", "demo", "--max-model-calls", "4"]
    assert cli.main(argv) == 2

    lines = capsys.readouterr().out.splitlines()
    # Plan, step 1, step 2's failed attempt, its revision: then the retry is refused.
    assert lines[lines.index("[2/4] attempt 2, with the revised step ...") :][:3] == [
        "[2/4] attempt 2, with the revised step ...",
        "    ✗ failed: budget exhausted: model calls",
        "    ✗ step failed: budget exhausted: model calls",
    ]
    assert "[3/4]" not in "\n".join(lines)
    assert (
        f"Summary: {FAIL_STEP_2}: Completed 1/4 steps, 1 failed. Stopped: model calls budget spent."
        in lines
    )
    assert any(line.startswith("Status: partial") for line in lines)
    assert any(
        re.fullmatch(
            r"Spent: 4 model calls, [\d,]+ tokens, \d+\.\d s \(limits: 4 model calls\)", line
        )
        for line in lines
    )


def _costly(tokens: int) -> ScriptedChatModel:
    def answer(text: str) -> AIMessage:
        usage = UsageMetadata(input_tokens=tokens - 10, output_tokens=10, total_tokens=tokens)
        return AIMessage(text, usage_metadata=usage)

    return ScriptedChatModel(
        responses={
            "planner": [answer("1. a\n2. b\n3. c")],
            "executor": [answer("did a"), answer("did b"), answer("did c")],
            "summariser": [answer("ok")],
        }
    )


def test_max_tokens_stops_the_run_once_they_are_spent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use_model(monkeypatch, _costly(600))

    assert cli.main(["run", "three things", "--max-tokens", "1500"]) == 2

    lines = capsys.readouterr().out.splitlines()
    # Plan and step 1 spend 1,200 tokens, step 2 brings it to 1,800: step 3 is refused.
    assert lines[lines.index("[3/3] c ...") + 1] == "    ✗ failed: budget exhausted: tokens"
    assert any(line.endswith("Stopped: tokens budget spent.") for line in lines)
    assert any(
        re.fullmatch(r"Spent: 3 model calls, 1,800 tokens, \d+\.\d s \(limits: 1,500 tokens\)", x)
        for x in lines
    )


def test_the_live_line_shows_model_calls_and_tokens_spent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _a_heartbeat_every_tick(monkeypatch)
    model = _costly(1000)
    model.latency = 0.3
    _use_model(monkeypatch, model)

    assert cli.main(["run", "three things"]) == 0

    heartbeats = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("    … ")
    ]
    spent = {
        line.split(" so far ")[0].split(",")[0][6:]: line.split(" so far ")[1]
        for line in heartbeats
    }
    assert spent == {
        "planning": "(1 model call)",
        "step 1/3": "(1 model call, 1,000 tokens)",
        "step 2/3": "(2 model calls, 2,000 tokens)",
        "step 3/3": "(3 model calls, 3,000 tokens)",
        "writing the answer": "(4 model calls, 4,000 tokens)",
    }


def test_max_seconds_stops_a_slow_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _two_steps()
    model.latency = 0.25  # the plan and step 1 fit; step 2's call is cut off at the deadline
    _use_model(monkeypatch, model)

    assert cli.main(["run", "two things", "--max-seconds", "0.7"]) == 2

    out = capsys.readouterr().out
    assert "    ✗ failed: budget exhausted: time" in out
    assert "Stopped: time budget spent." in out
    assert "(limits: 0.7 s)" in out


def test_json_task_complete_carries_the_budget(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "Plan a picnic", "--model", "demo", "--json"]
    assert cli.main([*argv, "--max-model-calls", "9", "--max-seconds", "60"]) == 0

    last = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert last["budget"]["limits"] == {
        "max_model_calls": 9,
        "max_tokens": None,
        "max_seconds": 60.0,
    }
    assert last["budget"]["spent"]["model_calls"] == 6


def test_spending_is_what_the_events_say() -> None:
    spending = cli.Spending()
    spending.planning()
    assert spending.so_far() == "1 model call"
    for calls, tokens in ((1, 20), (3, 1234), (2, 900)):  # a parallel step saw less
        spending.update({"event": "agentic.step_complete", "spent": spent(calls, tokens)})
    assert spending.so_far() == "3 model calls, 1,234 tokens"
    assert spending.line() is None

    spending.update(
        {
            "event": "agentic.task_complete",
            "spent": spent(4, 1234),
            "budget": {
                "limits": {"max_model_calls": None, "max_tokens": 1000, "max_seconds": 2.5},
                "spent": {"model_calls": 4, "tokens": 1234, "seconds": 1.26},
            },
        }
    )
    assert (
        spending.line() == "Spent: 4 model calls, 1,234 tokens, 1.3 s (limits: 1,000 tokens, 2.5 s)"
    )


def spent(model_calls: int, tokens: int) -> dict[str, int]:
    return {"model_calls": model_calls, "tokens": tokens}


def test_max_replans_prints_the_revised_plan(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ScriptedChatModel(
        responses={
            "planner": ["1. bake\n2. frost", "1. buy a cake"],
            "executor": [RuntimeError("the oven is broken"), "bought"],
            "summariser": ["a cake"],
        }
    )
    _use_model(monkeypatch, model)

    argv = ["run", "a birthday", "--max-adaptations", "0", "--max-replans", "1"]
    assert cli.main(argv) == 2

    out = capsys.readouterr().out
    assert "Plan (2 steps, revision 1):\n    1. bake\n    2. buy a cake\n" in out
    assert "[2/2] buy a cake ...\n    ✓ done: bought" in out
    assert "Spent: 5 model calls" in out  # plan, bake, replan, buy, answer


def test_parallel_prints_what_each_step_waits_for_and_which_step_each_line_is_about(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["run", "Plan a picnic, fail step 3", "--model", "demo", "--parallel"]) == 0

    out = capsys.readouterr().out
    assert "    2. Collect the facts the task needs (after 1)\n" in out
    assert "    4. Work out the result from those facts and inputs (after 2, 3)\n" in out
    # Steps 2 and 3 run in one wave (how their lines interleave is up to the threads running
    # them): both start before step 4, and each outcome names its step.
    lines = out.splitlines()
    starts = [
        next(i for i, line in enumerate(lines) if line.startswith(f"[{n}/5]")) for n in (2, 3, 4)
    ]
    assert starts[0] < starts[2] and starts[1] < starts[2]
    assert "    [3/5] ✗ failed: DemoModelError" in out
    assert "    [3/5] ✓ done (adapted): " in out


def test_max_parallel_one_runs_a_parallel_plan_a_step_at_a_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["run", "Plan a picnic", "--model", "demo", "--parallel", "--max-parallel", "1"]
    assert cli.main(argv) == 0

    out = capsys.readouterr().out
    assert "[2/5] Collect the facts the task needs ...\n    [2/5] ✓ done" in out
