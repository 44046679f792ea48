"""The loop served by Aegra, an open Agent Server: two processes, one PostgreSQL, one Redis.

Two Aegra processes (`tests/support/aegra.py`) serve `tests/support/aegra_langgraph.json`: the
repo's `agent_loop`, and `slow_loop`, the same loop with a demo model that answers after 0.5 s
and logs every call it gets (thread, node, step, process). Runs are created through either
process's HTTP API, as clients behind a load balancer would; whichever process's worker takes
the job from Redis runs it. Then one process is killed with SIGKILL mid-run. Aegra's lease
reaper hands its runs back to the queue once their lease expires, and the other process runs
them again under the same run id with the same input. The loop must then resume each of them
from its last checkpoint: planning and finished steps never run again, only the attempt in
flight at the kill repeats, and the run ends `success`. The `probe` graph
(`tests/support/aegra_graphs.py`) pins down what a re-delivered run looks like from inside a
graph, which is what the loop's resume relies on.

Skipped when PostgreSQL or Redis cannot be reached (failed instead under `CI=true`);
the servers' venv (`AGENTLOOP_AEGRA_VENV`, see tests/support/aegra.py) missing is an error.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from agentloop_graph import cli
from tests.support.aegra import (
    DEFAULT_REDIS,
    FAST_RECOVERY,
    REDIS_ENV,
    ROOT,
    AegraCluster,
    AegraProcess,
    database_url,
    redis_unreachable,
)
from tests.support.databases import fresh_postgres_database, unavailable

pytestmark = pytest.mark.slow

LATENCY = 0.5
"""Seconds the slow loop's model takes per call: a run makes 6 calls (plan, 4 steps, answer)."""
RUNS = 12
PER_PROCESS = RUNS // 2
"""Concurrent runs per process: with twelve runs, each process takes exactly six."""
DEADLINE = 90.0
"""Upper bound for any wait, so a hang fails the test instead of the suite."""
UNINTERRUPTED = [
    ("planner", None),
    *(("executor", step) for step in range(1, 5)),
    ("summariser", None),
]
"""The slow loop's model calls, in order, for a 4-step demo plan with no failure."""
DEMO = {"model": "demo"}
DEMO_EVENTS = [
    "agentic.plan_ready",
    *["agentic.step_started", "agentic.step_complete"] * 2,
    "agentic.task_complete",
]


def redis_url() -> str:
    return os.environ.get(REDIS_ENV, DEFAULT_REDIS)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AegraCluster]:
    if reason := redis_unreachable(redis_url()):
        unavailable(reason)
    with fresh_postgres_database() as conninfo:
        workdir = tmp_path_factory.mktemp("aegra")
        env = {
            **FAST_RECOVERY,
            "WORKER_COUNT": "1",
            "N_JOBS_PER_WORKER": str(PER_PROCESS),
            "AGENTLOOP_TEST_LATENCY": str(LATENCY),
            "AGENTLOOP_TEST_CALL_LOG": str(workdir / "calls.jsonl"),
            "AGENTLOOP_PROBE_LOG": str(workdir / "probe.jsonl"),
            "AGENTLOOP_PROBE_SLEEP": "2",
        }
        with AegraCluster(
            database_url(conninfo), workdir=workdir, redis_url=redis_url(), env=env
        ) as started:
            started.start(2)
            yield started


@pytest.fixture
def both(cluster: AegraCluster) -> list[AegraProcess]:
    """Both processes, up: one a test killed is started again in its place."""
    return [p if p.alive() else cluster.restart(p) for p in list(cluster.processes)]


def client(process: AegraProcess) -> SyncLangGraphClient:
    return get_sync_client(url=process.url, api_key=None, timeout=DEADLINE)


def complete_lines(log: Path) -> list[str]:
    """The lines of a log other processes append to: a line still being written (after the
    last newline) is left for the next read."""
    return log.read_text().split("\n")[:-1] if log.exists() else []


def calls(cluster: AegraCluster, thread: str) -> list[dict[str, Any]]:
    """The slow loop's model calls on `thread`, in the order they were made."""
    lines = complete_lines(Path(cluster.env["AGENTLOOP_TEST_CALL_LOG"]))
    return [c for c in map(json.loads, lines) if c["thread"] == thread]


