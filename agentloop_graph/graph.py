"""The agent loop's wiring: nodes, conditional edges, the builder and the compiled graph.

One run, as a LangGraph engineer follows it (these modules are the path):
1. `state.py`: the input, output and internal state; `context.py`: the factory's settings,
   overridden per run by `Context`.
2. `planner.py` asks for a plan (`plans.py` reads it); `executor.py` makes one attempt at a
   step (tools included), `adapter.py` revises a failed step, `summariser.py` closes the run;
   `steps.py` holds what the executor and adapter share, `approval.py` the plan approval,
   `parallel.py` a parallel run's waves.
3. Every model and tool call goes through `calls.py` (budget, time limits, retries), with
   prompts from `prompts.py`; each node writes progress events through `progress.py`.
4. This module pairs each node's sync and async bodies (`AgentLoop`), routes between them
   and compiles the graph (`compiled.py` guards a run's start on a thread).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as as_tool
from langgraph._internal._runnable import RunnableCallable
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from agentloop_graph.adapter import aadapt, adapt
from agentloop_graph.agents import StepAgent, as_agents
from agentloop_graph.budget import Budget, as_budget
from agentloop_graph.calls import NodeRun
from agentloop_graph.compiled import AgentLoopGraph
from agentloop_graph.context import Context, Models, ModelsFor, Settings, check_settings, resolve
from agentloop_graph.executor import aexecute, execute
from agentloop_graph.models import DEFAULT_MODEL, for_phase, resolve_model
from agentloop_graph.parallel import after_branch, next_wave, was_sent, wave
from agentloop_graph.planner import aplan, plan, replanning
from agentloop_graph.prompts import build_prompts
from agentloop_graph.state import (
    AgentLoopState,
    InputState,
    OutputState,
    PlannerInput,
    StepInput,
    SummariserInput,
    TypedAgentLoopState,
    TypedOutputState,
)
from agentloop_graph.summariser import asummarise, summarise

ACTIVITY = {"execute_in": "activity"}
"""Node metadata Temporal's LangGraph plugin requires: each node runs as an activity (its
model and tool calls are not deterministic); routing stays in the workflow."""


class AgentLoop:
    """The loop's nodes, bound to the factory's settings.

    Each node is a blocking method for `invoke` and an async one for `ainvoke`, paired by
    LangGraph's `RunnableCallable` as its prebuilt agent pairs `call_model` and
    `acall_model`: a node made the way `add_node` makes one from a function, which is what
    Temporal's LangGraph plugin runs as an activity. Each resolves the run's settings (the
    factory's, overridden by the run's `Context`) and hands its body a `NodeRun`.
    """

    def __init__(self, defaults: Settings, models_for: ModelsFor) -> None:
        self.defaults = defaults
        self.models_for = models_for

    def _run(self, config: RunnableConfig, runtime: Runtime[Any], state: Any) -> NodeRun:
        settings = resolve(self.defaults, runtime.context, self.models_for)
        return NodeRun.start(config, settings, state.get("cursor"))

    def _planner_run(self, config: RunnableConfig, runtime: Runtime[Any], state: Any) -> NodeRun:
        # A new run's planner starts the run's counts afresh: the cursor is an earlier run's.
        return self._run(config, runtime, state if replanning(state) else {})

    def planner(
        self, state: PlannerInput, config: RunnableConfig, runtime: Runtime[Any]
    ) -> dict[str, Any]:
        return plan(state, self._planner_run(config, runtime, state))

    async def aplanner(
        self, state: PlannerInput, config: RunnableConfig, runtime: Runtime[Any]
    ) -> dict[str, Any]:
        return await aplan(state, self._planner_run(config, runtime, state))

    def executor(
        self, state: StepInput, config: RunnableConfig, runtime: Runtime[Any]
    ) -> dict[str, Any]:
        return execute(state, self._run(config, runtime, state))

    async def aexecutor(
        self, state: StepInput, config: RunnableConfig, runtime: Runtime[Any]
    ) -> dict[str, Any]:
        return await aexecute(state, self._run(config, runtime, state))

    def adapter(
        self, state: StepInput, config: RunnableConfig, runtime: Runtime[Any]
    ) -> dict[str, Any]:
        return adapt(state, self._run(config, runtime, state))

    async def aadapter(
        self, state: StepInput, config: RunnableConfig, runtime: Runtime[Any]
    ) -> dict[str, Any]:
        return await aadapt(state, self._run(config, runtime, state))

    def summariser(
        self, state: SummariserInput, config: RunnableConfig, runtime: Runtime[Any]
    ) -> dict[str, Any]:
        return summarise(state, self._run(config, runtime, state))

    async def asummariser(
        self, state: SummariserInput, config: RunnableConfig, runtime: Runtime[Any]
    ) -> dict[str, Any]:
        return await asummarise(state, self._run(config, runtime, state))


def route_after_planner(
    state: PlannerInput, config: RunnableConfig
) -> Literal["executor", "summariser"] | list[Send]:
    """Execute the plan, or summarise a planning failure (or a replan the budget refused).
    A parallel run's plan that needs no approval starts its first wave from here, as the
    executor's turn between waves would: that turn would have nothing else to do."""
    cursor = state.get("cursor")
    if not state.get("plan") or cursor is None or cursor["stopped"] is not None:
        return "summariser"
    if cursor["max_parallel"] and cursor["approved"]:
        return wave(state) or "summariser"
    return "executor"


