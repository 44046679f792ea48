"""The `agentloop` command as its own process: startup imports, exit statuses, Ctrl-C, a terminal.

Every process runs this checkout's code (`PYTHONPATH` puts it first), the way the console
script runs it: `main()` reading `sys.argv`.
"""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from agentloop_graph import cli
from tests.support.fake_ollama import (
    Delay,
    FakeOllama,
    Request,
    Response,
    Scripted,
    phase_of,
    reply,
)
from tests.support.workers import killed_worker

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "support" / "cli_worker.py"
LIBRARIES = ("langchain", "langchain_core", "langgraph", "langsmith", "pydantic", "httpx")
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    "PYTHONIOENCODING": "utf-8",
}
WAIT = 120.0
"""Seconds a process may take to reach a point: generous, the machine may be busy."""


def _loaded_libraries(code: str) -> list[str]:
    """The heavy libraries in `sys.modules` after `code` runs in a fresh interpreter."""
    report = (
        f"import sys; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({LIBRARIES!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=WAIT,
        check=True,
    )
    return eval(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["run", "--help"]])
def test_help_and_version_load_no_langchain(argv: list[str]) -> None:
    # What the console script does: import main from the module, then call it.
    assert _loaded_libraries(f"from agentloop_graph.cli import main; main({argv!r})") == []


def _agentloop(
    *args: str, stdin: str | None = None, env: dict[str, str] = ENV
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentloop_graph.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=WAIT,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "stdin", "status"),
    [
        (["run", "Plan a picnic", "--model", "demo"], None, 0),
        (["run", "Plan a picnic, break step 2", "--model", "demo"], None, 2),
        (["run", "Plan a picnic", "--model", "demo", "--approve"], "n\n", 1),
        (["run", "Plan a picnic", "--model", "nonsense"], None, 1),
        (["run", "Plan a picnic", "--model", "demo", "--step-timeout", "nan"], None, 1),
    ],
)
def test_exit_statuses(args: list[str], stdin: str | None, status: int) -> None:
    done = _agentloop(*args, stdin=stdin)

    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "\r" not in done.stdout  # not a terminal: no redrawn activity line
    if status == 1 and stdin is None:
        assert done.stderr.startswith("agentloop: error: ")
        assert done.stderr.count("\n") == 1


class _Running:
    """A command process whose output is collected as it arrives."""

    def __init__(self, *args: str, latency: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), str(latency), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        self._output = {"out": b"", "err": b""}
        self._arrived = threading.Condition()
        self._readers = [
            threading.Thread(target=self._collect, args=(name, pipe), daemon=True)
            for name, pipe in (("out", self.process.stdout), ("err", self.process.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _collect(self, name: str, pipe: IO[bytes] | None) -> None:
        assert pipe is not None
        while chunk := os.read(pipe.fileno(), 4096):
            with self._arrived:
                self._output[name] += chunk
                self._arrived.notify_all()

    def wait_for(self, text: str) -> None:
        with self._arrived:
            found = self._arrived.wait_for(lambda: text.encode() in self._output["out"], WAIT)
        assert found, f"{text!r} never came; stdout so far: {self._output['out']!r}"

    def interrupt(self, times: int = 1) -> tuple[int, str, str]:
        """Press Ctrl-C `times` times; the exit status, stdout and stderr."""
        for _ in range(times):
            self.process.send_signal(signal.SIGINT)
            time.sleep(0.01)
        status = self.process.wait(timeout=WAIT)
        for reader in self._readers:
            reader.join(WAIT)
        return status, self._output["out"].decode(), self._output["err"].decode()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)
        for reader in self._readers:
            reader.join(WAIT)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def start() -> Iterator[Callable[..., _Running]]:
    """Start command processes (through `cli_worker.py`); each is cleaned up afterwards."""
    started: list[_Running] = []

    def _start(*args: str, latency: float) -> _Running:
        started.append(_Running(*args, latency=latency))
        return started[-1]

    yield _start
    for running in started:
        running.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "moment"),
    [
        # Printed at once: LangChain and LangGraph are still being imported.
        (["run", "Plan a picnic", "--model", "demo"], "Task: Plan a picnic\n"),
        # Planning is done and the first step's slow call is about to start.
        (["run", "Plan a picnic", "--model", "demo"], "Plan (4 steps):\n"),
        # A step's slow call is under way.
        (["run", "Plan a picnic", "--model", "demo"], "[2/4] "),
        # Waiting for the person to answer on the plan.
        (["run", "Plan a picnic", "--model", "demo", "--approve"], "n = cancel: "),
    ],
)
def test_ctrl_c_is_one_line_and_status_130_wherever_it_lands(
    start: Callable[..., _Running], args: list[str], moment: str
) -> None:
    running = start(*args, latency=1.0)
    running.wait_for(moment)

    status, out, err = running.interrupt()

    assert status == cli.INTERRUPTED
    assert err == "agentloop: interrupted\n"
    assert "Traceback" not in out


