"""The loop on Temporal, through Temporal's LangGraph plugin (`temporalio-langgraph`).

`build_agent_loop` returns the loop's uncompiled graph; a worker process registers it with
`LangGraphPlugin`, which runs each node as a Temporal activity, and serves
`AgentLoopWorkflow` (`tests/support/temporal_workflow.py`): it compiles the graph with an
`InMemorySaver`, runs one task, streams the progress events on a `WorkflowStream` topic and
pauses on plan approval until an update answers. The model is `ollama:llama3.2` answered by
the Ollama-API test server in this process, which records every request, whichever worker
process sent it.

The crash tests SIGKILL the worker while a step's model call is in flight, start another,
and check Temporal's promise: the run completes; the plan is made once; a step that had
finished never calls the model again; only the step cut short does, once more.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_ollama import (
    Delay,
    FakeOllama,
    Request,
    Response,
    Scripted,
    phase_of,
    reply,
)
from tests.support.temporal_harness import (
    DevServer,
    WorkerOptions,
    connect,
    dev_server,
    new_task_queue,
    start_run,
    streamed,
    worker,
)
from tests.support.temporal_workflow import WAITING

pytestmark = pytest.mark.slow

MODEL = "ollama:llama3.2"
TASK = "Renovate the garden shed"
PLAN = (
    "Survey the shed",
    "Buy timber",
    "Replace the roof",
    "Paint the walls",
    "Fit a new door",
    "Clear the path",
)
LATENCY = 1.5
"""Seconds each executor answer takes: long enough to kill a worker mid-call."""
KILL_IN_STEP = 3
"""Sequential runs: the step whose model call the kill cuts short; steps 1-2 have ended."""
PARALLEL_QUICK = 1
"""Parallel runs: steps 1-3 start at once; this one answers at once, so it has ended when
the kill cuts steps 2 and 3 short (4-6 wait for 1-3)."""
OPTIONS = WorkerOptions(start_to_close=6.0, retry_initial=0.2, sticky_timeout=1.0)
"""A node's activity may take 6 s (a step takes 1.5 s): a killed worker's node is retried on
another worker within about 6 s of its start."""
RUN_TIMEOUT = 120.0

_STEP = re.compile(r"^Step (\d+)/\d+: ", re.MULTILINE)


def step_of(request: Request) -> int | None:
    """The step an executor request is for, read from its prompt."""
    found = _STEP.search(request.prompt)
    return int(found.group(1)) if found else None


def answer(parallel: bool) -> Any:
    """The test server's answers: the plan (as JSON: the loop asks Ollama for a schema), each
    step after `LATENCY` s (step 1 of a parallel run at once), and the final answer."""
    if parallel:
        steps: list[Any] = [
            {"description": text, "depends_on": [] if number <= 3 else [1, 2, 3]}
            for number, text in enumerate(PLAN, start=1)
        ]
    else:
        steps = list(PLAN)

    def respond(request: Request) -> Response:
        phase = phase_of(request)
        if phase == "planner":
            return reply(json.dumps({"steps": steps}))
        if phase == "summariser":
            return reply("The shed is renovated.")
        step = step_of(request)
        done = reply(f"Done: step {step}.")
        return done if parallel and step == PARALLEL_QUICK else Delay(LATENCY, done)

    return respond


def calls(server: FakeOllama) -> Counter[tuple[str, int | None]]:
    """Chat requests received, by (phase, step)."""
    return Counter(
        (phase_of(request), step_of(request) if phase_of(request) == "executor" else None)
        for request in server.chat_requests
    )


def expected_calls(repeated: tuple[int, ...] = ()) -> Counter[tuple[str, int | None]]:
    """One plan, one call per step (two for the `repeated` steps), one final answer."""
    executor = {("executor", step): 1 + (step in repeated) for step in range(1, len(PLAN) + 1)}
    return Counter({("planner", None): 1, **executor, ("summariser", None): 1})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    with dev_server(tmp_path_factory.mktemp("temporal")) as running:
        yield running


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama(Scripted(answer(parallel=False))) as fake:
        yield fake
    assert not fake.errors


def worker_env(ollama: FakeOllama) -> dict[str, str]:
    return {"OLLAMA_HOST": ollama.url, "NO_PROXY": "127.0.0.1,localhost"}


@pytest.fixture
async def client(server: DevServer) -> AsyncIterator[Any]:
    yield await connect(server)


def check_output(output: dict[str, Any], *, steps: int = len(PLAN)) -> None:
    assert output["status"] == "completed"
    assert output["plan"] == list(PLAN)[:steps]
    assert [record["step_num"] for record in output["steps"]] == list(range(1, steps + 1))
    assert all(record["status"] == "completed" for record in output["steps"])
    assert output["answer"] == "The shed is renovated."
    assert output["messages"][-1] == {"type": "ai", "content": "The shed is renovated."}


async def test_runs_on_a_worker_and_streams_progress(
    server: DevServer, client: Any, ollama: FakeOllama, tmp_path: Path
) -> None:
    queue_name = new_task_queue()
    with worker(
        server,
        queue_name,
        tmp_path / "worker.err",
        model=MODEL,
        kwargs={"max_steps": 6},
        options=OPTIONS,
        env=worker_env(ollama),
    ):
        handle = await start_run(client, queue_name, TASK)
        async with streamed(client, handle.id) as progress:
            output = await asyncio.wait_for(handle.result(), RUN_TIMEOUT)
            await progress.wait_for(lambda e: e["event"] == "agentic.task_complete", 10)

    check_output(output)
    assert calls(ollama) == expected_calls()
    names = [event["event"] for event in progress.events]
    assert names == [
        "agentic.plan_ready",
        *["agentic.step_started", "agentic.step_complete"] * len(PLAN),
        "agentic.task_complete",
    ]
    assert {event["task_id"] for event in progress.events} == {output["task_id"]}
    # Each node's model calls name the node: the loop tells its phases apart by it.
    assert [e["step"] for e in progress.named("agentic.step_complete")] == [1, 2, 3, 4, 5, 6]


async def completed_nodes(handle: Any) -> int:
    """Node executions (activities) the run's history records as completed."""
    history = await handle.fetch_history()
    return sum(
        event.HasField("activity_task_completed_event_attributes") for event in history.events
    )