def route_after_adapter(
    state: StepInput, config: RunnableConfig
) -> Literal["executor", "planner", "summariser"]:
    """Replan after a failed step (with replans left), attempt the open or next step, or
    summarise once every step has ended (or the budget is spent). In a parallel run, the
    executor plans the next wave once every step of this one has ended."""
    cursor = state["cursor"]
    if cursor["max_parallel"]:
        return after_branch(state)
    if cursor["replan_reason"] is not None:
        return "planner"
    more = len(state["steps"]) < len(state["plan"])
    return "executor" if more and not cursor["stopped"] else "summariser"


def route_after_executor(
    state: StepInput, config: RunnableConfig
) -> Literal["executor", "adapter", "planner", "summariser"] | list[Send]:
    """Adapt a failed step that may still be revised, else go on like the adapter. In a
    parallel run, a step's attempt goes on to the executor's turn between waves, whose
    router sends the next wave: each step's next attempt or adaptation, and the steps
    ready to start (or, once the plan's last step has ended, to the summariser)."""
    cursor = state["cursor"]
    if cursor["max_parallel"]:
        return after_branch(state) if was_sent(config) else next_wave(state)
    if state["status"] == "cancelled":
        return "summariser"
    progress = cursor["open"].get(str(len(state["steps"]) + 1))
    if progress is not None and progress["needs_adaptation"]:
        return "adapter"
    return route_after_adapter(state, config)


Route = Callable[[Any, RunnableConfig], Any]


def _router(route: Route) -> RunnableCallable:
    """`route` for both ways of running: routing is pure, so the async path calls it
    directly (LangGraph would otherwise send a plain function to a worker thread)."""

    async def aroute(state: Any, config: RunnableConfig) -> Any:
        return route(state, config)

    return RunnableCallable(route, aroute, name=route.__name__, trace=False)


def _as_tools(tools: object) -> dict[str, BaseTool]:
    if isinstance(tools, str | bytes) or not isinstance(tools, Sequence | set | frozenset):
        raise TypeError(f"tools must be a list of LangChain tools or functions, got {tools!r}")
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


def _with_tools(model: BaseChatModel, tools: Mapping[str, BaseTool]) -> Runnable[Any, Any]:
    return model.bind_tools(list(tools.values())) if tools else model


def _models(
    build: Callable[[object, str], BaseChatModel],
    phases: Mapping[str, object],
    tools: Mapping[str, BaseTool],
) -> Models:
    """Each phase's model: its own argument if given, else the shared `model`."""
    chosen: dict[str, BaseChatModel] = {}
    for phase in ("planner", "executor", "adapter", "summariser"):
        own = phases[f"{phase}_model"]
        spec = phases["model"] if own is None else own
        model = build(spec, "model" if own is None else f"{phase}_model")
        # Only models the loop built get its defaults; a model object is the caller's.
        chosen[phase] = for_phase(model, phase) if isinstance(spec, str) else model
    return Models(
        planner=chosen["planner"],
        executor=chosen["executor"],
        adapter=chosen["adapter"],
        summariser=chosen["summariser"],
        executor_with_tools=_with_tools(chosen["executor"], tools),
    )


