"""The agent loop's wiring: nodes, conditional edges, compile."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast, get_args, get_type_hints

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as as_tool
from langgraph.graph import END, START, StateGraph

from agentloop_graph.adapter import adapt
from agentloop_graph.compiled import AgentLoopGraph
from agentloop_graph.executor import execute
from agentloop_graph.models import DEFAULT_MODEL, resolve_model
from agentloop_graph.node import Node
from agentloop_graph.planner import plan
from agentloop_graph.settings import (
    Context,
    Models,
    Settings,
    SettingsResolver,
    check_count,
    check_limits,
    check_seconds,
    for_planning,
    with_tools,
)
from agentloop_graph.state import (
    AgentLoopState,
    InputState,
    OutputState,
    PlannerInput,
    StepInput,
    SummariserInput,
)
from agentloop_graph.summariser import summarise


def route_after_planner(state: PlannerInput) -> Literal["executor", "summariser"]:
    """Execute the plan, or summarise a planning failure."""
    return "executor" if state.get("plan") else "summariser"


def route_after_adapter(state: StepInput) -> Literal["executor", "summariser"]:
    """Attempt the open or next step, or summarise once every step has ended."""
    return "executor" if len(state["steps"]) < len(state["plan"]) else "summariser"


def route_after_executor(state: StepInput) -> Literal["executor", "adapter", "summariser"]:
    """Adapt a failed step that may still be revised, else go on like the adapter."""
    if state["cursor"]["needs_adaptation"]:
        return "adapter"
    if state["status"] == "cancelled":
        return "summariser"
    return route_after_adapter(state)


class Router(Runnable[Any, str]):
    """A routing function usable under both `invoke` and `ainvoke`.

    A plain sync router would be sent to a worker thread under `ainvoke`, and an async
    one fails under `invoke`; routing is pure, so both paths call it directly.
    """

    def __init__(self, route: Callable[[Any], str]) -> None:
        self.name = route.__name__
        self._route = route
        self.destinations = list(get_args(get_type_hints(route)["return"]))

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        return self._route(input)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> str:
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


def _role_models(
    model: object,
    roles: dict[str, object],
    options: dict[str, Any],
    timeout: float | None,
) -> Models:
    """Each phase's chat model: its own argument if given, else the shared `model`."""

    built: dict[str, BaseChatModel] = {}

    def build(spec: object, argument: str) -> BaseChatModel:
        # One model object per distinct string: building a client is not free.
        if not isinstance(spec, str):
            return resolve_model(spec, argument=argument)
        if spec not in built:
            built[spec] = resolve_model(spec, argument=argument, options=options, timeout=timeout)
        return built[spec]

    shared = build(model, "model")
    chosen = {role: shared if spec is None else build(spec, role) for role, spec in roles.items()}
    planner = chosen["planner_model"]
    # Only models the loop built get its planning defaults; a model object is the caller's.
    planning_spec = model if roles["planner_model"] is None else roles["planner_model"]
    if isinstance(planning_spec, str):
        planner = for_planning(planner)
    return Models(
        planner=planner,
        executor=chosen["executor_model"],
        adapter=chosen["adapter_model"],
        summariser=chosen["summariser_model"],
    )


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
    planner_model: BaseChatModel | str | None = None,
    executor_model: BaseChatModel | str | None = None,
    adapter_model: BaseChatModel | str | None = None,
    summariser_model: BaseChatModel | str | None = None,
    model_options: Mapping[str, Any] | None = None,
    model_timeout: float | None = None,
    max_retries: int = 3,
    checkpointer: Any = None,
    store: Any = None,
    name: str = "agent_loop",
) -> AgentLoopGraph:
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
        planner_model: The planner's model, when it should differ from `model` (e.g. a
            stronger one); likewise `executor_model`, `adapter_model`, `summariser_model`.
            Each is a chat model or a model string.
        model_options: Keyword arguments for models built from strings (for Ollama, e.g.
            `{"num_ctx": 8192, "keep_alive": "10m", "reasoning": True}`).
        model_timeout: Seconds each model call may take, enforced by the loop; None leaves
            it to the model's client (Ollama models built from strings then get a
            300-second HTTP timeout, since the Ollama client has none of its own).
        max_retries: Retries of a model call that failed transiently (a 5xx or 429
            answer, a connection cut mid-answer), with exponential backoff.
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
    check_count("max_tool_rounds", max_tool_rounds, 0)
    check_count("max_retries", max_retries, 0)
    check_seconds("model_timeout", model_timeout)
    options = dict(model_options or {})
    models = _role_models(
        model,
        {
            "planner_model": planner_model,
            "executor_model": executor_model,
            "adapter_model": adapter_model,
            "summariser_model": summariser_model,
        },
        options,
        model_timeout,
    )
    tool_map = _as_tools(tools)
    settings = SettingsResolver(
        Settings(
            models=models,
            executor_model=with_tools(models.executor, tool_map),
            tools=tool_map,
            max_steps=max_steps,
            max_adaptations=max_adaptations,
            step_timeout=step_timeout,
            summarise_with_model=summarise_with_model,
            max_tool_rounds=max_tool_rounds,
            approve_plan=approve_plan,
            model_timeout=model_timeout,
            max_retries=max_retries,
        ),
        options,
    )
    builder = StateGraph(
        AgentLoopState,
        context_schema=Context,
        input_schema=InputState,
        output_schema=OutputState,
    )
    builder.add_node("planner", Node("planner", plan, settings), input_schema=PlannerInput)
    builder.add_node("executor", Node("executor", execute, settings), input_schema=StepInput)
    builder.add_node("adapter", Node("adapter", adapt, settings), input_schema=StepInput)
    builder.add_node(
        "summariser", Node("summariser", summarise, settings), input_schema=SummariserInput
    )
    builder.add_edge(START, "planner")
    for source, route in (
        ("planner", route_after_planner),
        ("executor", route_after_executor),
        ("adapter", route_after_adapter),
    ):
        router = Router(route)
        builder.add_conditional_edges(source, router, router.destinations)
    builder.add_edge("summariser", END)
    graph = builder.compile(checkpointer=checkpointer, store=store, name=name)
    # compile() always builds a plain CompiledStateGraph; the subclass only adds checks
    # around stream/astream/astream_events and holds no state of its own.
    graph.__class__ = AgentLoopGraph
    return cast(AgentLoopGraph, graph)
