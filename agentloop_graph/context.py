"""Per-run settings: `Context`, and the one place it meets the factory's values."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import Field

from agentloop_graph.agents import StepAgent
from agentloop_graph.budget import Budget, as_budget
from agentloop_graph.checks import check_count, check_flag, check_seconds
from agentloop_graph.prompts import Prompts


@dataclass(kw_only=True)
class Context:
    """Per-run settings, the graph's `context_schema`.

    Pass as `context=` to `invoke`/`stream`; fields left as None keep the values given to
    `create_agent_loop`. Studio shows them in its configuration pane.

    Example:
        >>> from agentloop_graph import Context, create_agent_loop
        >>> loop = create_agent_loop("demo")
        >>> len(loop.invoke({"task": "Plan a picnic"}, context=Context(max_steps=2))["plan"])
        2
    """

    model: Annotated[
        str | None,
        Field(description='Model for this run: "demo", "ollama:<model>" or "provider:model".'),
    ] = None
    max_steps: Annotated[
        int | None, Field(description="Plan length limit; longer plans are truncated.")
    ] = None
    max_adaptations: Annotated[
        int | None, Field(description="Adapter calls allowed per failed step.")
    ] = None
    step_timeout: Annotated[
        float | None, Field(description="Seconds allowed per executor attempt.")
    ] = None
    summarise_with_model: Annotated[
        bool | None, Field(description="Ask the model for a final answer after the steps.")
    ] = None
    approve_plan: Annotated[
        bool | None,
        Field(
            description="Pause after planning until a person approves, edits or rejects the plan."
        ),
    ] = None
    parallel: Annotated[
        bool | None,
        Field(description="Run independent steps at once, as the plan's dependencies allow."),
    ] = None
    max_parallel: Annotated[
        int | None, Field(description="Steps a parallel run may run at once.")
    ] = None
    max_replans: Annotated[
        int | None,
        Field(description="Times a failed step may have the steps not yet started replanned."),
    ] = None
    tools: Annotated[
        list[str] | None,
        Field(description="Names of the loop's tools this run may call; all of them when unset."),
    ] = None
    budget: Annotated[
        Budget | None,
        Field(description="What this run may spend: model calls, tokens, seconds."),
    ] = None


@dataclass(frozen=True, slots=True)
class Models:
    """The chat model of each phase."""

    planner: BaseChatModel
    executor: BaseChatModel
    adapter: BaseChatModel
    summariser: BaseChatModel
    executor_with_tools: Runnable[Any, Any]
    """The executor's model with the run's tools bound (itself when there are none)."""
    shaped: dict[tuple[str, str], Runnable[Any, Any] | None] = field(default_factory=dict)
    """Each phase's model held to a schema, by phase and schema, built once (None: the model
    cannot be held to one); see `structured`."""

    def structured(self, phase: str, schema: dict[str, Any] | type) -> Runnable[Any, Any] | None:
        """`phase`'s model answering in `schema`'s shape (its reply comes with the parsed
        object), or None if the model cannot be held to a schema."""
        named = json.dumps(schema, sort_keys=True) if isinstance(schema, dict) else str(id(schema))
        key = (phase, named)
        if key not in self.shaped:
            self.shaped[key] = with_schema(getattr(self, phase), schema)
        return self.shaped[key]


def with_schema(model: BaseChatModel, schema: dict[str, Any] | type) -> Runnable[Any, Any] | None:
    """`model` held to answer in `schema`'s shape, as `with_structured_output` holds it (a
    tool call, Ollama's `format`, a provider's JSON schema), or None for a model without
    structured output.

    Only the model call itself is kept, not LangChain's parsing around it: the loop reads
    the answer (and falls back to reading prose), and a trace shows one model call.
    """
    try:
        structured = model.with_structured_output(schema, include_raw=True)
    except NotImplementedError:
        return None
    # `with_structured_output(include_raw=True)` is `RunnableMap(raw=<model, bound>) | parser`.
    raw = getattr(getattr(structured, "first", None), "steps__", {}).get("raw")
    return raw if isinstance(raw, Runnable) else structured


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a node needs to know for one run."""

    models: Models
    tools: dict[str, BaseTool]
    max_steps: int
    max_adaptations: int
    max_replans: int
    parallel: bool
    max_parallel: int
    step_timeout: float | None
    summarise_with_model: bool
    max_tool_rounds: int
    approve_plan: bool
    model_timeout: float | None
    max_retries: int
    budget: Budget | None
    prompts: Prompts
    """The phases' templates and the system prompt (fixed when the loop is built)."""
    agents: tuple[StepAgent, ...] = ()
    """The agents that do the steps instead of the built-in executor (fixed when the loop is
    built); the first does steps the plan assigns to no agent of them."""
    roster: tuple[str, ...] = ()
    """The agents' names when the planner assigns steps to them (`executors=`)."""
    response_format: dict[str, Any] | type | None = None
    """The final answer's shape, when the summariser is to answer in one."""

    def agent(self, name: str | None) -> StepAgent | None:
        """The agent of that name, else the first (None: the built-in executor)."""
        if not self.agents:
            return None
        named = (agent for agent in self.agents if agent.name == name)
        return next(named, self.agents[0])


