"""The graphs served by `langgraph dev`, driven through the LangGraph SDK as Studio drives them.

One headless server per module (the `server_url` fixture, `tests/support/studio.py`),
offline: tracing, CLI analytics and the version check are off, no LangSmith key or licence
reaches it, and the runs pick the demo model by `context`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from agentloop_graph import demo

pytestmark = pytest.mark.slow

DEMO = {"model": "demo"}
APPROVAL = {**DEMO, "approve_plan": True}
PICNIC = "Plan a picnic"
DEMO_PLAN = [step.format(task=PICNIC) for step in demo.PLAN]
"""The plan the demo model makes for `PICNIC`."""
LOOP_NODES = {"planner", "executor", "adapter", "summariser"}


@pytest.fixture
def client(server_url: str) -> Iterator[SyncLangGraphClient]:
    with get_sync_client(url=server_url, api_key=None) as sync_client:
        yield sync_client


def stream_run(
    client: SyncLangGraphClient, task: str, context: dict[str, Any] | None = None
) -> tuple[list[str], dict[str, Any]]:
    """Stream a stateless `agent_loop` run: its progress event names and its last state."""
    events: list[str] = []
    state: dict[str, Any] = {}
    for part in client.runs.stream(
        None,
        "agent_loop",
        input={"task": task},
        context={**DEMO, **(context or {})},
        stream_mode=["custom", "values"],
    ):
        assert part.event != "error", part.data
        if part.event == "custom":
            events.append(part.data["event"])
        elif part.event == "values":
            state = part.data
    return events, state


def test_the_three_graphs_are_served(client: SyncLangGraphClient) -> None:
    graph_ids = {assistant["graph_id"] for assistant in client.assistants.search()}
    assert graph_ids == {"agent_loop", "chat_app", "agents"}


def test_the_loops_graph_shows_its_four_phases(client: SyncLangGraphClient) -> None:
    graph = client.assistants.get_graph("agent_loop")
    assert {node["id"] for node in graph["nodes"]} == {"__start__", *LOOP_NODES, "__end__"}
    conditional = {(e["source"], e["target"]) for e in graph["edges"] if e.get("conditional")}
    assert ("executor", "adapter") in conditional


def test_a_loop_run_streams_its_progress(client: SyncLangGraphClient) -> None:
    events, state = stream_run(client, "Plan a picnic")
    assert events == [
        "agentic.plan_ready",
        *["agentic.step_started", "agentic.step_complete"] * 4,
        "agentic.task_complete",
    ]
    assert state["status"] == "completed"
    assert state["answer"].startswith("[demo] Final answer for 'Plan a picnic'")


def test_a_failed_step_is_adapted(client: SyncLangGraphClient) -> None:
    events, state = stream_run(client, "Plan a picnic, fail step 2")
    assert "agentic.step_failed" in events
    assert "agentic.step_adapted" in events
    assert [s["status"] for s in state["steps"]] == [
        "completed",
        "adapted",
        "completed",
        "completed",
    ]


def test_a_parallel_run_set_in_the_configuration_pane(client: SyncLangGraphClient) -> None:
    # get_schemas takes the id of the assistant the server made for the graph.
    assistant = client.assistants.search(graph_id="agent_loop")[0]["assistant_id"]
    schema = client.assistants.get_schemas(assistant)["context_schema"]
    assert {"parallel", "max_parallel", "max_replans"} <= set(schema["properties"])
    events, state = stream_run(client, "Plan a picnic", {"parallel": True})
    assert state["dependencies"] == [[], [1], [1], [2, 3], [4]]
    assert [s["step_num"] for s in state["steps"]] == [1, 2, 3, 4, 5]
    # Steps 2 and 3 start together, once step 1 has ended.
    assert events[3:5] == ["agentic.step_started", "agentic.step_started"]
    assert state["status"] == "completed"


def test_the_chat_app_answers_on_a_thread_from_the_loop(client: SyncLangGraphClient) -> None:
    thread = client.threads.create()
    request = "Plan a picnic then pack the basket"
    run = client.runs.create(
        thread["thread_id"],
        "chat_app",
        input={"messages": [{"role": "user", "content": request}]},
        context=DEMO,
    )
    client.runs.join(thread["thread_id"], run["run_id"])
    assert client.runs.get(thread["thread_id"], run["run_id"])["status"] == "success"

    messages = client.threads.get_state(thread["thread_id"])["values"]["messages"]
    assert [m["type"] for m in messages] == ["human", "ai", "tool", "ai"]
    assert messages[1]["tool_calls"][0]["name"] == "plan_and_execute"
    reply = messages[-1]["content"]
    assert reply.startswith("[demo] Here is what the agent loop reported: completed: ")
    assert f"[demo] Final answer for '{request}'" in reply


ROSTER_TURNS = ["researcher", "writer"] * 2
"""The agent of each step of the demo's plan in the `agents` graph: the roster in turn."""


def test_an_agents_run_names_the_agent_of_each_step(client: SyncLangGraphClient) -> None:
    events = [
        part.data
        for part in client.runs.stream(
            None, "agents", input={"task": PICNIC}, context=DEMO, stream_mode="custom"
        )
        if part.event == "custom"
    ]
    ready, *steps, done = events
    assert ready["event"] == "agentic.plan_ready" and ready["agents"] == ROSTER_TURNS
    for name in ("agentic.step_started", "agentic.step_complete"):
        assert [e["agent"] for e in steps if e["event"] == name] == ROSTER_TURNS
    assert done["event"] == "agentic.task_complete" and done["status"] == "completed"