@pytest.mark.slow
def test_ctrl_c_pressed_twice_is_still_one_line(start: Callable[..., _Running]) -> None:
    running = start("run", "Plan a picnic", "--model", "demo", latency=1.0)
    running.wait_for("[1/4] ")

    status, _, err = running.interrupt(times=2)

    assert status == cli.INTERRUPTED
    assert err == "agentloop: interrupted\n"


@pytest.mark.slow
def test_ctrl_c_on_a_kept_run_says_how_to_resume_it(
    start: Callable[..., _Running], tmp_path: Path
) -> None:
    db = str(tmp_path / "runs.db")
    running = start(
        "run", "Plan a picnic", "--model", "demo", "--db", db, "--thread", "picnic", latency=1.0
    )
    running.wait_for("[2/4] ")

    status, _, err = running.interrupt()

    assert status == cli.INTERRUPTED
    assert err == f"agentloop: interrupted; resume with: agentloop resume picnic --db {db}\n"
    listed = _agentloop("runs", "--db", db)
    assert re.search(r"^picnic .* unfinished +1/4 +Plan a picnic$", listed.stdout, re.MULTILINE)


def _read_terminal(fd: int) -> Iterator[bytes]:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other side closed: Linux reports EIO
            return
        if not chunk:
            return
        yield chunk


@pytest.mark.slow
def test_on_a_terminal_the_activity_line_is_redrawn_in_place() -> None:
    parent, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, str(WORKER), "0.5", "run", "Plan a picnic", "--model", "demo"],
        stdin=child,
        stdout=child,
        stderr=child,
        env=ENV,
    )
    os.close(child)
    screen = b"".join(_read_terminal(parent)).decode()
    os.close(parent)

    assert process.wait(timeout=WAIT) == 0
    for label in ("planning", "step 1/4", "step 4/4", "writing the answer"):
        # The time so far, and what the run has spent.
        spent = r"\(\d model calls?(, [\d,]+ tokens)?\)"
        live = rf"\r[{cli.SPINNER}] {re.escape(label)}, \d+\.\d s {spent}\x1b\[K"
        assert re.search(live, screen)
    # Each printed line starts clean: the activity line is wiped before it.
    plain = re.sub(r"\r[^\r\n]*\x1b\[K|\r\x1b\[K", "", screen).replace("\r\n", "\n")
    lines = plain.splitlines()
    assert lines[:3] == [cli.DEMO_NOTE, "Task: Plan a picnic", "Plan (4 steps):"]
    assert "[2/4] Collect the facts and inputs the task needs ..." in lines
    assert any(line.startswith("Status: completed") for line in lines)