ModelsFor = Callable[[str | None, tuple[str, ...]], Models]
"""The phases' models for a model string (None: the factory's) with these tools bound."""

_OVERRIDES = (
    "max_steps",
    "max_adaptations",
    "max_replans",
    "parallel",
    "max_parallel",
    "step_timeout",
    "summarise_with_model",
    "approve_plan",
)
CONTEXT_FIELDS = frozenset(f.name for f in fields(Context))


def check_settings(settings: Settings) -> None:
    """Raise `ValueError` naming the first setting that is out of range."""
    check_count("max_steps", settings.max_steps, 1)
    check_count("max_adaptations", settings.max_adaptations, 0)
    check_count("max_replans", settings.max_replans, 0)
    check_count("max_parallel", settings.max_parallel, 1)
    check_flag("parallel", settings.parallel)
    check_count("max_tool_rounds", settings.max_tool_rounds, 0)
    check_count("max_retries", settings.max_retries, 0)
    check_seconds("step_timeout", settings.step_timeout)
    check_seconds("model_timeout", settings.model_timeout)
    check_flag("summarise_with_model", settings.summarise_with_model)
    check_flag("approve_plan", settings.approve_plan)


def as_context(context: object) -> Context | None:
    """The run's `Context` from a `Context`, a dict of its fields (as servers and Temporal
    activities pass it) or None.

    Raises:
        ValueError: A dict names fields `Context` lacks.
    """
    if context is None or isinstance(context, Context):
        return context
    if isinstance(context, Mapping):
        if unknown := sorted(set(map(str, context)) - CONTEXT_FIELDS):
            raise ValueError(
                f"context has unknown fields {unknown}; Context has {sorted(CONTEXT_FIELDS)}"
            )
        return Context(**context)
    raise ValueError(f"context must be a Context or a dict of its fields, got {context!r}")


def resolve(defaults: Settings, context: object, models_for: ModelsFor) -> Settings:
    """The settings of one run: the factory's `defaults`, overridden by the run's `context`.

    Raises:
        ValueError: A context field is out of range or names an unknown tool.
    """
    context = as_context(context)
    if context is None:
        return defaults
    overrides: dict[str, Any] = {
        name: value for name in _OVERRIDES if (value := getattr(context, name)) is not None
    }
    if context.budget is not None:
        overrides["budget"] = as_budget(context.budget)
    if context.model is not None or context.tools is not None:
        tools = defaults.tools
        if context.tools is not None:
            if unknown := sorted(set(context.tools) - set(tools)):
                known = sorted(tools)
                raise ValueError(
                    f"context.tools names unknown tools {unknown}; the loop has {known}"
                )
            tools = {name: tool for name, tool in tools.items() if name in context.tools}
        overrides["tools"] = tools
        overrides["models"] = models_for(context.model, tuple(tools))
    if not overrides:
        return defaults
    settings = replace(defaults, **overrides)
    check_settings(settings)
    return settings