def build_agent_loop(
    model: BaseChatModel | str = DEFAULT_MODEL,
    *,
    tools: Sequence[BaseTool | Callable[..., Any]] = (),
    max_steps: int = 10,
    max_adaptations: int = 1,
    max_replans: int = 0,
    parallel: bool = False,
    max_parallel: int = 4,
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
    budget: Budget | None = None,
    system_prompt: str | None = None,
    prompts: Mapping[str, str] | None = None,
    executor: Runnable[Any, Any] | None = None,
    executors: Sequence[StepAgent | Mapping[str, Any]] = (),
    response_format: dict[str, Any] | type | None = None,
) -> StateGraph[AgentLoopState, Context, InputState, OutputState]:
    """Build the plan -> execute -> adapt -> summarise loop as an uncompiled LangGraph graph.

    `create_agent_loop` compiles this builder; compile it yourself to run it elsewhere, e.g.
    on Temporal with its LangGraph plugin (`LangGraphPlugin(graphs={"agent_loop": builder})`).

    Args:
        model: A chat model, or `"ollama:<model>"`, `"demo"` (offline) or another
            `"provider:model"` string for LangChain's `init_chat_model`.
        tools: Tools (or plain functions) the executor may call within a step.
        max_steps: Longest plan run; longer plans are truncated and the run is `partial`.
        max_adaptations: Adapter calls allowed per failed step.
        max_replans: Times a run may revise its plan: when a step ends failed and steps
            have not started, the planner replaces them, given what was done (0: never).
        parallel: Plan steps with dependencies and run each step once the steps it waits
            for have ended, many at once (each attempt its own `executor` execution).
        max_parallel: Steps a parallel run may run at once.
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
        budget: What one run may spend (`Budget(max_model_calls=, max_tokens=,
            max_seconds=)`), checked before every model call; `Context.budget` per run.
        system_prompt: Sent as a system message before every phase's prompt (planner,
            executor, adapter, summariser), as is: it is not a template. None sends each
            prompt alone, as text.
        prompts: Templates replacing the defaults (`PLANNER`, `EXECUTOR`, `ADAPTER`,
            `SUMMARISER` in `agentloop_graph.prompts`) of the phases they name:
            `"planner"`, `"executor"`, `"adapter"`, `"summariser"`. Each is rendered with
            `str.format` (`{{` and `}}` for literal braces; a field is a plain name, with
            an optional conversion or format spec) and must name its phase's required
            fields, may name its optional ones, and nothing else: planner
            `{task}`, optional `{max_steps}`; executor `{task}`, `{description}` (the
            step's text, planned or revised), optional `{step}`, `{total}`, `{recent}`
            (the last two steps' results); adapter `{description}` (the step that
            failed), `{error}`, optional `{task}`, `{step}`, `{total}`; summariser
            `{results}` (one `N. step: result` line per step), optional `{task}`.
        executor: An agent to do every step instead of the built-in executor: any Runnable
            taking `{"messages": [...]}` and returning `messages` (LangChain's
            `create_agent`, a compiled `StateGraph`, a deepagents agent). Each attempt calls
            it once with the step's prompt as one human message; its last AI message is the
            step's result. It runs as a subgraph of the `executor` node.
        executors: A roster of agents (`StepAgent`s, or dicts of their fields): the planner
            is told their names and descriptions and assigns each step to one (steps it
            assigns to none go to the first). Not with `executor=` nor `tools=`.
        response_format: The final answer's shape, as `create_agent` takes it: a pydantic
            model class, a `TypedDict` or a JSON schema dict. The summariser asks for the
            answer in it; output key `structured_response` holds the parsed answer (None
            when no step ran, the call failed or the answer does not fit), `answer` its
            JSON text.

    Returns:
        The `StateGraph`, with `Context` as its `context_schema`. Input `{"task": ...}` or
        `{"messages": [...]}`; per-run settings through `context=Context(...)`.

    Raises:
        ValueError: An argument is out of range, `model` is an unknown string,
            `system_prompt` is blank, or `prompts` names an unknown phase or holds a
            template that is malformed, lacks a required field or names an unknown one.
        TypeError: `model` is neither a chat model nor a string, a tool is not a tool,
            `system_prompt` or a template is not a string, or `prompts` is not a mapping.

    Example:
        >>> from agentloop_graph import build_agent_loop
        >>> graph = build_agent_loop("demo").compile()
        >>> graph.invoke({"task": "Plan a picnic"})["status"]
        'completed'
    """
    options = dict(model_options or {})
    built: dict[str, BaseChatModel] = {}

    def build(spec: object, argument: str) -> BaseChatModel:
        # One model object per distinct string, for this graph: building a client is not
        # free, and models are stateless, so runs may share them.
        if not isinstance(spec, str):
            return resolve_model(spec, argument=argument)
        if spec not in built:
            built[spec] = resolve_model(
                spec, argument=argument, options=options, timeout=model_timeout
            )
        return built[spec]

    tool_map = _as_tools(tools)
    agents = as_agents(executor, executors, tool_map)
    phases = {
        "model": model,
        "planner_model": planner_model,
        "executor_model": executor_model,
        "adapter_model": adapter_model,
        "summariser_model": summariser_model,
    }
    defaults = Settings(
        models=_models(build, phases, tool_map),
        tools=tool_map,
        max_steps=max_steps,
        max_adaptations=max_adaptations,
        max_replans=max_replans,
        parallel=parallel,
        max_parallel=max_parallel,
        step_timeout=step_timeout,
        summarise_with_model=summarise_with_model,
        max_tool_rounds=max_tool_rounds,
        approve_plan=approve_plan,
        model_timeout=model_timeout,
        max_retries=max_retries,
        budget=as_budget(budget),
        prompts=build_prompts(system_prompt, prompts),
        agents=agents,
        roster=tuple(agent.name for agent in agents) if executors else (),
        response_format=response_format,
    )
    check_settings(defaults)

    @functools.cache
    def models_for(spec: str | None, tool_names: tuple[str, ...]) -> Models:
        """A run's models: `Context.model` for every phase, with its allowed tools bound."""
        allowed = {name: tool_map[name] for name in tool_names}
        if spec is None:
            return replace(
                defaults.models,
                executor_with_tools=_with_tools(defaults.models.executor, allowed),
                shaped={},
            )
        shared = {phase: None for phase in phases} | {"model": spec}
        return _models(lambda spec, _: build(spec, "context.model"), shared, allowed)

    loop = AgentLoop(defaults, models_for)
    typed = response_format is not None
    builder = StateGraph(
        TypedAgentLoopState if typed else AgentLoopState,
        context_schema=Context,
        input_schema=InputState,
        output_schema=TypedOutputState if typed else OutputState,
    )
    nodes: list[tuple[str, Node, type[Any]]] = [
        ("planner", (loop.planner, loop.aplanner), PlannerInput),
        ("executor", (loop.executor, loop.aexecutor), StepInput),
        ("adapter", (loop.adapter, loop.aadapter), StepInput),
        ("summariser", (loop.summariser, loop.asummariser), SummariserInput),
    ]
    for name, (body, abody), input_schema in nodes:
        node = RunnableCallable(body, abody, name=name, trace=False)
        builder.add_node(name, node, input_schema=input_schema, metadata=ACTIVITY)
    builder.add_edge(START, "planner")
    builder.add_conditional_edges(
        "planner", _router(route_after_planner), ["executor", "summariser"]
    )
    builder.add_conditional_edges(
        "executor",
        _router(route_after_executor),
        ["executor", "adapter", "planner", "summariser"],
    )
    builder.add_conditional_edges(
        "adapter", _router(route_after_adapter), ["executor", "planner", "summariser"]
    )
    builder.add_edge("summariser", END)
    return builder


