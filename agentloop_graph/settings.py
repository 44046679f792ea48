"""Per-run settings: the factory's values, overridden by the run's `Context`."""

from __future__ import annotations

from dataclasses import dataclass, fields
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
        >>> from agentloop_graph import Context
        >>> Context(model="demo", max_steps=3)
        Context(model='demo', max_steps=3, max_adaptations=None, step_timeout=None, \
summarise_with_model=None)
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
    """The executor's view of a model: with the loop's tools bound, if any."""
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


class SettingsResolver:
    """Merges a run's `Context` into the factory's settings, resolving model strings once."""

    def __init__(self, defaults: Settings) -> None:
        self._defaults = defaults
        self._models: dict[str, tuple[BaseChatModel, Runnable[Any, Any]]] = {}

    def _model(self, spec: str) -> tuple[BaseChatModel, Runnable[Any, Any]]:
        # Graph-scoped cache: a model object is stateless, so runs may share it.
        if spec not in self._models:
            model = resolve_model(spec, argument="context.model")
            self._models[spec] = (model, with_tools(model, self._defaults.tools))
        return self._models[spec]

    def resolve(self, context: Context | None) -> Settings:
        """The settings for a run whose context is `context` (LangGraph builds it from a dict)."""
        if context is None:
            return self._defaults
        overrides: dict[str, Any] = {
            f.name: value
            for f in fields(Context)
            if (value := getattr(context, f.name)) is not None and f.name != "model"
        }
        if context.model is not None:
            overrides["model"], overrides["executor_model"] = self._model(context.model)
        if not overrides:
            return self._defaults
        merged = {f.name: getattr(self._defaults, f.name) for f in fields(Settings)}
        merged.update(overrides)
        settings = Settings(**merged)
        check_limits(settings.max_steps, settings.max_adaptations, settings.step_timeout)
        return settings
