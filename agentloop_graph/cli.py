"""The `agentloop` command: run the agent loop on one task from a terminal.

LangChain and LangGraph load only once a run starts, so `--help` and `--version` answer
at once. A run's work (imports, model calls) happens on a background thread while the
main thread prints, keeps the activity line alive and takes Ctrl-C: the interrupt then
always lands in this module's own waiting, never inside a library's locks.

With `--db` a run's checkpoints go to a SQLite file or a PostgreSQL database, so a run
that was killed, interrupted or left waiting for plan approval can be finished later by
`agentloop resume` (see `cli_runs.py`). With `--url` the run goes to an Agent Server
(`langgraph dev`, Aegra, LangSmith Deployments) through `langgraph-sdk`, and its progress
is shown the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import queue
import re
import shlex
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TextIO

from agentloop_graph import cli_runs
from agentloop_graph.checks import check_count, check_seconds
from agentloop_graph.cli_runs import ThreadRun

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

DEFAULT_MODEL = "ollama:llama3.2"
"""`agentloop_graph.models.DEFAULT_MODEL` (a test keeps them equal): importing it from there
would load LangChain just to print `--help`."""
MODEL_ENV = "AGENTLOOP_MODEL"
"""The environment variable naming the default model of local runs (`--model` wins)."""
MODEL_SERVER_TIMEOUT = 300.0
"""Seconds each model call may take by default when the model talks to a server, so a
server that stops answering cannot hang the terminal (`--model-timeout` changes it)."""
DEFAULT_MAX_STEPS = 10
DEFAULT_MAX_ADAPTATIONS = 1
DEFAULT_ASSISTANT = "agent_loop"  # the graph id `langgraph.json` gives the loop
DEFAULT_LIMIT = 20
DEMO_NOTE = "Using the offline demo model (deterministic, for trying the loop)."
CONTEXT = (
    "model",
    "max_steps",
    "max_adaptations",
    "max_replans",
    "parallel",
    "max_parallel",
    "step_timeout",
    "approve_plan",
)
BUDGET = ("max_model_calls", "max_tokens", "max_seconds")
RUN_OPTIONS = (*CONTEXT, *BUDGET, "ollama_host", "model_timeout")
"""The options of a local run: what `run` starts it with, a durable run keeps with its
thread and `resume` may change."""
PROBE_TIMEOUT = 2.0
PREVIEW = 80
TASK_SHOWN = 200
"""Characters of a one-line task the `Task:` line shows whole; a longer task is cut."""
INDENT = "    "
TICK = 0.1  # seconds between redraws of the activity line
HEARTBEAT = 10.0
"""Seconds of silence after which output that is not a terminal gets a still-working line."""
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
WAITING = 3
"""The exit status of a run left waiting for plan approval (`--approve --db`, no answer)."""
INTERRUPTED = 130
STREAMED_NODES = ("executor", "summariser")
"""The phases whose tokens `--stream` shows; the plan and revisions are shown whole."""
_SURROGATES = re.compile(r"[\ud800-\udfff]")

_EPILOG = """\
exit status: 0 completed, 2 partial (plan truncated or a step failed),
1 failed, plan cancelled (--approve) or error, 3 waiting for plan approval
(--approve --db with no answer), 130 interrupted (Ctrl-C).

examples:
  agentloop run "Plan a picnic, fail step 2" --model demo
  agentloop run "Compare three note-taking apps" --max-steps 5 --json
  agentloop run - --model demo < task.txt
  agentloop run "Plan a picnic" --model demo --approve --stream
  agentloop run "Plan a picnic" --model demo --max-model-calls 4
  agentloop run "Plan a picnic" --db runs.db
  agentloop resume THREAD --db runs.db
  agentloop runs --db runs.db
  agentloop run "Plan a picnic" --url http://127.0.0.1:2024 --model demo
"""


class CliError(Exception):
    """A problem the user can fix, reported as one `agentloop: error:` line."""


class _Parser(argparse.ArgumentParser):
    """The command's parsers (its subcommands' too): the epilog, and usage errors as a
    `CliError` (one line, and under `--json` an error event)."""

    def __init__(self, **options: Any) -> None:
        formatter = argparse.RawDescriptionHelpFormatter
        super().__init__(epilog=_EPILOG, formatter_class=formatter, **options)

    def error(self, message: str) -> NoReturn:
        # Exit status 2 means a partial run here, so usage errors exit 1 like other errors.
        raise CliError(f"{message} (see `{self.prog} --help`)")


class _Version(argparse.Action):
    """`--version`, from the package's one source of it."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from agentloop_graph import __version__

        print(f"agentloop {__version__}")
        parser.exit(0)