def probed(cluster: AegraCluster, thread: str) -> list[dict[str, Any]]:
    """What the `probe` graph logged on `thread`: its `astream` calls and its nodes' views."""
    records = [
        json.loads(line) for line in complete_lines(Path(cluster.env["AGENTLOOP_PROBE_LOG"]))
    ]
    return [
        r
        for r in records
        if r.get("thread_id", r.get("execution_info", {}).get("thread_id")) == thread
    ]


def wait_for(what: str, condition: Any, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.05)


def server_errors(cluster: AegraCluster) -> str:
    """The exceptions the servers logged (last line of each traceback), once each."""
    errors: dict[str, None] = {}
    for process in cluster.processes:
        for line in process.log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("exception"):
                errors[record["exception"].strip().splitlines()[-1]] = None
    return "\n".join(errors)


def finished(c: SyncLangGraphClient, runs: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Poll until every run has ended; each run's record, by run id."""
    records: dict[str, dict[str, Any]] = {}

    def all_done() -> bool:
        for thread, run_id in runs:
            if run_id not in records:
                record = c.runs.get(thread, run_id)
                if record["status"] in ("success", "error", "interrupted", "timeout"):
                    records[run_id] = {**record, "ended": time.time()}
        return len(records) == len(runs)

    wait_for("every run ending", all_done)
    return records


def node_steps(made: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    return [(c["node"], c["step"]) for c in made]


def assert_resumed(pre: list[dict[str, Any]], post: list[dict[str, Any]]) -> None:
    """The calls before and after a kill: the run went on from its last finished node.

    Before the kill the run made the first calls of an uninterrupted run; after it, the
    rest, starting either with the call that was in flight (its node had not finished, so
    that attempt runs again) or with the next one. Nothing earlier ran again.
    """
    before, after = node_steps(pre), node_steps(post)
    assert before == UNINTERRUPTED[: len(before)], before
    assert after in (UNINTERRUPTED[len(before) - 1 :], UNINTERRUPTED[len(before) :]), (
        f"before the kill {before}, after it {after}"
    )


def assert_completed(values: Any) -> None:
    assert values["status"] == "completed", values.get("summary")
    assert [(s["step_num"], s["status"], s["attempts"]) for s in values["steps"]] == [
        (step, "completed", 1) for step in range(1, 5)
    ]


def test_every_process_serves_the_loop_with_its_events_and_context(
    both: list[AegraProcess],
) -> None:
    """Through either process: the `agentic.*` events stream live, `Context` applies."""
    for process in both:
        with client(process) as c:
            thread = c.threads.create()["thread_id"]
            events: list[str] = []
            state: dict[str, Any] = {}
            for part in c.runs.stream(
                thread,
                "agent_loop",
                input={"task": "Plan a picnic"},
                context={**DEMO, "max_steps": 2},
                stream_mode=["custom", "values"],
            ):
                assert part.event != "error", part.data
                if part.event == "custom":
                    events.append(part.data["event"])
                elif part.event == "values":
                    state = part.data
            assert events == DEMO_EVENTS
            assert state["status"] == "completed" and len(state["plan"]) == 2
            assert state["answer"].startswith("[demo] Final answer for 'Plan a picnic'")
            assert c.threads.get(thread)["status"] == "idle"


def test_a_parallel_run_on_aegra_runs_its_independent_steps_at_once(
    both: list[AegraProcess],
) -> None:
    """`Context.parallel` through the server: steps sent as branches, checkpointed in
    PostgreSQL, come back in plan order with their dependencies."""
    with client(both[0]) as c:
        thread = c.threads.create()["thread_id"]
        events: list[dict[str, Any]] = []
        state: dict[str, Any] = {}
        for part in c.runs.stream(
            thread,
            "agent_loop",
            input={"task": "Plan a picnic, fail step 3"},
            context={**DEMO, "parallel": True},
            stream_mode=["custom", "values"],
        ):
            assert part.event != "error", part.data
            if part.event == "custom":
                events.append(part.data)
            elif part.event == "values":
                state = part.data
    assert state["dependencies"] == [[], [1], [1], [2, 3], [4]]
    assert [s["step_num"] for s in state["steps"]] == [1, 2, 3, 4, 5]
    assert [s["status"] for s in state["steps"]][2] == "adapted"
    started = [(e["step"], e["attempt"]) for e in events if e["event"] == "agentic.step_started"]
    assert started[1:3] == [(2, 1), (3, 1)]  # steps 2 and 3 in one wave
    assert state["status"] == "completed"


def test_the_command_runs_a_task_on_aegra_and_answers_its_plan_approval(
    both: list[AegraProcess],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`agentloop run --url`: the run's progress, its budget and a plan approval, through
    Aegra's HTTP API as through any Agent Server's."""
    url = both[0].url
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    argv = ["run", "Plan a picnic", "--url", url, "--model", "demo", "--approve"]
    assert cli.main([*argv, "--max-model-calls", "4"]) == 2

    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == f"Server: {url} (agent_loop)"
    assert "Run this plan? y = run it, e = edit it, n = cancel: y" in lines
    assert "    ✗ failed: budget exhausted: model calls" in lines
    assert (
        "Summary: Plan a picnic: Completed 3/4 steps, 1 failed. Stopped: model calls budget spent."
        in lines
    )
    assert any(line.startswith("Spent: 4 model calls, ") for line in lines)

    assert cli.main(["run", "Plan a picnic", "--url", url, "--model", "demo", "--json"]) == 0
    thread, *events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert thread == {"event": "thread", "thread_id": thread["thread_id"], "url": url}
    assert [e["event"] for e in events][:1] == ["agentic.plan_ready"]
    assert events[-1]["event"] == "agentic.task_complete" and events[-1]["status"] == "completed"


def test_a_killed_process_s_run_is_delivered_again_under_its_id_with_its_input(
    cluster: AegraCluster, both: list[AegraProcess]
) -> None:
    """What a graph sees of a re-delivered run (the `probe` graph: first -> slow -> last).

    The other process runs it again with the same run id, in `config["run_id"]`,
    `configurable["run_id"]`, `metadata["run_id"]` and `execution_info.run_id`, and
    with the first delivery's input; LangGraph, seeing the thread's checkpoints carry that
    run id, ignores the input and goes on from the last finished node. This is what the
    loop's resume relies on.
    """
    with client(both[0]) as c:
        thread = c.threads.create()["thread_id"]
        run = c.runs.create(thread, "probe", input={"note": "the first input"})
    run_id = run["run_id"]

    def slow_started() -> bool:
        return any(r.get("node") == "slow" for r in probed(cluster, thread))

    wait_for("the probe's slow node", slow_started)
    runner = cluster.by_pid(next(r["pid"] for r in probed(cluster, thread)))
    survivor = next(p for p in both if p is not runner)
    runner.kill()

    with client(survivor) as c:
        (record,) = finished(c, [(thread, run_id)]).values()
        assert record["status"] == "success", server_errors(cluster)
        values = c.threads.get_state(thread)["values"]
        history = c.threads.get_history(thread, limit=20)
    assert values == {"note": "the first input", "visited": ["first", "slow", "last"]}
    assert {(h["metadata"] or {}).get("run_id") for h in history} == {run_id}

    records = probed(cluster, thread)
    deliveries = [r for r in records if r["where"] == "astream"]
    assert [d["pid"] for d in deliveries] == [runner.pid, survivor.pid]
    for delivery in deliveries:
        assert delivery["input"] == {"note": "the first input"}
        assert delivery["config_run_id"] == delivery["configurable_run_id"] == run_id
        assert delivery["durability"] is None  # the graph's own default applies
        assert delivery["checkpointer"] == "AsyncPostgresSaver"
    nodes = [r for r in records if r["where"] == "node"]
    assert [(n["node"], n["pid"]) for n in nodes] == [
        ("first", runner.pid),
        ("slow", runner.pid),
        ("slow", survivor.pid),
        ("last", survivor.pid),
    ]
    for node in nodes:
        assert node["execution_info"]["run_id"] == run_id
        assert node["execution_info"]["thread_id"] == thread
        assert node["metadata"]["run_id"] == node["configurable"]["run_id"] == run_id
        assert node["execution_info"]["node_attempt"] == 1  # a delivery is not a retry
    assert nodes[2]["state"] == {"note": "the first input", "visited": ["first"]}


def test_a_plan_paused_on_a_killed_process_is_resumed_through_the_other(
    cluster: AegraCluster, both: list[AegraProcess]
) -> None:
    """The approval outlives the process that planned: it is answered through the other."""
    first, second = both
    approval = {"approve_plan": True}
    with client(first) as c:
        thread = c.threads.create()["thread_id"]
        paused = c.runs.wait(thread, "slow_loop", input={"task": "Plan a picnic"}, context=approval)
    assert isinstance(paused, dict)
    (pending,) = paused["__interrupt__"]
    planned = calls(cluster, thread)
    assert node_steps(planned) == [("planner", None)]
    planner = cluster.by_pid(planned[0]["pid"])
    survivor = second if planner is first else first
    planner.kill()

    with client(survivor) as c:
        assert c.threads.get(thread)["status"] == "interrupted"
        output = c.runs.wait(thread, "slow_loop", command={"resume": True}, context=approval)
        assert isinstance(output, dict) and "__interrupt__" not in output
        assert c.threads.get(thread)["status"] == "idle"
    assert output["task_id"] == pending["value"]["task_id"]
    assert output["plan"] == pending["value"]["plan"]
    assert_completed(output)
    resumed = calls(cluster, thread)[1:]
    assert node_steps(resumed) == UNINTERRUPTED[1:]
    assert {c["pid"] for c in resumed} == {survivor.pid}


def test_an_approved_run_killed_mid_step_finishes_on_the_other(
    cluster: AegraCluster, both: list[AegraProcess]
) -> None:
    """The run that answers the approval is delivered again as a `Command`: it resumes too."""
    approval = {"approve_plan": True}
    with client(both[0]) as c:
        thread = c.threads.create()["thread_id"]
        c.runs.wait(thread, "slow_loop", input={"task": "Plan a picnic"}, context=approval)
        run = c.runs.create(thread, "slow_loop", command={"resume": True}, context=approval)
    wait_for(
        "step 2 of the approved plan", lambda: ("executor", 2) in node_steps(calls(cluster, thread))
    )
    runner = cluster.by_pid(calls(cluster, thread)[-1]["pid"])
    survivor = next(p for p in both if p is not runner)
    killed_at = time.time()
    runner.kill()

    with client(survivor) as c:
        (record,) = finished(c, [(thread, run["run_id"])]).values()
        assert record["status"] == "success", server_errors(cluster)
        assert_completed(c.threads.get_state(thread)["values"])
    made = calls(cluster, thread)
    after = [c for c in made if c["time"] > killed_at]
    assert {c["pid"] for c in after} == {survivor.pid}
    assert_resumed([c for c in made if c["time"] <= killed_at], after)


def test_a_client_following_a_run_through_the_other_process_gets_the_rest(
    cluster: AegraCluster, both: list[AegraProcess]
) -> None:
    """`join_stream` through the survivor: the killed process's events, then the rest."""
    first, second = both
    with client(first) as c:
        thread = c.threads.create()["thread_id"]
        run = c.runs.create(
            thread, "slow_loop", input={"task": "Plan a picnic"}, stream_mode=["custom", "values"]
        )
    wait_for("the planner call", lambda: calls(cluster, thread))
    runner = cluster.by_pid(calls(cluster, thread)[0]["pid"])
    follower = second if runner is first else first

    parts: list[tuple[str, Any]] = []
    failures: list[BaseException] = []

    def follow() -> None:
        try:
            with client(follower) as c:
                for part in c.runs.join_stream(thread, run["run_id"]):
                    parts.append((part.event, part.data))
        except BaseException as exc:  # handed to the test thread
            failures.append(exc)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()

    def custom() -> list[dict[str, Any]]:
        return [data for event, data in list(parts) if event == "custom"]

    wait_for(
        "step 1 completing in the followed stream",
        lambda: any(e["event"] == "agentic.step_complete" for e in custom()),
    )
    runner.kill()
    seen_before_kill = len(custom())
    reader.join(DEADLINE)
    assert not reader.is_alive(), "the followed stream did not end"
    assert not failures, failures

    errors = [data for event, data in parts if event == "error"]
    assert not errors, f"{errors}\n{server_errors(cluster)}"
    events = custom()
    assert len(events) > seen_before_kill, "nothing arrived after the kill"
    names = [e["event"] for e in events]
    assert names.count("agentic.plan_ready") == 1
    completed = [e["step"] for e in events if e["event"] == "agentic.step_complete"]
    assert completed == [1, 2, 3, 4], completed
    assert events[-1]["event"] == "agentic.task_complete"
    assert events[-1]["status"] == "completed"
    made = calls(cluster, thread)
    assert_resumed(
        [c for c in made if c["pid"] == runner.pid], [c for c in made if c["pid"] != runner.pid]
    )


def test_runs_of_a_killed_process_finish_on_the_other(
    cluster: AegraCluster, both: list[AegraProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    """A dozen runs over both processes; one is killed mid-run; every run completes."""

    def create(i: int) -> tuple[str, str]:
        with client(both[i % 2]) as c:
            thread = c.threads.create()["thread_id"]
            run = c.runs.create(thread, "slow_loop", input={"task": f"Plan picnic number {i}"})
            return thread, run["run_id"]

    # Created at once, so that the kill finds every run between its planning and its end.
    with ThreadPoolExecutor(RUNS) as pool:
        runs = list(pool.map(create, range(RUNS)))

    def planned(thread: str) -> bool:
        return ("executor", 1) in node_steps(calls(cluster, thread))

    wait_for("every run's planning", lambda: all(planned(t) for t, _ in runs))
    runner_of = {thread: cluster.by_pid(calls(cluster, thread)[0]["pid"]) for thread, _ in runs}
    victim = runner_of[runs[0][0]]
    survivor = next(p for p in both if p is not victim)
    on_victim = [(t, r) for t, r in runs if runner_of[t] is victim]
    assert len(on_victim) == PER_PROCESS, "the runs were not spread over both processes"
    unfinished = [t for t, _ in on_victim if len(calls(cluster, t)) < len(UNINTERRUPTED)]
    assert unfinished == [t for t, _ in on_victim], "a run was at its last call before the kill"
    killed_at = time.time()
    victim.kill()

    with client(survivor) as c:
        records = finished(c, runs)
        statuses = {run_id: record["status"] for run_id, record in records.items()}
        assert set(statuses.values()) == {"success"}, f"{statuses}\n{server_errors(cluster)}"
        for thread, _ in runs:
            assert_completed(c.threads.get_state(thread)["values"])

    redelivered: list[float] = []
    for thread, _ in runs:
        made = calls(cluster, thread)
        first_delivery = [m for m in made if m["pid"] == runner_of[thread].pid]
        if runner_of[thread] is victim:
            again = [m for m in made if m["pid"] != victim.pid]
            assert {m["pid"] for m in again} == {survivor.pid}
            assert_resumed(first_delivery, again)
            redelivered.append(again[0]["time"] - killed_at)
        else:
            assert node_steps(made) == UNINTERRUPTED
    assert Counter(n for t, _ in runs for n, _ in node_steps(calls(cluster, t)))["planner"] == RUNS
    last = max(records[r]["ended"] for _, r in on_victim) - killed_at
    with capsys.disabled():  # shown in every run's output, not only on failure
        print(
            f"\n{len(on_victim)} runs of the killed process: re-delivered to the other "
            f"{min(redelivered):.1f} to {max(redelivered):.1f} s after the kill "
            f"(lease {FAST_RECOVERY['LEASE_DURATION_SECONDS']} s, reaper every "
            f"{FAST_RECOVERY['REAPER_INTERVAL_SECONDS']} s), all finished {last:.1f} s after it"
        )


def test_the_benchmark_prints_its_figures() -> None:
    """`benchmarks/aegra.py` at a small size: it prints both throughputs and their ratio."""
    small = ["--runs", "6", "--latency", "0.1", "--jobs", "3", "--warmup", "0"]
    done = subprocess.run(
        [sys.executable, "benchmarks/aegra.py", *small],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode == 3:  # the benchmark's "PostgreSQL or Redis unreachable"
        unavailable(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    for figure in ("1 process", "2 processes"):
        assert re.search(rf"^{figure} +[\d.]+ runs/min", done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^2 processes / 1 process += +\d+\.\d+", done.stdout, re.MULTILINE)
