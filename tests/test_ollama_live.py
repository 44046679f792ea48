"""The whole loop against a real Ollama server, when one answers.

The server is `OLLAMA_HOST` (default `http://127.0.0.1:11434`) and the model
`AGENTLOOP_LIVE_MODEL` (default `llama3.2`). A real model's words are not predictable, so
only the contract is checked: a valid status, progress events in order, non-empty results.
Without a server (or without the model on it) the test is skipped, saying why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentloop_graph import create_agent_loop
from agentloop_graph.ollama import ollama_base_url
from tests.support.fake_ollama import UNCLOSED_CLIENT_WARNINGS, collect_unclosed_clients

pytestmark = [pytest.mark.filterwarnings(entry) for entry in UNCLOSED_CLIENT_WARNINGS]

TASK = "Give three facts about the Moon, then one sentence that sums them up"
MAX_STEPS = 3


@pytest.fixture
def live_model() -> Iterator[str]:
    """`ollama:<model>` for a server that answers and has the model, else a skip."""
    url = ollama_base_url()
    name = os.environ.get("AGENTLOOP_LIVE_MODEL", "").strip() or "llama3.2"
    try:
        response = httpx.get(f"{url}/api/tags", timeout=1.0)
        response.raise_for_status()
        listed = {model["name"] for model in response.json()["models"]}
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        pytest.skip(f"no Ollama server answered at {url} (GET /api/tags: {exc})")
    if name not in listed and f"{name}:latest" not in listed:
        pytest.skip(f"the Ollama server at {url} does not have {name} (`ollama pull {name}`)")
    yield f"ollama:{name}"
    collect_unclosed_clients()


def check_step_events(events: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
    """Each step's events: started (attempt 1), failures and adaptations, then complete."""
    by_step: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        by_step.setdefault(event["step"], []).append(event)
    assert list(by_step) == [record["step_num"] for record in records]
    for record in records:
        kinds = [event["event"] for event in by_step[record["step_num"]]]
        assert kinds[0] == "agentic.step_started"
        assert kinds[-1] == "agentic.step_complete"
        assert kinds.count("agentic.step_complete") == 1
        attempts = [e["attempt"] for e in by_step[record["step_num"]] if "attempt" in e]
        assert attempts == sorted(attempts) and attempts[0] == 1
        assert by_step[record["step_num"]][-1]["status"] == record["status"]


def test_the_loop_runs_on_a_real_ollama_model(live_model: str) -> None:
    graph = create_agent_loop(live_model, max_steps=MAX_STEPS)
    events: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    for mode, chunk in graph.stream({"task": TASK}, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
        else:
            out = chunk

    assert out["status"] in {"completed", "partial", "failed"}
    assert isinstance(out["summary"], str) and out["summary"]
    assert [e["event"] for e in events].count("agentic.task_complete") == 1
    assert events[-1]["event"] == "agentic.task_complete"
    assert events[-1]["status"] == out["status"]
    if not out["plan"]:
        assert out["status"] == "failed" and events[:-1] == []
        return
    assert events[0]["event"] == "agentic.plan_ready"
    assert events[0]["steps"] == out["plan"] and 1 <= len(out["plan"]) <= MAX_STEPS
    check_step_events(events[1:-1], out["steps"])
    for record in out["steps"]:
        if record["status"] == "failed":
            assert record["result"] == "" and record["error"]
        else:
            assert record["result"].strip()
            assert "<think>" not in record["result"]
