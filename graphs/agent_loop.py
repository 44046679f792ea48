"""The agent loop on its own, as `langgraph dev` and Studio load it.

The default model is `AGENTLOOP_MODEL`, else `ollama:llama3.2`; a run picks another with
`context={"model": "demo"}` (in Studio: the assistant's configuration pane).
"""

from __future__ import annotations

import os
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from agentloop_graph import Context, create_agent_loop
from agentloop_graph.models import DEFAULT_MODEL


def make_graph() -> CompiledStateGraph[Any, Context, Any, Any]:
    """Build the loop, its default model taken from `AGENTLOOP_MODEL`.

    The LangGraph server calls this factory whenever it needs the graph, so importing the
    module builds nothing; building contacts no model either, only runs do.

    Returns:
        The compiled loop, named `agent_loop`.

    Example:
        >>> graph = make_graph()
        >>> graph.invoke({"task": "Plan a picnic"}, context={"model": "demo"})["status"]
        'completed'
    """
    return create_agent_loop(os.environ.get("AGENTLOOP_MODEL") or DEFAULT_MODEL)
