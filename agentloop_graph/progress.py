"""Progress events and how they reach the graph's event streams.

Every event is a small dict with `"event"` and `"task_id"`. It is written with the run's
stream writer (read it with `graph.stream(..., stream_mode="custom")`, which yields
`(namespace, event)` tuples with `subgraphs=True` when the loop is nested) and, when the
run has callback handlers, dispatched as a LangChain custom event (`on_custom_event` in
`astream_events(version="v2")`, named after the event).
"""

from __future__ import annotations

import logging
from typing import Any, Literal, NotRequired

from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.types import StreamWriter
from typing_extensions import TypedDict

from agentloop_graph.budget import BudgetReport
from agentloop_graph.state import RunStatus, StepStatus, Usage

logger = logging.getLogger(__name__)

RESULT_PREVIEW = 200
SUMMARY_PREVIEW = 300


PlanFormat = Literal["json", "text"]


class PlanReady(TypedDict):
    event: Literal["agentic.plan_ready"]
    task_id: str
    task: str
    steps: list[str]
    total: int
    plan_format: PlanFormat
    """`json` when the model answered in the plan's JSON schema, else `text` (parsed list)."""
    dependencies: NotRequired[list[list[int]]]
    """Parallel runs: for each step, the steps it waits for."""


class PlanRevised(TypedDict):
    event: Literal["agentic.plan_revised"]
    task_id: str
    steps: list[str]
    """The whole current plan: the ended steps, then the revision."""
    total: int
    reason: str
    """The failure that caused the revision."""
    replan: int
    """1-based count of the run's replans."""
    dependencies: NotRequired[list[list[int]]]
    """Parallel runs: the whole plan's dependencies."""
    renumbered: NotRequired[dict[int, int]]
    """Parallel runs: {old: new} for the ended steps moved to the front, else {}."""


class StepStarted(TypedDict):
    event: Literal["agentic.step_started"]
    task_id: str
    step: int
    total: int
    description: str
    attempt: int


class StepFailed(TypedDict):
    event: Literal["agentic.step_failed"]
    task_id: str
    step: int
    total: int
    description: str
    error: str
    attempt: int


class StepAdapted(TypedDict):
    event: Literal["agentic.step_adapted"]
    task_id: str
    step: int
    total: int
    description: str
    error: str
    adaptation: str


class StepComplete(TypedDict):
    event: Literal["agentic.step_complete"]
    task_id: str
    step: int
    total: int
    description: str
    result: str
    status: StepStatus
    error: str | None
    """The step record's `error`: why it failed, or the failure an adaptation fixed."""
    usage: Usage


class TaskComplete(TypedDict):
    event: Literal["agentic.task_complete"]
    task_id: str
    status: RunStatus
    steps_completed: int
    summary: str
    answer: str | None
    """The final answer's first 300 characters, or None when there is none."""
    duration_ms: int
    usage: Usage
    budget: BudgetReport
    """The run's limits and what it spent."""


ProgressEvent = (
    PlanReady | PlanRevised | StepStarted | StepFailed | StepAdapted | StepComplete | TaskComplete
)


def has_handlers(config: RunnableConfig) -> bool:
    """Whether anyone listens to the run's callbacks (a tracer, `astream_events`, ...)."""
    callbacks: Any = config.get("callbacks")
    if callbacks is None:
        return False
    handlers = callbacks if isinstance(callbacks, list) else callbacks.handlers
    return bool(handlers)


def _write(writer: StreamWriter, event: ProgressEvent) -> None:
    try:
        writer(event)
    except Exception:
        logger.warning("progress writer failed for %s", event["event"], exc_info=True)


def emit(config: RunnableConfig, *events: ProgressEvent) -> None:
    """Write `events` to the custom stream and, if anyone listens, as custom events."""
    writer, listened = get_stream_writer(), has_handlers(config)
    for event in events:
        _write(writer, event)
        if listened:
            try:
                dispatch_custom_event(event["event"], event, config=config)
            except Exception:
                logger.warning("custom event dispatch failed for %s", event["event"], exc_info=True)


async def aemit(config: RunnableConfig, *events: ProgressEvent) -> None:
    """Async twin of `emit`."""
    writer, listened = get_stream_writer(), has_handlers(config)
    for event in events:
        _write(writer, event)
        if listened:
            try:
                await adispatch_custom_event(event["event"], event, config=config)
            except Exception:
                logger.warning("custom event dispatch failed for %s", event["event"], exc_info=True)
