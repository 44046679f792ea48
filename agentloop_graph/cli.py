"""The `agentloop` command: run the agent loop on one task from a terminal.

LangChain and LangGraph load only once a run starts, so `--help` and `--version` answer
at once. A run's work (imports, model calls) happens on a background thread while the
main thread prints, keeps the activity line alive and takes Ctrl-C: the interrupt then
always lands in this module's own waiting, never inside a library's locks.

With `--url` the run goes to an Agent Server (`langgraph dev`, Aegra, LangSmith
Deployments) through `langgraph-sdk`, and its progress is shown the same way.

Example:
    $ agentloop run "Plan a picnic, fail step 2" --model demo
    $ agentloop run "Compare three note-taking apps" --model ollama:llama3.2 --json
    $ agentloop run "Plan a picnic" --url http://127.0.0.1:2024 --model demo --max-model-calls 4
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar, cast

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

T = TypeVar("T")

DEFAULT_MODEL = "ollama:llama3.2"
"""`agentloop_graph.models.DEFAULT_MODEL` (a test keeps them equal): importing it from there
would load LangChain just to print `--help`."""
DEFAULT_MAX_STEPS = 10
DEFAULT_MAX_ADAPTATIONS = 1
DEFAULT_ASSISTANT = "agent_loop"
"""The graph id `langgraph.json` gives the loop."""
DEMO_NOTE = "Using the offline demo model (deterministic, for trying the loop)."
PROBE_TIMEOUT = 2.0
PREVIEW = 80
INDENT = "    "
TICK = 0.1
"""Seconds between redraws of the activity line."""
HEARTBEAT = 10.0
"""Seconds of silence after which output that is not a terminal gets a still-working line."""
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
INTERRUPTED = 130
STREAMED_NODES = ("executor", "summariser")
"""The phases whose tokens `--stream` shows; the plan and revisions are shown whole."""

_EPILOG = """\
exit status: 0 completed, 2 partial (plan truncated or a step failed),
1 failed, plan cancelled (--approve) or error, 130 interrupted (Ctrl-C).

examples:
  agentloop run "Plan a picnic, fail step 2" --model demo
  agentloop run "Compare three note-taking apps" --max-steps 5 --json
  agentloop run "Plan a picnic" --model demo --approve --stream
  agentloop run "Plan a picnic" --model demo --max-model-calls 4
  agentloop run "Plan a picnic" --url http://127.0.0.1:2024 --model demo
"""


class CliError(Exception):
    """A problem the user can fix, reported as one `agentloop: error:` line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Exit status 2 means a partial run here, so usage errors exit 1 like other errors.
        self.exit(1, f"agentloop: error: {message} (see `{self.prog} --help`)\n")


class _Version(argparse.Action):
    """`--version`, looked up only when asked for (importlib.metadata is not free)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"agentloop {package_version()}")
        parser.exit(0)


def package_version() -> str:
    """The installed version of agentloop-graph, or `unknown` when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentloop-graph")
    except PackageNotFoundError:
        return "unknown"


def _task(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the task is empty: describe what the loop should do")
    return text


def _at_least(minimum: int) -> Callable[[str], int]:
    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}")
        return value

    return whole_number


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _server_url(text: str) -> str:
    if not text.startswith(("http://", "https://")) or len(text.split("//", 1)[1]) == 0:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, got {text!r}")
    return text.rstrip("/")