async def run_killed_mid_step(
    server: DevServer,
    client: Any,
    ollama: FakeOllama,
    tmp_path: Path,
    *,
    kwargs: dict[str, Any],
    in_flight: tuple[int, ...],
    finished: int,
) -> tuple[dict[str, Any], float, list[dict[str, Any]]]:
    """Run the task, SIGKILL the worker once the `in_flight` steps' model calls have all
    reached the model and `finished` nodes have completed (as the workflow's history
    records), start another worker; the output, the seconds from the kill to the end of the
    run, and the progress events the run streamed."""
    queue_name = new_task_queue()
    spec: dict[str, Any] = {
        "model": MODEL,
        "kwargs": kwargs,
        "options": OPTIONS,
        "env": worker_env(ollama),
    }
    with worker(server, queue_name, tmp_path / "first.err", **spec) as first:
        handle = await start_run(client, queue_name, TASK)
        deadline = time.monotonic() + RUN_TIMEOUT
        while not (
            all(calls(ollama)[("executor", step)] for step in in_flight)
            and await completed_nodes(handle) >= finished
        ):
            assert time.monotonic() < deadline, f"the steps never started: {calls(ollama)}"
            await asyncio.sleep(0.02)
        first.kill()
        killed = time.monotonic()
    with worker(server, queue_name, tmp_path / "second.err", **spec):
        async with streamed(client, handle.id) as progress:
            output = await asyncio.wait_for(handle.result(), RUN_TIMEOUT)
            took = time.monotonic() - killed
            await progress.wait_for(lambda e: e["event"] == "agentic.task_complete", 10)
    return output, took, progress.events


async def test_killed_worker_mid_step_resumes_on_another(
    server: DevServer, client: Any, ollama: FakeOllama, tmp_path: Path
) -> None:
    output, took, events = await run_killed_mid_step(
        server,
        client,
        ollama,
        tmp_path,
        kwargs={"max_steps": 6},
        in_flight=(KILL_IN_STEP,),
        finished=KILL_IN_STEP,  # the planner and steps 1-2
    )

    check_output(output)
    # The plan was made once, steps 1-2 never called the model again, step 3 once more.
    assert calls(ollama) == expected_calls(repeated=(KILL_IN_STEP,))
    # The stream has every step's events; the killed attempt's `step_started` may be there
    # too, or lost with the worker (the activity sends its events in batches).
    started = [(e["step"], e["attempt"]) for e in events if e["event"] == "agentic.step_started"]
    assert started.count((KILL_IN_STEP, 1)) in (1, 2)
    assert [step for step, _ in started if step != KILL_IN_STEP] == [1, 2, 4, 5, 6]
    completed = [e["step"] for e in events if e["event"] == "agentic.step_complete"]
    assert completed == [1, 2, 3, 4, 5, 6]
    # Detection waits for the node's start_to_close (6 s); the rest is 3 steps of 1.5 s and
    # a new worker's start.
    assert took < RUN_TIMEOUT


async def test_killed_worker_mid_wave_resumes_on_another(
    server: DevServer, client: Any, tmp_path: Path
) -> None:
    with FakeOllama(Scripted(answer(parallel=True))) as ollama:
        output, _, _ = await run_killed_mid_step(
            server,
            client,
            ollama,
            tmp_path,
            kwargs={"max_steps": 6, "parallel": True},
            in_flight=(1, 2, 3),
            finished=2,  # the planner and step 1
        )
        made = calls(ollama)
    assert not ollama.errors

    check_output(output)
    assert output["dependencies"] == [[], [], [], [1, 2, 3], [1, 2, 3], [1, 2, 3]]
    # Step 1 had answered before the kill: only steps 2 and 3 called the model again.
    assert made == expected_calls(repeated=(2, 3))


@pytest.mark.parametrize("approval", [True, False])
async def test_plan_approval_through_an_update(
    server: DevServer, client: Any, ollama: FakeOllama, tmp_path: Path, approval: bool
) -> None:
    queue_name = new_task_queue()
    with worker(
        server,
        queue_name,
        tmp_path / "worker.err",
        model=MODEL,
        kwargs={"max_steps": 6, "approve_plan": True},
        options=OPTIONS,
        env=worker_env(ollama),
    ):
        handle = await start_run(client, queue_name, TASK)
        async with streamed(client, handle.id) as progress:
            waiting = await progress.wait_for(lambda e: e["event"] == WAITING, RUN_TIMEOUT)
            question = await handle.query("question")
            assert question == waiting["value"]
            assert question["plan"] == list(PLAN)
            assert calls(ollama) == Counter({("planner", None): 1})
            await handle.execute_update("answer", approval)
            output = await asyncio.wait_for(handle.result(), RUN_TIMEOUT)

    if approval:
        check_output(output)
        assert calls(ollama) == expected_calls()
    else:
        assert output["status"] == "cancelled"
        assert output["steps"] == []
        assert calls(ollama) == Counter({("planner", None): 1})
