"""Fixtures shared by several test modules; the harness they use is in `tests/support/`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
from langsmith import run_trees

from tests.support.helpers import Run
from tests.support.langsmith_collector import LangSmithCollector
from tests.support.studio import langgraph_dev
from tests.support.tracing import forget_langsmith_settings


@pytest.fixture(params=["invoke", "ainvoke"])
def run(request: pytest.FixtureRequest) -> Run:
    """Run a graph to its output with the sync or the async API (twin tests)."""

    def _run(graph: Any, graph_input: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if request.param == "invoke":
            return graph.invoke(graph_input, **kwargs)  # type: ignore[no-any-return]
        return asyncio.run(graph.ainvoke(graph_input, **kwargs))  # type: ignore[no-any-return]

    _run.is_async = request.param == "ainvoke"  # type: ignore[attr-defined]
    return _run


@pytest.fixture
def no_retry_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries of transient model errors follow each other at once, for tests that count
    retries rather than time them: the loop reads `agentloop_graph.calls.RETRY_BACKOFF`
    (0.2 s, doubled at each retry) whenever it backs off."""
    monkeypatch.setattr("agentloop_graph.calls.RETRY_BACKOFF", 0.0)


@pytest.fixture
def langsmith_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """An environment with no LangSmith settings, no cached ones and no cached client.

    The `langsmith` client caches the variables it reads and the client that tracing
    from the environment uses; both are reset so each test sees only its own settings.
    A client created during the test is flushed and closed at the end.
    """
    for name in list(os.environ):
        if name.startswith(("LANGSMITH_", "LANGCHAIN_")):
            monkeypatch.delenv(name)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    monkeypatch.setattr(run_trees, "_CLIENT", None)
    forget_langsmith_settings()
    yield monkeypatch
    if run_trees._CLIENT is not None:
        run_trees._CLIENT.close(timeout=5)
    forget_langsmith_settings()


@pytest.fixture
def collector() -> Iterator[LangSmithCollector]:
    """A running collector; the LangSmith endpoint to send runs to."""
    with LangSmithCollector() as server:
        yield server


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `langgraph dev` server serving the repo's graphs, one per module; its URL."""
    with langgraph_dev(tmp_path_factory.mktemp("langgraph_dev")) as url:
        yield url
