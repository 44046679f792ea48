"""The loop with a roster of two agents doing its steps, as `langgraph dev` and Studio load it.

The planner assigns each step to `researcher` (a `look_up` tool) or `writer` (a `word_count`
tool). Each is a small LangGraph agent (its model calls tools until it answers in text), and
runs as a subgraph of the loop's `executor` node: Studio shows its model and tool calls under
the step it does.

Every model of the run, the agents' included, is `AGENTLOOP_MODEL`, else `ollama:llama3.2`;
a run picks another with `context={"model": "demo"}` (in Studio: the assistant's
configuration pane), as with `agent_loop`. The agents are plain LangGraph graphs, so serving
this file needs nothing beyond the package (LangChain's `create_agent` would work the same).
"""

from __future__ import annotations

import os
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool, tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.runtime import get_runtime

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


class Agent:
    """An agent's `model` node: the run's model, with the agent's tools bound."""

    def __init__(self, model: BaseChatModel, tools: list[BaseTool], system_prompt: str) -> None:
        self._tools = tools
        self._system = SystemMessage(system_prompt)
        self._default = model.bind_tools(tools)
        # Per graph: runs of one graph share the model objects a string resolved to.
        self._by_name: dict[str, Runnable[Any, Any]] = {}

    def _model(self) -> Runnable[Any, Any]:
        # The agent runs inside the loop's executor node, so it sees the loop run's context.
        context = get_runtime(Context).context
        name = context.model if context is not None else None
        if name is None:
            return self._default
        if name not in self._by_name:
            model = resolve_model(name, argument="context.model")
            self._by_name[name] = model.bind_tools(self._tools)
        return self._by_name[name]

    def _prompt(self, state: MessagesState) -> list[AnyMessage]:
        return [self._system, *state["messages"]]

    def reply(self, state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [self._model().invoke(self._prompt(state), config)]}

    async def areply(self, state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [await self._model().ainvoke(self._prompt(state), config)]}


def tool_agent(
    name: str, model: BaseChatModel, tools: list[BaseTool], system_prompt: str
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """`START -> model <-> tools`: the model calls tools until it answers in text."""
    agent = Agent(model, tools, system_prompt)
    builder = StateGraph(MessagesState)
    builder.add_node("model", RunnableLambda(agent.reply, afunc=agent.areply, name="model"))
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(name=name)


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
    researcher = tool_agent(
        "researcher",
        model,
        [look_up],
        "Do the step you are given: look up what it needs, then say what you found.",
    )
    writer = tool_agent(
        "writer", model, [word_count], "Do the step you are given: write what it asks, briefly."
    )
    roster = [
        StepAgent("researcher", "Looks facts up (picnic and train notes).", researcher),
        StepAgent("writer", "Writes drafts, plans and summaries.", writer),
    ]
    return create_agent_loop(model, executors=roster, name="agents")
