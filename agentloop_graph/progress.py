"""Progress events and how they reach the graph's event streams.

Every event is a small dict with `"event"` and `"task_id"`. It is written with the run's
stream writer (read it with `graph.stream(..., stream_mode="custom")`, which yields
`(namespace, event)` tuples with `subgraphs=True` when the loop is nested) and, when the
run has callback handlers, dispatched as a LangChain custom event (`on_custom_event` in
`astream_events(version="v2")`, named after the event).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal, NotRequired

from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.messages.ai import UsageMetadata
from langgraph.config import get_stream_writer
from langgraph.types import StreamWriter
from typing_extensions import TypedDict

from agentloop_graph.budget import BudgetReport, Spending
from agentloop_graph.plans import PlanFormat
from agentloop_graph.state import RunStatus, StepStatus

if TYPE_CHECKING:
    from agentloop_graph.calls import NodeRun

logger = logging.getLogger(__name__)

RESULT_PREVIEW = 200
SUMMARY_PREVIEW = 300

EndedBy = Literal["answer", "attempts", "adapter", "budget"]
"""What ended a step: an answer (`completed`, `adapted`), its last failed attempt with no
revision left, the adapter (its call failed, or it proposed no new approach), or a budget."""


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
    agents: NotRequired[list[str | None]]
    """With a roster of agents: the agent of each step."""
    spent: NotRequired[Spending]


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
    agents: NotRequired[list[str | None]]
    """With a roster of agents: the agent of each step of the whole plan."""
    spent: NotRequired[Spending]


class StepStarted(TypedDict):
    event: Literal["agentic.step_started"]
    task_id: str
    step: int
    total: int
    description: str
    attempt: int
    agent: str | None
    spent: NotRequired[Spending]


class StepFailed(TypedDict):
    event: Literal["agentic.step_failed"]
    task_id: str
    step: int
    total: int
    description: str
    error: str
    attempt: int
    agent: str | None
    spent: NotRequired[Spending]


class StepAdapted(TypedDict):
    event: Literal["agentic.step_adapted"]
    task_id: str
    step: int
    total: int
    description: str
    error: str
    adaptation: str
    spent: NotRequired[Spending]


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
    usage: UsageMetadata
    agent: str | None
    ended_by: EndedBy
    reason: str | None
    """What ended a failed step: its last attempt's error, the adapter's, or `budget
    exhausted: <which>`; None for a step that succeeded."""
    spent: NotRequired[Spending]


class TaskComplete(TypedDict):
    event: Literal["agentic.task_complete"]
    task_id: str
    status: RunStatus
    steps_completed: int
    summary: str
    answer: str | None
    """The final answer's first 300 characters, or None when there is none."""
    duration_ms: int
    usage: UsageMetadata
    budget: BudgetReport
    """The run's limits and what it spent."""
    spent: NotRequired[Spending]


ProgressEvent = (
    PlanReady | PlanRevised | StepStarted | StepFailed | StepAdapted | StepComplete | TaskComplete
)


def _write(writer: StreamWriter, event: ProgressEvent) -> None:
    try:
        writer(event)
    except Exception:
        logger.warning("progress writer failed for %s", event["event"], exc_info=True)


def emit(run: NodeRun, *events: ProgressEvent) -> None:
    """Write `events`, each with what the run has spent so far, to the custom stream and, if
    anyone listens, as custom events."""
    writer = get_stream_writer()
    for event in events:
        event["spent"] = run.meter.spent()
        _write(writer, event)
        if run.listened:
            try:
                dispatch_custom_event(event["event"], event, config=run.config)
            except Exception:
                logger.warning("custom event dispatch failed for %s", event["event"], exc_info=True)


async def aemit(run: NodeRun, *events: ProgressEvent) -> None:
    """Async twin of `emit`."""
    writer = get_stream_writer()
    for event in events:
        event["spent"] = run.meter.spent()
        _write(writer, event)
        if run.listened:
            try:
                await adispatch_custom_event(event["event"], event, config=run.config)
            except Exception:
                logger.warning("custom event dispatch failed for %s", event["event"], exc_info=True)
