"""Per-run settings: the factory's values, overridden by the run's `Context`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import Field

from agentloop_graph.models import resolve_model


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
    tools: Annotated[
        list[str] | None,
        Field(description="Names of the loop's tools this run may call; all of them when unset."),
    ] = None


def check_count(name: str, value: object, minimum: int) -> None:
    """Raise `ValueError` naming `name` unless `value` is an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_seconds(name: str, value: object) -> None:
    """Raise `ValueError` naming `name` unless `value` is None or a positive number."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
    ):
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")


def check_limits(max_steps: object, max_adaptations: object, step_timeout: object) -> None:
    """Raise `ValueError` naming the first out-of-range limit."""
    check_count("max_steps", max_steps, 1)
    check_count("max_adaptations", max_adaptations, 0)
    check_seconds("step_timeout", step_timeout)


def with_tools(model: BaseChatModel, tools: dict[str, BaseTool]) -> Runnable[Any, Any]:
    """The executor's view of a model: with the run's tools bound, if any."""
    return model.bind_tools(list(tools.values())) if tools else model


def for_planning(model: BaseChatModel) -> BaseChatModel:
    """The planner's copy of a model the loop built: temperature 0 where it is unset.

    A plan should not change between two runs of the same task.
    """
    if "temperature" in type(model).model_fields and getattr(model, "temperature", 0) is None:
        return model.model_copy(update={"temperature": 0})
    return model


@dataclass(frozen=True, slots=True)
class Models:
    """The chat model of each phase."""

    planner: BaseChatModel
    executor: BaseChatModel
    adapter: BaseChatModel
    summariser: BaseChatModel


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a node needs to know for one run."""

    models: Models
    executor_model: Runnable[Any, Any]
    """The executor's model with the run's tools bound."""
    tools: dict[str, BaseTool]
    max_steps: int
    max_adaptations: int
    step_timeout: float | None
    summarise_with_model: bool
    max_tool_rounds: int
    approve_plan: bool
    model_timeout: float | None
    max_retries: int


_SCALARS = ("max_steps", "max_adaptations", "step_timeout", "summarise_with_model", "approve_plan")


class SettingsResolver:
    """Merges a run's `Context` into the factory's settings, resolving model strings once."""

    def __init__(self, defaults: Settings, model_options: Mapping[str, Any]) -> None:
        self._defaults = defaults
        self._model_options = model_options
        self._timeout = defaults.model_timeout
        # Graph-scoped caches: models are stateless, so runs may share them.
        self._models: dict[str, Models] = {}
        self._bound: dict[tuple[str | None, tuple[str, ...]], Runnable[Any, Any]] = {}

    def _models_for(self, spec: str | None) -> Models:
        if spec is None:
            return self._defaults.models
        if spec not in self._models:
            model = resolve_model(
                spec, argument="context.model", options=self._model_options, timeout=self._timeout
            )
            self._models[spec] = Models(for_planning(model), model, model, model)
        return self._models[spec]

    def _tools(self, allowed: list[str] | None) -> dict[str, BaseTool]:
        if allowed is None:
            return self._defaults.tools
        if unknown := sorted(set(allowed) - set(self._defaults.tools)):
            known = sorted(self._defaults.tools)
            raise ValueError(f"context.tools names unknown tools {unknown}; the loop has {known}")
        return {name: tool for name, tool in self._defaults.tools.items() if name in allowed}

    def _executor_model(self, spec: str | None, tools: dict[str, BaseTool]) -> Runnable[Any, Any]:
        key = (spec, tuple(tools))
        if key not in self._bound:
            self._bound[key] = with_tools(self._models_for(spec).executor, tools)
        return self._bound[key]

    def resolve(self, context: Context | None) -> Settings:
        """The settings for a run whose context is `context` (LangGraph builds it from a dict)."""
        if context is None:
            return self._defaults
        overrides: dict[str, Any] = {
            name: value for name in _SCALARS if (value := getattr(context, name)) is not None
        }
        if context.model is not None or context.tools is not None:
            tools = self._tools(context.tools)
            overrides["models"] = self._models_for(context.model)
            overrides["tools"] = tools
            overrides["executor_model"] = self._executor_model(context.model, tools)
        if not overrides:
            return self._defaults
        settings = replace(self._defaults, **overrides)
        check_limits(settings.max_steps, settings.max_adaptations, settings.step_timeout)
        return settings
