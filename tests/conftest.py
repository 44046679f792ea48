from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.helpers import Run


@pytest.fixture(params=["invoke", "ainvoke"])
def run(request: pytest.FixtureRequest) -> Run:
    """Run a graph to its output with the sync or the async API (twin tests)."""

    def _run(graph: Any, graph_input: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if request.param == "invoke":
            return graph.invoke(graph_input, **kwargs)  # type: ignore[no-any-return]
        return asyncio.run(graph.ainvoke(graph_input, **kwargs))  # type: ignore[no-any-return]

    _run.is_async = request.param == "ainvoke"  # type: ignore[attr-defined]
    return _run
