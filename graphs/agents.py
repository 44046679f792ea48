"""The loop with a roster of two agents doing its steps, as `langgraph dev` and Studio load it.

The planner assigns each step to `researcher` (a `look_up` tool) or `writer` (a `word_count`
tool), two LangChain `create_agent` agents. Each runs as a subgraph of the loop's `executor`
node, so Studio shows its model and tool calls under the step it does.

Every model of the run, the agents' included, is `AGENTLOOP_MODEL`, else `ollama:llama3.2`;
a run picks another with `context={"model": "demo"}` (in Studio: the assistant's
configuration pane), as with `agent_loop`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.tools import tool
from langgraph.graph.state import CompiledStateGraph

from agentloop_graph import Context, StepAgent, create_agent_loop
from agentloop_graph.models import DEFAULT_MODEL, resolve_model

NOTES = {
    "picnic": "The park opens at 9; it has 12 tables and a shelter for rain.",
    "train": "Trains to the coast leave hourly at :04 and take 52 minutes.",
}


@tool
def look_up(query: str) -> str:
    """Look up notes on a subject (a few canned ones: picnic, train)."""
    found = [note for subject, note in NOTES.items() if subject in query.lower()]
    return " ".join(found) or f"No notes on {query!r}."


@tool
def word_count(text: str) -> int:
    """Count the words of a draft."""
    return len(text.split())


class RunModel(AgentMiddleware[Any, Any]):
    """Answers an agent's model calls with the run's `Context.model`, when it sets one: the
    agent runs inside the loop, so it sees the loop run's context."""

    def __init__(self) -> None:
        super().__init__()
        # Per graph: runs of one graph share the model objects a string resolved to.
        self._models: dict[str, BaseChatModel] = {}

    def _request(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        context: object = request.runtime.context
        name = context.model if isinstance(context, Context) else None
        if name is None:
            return request
        if name not in self._models:
            self._models[name] = resolve_model(name, argument="context.model")
        return request.override(model=self._models[name])

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse]
    ) -> ModelResponse:
        return handler(self._request(request))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse]],
    ) -> ModelResponse:
        return await handler(self._request(request))


def make_graph() -> CompiledStateGraph[Any, Context, Any, Any]:
    """Build the loop and its two agents, their model taken from `AGENTLOOP_MODEL`.

    Returns:
        The compiled loop, named `agents`.

    Example:
        >>> graph = make_graph()
        >>> out = graph.invoke({"task": "Plan a picnic"}, context={"model": "demo"})
        >>> sorted({step["agent"] for step in out["steps"]})
        ['researcher', 'writer']
    """
    model = resolve_model(os.environ.get("AGENTLOOP_MODEL") or DEFAULT_MODEL)
    run_model = RunModel()
    researcher = create_agent(
        model,
        tools=[look_up],
        system_prompt="Do the step you are given: look up what it needs, then say what you found.",
        middleware=[run_model],
        name="researcher",
    )
    writer = create_agent(
        model,
        tools=[word_count],
        system_prompt="Do the step you are given: write what it asks for, briefly.",
        middleware=[run_model],
        name="writer",
    )
    roster = [
        StepAgent("researcher", "Looks facts up (picnic and train notes).", researcher),
        StepAgent("writer", "Writes drafts, plans and summaries.", writer),
    ]
    return create_agent_loop(model, executors=roster, name="agents")
