"""Per-run settings: the factory's values, overridden by the run's `Context`."""

from __future__ import annotations

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


def check_limits(max_steps: int, max_adaptations: int, step_timeout: float | None) -> None:
    """Raise `ValueError` naming the first out-of-range limit."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
    if (
        isinstance(max_adaptations, bool)
        or not isinstance(max_adaptations, int)
        or max_adaptations < 0
    ):
        raise ValueError(f"max_adaptations must be an integer >= 0, got {max_adaptations!r}")
    if step_timeout is not None and (
        isinstance(step_timeout, bool)
        or not isinstance(step_timeout, int | float)
        or step_timeout <= 0
    ):
        raise ValueError(f"step_timeout must be a number of seconds > 0, got {step_timeout!r}")


def with_tools(model: BaseChatModel, tools: dict[str, BaseTool]) -> Runnable[Any, Any]:
    """The executor's view of a model: with the run's tools bound, if any."""
    return model.bind_tools(list(tools.values())) if tools else model


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a node needs to know for one run."""

    model: BaseChatModel
    executor_model: Runnable[Any, Any]
    tools: dict[str, BaseTool]
    max_steps: int
    max_adaptations: int
    step_timeout: float | None
    summarise_with_model: bool
    max_tool_rounds: int
    approve_plan: bool


_SCALARS = ("max_steps", "max_adaptations", "step_timeout", "summarise_with_model", "approve_plan")


class SettingsResolver:
    """Merges a run's `Context` into the factory's settings, resolving model strings once."""

    def __init__(self, defaults: Settings) -> None:
        self._defaults = defaults
        # Graph-scoped caches: models are stateless, so runs may share them.
        self._models: dict[str, BaseChatModel] = {}
        self._bound: dict[tuple[str | None, tuple[str, ...]], Runnable[Any, Any]] = {}

    def _model(self, spec: str | None) -> BaseChatModel:
        if spec is None:
            return self._defaults.model
        if spec not in self._models:
            self._models[spec] = resolve_model(spec, argument="context.model")
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
            self._bound[key] = with_tools(self._model(spec), tools)
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
            overrides["model"] = self._model(context.model)
            overrides["tools"] = tools
            overrides["executor_model"] = self._executor_model(context.model, tools)
        if not overrides:
            return self._defaults
        settings = replace(self._defaults, **overrides)
        check_limits(settings.max_steps, settings.max_adaptations, settings.step_timeout)
        return settings