def test_an_agents_own_updates_stream_under_the_executor(client: SyncLangGraphClient) -> None:
    nodes: dict[str, list[str]] = {}
    for part in client.runs.stream(
        None,
        "agents",
        input={"task": PICNIC},
        context=DEMO,
        stream_mode="updates",
        stream_subgraphs=True,
    ):
        assert part.event != "error", part.data
        mode, _, namespace = part.event.partition("|")
        if mode == "updates":
            nodes.setdefault(namespace, []).extend(part.data)
    assert nodes.pop("") == ["planner", *["executor"] * 4, "summariser"]
    # One agent run per step, each in the namespace of the executor task that did the step:
    # its model called its tool, then answered.
    assert len(nodes) == 4
    assert all(namespace.startswith("executor:") for namespace in nodes)
    assert list(nodes.values()) == [["model", "tools", "model"]] * 4


def paused_for_approval(client: SyncLangGraphClient) -> tuple[str, dict[str, Any]]:
    """Run `agent_loop` with plan approval on a new thread: its id and the pending interrupt.

    The run stops after planning: the thread is interrupted in the executor, whose task
    carries the interrupt, and no step has run.
    """
    thread_id = client.threads.create()["thread_id"]
    output = client.runs.wait(thread_id, "agent_loop", input={"task": PICNIC}, context=APPROVAL)
    assert isinstance(output, dict)
    (pending,) = output["__interrupt__"]

    state = client.threads.get_state(thread_id)
    assert state["next"] == ["executor"]
    (task,) = state["tasks"]
    assert task["name"] == "executor"
    assert [i["value"] for i in task["interrupts"]] == [pending["value"]]
    assert [i["value"] for i in state["interrupts"]] == [pending["value"]]
    values = state["values"]
    assert isinstance(values, dict)
    assert pending["value"] == {"task_id": values["task_id"], "task": PICNIC, "plan": DEMO_PLAN}
    assert values["steps"] == [] and values["status"] is None and values["summary"] is None
    assert client.threads.get(thread_id)["status"] == "interrupted"
    return thread_id, pending


def resumed(client: SyncLangGraphClient, thread_id: str, answer: object) -> dict[str, Any]:
    """Answer the plan approval; the run's output, once the thread is done."""
    output = client.runs.wait(thread_id, "agent_loop", command={"resume": answer}, context=APPROVAL)
    assert isinstance(output, dict)
    assert "__interrupt__" not in output
    state = client.threads.get_state(thread_id)
    assert state["next"] == [] and state["interrupts"] == []
    assert client.threads.get(thread_id)["status"] == "idle"
    return output


def test_an_approved_plan_runs_as_planned(client: SyncLangGraphClient) -> None:
    thread_id, pending = paused_for_approval(client)
    output = resumed(client, thread_id, True)
    assert output["status"] == "completed"
    assert output["task_id"] == pending["value"]["task_id"]  # not planned again
    assert output["plan"] == DEMO_PLAN
    assert [(s["description"], s["status"]) for s in output["steps"]] == [
        (step, "completed") for step in DEMO_PLAN
    ]
    assert output["answer"].startswith(f"[demo] Final answer for '{PICNIC}'")


def test_an_edited_plan_runs_instead(client: SyncLangGraphClient) -> None:
    thread_id, _ = paused_for_approval(client)
    edited = ["Pack the basket", "Walk to the park"]
    output = resumed(client, thread_id, edited)
    assert output["status"] == "completed"
    assert output["plan"] == edited
    assert [(s["step_num"], s["description"], s["status"]) for s in output["steps"]] == [
        (1, "Pack the basket", "completed"),
        (2, "Walk to the park", "completed"),
    ]
    assert [s["result"] for s in output["steps"]] == [
        "[demo] Step 1 done: Pack the basket.",
        "[demo] Step 2 done: Walk to the park.",
    ]
    assert output["summary"] == f"{PICNIC}: Completed 2/2 steps."


def test_the_approval_form_is_described_and_its_answer_resumes_the_run(
    client: SyncLangGraphClient,
) -> None:
    thread_id, _ = paused_for_approval(client)
    (pending,) = client.threads.get_state(thread_id)["interrupts"]
    form = pending["response_schema"]  # what Studio and Agent Chat UI draw a form from
    assert form["required"] == ["decision"]
    assert form["properties"]["decision"]["enum"] == ["approve", "edit", "reject"]
    assert form["properties"]["steps"]["items"]["type"] == "string"

    output = resumed(client, thread_id, {"decision": "edit", "steps": ["Pack the basket"]})
    assert output["status"] == "completed"
    assert [(s["description"], s["status"]) for s in output["steps"]] == [
        ("Pack the basket", "completed")
    ]


def test_a_rejected_plan_cancels_the_run(client: SyncLangGraphClient) -> None:
    thread_id, _ = paused_for_approval(client)
    output = resumed(client, thread_id, False)
    assert output["status"] == "cancelled"
    assert output["summary"] == f"{PICNIC}: Plan rejected; no step ran."
    assert output["steps"] == [] and output["answer"] is None
    assert output["plan"] == DEMO_PLAN
