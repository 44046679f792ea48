"""The agent loop's wiring: nodes, conditional edges, compile."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args, get_type_hints

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as as_tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agentloop_graph.adapter import adapt
from agentloop_graph.executor import execute
from agentloop_graph.models import DEFAULT_MODEL, resolve_model
from agentloop_graph.node import Node
from agentloop_graph.planner import plan
from agentloop_graph.settings import (
    Context,
    Settings,
    SettingsResolver,
    check_limits,
    with_tools,
)
from agentloop_graph.state import AgentLoopState, InputState, OutputState
from agentloop_graph.summariser import summarise


def route_after_planner(state: AgentLoopState) -> Literal["executor", "summariser"]:
    """Execute the plan, or summarise a planning failure."""
    return "executor" if state["plan"] else "summariser"


def route_after_adapter(state: AgentLoopState) -> Literal["executor", "summariser"]:
    """Attempt the open or next step, or summarise once every step has ended."""
    return "executor" if len(state["steps"]) < len(state["plan"]) else "summariser"


def route_after_executor(state: AgentLoopState) -> Literal["executor", "adapter", "summariser"]:
    """Adapt a failed step that may still be revised, else go on like the adapter."""
    if state["cursor"]["needs_adaptation"]:
        return "adapter"
    if state["status"] == "cancelled":
        return "summariser"
    return route_after_adapter(state)


class Router(Runnable[AgentLoopState, str]):
    """A routing function usable under both `invoke` and `ainvoke`.

    A plain sync router would be sent to a worker thread under `ainvoke`, and an async
    one fails under `invoke`; routing is pure, so both paths call it directly.
    """

    def __init__(self, route: Callable[[AgentLoopState], str]) -> None:
        self.name = route.__name__
        self._route = route
        self.destinations = list(get_args(get_type_hints(route)["return"]))

    def invoke(
        self, input: AgentLoopState, config: RunnableConfig | None = None, **kwargs: Any
    ) -> str:
        return self._route(input)

    async def ainvoke(
        self, input: AgentLoopState, config: RunnableConfig | None = None, **kwargs: Any
    ) -> str:
        return self._route(input)


def _as_tools(tools: Sequence[BaseTool | Callable[..., Any]]) -> dict[str, BaseTool]:
    converted: dict[str, BaseTool] = {}
    for item in tools:
        if isinstance(item, BaseTool):
            tool = item
        elif callable(item):
            tool = as_tool(item)
        else:
            raise TypeError(f"tools must be LangChain tools or functions, got {item!r}")
        if tool.name in converted:
            raise ValueError(f"tools has two tools named {tool.name!r}")
        converted[tool.name] = tool
    return converted


def create_agent_loop(
    model: BaseChatModel | str = DEFAULT_MODEL,
    *,
    tools: Sequence[BaseTool | Callable[..., Any]] = (),
    max_steps: int = 10,
    max_adaptations: int = 1,
    step_timeout: float | None = None,
    summarise_with_model: bool = True,
    max_tool_rounds: int = 5,
    approve_plan: bool = False,
    checkpointer: Any = None,
    store: Any = None,
    name: str = "agent_loop",
) -> CompiledStateGraph[Any, Context, Any, Any]:
    """Build the plan -> execute -> adapt -> summarise loop as a compiled LangGraph graph.

    Args:
        model: A chat model, or `"ollama:<model>"`, `"demo"` (offline) or another
            `"provider:model"` string for LangChain's `init_chat_model`.
        tools: Tools (or plain functions) the executor may call within a step.
        max_steps: Longest plan run; longer plans are truncated and the run is `partial`.
        max_adaptations: Adapter calls allowed per failed step.
        step_timeout: Seconds allowed per executor attempt; exceeding it fails the attempt.
        summarise_with_model: Ask the model for a final `answer` after the steps.
        max_tool_rounds: Tool-calling rounds allowed within one attempt.
        approve_plan: Pause after planning (a LangGraph `interrupt` carrying the plan) until
            resumed with `Command(resume=...)`: True runs the plan, a list of strings runs
            that plan instead, False ends the run as `cancelled`. Needs a checkpointer.
        checkpointer: Passed to `compile`; with one, every attempt is checkpointed.
        store: Passed to `compile`.
        name: The compiled graph's name.

    Returns:
        The compiled graph. Input `{"task": ...}` or `{"messages": [...]}`; per-run
        settings through `context=Context(...)`.

    Raises:
        ValueError: An argument is out of range, or `model` is an unknown string.
        TypeError: `model` is neither a chat model nor a string, or a tool is not a tool.

    Example:
        >>> from agentloop_graph import create_agent_loop
        >>> graph = create_agent_loop("demo")
        >>> result = graph.invoke({"task": "Plan a picnic"})
        >>> result["status"], len(result["steps"])
        ('completed', 4)
    """
    check_limits(max_steps, max_adaptations, step_timeout)
    if (
        isinstance(max_tool_rounds, bool)
        or not isinstance(max_tool_rounds, int)
        or max_tool_rounds < 0
    ):
        raise ValueError(f"max_tool_rounds must be an integer >= 0, got {max_tool_rounds!r}")
    chat_model = resolve_model(model)
    tool_map = _as_tools(tools)
    settings = SettingsResolver(
        Settings(
            model=chat_model,
            executor_model=with_tools(chat_model, tool_map),
            tools=tool_map,
            max_steps=max_steps,
            max_adaptations=max_adaptations,
            step_timeout=step_timeout,
            summarise_with_model=summarise_with_model,
            max_tool_rounds=max_tool_rounds,
            approve_plan=approve_plan,
        )
    )
    builder = StateGraph(
        AgentLoopState,
        context_schema=Context,
        input_schema=InputState,
        output_schema=OutputState,
    )
    for node_name, body in (
        ("planner", plan),
        ("executor", execute),
        ("adapter", adapt),
        ("summariser", summarise),
    ):
        builder.add_node(node_name, Node(node_name, body, settings))
    builder.add_edge(START, "planner")
    for source, route in (
        ("planner", route_after_planner),
        ("executor", route_after_executor),
        ("adapter", route_after_adapter),
    ):
        router = Router(route)
        builder.add_conditional_edges(source, router, router.destinations)
    builder.add_edge("summariser", END)
    return builder.compile(checkpointer=checkpointer, store=store, name=name)