def build_parser() -> argparse.ArgumentParser:
    """The `agentloop` argument parser, with its `run` subcommand.

    Returns:
        A parser whose usage errors exit with status 1 after one `agentloop: error:` line.
    """
    parser = _Parser(
        prog="agentloop",
        description="Plan a task into steps, run them one by one with a chat model,\n"
        "adapt steps that fail, and summarise.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run_parser = commands.add_parser(
        "run",
        help="run the loop on one task and show its progress",
        description="Run the plan -> execute -> adapt -> summarise loop on TASK,\n"
        "printing the plan and each step as it runs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_parser.add_argument("task", metavar="TASK", type=_task, help="what the loop should do")
    run_parser.add_argument(
        "--model",
        help='"demo" (offline, deterministic), "ollama:<model>" (the Ollama server at '
        'OLLAMA_HOST) or a "provider:model" string for LangChain '
        f"(default: {DEFAULT_MODEL}; with --url, the server's)",
    )
    run_parser.add_argument(
        "--max-steps",
        type=_at_least(1),
        metavar="N",
        help="longest plan to run; a longer plan is cut and the run is partial "
        f"(default: {DEFAULT_MAX_STEPS})",
    )
    run_parser.add_argument(
        "--max-adaptations",
        type=_at_least(0),
        metavar="N",
        help="revisions allowed per failed step; 0 lets a failed step stay failed "
        f"(default: {DEFAULT_MAX_ADAPTATIONS})",
    )
    run_parser.add_argument(
        "--step-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="time allowed per attempt at a step; a slower attempt fails (default: no limit)",
    )
    run_parser.add_argument(
        "--ollama-host",
        metavar="URL",
        help="the Ollama server for ollama: models, instead of OLLAMA_HOST "
        "(host, host:port or a URL; default port 11434)",
    )
    run_parser.add_argument(
        "--approve",
        action="store_true",
        help="show the plan and ask before running it: y runs it, e edits it "
        "(type new steps, one per line, then an empty line), n cancels (exit status 1)",
    )
    budget = run_parser.add_argument_group(
        "budget",
        "Hard limits for the run, checked before every model call: once one is reached no "
        "call is made, the open step fails, no later step starts, and the summary says "
        "which budget was spent.",
    )
    budget.add_argument(
        "--max-model-calls",
        type=_at_least(1),
        metavar="N",
        help="model calls the run may make, planning and the final answer included",
    )
    budget.add_argument(
        "--max-tokens",
        type=_at_least(1),
        metavar="N",
        help="tokens (input + output) the run may spend",
    )
    budget.add_argument(
        "--max-seconds",
        type=_seconds,
        metavar="S",
        help="seconds the run may take from the start of planning",
    )
    server = run_parser.add_argument_group("server")
    server.add_argument(
        "--url",
        type=_server_url,
        metavar="URL",
        help="run on the Agent Server at URL (langgraph dev, Aegra, LangSmith Deployments) "
        "through langgraph-sdk; --model and the limits go as the run's context",
    )
    server.add_argument(
        "--assistant",
        metavar="ID",
        help=f"the assistant or graph id to run with --url (default: {DEFAULT_ASSISTANT})",
    )
    output = run_parser.add_mutually_exclusive_group()
    output.add_argument(
        "--stream",
        action="store_true",
        help="print each step's answer and the final answer as the model writes them",
    )
    output.add_argument(
        "--json",
        action="store_true",
        help="print each progress event as one JSON line, and nothing else, on stdout",
    )
    return parser


def check_ollama(base_url: str) -> None:
    """Make sure an Ollama server answers at `base_url` before a run relies on it.

    Args:
        base_url: The server's address, e.g. `http://127.0.0.1:11434`.

    Raises:
        CliError: Nothing answered; the message names the URL and how to fix it.
    """
    import httpx

    url = f"{base_url}/api/tags"
    try:
        httpx.get(url, timeout=PROBE_TIMEOUT)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = str(exc) or type(exc).__name__
        raise CliError(
            f"cannot reach the Ollama server at {base_url} (GET {url}: {reason}). "
            "Start it with `ollama serve` (or set OLLAMA_HOST to where it runs), "
            "or try the loop offline with --model demo"
        ) from None


def connect(spec: str, *, ollama_host: str | None = None) -> tuple[str, dict[str, Any]]:
    """The `--model` string checked, with the model options that point it at its server.

    The loop builds each phase's model from the string itself, so each gets the loop's
    defaults for it (an Ollama model's answer caps and its stop on repetition).

    Args:
        spec: `"demo"`, `"ollama:<model>"` or another `"provider:model"` string.
        ollama_host: The Ollama server to use instead of `OLLAMA_HOST`.

    Returns:
        The string and the `model_options` for `create_agent_loop`.

    Raises:
        CliError: The string names no model, the model cannot be built (the message says
            what to set or install), or the Ollama server does not answer.
    """
    from agentloop_graph.models import ollama_base_url, resolve_model

    options: dict[str, Any] = {}
    try:
        if spec.startswith("ollama:"):
            options["base_url"] = ollama_base_url(ollama_host, argument="--ollama-host")
        resolve_model(spec, argument="--model", options=options)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    if "base_url" in options:
        check_ollama(options["base_url"])
    return spec, options


def _one_line(text: str, limit: int = PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else f"{flat[: limit - 1]}…"


def _plan_lines(steps: Sequence[str], note: str = "") -> list[str]:
    numbered = [f"{INDENT}{i}. {' '.join(step.split())}" for i, step in enumerate(steps, 1)]
    count = f"{len(steps)} step{'s' if len(steps) != 1 else ''}"
    return [f"Plan ({count}{note}):", *numbered, ""]


def _step_lines(event: Mapping[str, Any], streamed: bool) -> list[str]:
    position = f"[{event['step']}/{event['total']}]"
    match event["event"]:
        case "agentic.step_started" if event["attempt"] > 1:
            return [f"{position} attempt {event['attempt']}, with the revised step ..."]
        case "agentic.step_started":
            return [f"{position} {_one_line(event['description'])} ..."]
        case "agentic.step_failed":
            return [f"{INDENT}✗ failed: {_one_line(event['error'])}"]
        case "agentic.step_adapted":
            return [f"{INDENT}↻ adapted: {' '.join(event['adaptation'].split())}"]
        case "agentic.step_complete" if event["status"] == "failed":
            return [f"{INDENT}✗ step failed, no adaptation left"]
        case "agentic.step_complete":
            label = "✓ done (adapted)" if event["status"] == "adapted" else "✓ done"
            preview = "" if streamed else f": {_one_line(event['result'])}"
            return [f"{INDENT}{label}{preview}"]
    return []


def human_lines(event: Mapping[str, Any], *, streamed: bool = False) -> list[str]:
    """The lines the default (human) output prints for one progress event.

    Args:
        event: One progress event from the graph's custom stream.
        streamed: The step's answer was just shown as it streamed, so a finished step
            is not previewed again.

    Returns:
        The lines to print; none for events the final report covers.
    """
    if event["event"] == "agentic.plan_ready":
        return _plan_lines(event["steps"])
    if event["event"] == "agentic.task_complete":
        return []
    return _step_lines(event, streamed)


def activity(event: Mapping[str, Any]) -> str | None:
    """What the model is busy with once `event` has happened, or None when it is not.

    Args:
        event: One progress event from the graph's custom stream.

    Returns:
        A short label such as `"step 2/4"`, or None until the next event says more.
    """
    position = f"step {event.get('step')}/{event.get('total')}"
    match event["event"]:
        case "agentic.step_started" if event["attempt"] > 1:
            return f"{position}, attempt {event['attempt']}"
        case "agentic.step_started":
            return position
        case "agentic.step_failed":
            return f"revising {position}"
        case "agentic.step_complete" if event["step"] == event["total"]:
            return "writing the answer"
    return None


class Console:
    """The human output: lines, streamed tokens, and a live line saying what is running.

    On a terminal the live line is a spinner with the elapsed time, redrawn in place;
    elsewhere (a pipe, a log file) a plain still-working line follows each `HEARTBEAT`
    seconds of silence, so a log never shows a carriage-return animation.

    Only the main thread uses a console; other threads hand it lines with `note`.
    """

    def __init__(self, out: TextIO, *, quiet: bool) -> None:
        self._out = out
        self._quiet = quiet
        self._live = not quiet and out.isatty()
        self._label: str | None = None
        self._spent = ""
        self._since = self._last_output = time.monotonic()
        self._drawn = False
        self._mid_line = False
        self._frame = 0
        self._notes: queue.SimpleQueue[str] = queue.SimpleQueue()

    def say(self, line: str = "") -> None:
        """Print one line (nothing under `--json`, whose lines go straight to stdout)."""
        if not self._quiet:
            self._write(f"{self._break()}{line}\n")

    def token(self, text: str) -> None:
        """Print streamed text as it comes, indented under the step it belongs to."""
        if self._quiet or not text:
            return
        start = "" if self._mid_line else INDENT
        self._mid_line = True
        self._write(self._unspin() + start + text.replace("\n", f"\n{INDENT}"))

    def working(self, label: str | None) -> None:
        """Say what the model is busy with from now on (None: nothing, hide the line)."""
        if label != self._label:
            self._label, self._since = label, time.monotonic()
        if label is None:
            self._write(self._unspin())

    def spending(self, text: str) -> None:
        """Say what the run has spent so far; the live line shows it after the time."""
        self._spent = f" ({text})" if text else ""

    def note(self, line: str) -> None:
        """Queue a line for stderr; any thread may call this."""
        self._notes.put(line)

    def tick(self) -> None:
        """Print queued notes and bring the live line up to date; call it often."""
        while not self._notes.empty():
            self._write(self._break())
            print(self._notes.get(), file=sys.stderr, flush=True)
        if self._quiet or self._label is None or self._mid_line:
            return
        now = time.monotonic()
        elapsed = now - self._since
        if self._live:
            self._frame = (self._frame + 1) % len(SPINNER)
            line = f"{SPINNER[self._frame]} {self._label}, {elapsed:.1f} s{self._spent}"
            self._write(f"\r{line}\x1b[K")
            self._drawn = True
        elif now - self._last_output >= HEARTBEAT:
            self.say(f"{INDENT}… {self._label}, {elapsed:.0f} s so far{self._spent}")

    def close(self) -> None:
        """Leave the terminal at the start of a clean line."""
        self.working(None)
        self._write(self._break())
        self.tick()

    def _unspin(self) -> str:
        drawn, self._drawn = self._drawn, False
        return "\r\x1b[K" if drawn else ""

    def _break(self) -> str:
        mid_line, self._mid_line = self._mid_line, False
        return self._unspin() + ("\n" if mid_line else "")

    def _write(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()
            self._last_output = time.monotonic()


def in_background(produce: Callable[[], Iterator[T]], console: Console) -> Iterator[T]:
    """Yield what `produce()` yields, worked out on a daemon thread.

    The main thread meanwhile waits on a queue, ticking the console; Ctrl-C interrupts
    that wait. The worker is a daemon, so an interrupted run does not hold up the exit.

    Args:
        produce: Called on the worker thread; its items are handed over one by one.
        console: Ticked while nothing arrives.

    Yields:
        The items, in order; an exception `produce` raised is raised here.
    """
    box: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def work() -> None:
        try:
            for item in produce():
                box.put(("item", item))
        except BaseException as exc:
            box.put(("error", exc))
        else:
            box.put(("done", None))

    threading.Thread(target=work, name="agentloop-run", daemon=True).start()
    while True:
        try:
            kind, value = box.get(timeout=TICK)
        except queue.Empty:
            console.tick()
            continue
        if kind == "error":
            raise value
        if kind == "done":
            return
        yield value


def streamed_text(chunk: tuple[Any, Mapping[str, Any]]) -> tuple[str, str]:
    """The phase and text of one `stream_mode="messages"` item that `--stream` shows.

    Args:
        chunk: A message (chunk) and its run metadata.

    Returns:
        The node it came from and its text; the text is empty for what `--stream`
        skips: the planner's and adapter's answers (the plan and the revision lines show
        them) and messages a node wrote to the state (the final answer again), which
        carry no model-run metadata.
    """
    message, metadata = chunk
    node = metadata.get("langgraph_node", "")
    from_a_model = "ls_model_type" in metadata
    if node not in STREAMED_NODES or not from_a_model:
        return node, ""
    if isinstance(message, Mapping):  # from a server: the message as JSON
        return node, _text_of(message.get("content"))
    return node, message.text


def _text_of(content: Any) -> str:
    """The text of a message's JSON `content`: a string, or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part if isinstance(part, str) else str(part.get("text", ""))
            for part in content
            if isinstance(part, str) or (isinstance(part, Mapping) and part.get("type") == "text")
        )
    return ""


def _read_line(prompt: str, shown_on: TextIO) -> str | None:
    """One line typed in answer to `prompt`, without its newline; None at end of input."""
    shown_on.write(prompt)
    shown_on.flush()
    line = sys.stdin.readline()
    if not sys.stdin.isatty():
        # A terminal echoes what is typed; answers piped in would leave the prompt hanging.
        shown_on.write(line if line.endswith("\n") else f"{line}\n")
        shown_on.flush()
    return line.rstrip("\n") if line else None


def _new_plan(shown_on: TextIO) -> list[str] | None:
    print("New plan: one step per line, an empty line to finish.", file=shown_on, flush=True)
    steps: list[str] = []
    while (line := _read_line(f"{INDENT}{len(steps) + 1}. ", shown_on)) and line.strip():
        steps.append(line.strip())
    return steps or None


def ask_about_plan(question: Mapping[str, Any], shown_on: TextIO) -> bool | list[str]:
    """Ask whether to run the plan a paused run shows: the answer to resume it with.

    Args:
        question: The plan-approval interrupt's value (`task_id`, `task`, `plan`).
        shown_on: Where the questions go (stdout, or stderr under `--json`).

    Returns:
        True to run the plan, False to cancel it (also at end of input), or the new
        steps typed in.
    """
    while True:
        reply = _read_line("Run this plan? y = run it, e = edit it, n = cancel: ", shown_on)
        match (reply or "n").strip().lower():
            case "y" | "yes":
                return True
            case "n" | "no":
                if reply is None:
                    print("No answer (end of input): the plan is cancelled.", file=shown_on)
                return False
            case "e" | "edit":
                if steps := _new_plan(shown_on):
                    return steps
                print("A plan needs at least one step.", file=shown_on, flush=True)
            case _:
                print("Please answer y, e or n.", file=shown_on, flush=True)


def _count(number: float, unit: str) -> str:
    return f"{number:,} {unit}{'' if number == 1 else 's'}"


class Spending:
    """What a run has spent so far, as its progress events tell it.

    Each `agentic.step_started` is an executor call, each `agentic.step_adapted` an
    adapter call, and planning, a revised plan and the final answer one call each; a
    call the budget refused (`budget exhausted: ...`) was never made. Tokens add up the
    `usage` of each finished step. `agentic.task_complete` then brings the run's own
    count (`budget`), which replaces the estimate.
    """

    def __init__(self) -> None:
        self.model_calls = 0
        self.tokens = 0
        self.report: Mapping[str, Any] | None = None

    def planning(self) -> None:
        """Planning has begun: its call is under way."""
        self.model_calls = max(self.model_calls, 1)

    def update(self, event: Mapping[str, Any]) -> None:
        """Count what `event` says was spent."""
        match event["event"]:
            case "agentic.step_started" | "agentic.step_adapted" | "agentic.plan_revised":
                self.model_calls += 1
            case "agentic.step_failed" if str(event.get("error", "")).startswith(
                "budget exhausted"
            ):
                self.model_calls -= 1
            case "agentic.step_complete":
                self.tokens += (event.get("usage") or {}).get("total_tokens", 0)
                if event["step"] == event["total"]:
                    self.model_calls += 1  # the final answer
            case "agentic.task_complete" if isinstance(event.get("budget"), Mapping):
                self.report = event["budget"]
                self.model_calls = int(self.report["spent"]["model_calls"])
                self.tokens = int(self.report["spent"]["tokens"])

    def so_far(self) -> str:
        """`3 model calls, 1,234 tokens` (tokens only once some were counted)."""
        calls = _count(self.model_calls, "model call")
        return f"{calls}, {_count(self.tokens, 'token')}" if self.tokens else calls

    def line(self) -> str | None:
        """The final report's `Spent:` line, from the run's own count; None without one."""
        if self.report is None:
            return None
        spent, limits = self.report["spent"], self.report.get("limits") or {}
        seconds = float(spent["seconds"])
        text = (
            f"Spent: {_count(int(spent['model_calls']), 'model call')}, "
            f"{_count(int(spent['tokens']), 'token')}, {seconds:.1f} s"
        )
        caps = [
            _count(limits[name], unit)
            for name, unit in (("max_model_calls", "model call"), ("max_tokens", "token"))
            if limits.get(name) is not None
        ]
        if limits.get("max_seconds") is not None:
            caps.append(f"{limits['max_seconds']:g} s")
        return f"{text} (limits: {', '.join(caps)})" if caps else text


def _print_outcome(output: Mapping[str, Any], spending: Spending, console: Console) -> None:
    seconds = (output.get("total_duration_ms") or 0) / 1000
    console.say()
    console.say(f"Summary: {output.get('summary')}")
    console.say(f"Status: {output.get('status')} ({seconds:.1f} s)")
    if spent := spending.line():
        console.say(spent)
    if output.get("answer"):
        console.say(f"Answer: {output['answer']}")


def exit_status(status: str | None) -> int:
    """The exit status for a run status: 0 completed, 2 partial, 1 failed (or none)."""
    return {"completed": 0, "partial": 2}.get(status or "", 1)


class _Warnings(logging.Handler):
    """Library warnings as one `agentloop: warning:` line each, never a traceback."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.WARNING)
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        reason = f": {record.exc_info[1]!r}" if record.exc_info else ""
        self._console.note(f"agentloop: warning: {record.getMessage()}{reason}")


@contextmanager
def _library_warnings(console: Console) -> Iterator[None]:
    logger = logging.getLogger("agentloop_graph")
    handler = _Warnings(console)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@dataclass(frozen=True)
class _Resume:
    """The answer to a plan approval, to resume the paused run with."""

    answer: bool | list[str]


Leg = Callable[[Any], Iterator[tuple[str, Any]]]
"""Streams one leg of a run, from its input (a task, or a `_Resume`) to its end or a pause:
`(mode, chunk)` pairs, mode `custom`, `values` or `messages`."""


def _build(
    model: str, ollama_host: str | None, approve: bool, settings: Mapping[str, Any]
) -> Iterator[CompiledStateGraph[Any, Any, Any, Any]]:
    """The loop for this run, as the one item `in_background` hands over."""
    from langgraph.checkpoint.memory import InMemorySaver

    from agentloop_graph.budget import Budget
    from agentloop_graph.graph import create_agent_loop

    if approve:
        # Plan approval pauses the run; resuming it needs the paused run's checkpoint.
        settings = {**settings, "approve_plan": True, "checkpointer": InMemorySaver()}
    if (budget := settings.get("budget")) is not None:
        settings = {**settings, "budget": Budget(**budget)}
    try:
        spec, options = connect(model, ollama_host=ollama_host)
        graph = create_agent_loop(spec, model_options=options, **settings)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    yield graph


def _local_leg(graph: CompiledStateGraph[Any, Any, Any, Any], modes: list[str]) -> Leg:
    """Legs of a run of `graph` in this process, on a thread of its own."""
    from langgraph.types import Command

    config = {"configurable": {"thread_id": uuid.uuid4().hex}}
    stream = cast(Callable[..., Iterator[tuple[str, Any]]], graph.stream)

    def leg(start: Any) -> Iterator[tuple[str, Any]]:
        command = Command(resume=start.answer) if isinstance(start, _Resume) else start
        for mode, chunk in stream(command, config, stream_mode=modes):
            if mode == "values" and (pending := chunk.get("__interrupt__")):
                chunk = {**chunk, "__interrupt__": [{"value": p.value} for p in pending]}
            yield mode, chunk

    return leg


def check_server(url: str) -> None:
    """Make sure an Agent Server answers at `url` before a run is sent there.

    Any HTTP answer will do (a server that wants a key still answers); only silence fails.

    Raises:
        CliError: Nothing answered; the message names the URL.
    """
    import httpx

    try:
        httpx.get(f"{url}/info", timeout=PROBE_TIMEOUT)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = str(exc) or type(exc).__name__
        raise CliError(
            f"cannot reach the Agent Server at {url} (GET {url}/info: {reason}); "
            "start it (langgraph dev, Aegra) or check --url"
        ) from None


def _server_problem(url: str, exc: Exception) -> CliError:
    """One line for an HTTP error from the server at `url`."""
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        try:
            detail = response.json()
            detail = detail.get("detail") or detail.get("message") or detail
        except ValueError:
            detail = response.text
        return CliError(
            f"the Agent Server at {url} refused the run: HTTP {response.status_code}: {detail}"
        )
    return CliError(f"lost the Agent Server at {url}: {exc or type(exc).__name__}")


def _server_client(url: str) -> Iterator[Any]:
    """A `langgraph-sdk` client of the Agent Server at `url`, once it answers; the one
    item `in_background` hands over."""
    try:
        from langgraph_sdk import get_sync_client
    except ImportError:
        raise CliError("--url needs langgraph-sdk: pip install langgraph-sdk") from None
    check_server(url)
    yield get_sync_client(url=url)


def _remote_leg(
    client: Any, url: str, assistant: str, context: Mapping[str, Any], modes: list[str]
) -> Leg:
    """Legs of a run on the Agent Server at `url`, on one thread it creates there."""
    import httpx

    # A server sends message chunks with their metadata as "messages-tuple".
    wanted = ["messages-tuple" if mode == "messages" else mode for mode in modes]
    thread: list[str] = []

    def leg(start: Any) -> Iterator[tuple[str, Any]]:
        ask = {"command": {"resume": start.answer}} if isinstance(start, _Resume) else {}
        try:
            if not thread:
                thread.append(client.threads.create()["thread_id"])
            parts = client.runs.stream(
                thread[0],
                assistant,
                input=None if ask else start,
                context=dict(context),
                stream_mode=wanted,
                on_disconnect="cancel",
                **ask,
            )
            for part in parts:
                if part.event == "error":
                    data = part.data if isinstance(part.data, Mapping) else {"message": part.data}
                    reason = ": ".join(str(data[k]) for k in ("error", "message") if data.get(k))
                    raise CliError(f"the run failed on the Agent Server at {url}: {reason}")
                mode = part.event.split("/", 1)[0]
                if mode in ("custom", "values", "messages"):
                    yield mode, part.data
        except httpx.HTTPError as exc:
            raise _server_problem(url, exc) from None

    return leg


def _follow(
    leg: Leg,
    start: Any,
    spending: Spending,
    console: Console,
    *,
    as_json: bool,
) -> Mapping[str, Any]:
    """Stream one leg of a run (to its end or a pause), showing it; its last values."""
    output: Mapping[str, Any] = {}
    streamed: set[str] = set()  # the phases whose text the current step or answer showed
    for mode, chunk in in_background(functools.partial(leg, start), console):
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
            print(json.dumps(chunk), flush=True)
        else:
            spending.update(chunk)
            for line in human_lines(chunk, streamed="executor" in streamed):
                console.say(line)
            if chunk["event"] == "agentic.step_started":
                streamed.discard("executor")
            console.spending(spending.so_far())
            console.working(activity(chunk))
        if mode == "custom" and as_json:
            spending.update(chunk)
    console.working(None)
    return output


def _resume(question: Mapping[str, Any], console: Console, *, as_json: bool) -> _Resume:
    """The answer that resumes a run paused for plan approval, as the person gave it."""
    console.close()
    shown_on = sys.stderr if as_json else sys.stdout
    if as_json:
        print("\n".join(_plan_lines(question["plan"])), file=shown_on, flush=True)
    answer = ask_about_plan(question, shown_on)
    if isinstance(answer, list) and not as_json:
        for line in ["", *_plan_lines(answer, ", edited")]:
            console.say(line)
    return _Resume(answer)


def _drive(
    leg: Leg, task: str, spending: Spending, console: Console, *, as_json: bool
) -> Mapping[str, Any]:
    """Run the task to its end, asking about the plan whenever the run pauses for it."""
    start: Any = {"task": task}
    spending.planning()
    console.spending(spending.so_far())
    console.working("planning")
    try:
        while True:
            output = _follow(leg, start, spending, console, as_json=as_json)
            if not (pending := output.get("__interrupt__")):
                return output
            start = _resume(pending[0]["value"], console, as_json=as_json)
    except (CliError, BrokenPipeError):
        raise
    except Exception as exc:
        # Node failures are already part of the result; anything escaping is worth one line.
        raise CliError(f"the run stopped: {type(exc).__name__}: {exc}") from None


def _remote_context(
    model: str | None,
    max_steps: int | None,
    max_adaptations: int | None,
    step_timeout: float | None,
    approve: bool,
    budget: Mapping[str, float] | None,
) -> dict[str, Any]:
    """The run's `Context` on a server: only what was asked for, so the rest keeps the
    server's own settings (its default model, say)."""
    fields = {
        "model": model,
        "max_steps": max_steps,
        "max_adaptations": max_adaptations,
        "step_timeout": step_timeout,
        "approve_plan": True if approve else None,
        "budget": dict(budget) if budget else None,
    }
    return {name: value for name, value in fields.items() if value is not None}


def run(
    task: str,
    *,
    model: str | None = None,
    max_steps: int | None = None,
    max_adaptations: int | None = None,
    step_timeout: float | None = None,
    ollama_host: str | None = None,
    approve: bool = False,
    stream: bool = False,
    as_json: bool = False,
    budget: Mapping[str, float] | None = None,
    url: str | None = None,
    assistant: str = DEFAULT_ASSISTANT,
) -> int:
    """Run the loop on `task`, printing its progress live, and return the exit status.

    Args:
        task: What the loop should do.
        model: A model string, as `--model` takes it; None: `DEFAULT_MODEL` here, the
            server's own default with `url`.
        max_steps: Longest plan to run; None: 10 (with `url`, the server's graph's).
        max_adaptations: Revisions allowed per failed step; None: 1 (or the server's).
        step_timeout: Seconds allowed per attempt at a step; None for no limit.
        ollama_host: The Ollama server for `ollama:` models, instead of `OLLAMA_HOST`.
        approve: Show the plan and ask on stdin whether to run, edit or cancel it.
        stream: Print the executor's and summariser's tokens as they arrive.
        as_json: Print each progress event as a JSON line instead of text.
        budget: Limits of `agentloop_graph.Budget` (`max_model_calls`, `max_tokens`,
            `max_seconds`); None or empty for none.
        url: Run on the Agent Server at this URL instead of in this process.
        assistant: The assistant or graph id to run on the server.

    Returns:
        0 if the run completed, 2 if it was partial, 1 if it failed or was cancelled.

    Raises:
        CliError: The model, settings or server are unusable, or the run stopped
            unexpectedly.
        KeyboardInterrupt: Ctrl-C; the terminal is left at the start of a clean line.
    """
    console = Console(sys.stdout, quiet=as_json)
    if (model or (None if url else DEFAULT_MODEL)) == "demo":
        print(DEMO_NOTE, file=sys.stderr if as_json else sys.stdout, flush=True)
    console.say(f"Task: {task}")
    if url:
        console.say(f"Server: {url} ({assistant})")
    console.working("starting")
    modes = ["custom", "values", *(["messages"] if stream else [])]
    spending = Spending()
    try:
        with _library_warnings(console):
            if url:
                context = _remote_context(
                    model, max_steps, max_adaptations, step_timeout, approve, budget
                )
                (client,) = in_background(functools.partial(_server_client, url), console)
                with client:
                    leg = _remote_leg(client, url, assistant, context, modes)
                    output = _drive(leg, task, spending, console, as_json=as_json)
            else:
                settings: dict[str, Any] = {
                    "max_steps": DEFAULT_MAX_STEPS if max_steps is None else max_steps,
                    "max_adaptations": (
                        DEFAULT_MAX_ADAPTATIONS if max_adaptations is None else max_adaptations
                    ),
                    "step_timeout": step_timeout,
                    "budget": dict(budget) if budget else None,
                }
                build = functools.partial(
                    _build, model or DEFAULT_MODEL, ollama_host, approve, settings
                )
                (graph,) = in_background(build, console)
                output = _drive(_local_leg(graph, modes), task, spending, console, as_json=as_json)
    finally:
        console.close()
    if not as_json:
        _print_outcome(output, spending, console)
    return exit_status(output.get("status"))


def _interrupted(*, leave_now: bool) -> int:
    print("agentloop: interrupted", file=sys.stderr, flush=True)
    if leave_now:
        # The abandoned run's thread may be mid-call or mid-import, and tearing down a
        # process with LangChain loaded can take seconds: leave at once instead.
        sys.stdout.flush()
        os._exit(INTERRUPTED)
    return INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `agentloop` console script.

    Args:
        argv: Arguments after the program name. None (as the console script calls it)
            reads `sys.argv[1:]` and makes this the process's own entry point: Ctrl-C
            then ends the process at once, without the interpreter's slow teardown.

    Returns:
        The exit status: 0 completed, 2 partial, 1 failed, cancelled or an error (one
        line on stderr), 130 interrupted (one line on stderr).

    Example:
        >>> main(["run", "Plan a picnic", "--model", "demo", "--json"])  # doctest: +SKIP
        0
    """
    try:
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            if args.url is None:
                if args.assistant is not None:
                    parser.error("--assistant needs --url: it names a graph on a server")
            elif args.ollama_host is not None:
                parser.error(
                    "--ollama-host is for local runs; with --url the server's graph uses "
                    "the server's OLLAMA_HOST"
                )
        except SystemExit as stop:
            # --help and usage errors end parsing; hand their status back instead of exiting.
            return stop.code if isinstance(stop.code, int) else 1
        limits = {
            name: value
            for name in ("max_model_calls", "max_tokens", "max_seconds")
            if (value := getattr(args, name)) is not None
        }
        return run(
            args.task,
            model=args.model,
            max_steps=args.max_steps,
            max_adaptations=args.max_adaptations,
            step_timeout=args.step_timeout,
            ollama_host=args.ollama_host,
            approve=args.approve,
            stream=args.stream,
            as_json=args.json,
            budget=limits,
            url=args.url,
            assistant=args.assistant or DEFAULT_ASSISTANT,
        )
    except CliError as exc:
        # Some library messages span lines; the contract is one line per error.
        print(f"agentloop: error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        return _interrupted(leave_now=argv is None)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); point stdout at devnull so the exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1


if __name__ == "__main__":
    sys.exit(main())