def _checked(convert: Callable[[str], Any], check: Callable[[Any], Any]) -> Callable[[str], Any]:
    """An argparse `type`: the text converted, then range-checked by `agentloop_graph.checks`
    (the library's own checks, so the command and the library say the same); text that does
    not convert goes to the check as it is, which refuses it quoting it."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = text
        try:
            return check(value)
        except ValueError as exc:
            # Raised as it is (not as an ArgumentTypeError), argparse prints the check's own
            # sentence, which names the flag, instead of naming the flag twice.
            raise argparse.ArgumentError(None, str(exc)) from None

    return parse


def _at_least(flag: str, minimum: int) -> Callable[[str], Any]:
    return _checked(int, lambda value: check_count(flag, value, minimum))


def _seconds(flag: str) -> Callable[[str], Any]:
    return _checked(float, lambda value: check_seconds(flag, value))


def _url(text: str) -> str:
    if text.startswith(("http://", "https://")) and text.split("//", 1)[1]:
        return text
    raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, got {text!r}")


_HELP = {
    "TASK": "what the loop should do; - reads it from stdin",
    "--task-file": "read the task from the file at PATH instead",
    "--model": '"demo" (offline, deterministic), "ollama:<model>" (the Ollama server at '
    'OLLAMA_HOST) or a "provider:model" string for LangChain '
    f"(default: ${MODEL_ENV}, else {DEFAULT_MODEL}; with --url, the server's; "
    "on resume, the run's)",
    "--max-steps": "longest plan to run; a longer plan is cut and the run is partial "
    f"(default: {DEFAULT_MAX_STEPS})",
    "--max-adaptations": "revisions allowed per failed step; 0 lets a failed step stay failed "
    f"(default: {DEFAULT_MAX_ADAPTATIONS})",
    "--max-replans": "times a failed step may have the steps not yet started planned anew, "
    "given what was done (default: 0)",
    "--parallel": "plan steps with what each waits for, and run the steps that wait for "
    "nothing unfinished at once",
    "--max-parallel": "steps a --parallel run may run at once (default: 4)",
    "--step-timeout": "time allowed per attempt at a step; a slower attempt fails "
    "(default: no limit)",
    "--model-timeout": "time allowed per model call; a slower call fails (default: "
    f"{MODEL_SERVER_TIMEOUT:g} for models on a server, none for demo; not with --url)",
    "--ollama-host": "the Ollama server for ollama: models, instead of OLLAMA_HOST "
    "(host, host:port or a URL; default port 11434)",
    "--approve": "show the plan and ask before running it: y runs it, e edits it "
    "(type new steps, one per line, then an empty line), n cancels (exit status 1); "
    "with --db, no answer (end of input) leaves the run waiting (exit status 3)",
    "budget": "Hard limits for the run, checked before every model call: once one is reached "
    "no call is made, the open step fails, no later step starts, and the summary says which "
    "budget was spent.",
    "--max-model-calls": "model calls the run may make, planning and the final answer included",
    "--max-tokens": "tokens (input + output) the run may spend",
    "--max-seconds": "seconds the run may take from the start of planning",
    "durable": "Keep the run's checkpoints, so a run that was killed, interrupted or left "
    "waiting for approval can be finished with `agentloop resume`.",
    "--db": "a SQLite file, or a postgresql:// URL, to keep the run in",
    "--thread": "the thread to run on (default: a new one, printed); a thread whose run is "
    "unfinished is refused: resume it",
    "--url": "run on the Agent Server at URL (langgraph dev, Aegra, LangSmith Deployments) "
    "through langgraph-sdk; --model and the limits go as the run's context",
    "--assistant": f"the assistant or graph id to run with --url (default: {DEFAULT_ASSISTANT})",
    "--stream": "print each step's answer and the final answer as the model writes them",
    "--json": "print each progress event as one JSON line, and nothing else, on stdout",
}


def _add(group: Any, flag: str, **how: Any) -> None:
    group.add_argument(flag, **{"help": _HELP.get(flag), **how})


def _run_options(command: argparse.ArgumentParser) -> None:
    """The options of a run: what `run` starts it with and `resume` may change."""
    _add(command, "--model")
    _add(command, "--max-steps", type=_at_least("--max-steps", 1), metavar="N")
    _add(command, "--max-adaptations", type=_at_least("--max-adaptations", 0), metavar="N")
    _add(command, "--max-replans", type=_at_least("--max-replans", 0), metavar="N")
    _add(command, "--parallel", action="store_true", default=None)
    _add(command, "--max-parallel", type=_at_least("--max-parallel", 1), metavar="N")
    _add(command, "--step-timeout", type=_seconds("--step-timeout"), metavar="SECONDS")
    _add(command, "--model-timeout", type=_seconds("--model-timeout"), metavar="SECONDS")
    _add(command, "--ollama-host", metavar="URL")
    _add(command, "--approve", action="store_true", dest="approve_plan", default=None)
    budget = command.add_argument_group("budget", _HELP["budget"])
    _add(budget, "--max-model-calls", type=_at_least("--max-model-calls", 1), metavar="N")
    _add(budget, "--max-tokens", type=_at_least("--max-tokens", 1), metavar="N")
    _add(budget, "--max-seconds", type=_seconds("--max-seconds"), metavar="S")


def _output_options(command: argparse.ArgumentParser) -> None:
    output = command.add_mutually_exclusive_group()
    _add(output, "--stream", action="store_true")
    _add(output, "--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    """The `agentloop` argument parser; its usage errors raise `CliError`."""
    parser = _Parser(
        prog="agentloop",
        description="Plan a task into steps, run them one by one with a chat model,\n"
        "adapt steps that fail, and summarise.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="run the loop on one task and show its progress",
        description="Run the plan -> execute -> adapt -> summarise loop on TASK,\n"
        "printing the plan and each step as it runs.",
    )
    run.add_argument("task", metavar="TASK", nargs="?", help=_HELP["TASK"])
    _add(run, "--task-file", metavar="PATH")
    _run_options(run)
    durable = run.add_argument_group("durable runs", _HELP["durable"])
    _add(durable, "--db", metavar="PATH")
    _add(durable, "--thread", metavar="ID")
    server = run.add_argument_group("server")
    _add(server, "--url", type=_url, metavar="URL")
    _add(server, "--assistant", metavar="ID")
    _output_options(run)

    resume = commands.add_parser(
        "resume",
        help="finish a run kept with --db: one that was stopped, or waits for plan approval",
        description="Finish the run on thread ID in --db: from its last checkpoint if it was\n"
        "stopped, or by asking about its plan if it waits for approval. It runs with\n"
        "the options it started with; options given here replace those.",
    )
    resume.add_argument("thread", metavar="ID", help="the run's thread (see `agentloop runs`)")
    _add(resume, "--db", metavar="PATH", required=True, help="where the run is kept")
    _run_options(resume)
    _output_options(resume)

    runs = commands.add_parser(
        "runs",
        help="list the runs kept with --db, the newest first",
        description="List the threads in --db, the newest run first, with each run's\n"
        "status and how many of its steps have ended.",
    )
    _add(runs, "--db", metavar="PATH", required=True, help="where the runs are kept")
    limit = f"threads to list (default: {DEFAULT_LIMIT})"
    _add(
        runs,
        "--limit",
        type=_at_least("--limit", 1),
        default=DEFAULT_LIMIT,
        metavar="N",
        help=limit,
    )
    _add(runs, "--json", action="store_true", help="print each run as one JSON line")
    return parser


def _probe(base: str, path: str, server: str, advice: str) -> None:
    """Make sure the `server` at `base` answers before a run relies on it; any HTTP answer
    will do (a server that wants a key still answers), only silence fails."""
    import httpx

    try:
        httpx.get(f"{base}{path}", timeout=PROBE_TIMEOUT)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = str(exc) or type(exc).__name__
        raise CliError(
            f"cannot reach the {server} at {base} (GET {base}{path}: {reason}){advice}"
        ) from None


def check_server(url: str) -> None:
    _probe(url, "/info", "Agent Server", "; start it (langgraph dev, Aegra) or check --url")


def connect(
    spec: str, *, ollama_host: str | None = None, argument: str = "--model"
) -> tuple[str, dict[str, Any]]:
    """The model string, once it names a model and its server answers when it is Ollama,
    with the `model_options` that point it there; a `CliError` saying what to set or
    install when there is none (`argument`: what named the model). The loop builds each
    phase's model from the string, with its defaults (an Ollama model's answer caps, its
    stop on repetition)."""
    from agentloop_graph.models import resolve_model
    from agentloop_graph.ollama import ollama_base_url

    options: dict[str, Any] = {}
    try:
        if spec.startswith("ollama:"):
            options["base_url"] = ollama_base_url(ollama_host, argument="--ollama-host")
        resolve_model(spec, argument=argument, options=options)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    if "base_url" in options:
        advice = (
            ". Start it with `ollama serve` (or set OLLAMA_HOST to where it runs), "
            "or try the loop offline with --model demo"
        )
        _probe(options["base_url"], "/api/tags", "Ollama server", advice)
    return spec, options


def _one_line(text: str, limit: int = PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else f"{flat[: limit - 1]}…"


def _plan_lines(
    steps: Sequence[str], note: str = "", dependencies: Sequence[Sequence[int]] = ()
) -> list[str]:
    waits = [f" (after {', '.join(map(str, deps))})" if deps else "" for deps in dependencies]
    waits += [""] * (len(steps) - len(waits))
    numbered = [
        f"{INDENT}{i}. {' '.join(step.split())}{wait}"
        for i, (step, wait) in enumerate(zip(steps, waits, strict=True), 1)
    ]
    return [f"Plan ({len(steps)} step{'s' if len(steps) != 1 else ''}{note}):", *numbered, ""]


def _event_lines(event: Mapping[str, Any], streamed: bool, parallel: bool = False) -> list[str]:
    """What the human output prints for one progress event (the final report covers
    `task_complete`); `streamed`: the step's answer was shown as the model wrote it;
    `parallel`: steps interleave, so each line says which step it is about."""
    position = f"[{event.get('step')}/{event.get('total')}]"
    lines = _step_lines(event, streamed, position)
    if parallel and "step" in event and event["event"] != "agentic.step_started":
        return [line.replace(INDENT, f"{INDENT}{position} ", 1) for line in lines]
    return lines


def _why_failed(event: Mapping[str, Any]) -> str:
    """Why a failed step is over: its attempts ran out (their failures already shown), or
    what ended it after its last failed attempt (the adapter, the budget)."""
    if event.get("ended_by") == "attempts" or not event.get("reason"):
        return ", no adaptation left"
    return f": {_one_line(event['reason'])}"


def _step_lines(event: Mapping[str, Any], streamed: bool, position: str) -> list[str]:
    dependencies = event.get("dependencies", ())
    match event["event"]:
        case "agentic.plan_ready":
            return _plan_lines(event["steps"], dependencies=dependencies)
        case "agentic.plan_revised":
            note = f", revision {event['replan']}"
            return ["", *_plan_lines(event["steps"], note, dependencies)]
        case "agentic.step_started" if event["attempt"] > 1:
            return [f"{position} attempt {event['attempt']}, with the revised step ..."]
        case "agentic.step_started":
            return [f"{position} {_one_line(event['description'])} ..."]
        case "agentic.step_failed":
            return [f"{INDENT}✗ failed: {_one_line(event['error'])}"]
        case "agentic.step_adapted":
            return [f"{INDENT}↻ adapted: {' '.join(event['adaptation'].split())}"]
        case "agentic.step_complete" if event["status"] == "failed":
            return [f"{INDENT}✗ step failed{_why_failed(event)}"]
        case "agentic.step_complete":
            label = "✓ done (adapted)" if event["status"] == "adapted" else "✓ done"
            preview = "" if streamed else f": {_one_line(event['result'])}"
            return [f"{INDENT}{label}{preview}"]
    return []


class Activity:
    """What the model is busy with, as the progress events tell it: the steps running (a
    parallel run's, several at once) and what each is at, then the final answer once every
    step has ended."""

    def __init__(self) -> None:
        self._running: dict[int, str] = {}  # step: what it is at ("", "attempt 2", "revising")
        self._ended = self._total = 0

    def update(self, event: Mapping[str, Any]) -> str | None:
        """The live line's label once `event` has happened (`"step 2/4"`), or None while
        nothing is known to be running."""
        self._total = event.get("total", self._total)
        step = event.get("step", 0)
        match event["event"]:
            case "agentic.step_started":
                self._running[step] = f"attempt {event['attempt']}" if event["attempt"] > 1 else ""
            case "agentic.step_failed":
                self._running[step] = "revising"
            case "agentic.step_complete":
                self._running.pop(step, None)
                self._ended += 1
        return self._label()

    def _label(self) -> str | None:
        if not self._running:
            return "writing the answer" if self._ended == self._total > 0 else None
        if len(self._running) > 1:
            steps = (f"{n} ({at})" if at else str(n) for n, at in sorted(self._running.items()))
            return f"steps {', '.join(steps)} of {self._total}"
        ((step, at),) = self._running.items()
        position = f"step {step}/{self._total}"
        if at == "revising":
            return f"revising {position}"
        return f"{position}, {at}" if at else position


def _count(number: float, unit: str) -> str:
    return f"{number:,} {unit}{'' if number == 1 else 's'}"


class Spending:
    """What a run has spent so far, as its progress events say (`spent`: the model calls and
    tokens when the event was written; steps running at once each say what they saw, so the
    largest counts are the run's); `task_complete` then brings the run's limits and seconds."""

    def __init__(self) -> None:
        self.model_calls = self.tokens = 0
        self.report: Mapping[str, Any] | None = None

    def planning(self) -> None:
        """Planning has begun: its call is on its way."""
        self.model_calls = max(self.model_calls, 1)

    def update(self, event: Mapping[str, Any]) -> None:
        if isinstance(spent := event.get("spent"), Mapping):
            self.model_calls = max(self.model_calls, int(spent["model_calls"]))
            self.tokens = max(self.tokens, int(spent["tokens"]))
        if event["event"] == "agentic.task_complete" and isinstance(event.get("budget"), Mapping):
            self.report = event["budget"]
            self.model_calls = int(self.report["spent"]["model_calls"])
            self.tokens = int(self.report["spent"]["tokens"])

    def so_far(self) -> str:
        """`3 model calls, 1,234 tokens`: tokens once some are counted, nothing before
        the first call."""
        calls = _count(self.model_calls, "model call") if self.model_calls else ""
        return f"{calls}, {_count(self.tokens, 'token')}" if self.tokens else calls

    def line(self) -> str | None:
        """The final report's `Spent:` line, from the run's own count; None without one."""
        if self.report is None:
            return None
        limits = self.report.get("limits") or {}
        seconds = float(self.report["spent"]["seconds"])
        text = f"Spent: {_count(self.model_calls, 'model call')}, {_count(self.tokens, 'token')}"
        text = f"{text}, {seconds:.1f} s"
        caps = [
            _count(limits[name], unit)
            for name, unit in (("max_model_calls", "model call"), ("max_tokens", "token"))
            if limits.get(name) is not None
        ]
        if limits.get("max_seconds") is not None:
            caps.append(f"{limits['max_seconds']:g} s")
        return f"{text} (limits: {', '.join(caps)})" if caps else text


class Console(logging.Handler):
    """The human output: lines, streamed tokens, and a live line saying what is running
    and what the run has spent: on a terminal a spinner with the elapsed time, redrawn in
    place; elsewhere (a pipe, a log) a still-working line after each `HEARTBEAT` seconds
    of silence, so a log never shows a carriage-return animation.

    Only the main thread writes. Library warnings, logged on any thread, come to this
    handler and wait for `tick` to print them, one `agentloop: warning:` line each."""

    def __init__(
        self,
        spending: Spending,
        *,
        quiet: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logging.WARNING)
        self._spending = spending
        self._quiet = quiet  # under --json, whose lines go straight to stdout
        self._live = not quiet and sys.stdout.isatty()
        self._clock = clock  # seconds, for the elapsed time and the heartbeat
        self._label: str | None = None
        self._since = self._last_output = clock()
        self._at = ""  # what ends the output so far: "" a newline, "spinner" or "text"
        self._warnings: queue.SimpleQueue[str] = queue.SimpleQueue()

    def emit(self, record: logging.LogRecord) -> None:
        reason = f": {record.exc_info[1]!r}" if record.exc_info else ""
        self._warnings.put(f"agentloop: warning: {record.getMessage()}{reason}")

    def say(self, line: str = "") -> None:
        if not self._quiet:
            self._write(f"{self._clear()}{line}\n")

    def token(self, text: str) -> None:
        """Print streamed text as it comes, indented under the step it belongs to."""
        if not self._quiet and text:
            start = "" if self._at == "text" else self._clear() + INDENT
            self._at = "text"
            self._write(start + text.replace("\n", f"\n{INDENT}"))

    def working(self, label: str | None) -> None:
        """Say what the model is busy with from now on (None: nothing, hide the line)."""
        if label != self._label:
            self._label, self._since = label, self._clock()
        if label is None and self._at == "spinner":
            self._write(self._clear())

    def tick(self) -> None:
        """Print waiting warnings and bring the live line up to date; call it often."""
        while not self._warnings.empty():
            self._write(self._clear())
            print(self._warnings.get(), file=sys.stderr, flush=True)
        if self._quiet or self._label is None or self._at == "text":
            return
        now = self._clock()
        elapsed = now - self._since
        spent = f" ({text})" if (text := self._spending.so_far()) else ""
        if self._live:
            frame = SPINNER[int(elapsed / TICK) % len(SPINNER)]
            self._write(f"\r{frame} {self._label}, {elapsed:.1f} s{spent}\x1b[K")
            self._at = "spinner"
        elif now - self._last_output >= HEARTBEAT:
            self.say(f"{INDENT}… {self._label}, {elapsed:.0f} s so far{spent}")

    def finish(self) -> None:
        """Leave the terminal at the start of a clean line."""
        self._label = None
        self._write(self._clear())
        self.tick()

    def _clear(self) -> str:
        """What takes the output to the start of a clean line."""
        at, self._at = self._at, ""
        return {"spinner": "\r\x1b[K", "text": "\n"}.get(at, "")

    def _write(self, text: str) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            self._last_output = self._clock()


def in_background(produce: Callable[[], Any], console: Console) -> Iterator[Any]:
    """Yield what `produce()` yields (or raises), worked out on a daemon thread while this
    one waits on a queue, ticking the console: Ctrl-C interrupts that wait, and the daemon
    does not hold up the exit."""
    box: queue.SimpleQueue[Any] = queue.SimpleQueue()
    done = object()

    def work() -> None:
        try:
            for item in produce():
                box.put(item)  # never an exception: a leg, or a (mode, chunk) pair
            box.put(done)
        except BaseException as exc:
            box.put(exc)

    threading.Thread(target=work, name="agentloop-run", daemon=True).start()
    while True:
        try:
            item = box.get(timeout=TICK)
        except queue.Empty:
            console.tick()
            continue
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _text(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts (from a server, JSON)."""
    return "".join(
        part if isinstance(part, str) else str(part.get("text", ""))
        for part in (content if isinstance(content, list) else [content])
        if isinstance(part, str) or (isinstance(part, Mapping) and part.get("type") == "text")
    )


def streamed_text(chunk: tuple[Any, Mapping[str, Any]]) -> tuple[str, str]:
    """The node and text of one `stream_mode="messages"` item; no text for the planner's and
    adapter's answers (the plan and revision lines show them) nor for messages a node wrote
    to the state (the final answer again), which carry no model-run metadata."""
    message, metadata = chunk
    node = metadata.get("langgraph_node", "")
    if node not in STREAMED_NODES or "ls_model_type" not in metadata:
        return node, ""
    # From a server the message comes as JSON.
    return node, _text(message.get("content") if isinstance(message, Mapping) else message.content)


def ask_about_plan(shown_on: TextIO) -> bool | list[str] | None:
    """The answer that resumes a run paused for plan approval: True runs the plan, False
    cancels it, a list of steps runs those instead; None at end of input."""

    def read_line(prompt: str) -> str | None:
        print(prompt, end="", file=shown_on, flush=True)
        line = sys.stdin.readline()
        if not sys.stdin.isatty():
            # A terminal echoes what is typed; answers piped in would leave the prompt hanging.
            print(line.rstrip("\n"), file=shown_on, flush=True)
        return line.rstrip("\n") if line else None

    while True:
        if (reply := read_line("Run this plan? y = run it, e = edit it, n = cancel: ")) is None:
            return None
        match reply.strip().lower():
            case "y" | "yes":
                return True
            case "n" | "no":
                return False
            case "e" | "edit":
                print("New plan: one step per line, an empty line to finish.", file=shown_on)
                steps: list[str] = []
                while (line := read_line(f"{INDENT}{len(steps) + 1}. ")) and line.strip():
                    steps.append(line.strip())
                if steps:
                    return steps
                print("A plan needs at least one step.", file=shown_on, flush=True)
            case _:
                print("Please answer y, e or n.", file=shown_on, flush=True)


Leg = Callable[[Any], Iterator[tuple[str, Any]]]
"""Streams one leg of a run to its end or a pause: from the task (or, resuming, from the
last checkpoint) when given None, else resumed with that answer to the plan approval;
`(mode, chunk)` pairs, mode `custom`, `values` (a pause under `__interrupt__`) or
`messages`."""


class Prepared(NamedTuple):
    """A run ready to go: its legs, and what to say before it starts."""

    leg: Leg
    thread: str | None = None
    """The run's thread, when it outlives this process (`--db`, `--url`)."""
    model: str | None = None
    """The model string of a local run."""
    server: str | None = None
    """Where the model's server is, when the command knows (Ollama's URL)."""
    resumed: ThreadRun | None = None
    """The run `resume` found on the thread."""


def _emit(event: Mapping[str, Any]) -> None:
    """Print one JSON line on stdout (`--json`)."""
    print(json.dumps(event), flush=True)


def _storable(text: str) -> str:
    """`text` with lone surrogates (bytes of an argument that were not UTF-8) as U+FFFD,
    as the loop stores them: printing or sending them would fail."""
    return _SURROGATES.sub("\ufffd", text)


def _shown_task(task: str) -> str:
    """The task for the `Task:` line: whole if short, else its first line cut, and its size."""
    lines = task.splitlines()
    if len(task) <= TASK_SHOWN and len(lines) == 1:
        return task
    first = " ".join(lines[0].split())[: PREVIEW - 1]
    size = f"{len(task):,} characters" + (f", {len(lines)} lines" if len(lines) > 1 else "")
    return f"{first}… ({size})"


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The run options given on the command line, only those."""
    return {name: value for name in RUN_OPTIONS if (value := getattr(args, name)) is not None}


def _local_options(
    args: argparse.Namespace, remembered: Mapping[str, Any]
) -> tuple[dict[str, Any], str]:
    """The options of a local run: those it started with (`remembered`), replaced by those
    given now, its model included; and what named the model, for messages."""
    options = {**remembered, **_given(args)}
    named_by = "--model"
    if "model" not in options:
        if model := os.environ.get(MODEL_ENV, "").strip():
            named_by = MODEL_ENV
        options["model"] = model or DEFAULT_MODEL
    return options, named_by


def _refuse_unusable(args: argparse.Namespace, options: Mapping[str, Any], named_by: str) -> None:
    """A `CliError` for an option given now that the run could not use."""
    if args.max_parallel is not None and not options.get("parallel"):
        raise CliError(
            "--max-parallel needs --parallel: it caps the steps a parallel run runs at once"
        )
    model = options.get("model")
    if args.ollama_host is not None and model is not None and not model.startswith("ollama:"):
        raise CliError(f"--ollama-host is for ollama: models, and {named_by} {model!r} is not one")


def _context(options: Mapping[str, Any]) -> dict[str, Any]:
    """The run's `Context` fields among `options`, only those: a server keeps its own
    settings for the rest (its model, say)."""
    context = {name: options[name] for name in CONTEXT if name in options}
    if budget := {name: options[name] for name in BUDGET if name in options}:
        context["budget"] = budget
    return context


def _open_db(db: str, stack: contextlib.ExitStack) -> Any:
    """The checkpointer keeping runs in `db` (closed with `stack`)."""
    postgres = cli_runs.is_postgres(db)
    package = f"langgraph-checkpoint-{'postgres' if postgres else 'sqlite'}"
    try:
        return stack.enter_context(cli_runs.open_checkpointer(db))
    except ImportError:
        raise CliError(
            f"--db {cli_runs.shown_db(db)} needs {package}: pip install {package}"
        ) from None
    except Exception as exc:
        kind = "the PostgreSQL database" if postgres else "the SQLite file"
        reason = str(exc) or type(exc).__name__
        raise CliError(f"cannot open {kind} --db {cli_runs.shown_db(db)}: {reason}") from None


def _find_run(saver: Any, thread: str, db: str) -> ThreadRun:
    found = cli_runs.read_run(cli_runs.reader(saver), thread)
    if found is None:
        raise CliError(
            f"no run on thread {thread!r} in {cli_runs.shown_db(db)}; list the runs there with "
            f"`agentloop runs --db {shlex.quote(cli_runs.shown_db(db))}`"
        )
    return found


def _in_process(args: argparse.Namespace, stack: contextlib.ExitStack) -> Prepared:
    """Builds the loop (imports, model, checkpointer) and returns legs of a run of it in
    this process: a new one, or with `resume` the thread's unfinished one."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from agentloop_graph.budget import Budget
    from agentloop_graph.compiled import UnfinishedRunError
    from agentloop_graph.graph import create_agent_loop
    from agentloop_graph.leases import ThreadBusyError

    saver = _open_db(args.db, stack) if args.db else None
    thread = args.thread or uuid.uuid4().hex[:12]
    resumed = _find_run(saver, thread, args.db) if args.command == "resume" else None
    if resumed is not None and resumed.finished:
        return Prepared(lambda answer: iter(()), thread, resumed=resumed)
    options, named_by = _local_options(args, resumed.options if resumed else {})
    _refuse_unusable(args, options, named_by)
    spec = options["model"]
    host = options.get("ollama_host") if spec.startswith("ollama:") else None
    model, model_options = connect(spec, ollama_host=host, argument=named_by)
    settings: dict[str, Any] = {
        "max_steps": DEFAULT_MAX_STEPS,
        "max_adaptations": DEFAULT_MAX_ADAPTATIONS,
    }
    settings.update(_context(options))
    del settings["model"]
    if "budget" in settings:
        settings["budget"] = Budget(**settings["budget"])
    timeout = options.get("model_timeout", None if spec == "demo" else MODEL_SERVER_TIMEOUT)
    if saver is None and settings.get("approve_plan"):
        # Plan approval pauses the run; resuming it needs the paused run's checkpoint.
        saver = InMemorySaver()
    try:
        graph = create_agent_loop(
            model,
            model_options=model_options,
            model_timeout=timeout,
            checkpointer=saver,
            **settings,
        )
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    # LangGraph copies the config's metadata into each checkpoint: the thread keeps the options.
    config: RunnableConfig = {
        "configurable": {"thread_id": thread},
        "metadata": {cli_runs.OPTIONS_KEY: json.dumps(options)},
    }
    modes = ["custom", "values", *(["messages"] if args.stream else [])]

    def leg(answer: Any) -> Iterator[tuple[str, Any]]:
        start: Any = Command(resume=answer)
        if answer is None:
            start = None if resumed else {"task": args.task}
        try:
            return graph.stream(start, config, stream_mode=modes)
        except UnfinishedRunError:
            raise CliError(
                f"thread {thread!r} has an unfinished run; finish it with "
                f"`{cli_runs.resume_command(thread, args.db)}`, or run the task on another --thread"
            ) from None
        except ThreadBusyError:
            other = ", or run the task on another --thread" if resumed is None else ""
            raise CliError(
                f"thread {thread!r} is in use by another run (another agentloop process?); "
                f"wait for it to end{other}"
            ) from None

    server = model_options.get("base_url")
    return Prepared(leg, thread if args.db else None, spec, server, resumed)


@contextlib.contextmanager
def _server_errors(url: str) -> Iterator[None]:
    """HTTP failures talking to the Agent Server at `url`, as one-line `CliError`s."""
    import httpx

    try:
        yield
    except httpx.HTTPStatusError as exc:
        try:
            detail = exc.response.json()
            detail = detail.get("detail") or detail.get("message") or detail
        except ValueError:
            detail = exc.response.text
        status = exc.response.status_code
        raise CliError(
            f"the Agent Server at {url} refused the run: HTTP {status}: {detail}"
        ) from None
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise CliError(f"lost the Agent Server at {url}: {reason}") from None


def _on_server(args: argparse.Namespace, stack: contextlib.ExitStack) -> Prepared:
    """A client of the Agent Server at `args.url`, once it answers (closed with `stack`),
    and legs of a run on a thread it creates there."""
    try:
        from langgraph_sdk import get_sync_client
    except ImportError:
        raise CliError("--url needs langgraph-sdk: pip install langgraph-sdk") from None

    check_server(args.url)
    client: Any = stack.enter_context(get_sync_client(url=args.url))
    context = _context(_given(args))
    # A server sends message chunks with their metadata as "messages-tuple".
    modes = ["custom", "values", *(["messages-tuple"] if args.stream else [])]
    # The loop reads `task`; a chat graph (`chat_app`, say) reads the task as a user message.
    task = {"task": args.task, "messages": [{"role": "user", "content": args.task}]}
    with _server_errors(args.url):
        thread = str(client.threads.create()["thread_id"])

    def leg(answer: Any) -> Iterator[tuple[str, Any]]:
        with _server_errors(args.url):
            for part in client.runs.stream(
                thread,
                args.assistant,
                input=task if answer is None else None,
                command=None if answer is None else {"resume": answer},
                context=context,
                stream_mode=modes,
                on_disconnect="cancel",
            ):
                if part.event == "error":
                    data = part.data if isinstance(part.data, Mapping) else {"message": part.data}
                    reason = ": ".join(str(data[k]) for k in ("error", "message") if data.get(k))
                    raise CliError(f"the run failed on the Agent Server at {args.url}: {reason}")
                if (mode := part.event.split("/", 1)[0]) in ("custom", "values", "messages"):
                    yield mode, part.data

    return Prepared(leg, thread)


def _question(pending: Sequence[Any]) -> Mapping[str, Any]:
    """What a paused run asks: an `Interrupt`'s value here, its JSON from a server."""
    first = pending[0]
    value = first["value"] if isinstance(first, Mapping) else first.value
    return value if isinstance(value, Mapping) else {"plan": []}


def _answer(question: Mapping[str, Any], console: Console, as_json: bool, hint: str | None) -> Any:
    """The person's answer about the plan `question` shows; None if there is none and the
    run can wait for one (`hint`: how to give it later), else False (cancel) at end of input."""
    console.finish()
    shown_on = sys.stderr if as_json else sys.stdout
    if as_json:  # the human output showed the plan already
        print("\n".join(_plan_lines(question.get("plan", []))), file=shown_on)
    answer = ask_about_plan(shown_on)
    if answer is None and hint:
        print(
            f"No answer (end of input): the plan waits for approval; answer it with: {hint}",
            file=shown_on,
            flush=True,
        )
        return None
    if answer is None:
        print("No answer (end of input): the plan is cancelled.", file=shown_on, flush=True)
        return False
    if isinstance(answer, list) and not as_json:
        for line in ["", *_plan_lines(answer, ", edited")]:
            console.say(line)
    return answer


def _drive(
    leg: Leg,
    spending: Spending,
    console: Console,
    *,
    as_json: bool,
    waiting: Mapping[str, Any] | None = None,
    hint: str | None = None,
) -> Mapping[str, Any]:
    """Run the task to its end, showing it, and asking about the plan whenever the run
    pauses for it (`waiting`: what a resumed run already waits on); its last values. Left
    with no answer, a run that can wait (`hint`: how to answer later) ends the drive, its
    values still under `__interrupt__`."""
    if waiting is None:
        spending.planning()
        console.working("planning")
    question = waiting
    answer: Any = None
    activity = Activity()
    parallel = False  # steps interleave: a plan with dependencies says so
    try:
        while True:  # a leg each: to the end of the run, or to a pause for plan approval
            if (
                question is not None
                and (answer := _answer(question, console, as_json, hint)) is None
            ):
                return {"__interrupt__": [{"value": question}]}
            output: Mapping[str, Any] = {}
            streamed: set[str] = set()  # the phases whose text the current step or answer showed
            for mode, chunk in in_background(functools.partial(leg, answer), console):
                if mode == "values":
                    output = chunk
                elif mode == "messages":
                    node, text = streamed_text(chunk)
                    if text and node not in streamed:
                        if node == "summariser":
                            console.say("Writing the answer:")
                        streamed.add(node)
                    console.token(text)
                elif as_json:
                    _emit(chunk)
                else:
                    spending.update(chunk)
                    parallel = parallel or "dependencies" in chunk
                    for line in _event_lines(chunk, "executor" in streamed, parallel):
                        console.say(line)
                    if chunk["event"] == "agentic.step_started":
                        streamed.discard("executor")
                    console.working(activity.update(chunk))
            if not (pending := output.get("__interrupt__")):
                return output
            question = _question(pending)
    except (CliError, BrokenPipeError):
        raise
    except Exception as exc:
        # Node failures are already part of the result; anything escaping is worth one line.
        raise CliError(f"the run stopped: {type(exc).__name__}: {exc}") from None


def _last_ai_text(output: Mapping[str, Any]) -> str | None:
    """The text of the last AI message in a graph's output (a message, or its JSON)."""
    for message in reversed(output.get("messages") or ()):
        if isinstance(message, Mapping):
            kind, content = message.get("type"), message.get("content")
        else:
            kind, content = getattr(message, "type", None), getattr(message, "content", None)
        if kind in ("ai", "AIMessageChunk") and (text := _text(content)):
            return text
    return None


def _announce(prepared: Prepared, args: argparse.Namespace, console: Console) -> None:
    """Say where the run lives and what model it uses, before it starts (or goes on)."""
    resumed, thread = prepared.resumed, prepared.thread
    if prepared.model == "demo" and args.command == "resume":
        print(DEMO_NOTE, file=sys.stderr if args.json else sys.stdout, flush=True)
    if resumed is not None:
        console.say(f"Task: {_shown_task(resumed.task)}")
    if thread is not None and args.json:
        where = {"db": cli_runs.shown_db(args.db)} if args.db else {"url": args.url}
        _emit({"event": "thread", "thread_id": thread, **where})
    elif thread is not None:
        console.say(
            f"Thread: {thread}"
            + (f" (resume with: {cli_runs.resume_command(thread, args.db)})" if args.db else "")
        )
    if prepared.model not in (None, "demo"):
        console.say(
            f"Model: {prepared.model}" + (f" at {prepared.server}" if prepared.server else "")
        )
    if resumed is not None and resumed.plan:
        note = f", {resumed.ended} ended" if resumed.ended else ""
        for line in _plan_lines(resumed.plan, note, resumed.dependencies):
            console.say(line)


def _finished(resumed: ThreadRun, args: argparse.Namespace) -> int:
    """What `resume` says of a run that has already finished; its exit status."""
    if args.json:
        _emit(
            {
                "event": "output",
                "thread_id": resumed.thread_id,
                "status": resumed.status,
                "summary": resumed.summary,
                "answer": resumed.answer,
            }
        )
    else:
        ended = f"{resumed.status}, {resumed.ended} of {resumed.total} steps ended"
        print(
            f"The run on thread {resumed.thread_id} has already finished ({ended}): "
            "nothing to resume."
        )
    return exit_status(resumed.status)


def _report(
    output: Mapping[str, Any], spending: Spending, console: Console, args: argparse.Namespace
) -> int:
    """The run's final lines (or, under `--json`, the command's last event); the exit status."""
    if pending := output.get("__interrupt__"):  # no answer; the run waits for one (--db)
        if args.json:
            plan = _question(pending).get("plan", [])
            hint = cli_runs.resume_command(args.thread, args.db)
            _emit({"event": "waiting", "thread_id": args.thread, "plan": plan, "resume": hint})
        return WAITING
    if "status" not in output:
        # Another graph than the loop (--assistant): what it answered, if anything.
        answer = (
            output.get("answer") if isinstance(output.get("answer"), str) else _last_ai_text(output)
        )
        if args.json:
            _emit({"event": "output", "answer": answer})
        console.say()
        console.say(
            f"Answer: {answer}"
            if answer
            else f"Output: {_one_line(json.dumps(output, default=str), 300)}"
        )
        return 0
    seconds = (output.get("total_duration_ms") or 0) / 1000
    console.say()
    console.say(f"Summary: {output.get('summary')}")
    console.say(f"Status: {output.get('status')} ({seconds:.1f} s)")
    if spent := spending.line():
        console.say(spent)
    if output.get("answer"):
        console.say(f"Answer: {output['answer']}")
    return exit_status(output.get("status"))


def run(args: argparse.Namespace) -> int:
    """Run the loop (`run`) or finish a run (`resume`) as the parsed `args` say, printing its
    progress live; the exit status. On Ctrl-C (`KeyboardInterrupt`) the terminal is left at
    the start of a clean line. `args.thread` is the run's thread once it is known."""
    spending = Spending()
    console = Console(spending, quiet=args.json)
    if args.command == "run":
        model = args.model or (
            None if args.url else os.environ.get(MODEL_ENV, "").strip() or DEFAULT_MODEL
        )
        if model == "demo":
            print(DEMO_NOTE, file=sys.stderr if args.json else sys.stdout, flush=True)
        console.say(f"Task: {_shown_task(args.task)}")
        if args.url:
            console.say(f"Server: {args.url} ({args.assistant})")
    console.working("starting")
    library = logging.getLogger("agentloop_graph")
    library.addHandler(console)
    try:
        with contextlib.ExitStack() as stack:
            (prepared,) = in_background(
                lambda: [_on_server(args, stack) if args.url else _in_process(args, stack)], console
            )
            args.thread = prepared.thread
            resumed = prepared.resumed
            if resumed is not None and resumed.finished:
                console.finish()
                return _finished(resumed, args)
            _announce(prepared, args, console)
            if resumed is not None:
                console.working("resuming")
            output = _drive(
                prepared.leg,
                spending,
                console,
                as_json=args.json,
                waiting=resumed.question if resumed else None,
                hint=cli_runs.resume_command(args.thread, args.db) if args.db else None,
            )
    finally:
        library.removeHandler(console)
        console.finish()
    return _report(output, spending, console, args)


def list_runs(args: argparse.Namespace) -> int:
    """`agentloop runs`: the threads in `args.db`, the newest run first; the exit status."""
    with contextlib.ExitStack() as stack:
        found = cli_runs.list_runs(_open_db(args.db, stack), args.limit)
    if args.json:
        for each in found:
            _emit(cli_runs.record(each))
    else:
        print("\n".join(cli_runs.listing(found, args.db)))
    return 0


def exit_status(status: str | None) -> int:
    """The exit status for a run status: 0 completed, 2 partial, 1 failed (or none)."""
    return {"completed": 0, "partial": 2}.get(status or "", 1)


def _read_task(args: argparse.Namespace) -> str:
    """The task from TASK, stdin (`-`) or `--task-file`, whichever one names it."""
    usage = " (see `agentloop run --help`)"
    sources = {"TASK": args.task not in (None, "-"), "-": args.task == "-"}
    given = [name for name, used in {**sources, "--task-file": args.task_file}.items() if used]
    if len(given) != 1:
        problem = (
            f"give the task once ({' and '.join(given)} both do)" if given else "give the task"
        )
        raise CliError(f"{problem}: as TASK, - (stdin) or --task-file PATH{usage}")
    data: str | bytes = args.task
    if args.task == "-" and args.approve_plan:
        raise CliError(
            "--approve reads its answers from stdin, so the task cannot come from there "
            "too: give it as TASK or with --task-file PATH"
        )
    if args.task == "-":
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    elif args.task_file is not None:
        try:
            data = Path(args.task_file).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read --task-file {args.task_file}: {exc.strerror}") from None
    text = data.decode("utf-8-sig", "replace") if isinstance(data, bytes) else _storable(data)
    if not text.strip():
        raise CliError(f"the task is empty: describe what the loop should do{usage}")
    return text.strip()


def _check(args: argparse.Namespace) -> None:
    """Refuse, as a `CliError`, what the `run` command line asks for that cannot work."""
    usage = " (see `agentloop run --help`)"
    if args.url is None and args.assistant is not None:
        raise CliError(f"--assistant needs --url: it names a graph on a server{usage}")
    local_only = {
        "--db": (args.db, "an Agent Server keeps its runs' threads itself"),
        "--thread": (args.thread, "an Agent Server keeps its runs' threads itself"),
        "--ollama-host": (args.ollama_host, "the server's graph uses the server's OLLAMA_HOST"),
        "--model-timeout": (
            args.model_timeout,
            "the server's graph sets its own (a run's context has no such field)",
        ),
    }
    for flag, (value, why) in local_only.items():
        if args.url is not None and value is not None:
            raise CliError(f"{flag} is for local runs; with --url {why}{usage}")
    if args.thread is not None and args.db is None:
        raise CliError(f"--thread needs --db: without it the run is kept in memory only{usage}")
    if args.url is not None:
        _refuse_unusable(args, _given(args), "--model")
    else:
        _refuse_unusable(args, *_local_options(args, {}))


def _replace_unprintable() -> None:
    """Print what the terminal cannot show as `?` instead of failing on it (a model's answer,
    a path given in bytes that are not UTF-8)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="replace")  # type: ignore[union-attr]


def _wants_json(argv: Sequence[str]) -> bool:
    """Whether the command line asks for `--json`, before (or without) parsing it."""
    options = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in options


def main(argv: Sequence[str] | None = None) -> int:
    """The `agentloop` console script; the exit status. `argv` None (as the script calls
    it) reads `sys.argv[1:]` and makes this the process's own entry point."""
    _replace_unprintable()
    words = sys.argv[1:] if argv is None else list(argv)
    as_json = _wants_json(words)
    args: argparse.Namespace | None = None
    try:
        try:
            args = build_parser().parse_args(words)
        except SystemExit as stop:
            # --help and --version end parsing; hand their status back instead of exiting.
            return stop.code if isinstance(stop.code, int) else 1
        as_json = args.json
        if args.command == "runs":
            return list_runs(args)
        if args.command == "run":
            args.url = args.url and args.url.rstrip("/")
            _check(args)
            args.task = _read_task(args)
            args.assistant = args.assistant or DEFAULT_ASSISTANT
        else:
            args.url = None
        return run(args)
    except CliError as exc:
        # Some library messages span lines; the contract is one line per error.
        message = " ".join(str(exc).split())
        print(f"agentloop: error: {message}", file=sys.stderr, flush=True)
        if as_json:
            _emit({"event": "error", "error": message, **_where(args)})
    except KeyboardInterrupt:
        thread, db = getattr(args, "thread", None), getattr(args, "db", None)
        hint = f"; resume with: {cli_runs.resume_command(thread, db)}" if thread and db else ""
        print(f"agentloop: interrupted{hint}", file=sys.stderr, flush=True)
        if as_json:
            _emit({"event": "error", "error": "interrupted", **_where(args)})
        if argv is None:
            # The abandoned run's thread may be mid-call or mid-import, and tearing down a
            # process with LangChain loaded can take seconds: leave at once instead.
            sys.stdout.flush()
            os._exit(INTERRUPTED)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); point stdout at devnull so the exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1


def _where(args: argparse.Namespace | None) -> dict[str, str]:
    """The thread of a run that stopped, for the error event, when it outlives the process."""
    thread = getattr(args, "thread", None)
    return {} if thread is None else {"thread_id": thread}


if __name__ == "__main__":
    sys.exit(main())