Node = tuple[Callable[..., dict[str, Any]], Callable[..., Coroutine[Any, Any, dict[str, Any]]]]


def create_agent_loop(
    model: BaseChatModel | str = DEFAULT_MODEL,
    *,
    tools: Sequence[BaseTool | Callable[..., Any]] = (),
    max_steps: int = 10,
    max_adaptations: int = 1,
    max_replans: int = 0,
    parallel: bool = False,
    max_parallel: int = 4,
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
    budget: Budget | None = None,
    system_prompt: str | None = None,
    prompts: Mapping[str, str] | None = None,
    executor: Runnable[Any, Any] | None = None,
    executors: Sequence[StepAgent | Mapping[str, Any]] = (),
    response_format: dict[str, Any] | type | None = None,
    checkpointer: Any = None,
    store: Any = None,
    name: str = "agent_loop",
) -> AgentLoopGraph:
    """Build the plan -> execute -> adapt -> summarise loop as a compiled LangGraph graph.

    Args:
        model: A chat model, or `"ollama:<model>"`, `"demo"` (offline) or another
            `"provider:model"` string for LangChain's `init_chat_model`.
        checkpointer: Passed to `compile`; with one, every attempt is checkpointed.
        store: Passed to `compile`.
        name: The compiled graph's name.
        **options: The other keywords are `build_agent_loop`'s, which builds the graph this
            compiles.

    Returns:
        The compiled graph (an `AgentLoopGraph`: it guards how a run starts on a thread).
        Input `{"task": ...}` or `{"messages": [...]}`; per-run settings through
        `context=Context(...)`.

    Raises:
        ValueError: An argument is out of range, `model` is an unknown string,
            `system_prompt` is blank, or `prompts` names an unknown phase or holds a
            template that is malformed, lacks a required field or names an unknown one.
        TypeError: `model` is neither a chat model nor a string, a tool is not a tool,
            `system_prompt` or a template is not a string, or `prompts` is not a mapping.

    Example:
        >>> from agentloop_graph import create_agent_loop
        >>> graph = create_agent_loop("demo")
        >>> result = graph.invoke({"task": "Plan a picnic"})
        >>> result["status"], len(result["steps"])
        ('completed', 4)
    """
    options = {
        key: value
        for key, value in locals().items()
        if key not in ("model", "checkpointer", "store", "name")
    }
    builder = build_agent_loop(model, **options)
    compiled = builder.compile(checkpointer=checkpointer, store=store, name=name)
    # The same graph as the loop's own class (see `compiled.py`), built the way
    # `CompiledStateGraph.copy` builds copies.
    return AgentLoopGraph(**{k: v for k, v in vars(compiled).items() if k != "__orig_class__"})
