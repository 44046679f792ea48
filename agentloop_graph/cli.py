"""The `agentloop` command: run the agent loop on one task from a terminal.

Example:
    $ agentloop run "Plan a picnic, fail step 2" --model demo
    $ agentloop run "Compare three note-taking apps" --model ollama:llama3.2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn, cast

import httpx
from langchain_core.language_models import BaseChatModel
from langgraph.graph.state import CompiledStateGraph

from agentloop_graph.graph import create_agent_loop
from agentloop_graph.models import DEFAULT_MODEL, ollama_base_url, resolve_model

DEMO_NOTE = "Using the offline demo model (deterministic, for trying the loop)."
PROBE_TIMEOUT = 2.0
PREVIEW = 80
INDENT = "    "

_EPILOG = """\
exit status: 0 completed, 2 partial (plan truncated or a step failed), 1 failed or error.

examples:
  agentloop run "Plan a picnic, fail step 2" --model demo
  agentloop run "Compare three note-taking apps" --max-steps 5 --json
"""


class CliError(Exception):
    """A problem the user can fix, reported as one `agentloop: error:` line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Exit status 2 means a partial run here, so usage errors exit 1 like other errors.
        self.exit(1, f"agentloop: error: {message} (see `{self.prog} --help`)\n")


def _task(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the task is empty: describe what the loop should do")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


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
        default=DEFAULT_MODEL,
        help='"demo" (offline, deterministic), "ollama:<model>" (the Ollama server at '
        'OLLAMA_HOST) or a "provider:model" string for LangChain (default: %(default)s)',
    )
    run_parser.add_argument(
        "--max-steps",
        type=_positive_int,
        default=10,
        metavar="N",
        help="longest plan to run; a longer plan is cut and the run is partial (default: 10)",
    )
    run_parser.add_argument(
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


def connect(spec: str) -> BaseChatModel:
    """The chat model a `--model` string names, its server checked when it is Ollama.

    Args:
        spec: `"demo"`, `"ollama:<model>"` or another `"provider:model"` string.

    Returns:
        The chat model, ready for `create_agent_loop`.

    Raises:
        CliError: The string names no model, or the Ollama server does not answer.
    """
    try:
        model = resolve_model(spec, argument="--model")
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    if spec.startswith("ollama:"):
        check_ollama(ollama_base_url())
    return model


def _say(line: str = "") -> None:
    print(line, flush=True)


def _one_line(text: str, limit: int = PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else f"{flat[: limit - 1]}…"


def _step_lines(event: Mapping[str, Any]) -> list[str]:
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
            return [f"{INDENT}{label}: {_one_line(event['result'])}"]
    return []


def human_lines(event: Mapping[str, Any]) -> list[str]:
    """The lines the default (human) output prints for one progress event.

    Args:
        event: One progress event from the graph's custom stream.

    Returns:
        The lines to print; none for events the final report covers.
    """
    if event["event"] == "agentic.plan_ready":
        numbered = [f"{INDENT}{i}. {' '.join(s.split())}" for i, s in enumerate(event["steps"], 1)]
        count = f"{event['total']} step{'s' if event['total'] != 1 else ''}"
        return [f"Task: {event['task']}", f"Plan ({count}):", *numbered, ""]
    if event["event"] == "agentic.task_complete":
        return []
    return _step_lines(event)


def _print_outcome(output: Mapping[str, Any]) -> None:
    seconds = (output.get("total_duration_ms") or 0) / 1000
    _say()
    _say(f"Summary: {output.get('summary')}")
    _say(f"Status: {output.get('status')} ({seconds:.1f} s)")
    if output.get("answer"):
        _say(f"Answer: {output['answer']}")


def _show(event: Mapping[str, Any], *, as_json: bool) -> None:
    for line in [json.dumps(event)] if as_json else human_lines(event):
        _say(line)


def _stream(
    graph: CompiledStateGraph[Any, Any, Any, Any], task: str, *, as_json: bool
) -> Mapping[str, Any]:
    output: Mapping[str, Any] = {}
    chunks = graph.stream({"task": task}, stream_mode=["custom", "values"])
    for mode, chunk in cast(Iterator[tuple[str, Any]], chunks):
        if mode == "values":
            output = chunk
        else:
            _show(chunk, as_json=as_json)
    return output


def exit_status(status: str | None) -> int:
    """The exit status for a run status: 0 completed, 2 partial, 1 failed (or none)."""
    return {"completed": 0, "partial": 2}.get(status or "", 1)


def run(
    task: str, *, model: str = DEFAULT_MODEL, max_steps: int = 10, as_json: bool = False
) -> int:
    """Run the loop on `task`, printing its progress live, and return the exit status.

    Args:
        task: What the loop should do.
        model: A model string, as `--model` takes it.
        max_steps: Longest plan to run.
        as_json: Print each progress event as a JSON line instead of text.

    Returns:
        0 if the run completed, 2 if it was partial, 1 if it failed.

    Raises:
        CliError: The model or settings are unusable, or the run stopped unexpectedly.
    """
    if model == "demo":
        print(DEMO_NOTE, file=sys.stderr if as_json else sys.stdout, flush=True)
    try:
        graph = create_agent_loop(connect(model), max_steps=max_steps)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    try:
        output = _stream(graph, task, as_json=as_json)
    except BrokenPipeError:
        raise
    except Exception as exc:
        # Node failures are already part of the result; anything escaping is worth one line.
        raise CliError(f"the run stopped: {type(exc).__name__}: {exc}") from None
    if not as_json:
        _print_outcome(output)
    return exit_status(output.get("status"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `agentloop` console script.

    Args:
        argv: Arguments after the program name; `sys.argv[1:]` when None.

    Returns:
        The exit status: 0 completed, 2 partial, 1 failed or an error (one line on stderr).

    Example:
        >>> main(["run", "Plan a picnic", "--model", "demo", "--json"])  # doctest: +SKIP
        0
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:
        # --help and usage errors end parsing; hand their status back instead of exiting.
        return stop.code if isinstance(stop.code, int) else 1
    try:
        return run(args.task, model=args.model, max_steps=args.max_steps, as_json=args.json)
    except CliError as exc:
        # Some library messages span lines; the contract is one line per error.
        print(f"agentloop: error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("agentloop: interrupted", file=sys.stderr, flush=True)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); point stdout at devnull so the exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1