@pytest.mark.slow
def test_installed_console_script_runs_the_demo() -> None:
    script = Path(sys.executable).parent / "agentloop"

    done = subprocess.run(
        [str(script), "run", "Plan a picnic, fail step 2", "--model", "demo"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=ENV,
        timeout=WAIT,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(cli.DEMO_NOTE)
    assert "↻ adapted:" in done.stdout
    assert "Status: completed" in done.stdout
    assert done.stderr == ""


# --- durable runs across processes ---------------------------------------------------

SHED = ("Survey the shed", "Buy timber", "Replace the roof")
ANSWER_LATENCY = 1.0
"""Seconds each executor answer takes: the kill lands while step 2's is under way."""


class _ShedModel:
    """The fake Ollama server's answers: the plan at once, each step after a delay. `asked`
    is set once the request for step `ask_about` arrives."""

    def __init__(self, ask_about: int) -> None:
        self.ask_about = ask_about
        self.asked = threading.Event()

    def __call__(self, request: Request) -> Response:
        phase = phase_of(request)
        if phase == "planner":
            return reply(json.dumps({"steps": list(SHED)}))
        if phase == "summariser":
            return reply("The shed is renovated.")
        step = re.search(r"^Step (\d+)/\d+: (.*)$", request.prompt, re.MULTILINE)
        assert step is not None, request.prompt
        if int(step[1]) == self.ask_about:
            self.asked.set()
        return Delay(ANSWER_LATENCY, reply(f"Did: {step[2]}"))


def _calls(server: FakeOllama) -> Counter[str]:
    """The chat requests the server got, by phase (`executor 2` for step 2's)."""
    counted: Counter[str] = Counter()
    for request in server.chat_requests:
        step = re.search(r"^Step (\d+)/", request.prompt, re.MULTILINE)
        phase = phase_of(request)
        counted[f"{phase} {step[1]}" if phase == "executor" and step else phase] += 1
    return counted


def _next_event(lines: queue.Queue[str | None], stderr: Path) -> dict[str, Any]:
    line = lines.get(timeout=WAIT)
    assert line is not None, f"the run ended early:\n{stderr.read_text()}"
    event: dict[str, Any] = json.loads(line)
    return event


@pytest.mark.slow
def test_a_run_killed_mid_step_is_finished_by_resume_without_repeating_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "runs.db")
    model = _ShedModel(ask_about=2)
    with FakeOllama(Scripted(model)) as ollama:
        env = {**ENV, "OLLAMA_HOST": ollama.url, "NO_PROXY": "127.0.0.1"}
        for name, value in env.items():  # `killed_worker`'s process inherits the environment
            monkeypatch.setenv(name, value)
        command = [sys.executable, "-m", "agentloop_graph.cli"]
        task = "Renovate the garden shed"
        started = [*command, "run", task, "--model", "ollama:llama3.2", "--db", db, "--json"]
        with killed_worker(started, tmp_path / "run.err") as (worker, lines):
            thread = _next_event(lines, tmp_path / "run.err")
            while _next_event(lines, tmp_path / "run.err")["event"] != "agentic.step_complete":
                pass
            assert model.asked.wait(WAIT), "step 2 never asked the model"
            # SIGKILL on leaving the block: step 2's answer is still a second away.
        assert worker.returncode == -signal.SIGKILL
        assert thread == {"event": "thread", "thread_id": thread["thread_id"], "db": db}
        assert _calls(ollama) == {"planner": 1, "executor 1": 1, "executor 2": 1}

        listed = _agentloop("runs", "--db", db, env=env)
        assert re.search(
            rf"^{thread['thread_id']} .* unfinished +1/3 +{task}$", listed.stdout, re.M
        )

        done = _agentloop("resume", thread["thread_id"], "--db", db, "--json", env=env)

        assert done.returncode == 0, done.stderr
        events = [json.loads(line) for line in done.stdout.splitlines()]
        assert events[0] == thread
        assert [(e["event"], e.get("step")) for e in events[1:]] == [
            ("agentic.step_started", 2),
            ("agentic.step_complete", 2),
            ("agentic.step_started", 3),
            ("agentic.step_complete", 3),
            ("agentic.task_complete", None),
        ]
        assert events[-1]["status"] == "completed"
        # No second plan, no finished step again: only the step the kill cut short.
        assert _calls(ollama) == {
            "planner": 1,
            "executor 1": 1,
            "executor 2": 2,
            "executor 3": 1,
            "summariser": 1,
        }
    listed = _agentloop("runs", "--db", db)
    assert re.search(rf"^{thread['thread_id']} .* completed +3/3 +{task}$", listed.stdout, re.M)


@pytest.mark.slow
def test_a_plan_left_waiting_by_one_process_is_answered_in_another(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.db")
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentloop_graph.cli",
            "run",
            "Plan a picnic",
            "--model",
            "demo",
            "--approve",
            "--db",
            db,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=ENV,
        timeout=WAIT,
        check=False,
    )

    assert started.returncode == cli.WAITING, started.stderr
    assert started.stderr == ""
    last = started.stdout.splitlines()[-1]
    hint = re.fullmatch(
        r"No answer \(end of input\): the plan waits for approval; answer it with: (.*)", last
    )
    assert hint is not None, started.stdout
    assert "[1/4]" not in started.stdout
    # The hint is a command line that works as it is.
    words = hint[1].split()
    assert words[:2] == ["agentloop", "resume"]

    done = _agentloop(*words[1:], stdin="e\nPack the basket\n\n")

    assert done.returncode == 0, done.stderr
    assert "Plan (1 step, edited):\n    1. Pack the basket\n" in done.stdout
    assert "[1/1] Pack the basket ..." in done.stdout
    assert "Status: completed" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "encoding"),
    [([], "utf-8"), (["--stream"], "utf-8"), (["--json"], "utf-8"), ([], "ascii")],
)
def test_a_task_in_bytes_that_are_not_utf8_runs_without_a_traceback(
    mode: list[str], encoding: str
) -> None:
    # What `agentloop run "$(printf 'Plan a picnic \xff\xfe')"` passes: the shell's bytes.
    argv = [b"run", b"Plan a picnic \xff\xfe", b"--model", b"demo", *map(str.encode, mode)]
    done = subprocess.run(
        [sys.executable, "-m", "agentloop_graph.cli", *argv],
        capture_output=True,
        env={**ENV, "PYTHONIOENCODING": encoding},
        timeout=WAIT,
        check=False,
    )

    out, err = done.stdout.decode(encoding), done.stderr.decode(encoding)
    assert done.returncode == 0, err
    assert "Traceback" not in err
    shown = "Plan a picnic \ufffd\ufffd" if encoding == "utf-8" else "Plan a picnic ??"
    if mode == ["--json"]:
        events = [json.loads(line) for line in out.splitlines()]
        assert events[0]["task"] == "Plan a picnic \ufffd\ufffd"
        assert events[-1]["status"] == "completed"
    else:
        assert f"Task: {shown}\n" in out
        assert "Status: completed" in out
