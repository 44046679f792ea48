"""A chat assistant that answers simple requests itself and hands multi-step ones to the loop.

```
START -> assistant --(tool call)--> tools -> assistant
             `--(answer)--> END
```

The `assistant` node calls the run's chat model with the loop bound as the tool
`plan_and_execute`; the `tools` node runs the loop, whose progress events reach the caller's
custom stream (`stream_mode="custom", subgraphs=True`) and whose answer the assistant then
relays. A run's `Context.model` picks the model of both; the server's default is
`AGENTLOOP_MODEL`, else `ollama:llama3.2`.
"""

from __future__ import annotations

import os
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.runtime import get_runtime

from agentloop_graph import Context, plan_and_execute_tool
from agentloop_graph.models import DEFAULT_MODEL, resolve_model

SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer simple requests yourself, in a few sentences. When a "
    "request needs several steps in sequence, call the plan_and_execute tool with the whole "
    "task, then answer the user from what it reports."
)


class Assistant:
    """The `assistant` node: the run's chat model, with the loop's tool bound."""

    def __init__(self, model: BaseChatModel | str, tools: list[BaseTool]) -> None:
        self._tools = tools
        self._default = self._bind(resolve_model(model))
        # Per graph, not per module: concurrent graphs never share state, while runs of one
        # graph reuse the model objects (which are stateless) a model string resolved to.
        self._by_name: dict[str, Runnable[Any, Any]] = {}

    def _bind(self, model: BaseChatModel) -> Runnable[Any, Any]:
        return model.bind_tools(self._tools)

    def _model(self) -> Runnable[Any, Any]:
        context = get_runtime(Context).context
        name = context.model if context is not None else None
        if name is None:
            return self._default
        if name not in self._by_name:
            self._by_name[name] = self._bind(resolve_model(name, argument="context.model"))
        return self._by_name[name]

    @staticmethod
    def _prompt(state: MessagesState) -> list[AnyMessage]:
        return [SystemMessage(SYSTEM_PROMPT), *state["messages"]]

    def reply(self, state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        """Answer the conversation so far through the model's sync API."""
        return {"messages": [self._model().invoke(self._prompt(state), config)]}

    async def areply(self, state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        """Answer the conversation so far through the model's async API."""
        return {"messages": [await self._model().ainvoke(self._prompt(state), config)]}

    def as_runnable(self) -> RunnableLambda[MessagesState, dict[str, Any]]:
        """The node: `reply` under `invoke`/`stream`, `areply` under `ainvoke`/`astream`."""
        return RunnableLambda(self.reply, afunc=self.areply, name="assistant")


def create_chat_app(
    model: BaseChatModel | str = DEFAULT_MODEL,
    *,
    checkpointer: Any = None,
    store: Any = None,
    name: str = "chat_app",
) -> CompiledStateGraph[Any, Context, Any, Any]:
    """Build the chat assistant that hands multi-step requests to the agent loop.

    Args:
        model: The default chat model of the assistant and of the loop, or a model string
            (`"demo"`, `"ollama:<model>"`, `"provider:model"`). A run's `Context.model`
            overrides it for both.
        checkpointer: Passed to `compile`, for conversations on threads.
        store: Passed to `compile`.
        name: The compiled graph's name.

    Returns:
        The compiled app. Input `{"messages": [...]}`; the last message of its output is
        the assistant's reply.

    Raises:
        ValueError: `model` is an unknown model string.
        TypeError: `model` is neither a chat model nor a string.

    Example:
        >>> app = create_chat_app("demo")
        >>> out = app.invoke({"messages": [("user", "Plan a picnic then pack the basket")]})
        >>> out["messages"][-1].content.startswith("[demo] Here is what the agent loop")
        True
    """
    tools = [plan_and_execute_tool(model=model)]
    builder = StateGraph(MessagesState, context_schema=Context)
    builder.add_node("assistant", Assistant(model, tools).as_runnable())
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "assistant")
    builder.add_conditional_edges("assistant", tools_condition)
    builder.add_edge("tools", "assistant")
    return builder.compile(checkpointer=checkpointer, store=store, name=name)


def make_graph() -> CompiledStateGraph[Any, Context, Any, Any]:
    """Build the app, its default model taken from `AGENTLOOP_MODEL` (the server's factory).

    Returns:
        `create_chat_app` with `AGENTLOOP_MODEL`, else `ollama:llama3.2`.
    """
    return create_chat_app(os.environ.get("AGENTLOOP_MODEL") or DEFAULT_MODEL)
