"""What a LangSmith user sees of a run: the trace the real `langsmith` client uploads.

The client posts to `LangSmithCollector`, a local stand-in for the LangSmith API, so these
tests read the runs exactly as they would leave the machine, without a network.
"""

from __future__ import annotations

import time
from typing import Any

import langsmith
import pytest
from langchain_core.tracers import LangChainTracer
from langchain_core.tracers.langchain import wait_for_all_tracers

from agentloop_graph import create_agent_loop
from tests.support.helpers import Run
from tests.support.langsmith_collector import LangSmithCollector
from tests.support.tracing import NODE_RUNS, RUN_COUNT, STEP_METADATA, TASK, scripted_model


def node_runs(runs: dict[str, dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs directly under `parent`, in the order they started."""
    children = [run for run in runs.values() if run.get("parent_run_id") == parent["id"]]
    return sorted(children, key=lambda run: run["dotted_order"])


def trace_arrived(collector: LangSmithCollector) -> bool:
    """Every run of the scripted task arrived, and each has ended."""
    runs = collector.runs().values()
    return len(runs) >= RUN_COUNT and all(run.get("end_time") for run in runs)


def assert_one_adapted_step_trace(collector: LangSmithCollector, out: dict[str, Any]) -> None:
    """The collector holds the trace of one run of `scripted_model`'s task, as designed."""
    assert collector.wait_until(trace_arrived), collector.paths()
    runs = collector.runs()
    assert len(runs) == RUN_COUNT, sorted(str(run.get("name")) for run in runs.values())
    assert all(run.get("end_time") for run in runs.values())

    (root,) = [run for run in runs.values() if run.get("parent_run_id") is None]
    assert root["name"] == "agent_loop"
    assert root["run_type"] == "chain"
    assert root["inputs"] == {"task": TASK}
    assert root["outputs"]["task_id"] == out["task_id"]
    assert {run["trace_id"] for run in runs.values()} == {root["id"]}

    nodes = node_runs(runs, root)
    assert [node["name"] for node in nodes] == NODE_RUNS
    calls: list[dict[str, Any]] = []
    for node in nodes:
        assert node["extra"]["metadata"]["langgraph_node"] == node["name"]
        (call,) = node_runs(runs, node)
        calls.append(call)
        for child, parent in ((node, root), (call, node)):
            # LangSmith builds the tree from `dotted_order` as much as from parent ids.
            assert child["dotted_order"].startswith(parent["dotted_order"] + ".")

    assert [call["name"] for call in calls] == [f"agentloop.{name}" for name in NODE_RUNS]
    assert {call["run_type"] for call in calls} == {"llm"}
    assert all("agentloop" in call["tags"] for call in calls)
    metadata = [call["extra"]["metadata"] for call in calls]
    assert [meta["langgraph_node"] for meta in metadata] == NODE_RUNS
    assert {meta["task_id"] for meta in metadata} == {out["task_id"]}
    assert [(meta.get("step"), meta.get("attempt")) for meta in metadata] == STEP_METADATA
    assert "slipped" in calls[1]["error"]
    assert [bool(call.get("error")) for call in calls] == [False, True, False, False, False, False]


@pytest.mark.parametrize("compressed", [True, False], ids=["zstd", "plain"])
def test_trace_through_an_explicit_tracer(
    run: Run,
    langsmith_env: pytest.MonkeyPatch,
    collector: LangSmithCollector,
    compressed: bool,
) -> None:
    if not compressed:
        langsmith_env.setenv("LANGSMITH_DISABLE_RUN_COMPRESSION", "true")
    client = langsmith.Client(api_url=collector.url, api_key="test-key")
    if compressed:
        # The client compresses only once it has read `/info`; runs it queues before then
        # go uncompressed, whatever the server accepts.
        assert collector.wait_until(lambda _: client.compressed_traces is not None)
    tracer = LangChainTracer(client=client, project_name="agentloop-tests")
    model = scripted_model()
    try:
        out = run(create_agent_loop(model), {"task": TASK}, config={"callbacks": [tracer]})
        tracer.wait_for_futures()
        client.flush(timeout=5)
        assert_one_adapted_step_trace(collector, out)
    finally:
        client.close(timeout=5)
    assert {call.is_async for call in model.calls} == {run.is_async}  # type: ignore[attr-defined]
    uploads = [r for r in collector.requests if r.path == "/runs/multipart"]
    assert uploads
    encodings = {r.headers.get("content-encoding") for r in uploads}
    assert encodings == ({"zstd"} if compressed else {None})
    assert {r.headers.get("x-api-key") for r in uploads} == {"test-key"}


def test_trace_from_tracing_environment_variables(
    run: Run, langsmith_env: pytest.MonkeyPatch, collector: LangSmithCollector
) -> None:
    langsmith_env.setenv("LANGSMITH_TRACING", "true")
    langsmith_env.setenv("LANGSMITH_ENDPOINT", collector.url)
    langsmith_env.setenv("LANGSMITH_API_KEY", "test-key")
    out = run(create_agent_loop(scripted_model()), {"task": TASK})
    wait_for_all_tracers()
    assert_one_adapted_step_trace(collector, out)


@pytest.mark.parametrize("tracing", [None, "false"], ids=["unset", "false"])
def test_nothing_is_sent_when_tracing_is_off(
    run: Run,
    langsmith_env: pytest.MonkeyPatch,
    collector: LangSmithCollector,
    tracing: str | None,
) -> None:
    if tracing is not None:
        langsmith_env.setenv("LANGSMITH_TRACING", tracing)
    langsmith_env.setenv("LANGSMITH_ENDPOINT", collector.url)
    langsmith_env.setenv("LANGSMITH_API_KEY", "test-key")
    out = run(create_agent_loop(scripted_model()), {"task": TASK})
    assert out["status"] == "completed"
    wait_for_all_tracers()
    # Uploads run on background threads: give a stray one time to arrive.
    time.sleep(0.2)
    assert collector.paths() == []
