"""State, input and output schemas of the agent loop graph.

A run's progress is one `Cursor`: the run's bookkeeping, its spending, and the progress of each
step begun and not ended (`open`, keyed by step number: one entry at most in a sequential run,
one per running step in a parallel one). Nodes write it as `CursorUpdate`s that its reducer
folds in, so steps running at once can all write it in one superstep.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, NotRequired, TypeVar, cast

from langchain_core.messages import (
    AnyMessage,
    BaseMessage,
    HumanMessage,
    convert_to_messages,
)
from langchain_core.messages.ai import UsageMetadata, add_usage
from langgraph.channels import DeltaChannel
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from agentloop_graph.budget import Spent
from agentloop_graph.parsing import storable, storable_message

T = TypeVar("T")

RunStatus = Literal["completed", "partial", "failed", "cancelled"]
StepStatus = Literal["completed", "adapted", "failed"]


class StepRecord(TypedDict):
    """What happened to one planned step."""

    step_num: int
    """1-based position of the step in the plan."""
    description: str
    """The step as planned."""
    result: str
    """The executor's answer for the step; empty when the step failed."""
    status: StepStatus
    """`completed`, `adapted` (a revised step succeeded) or `failed`."""
    duration_ms: int
    """Wall time from the step's first attempt to its end, adaptations included."""
    started_ms: int
    """When the step's first attempt began, in ms since planning began (steps of a parallel
    run overlap)."""
    attempts: int
    """Executor attempts made for the step."""
    error: str | None
    """Text of the step's last failure, or None."""
    adaptation: str | None
    """The revised step text the adapter proposed, or None."""
    reasoning: str | None
    """What a reasoning model thought before its answer (`<think>` blocks or reasoning
    content), kept out of `result`; None when it said nothing of the kind."""
    usage: UsageMetadata
    """Tokens of every model call of the step, adapter calls included."""
    agent: str | None
    """The agent that did the step (`executor=`/`executors=`); None for the built-in one."""


class StepProgress(TypedDict):
    """A step begun and not yet ended."""

    attempt: int
    """Executor attempts made so far."""
    started_at: float
    """Epoch seconds when its first attempt began."""
    description: str | None
    """Revised text to attempt next, or None for the planned text."""
    error: str | None
    """The last failure, or None."""
    first_error: str | None
    """The first failure: the root cause, kept when later attempts fail differently."""
    revisions: list[str]
    """The revised step texts the adapter proposed."""
    needs_adaptation: bool
    """The last attempt failed and the adapter may still revise the step."""
    usage: UsageMetadata
    """Tokens spent on the step so far."""


class Cursor(TypedDict):
    """Where the run is: its bookkeeping, its spending and its open steps."""

    started_at: float
    """Epoch seconds when planning began."""
    planned: int
    """Steps in the plan before it was cut to `max_steps`."""
    approved: bool
    """Whether the current plan may run: approved by a person, or no approval asked."""
    max_parallel: int
    """Steps that may run at once in a parallel run, 0 in a sequential one (fixed when the
    plan is made)."""
    agents: list[str | None]
    """The agent of each planned step (None: the built-in executor)."""
    replans: int
    """Replans made so far (`max_replans` bounds them)."""
    replan_reason: str | None
    """The failure that calls for a replan, while the planner is to revise the steps not yet
    started; None otherwise."""
    failed_seen: int
    """Parallel runs: failed steps already weighed for a replan."""
    stopped: Spent | None
    """The budget that stopped the run, or None."""
    model_calls: int
    """Model calls the run has made (each retry counts)."""
    usage: UsageMetadata
    """Tokens the run has spent."""
    open: dict[str, StepProgress]
    """The steps begun and not ended, by step number."""


class CursorUpdate(TypedDict, total=False):
    """What a node writes to the cursor: `model_calls` and `usage` are added to the run's,
    `open` entries replace the steps' (None: the step ended), the first `stopped` stays, and
    every other field replaces the cursor's."""

    approved: bool
    planned: int
    agents: list[str | None]
    replans: int
    replan_reason: str | None
    failed_seen: int
    stopped: Spent | None
    model_calls: int
    usage: UsageMetadata
    open: dict[str, StepProgress | None]


def advance(cursor: Cursor | None, update: CursorUpdate) -> Cursor:
    """Reducer of `cursor`: fold one node's update into it (a new run's cursor is written with
    `Overwrite`)."""
    if not cursor:  # LangGraph starts the channel empty
        return cast(Cursor, update)
    merged: dict[str, Any] = {**cursor, **update}
    if "model_calls" in update:
        merged["model_calls"] = cursor["model_calls"] + update["model_calls"]
    if "usage" in update:
        merged["usage"] = add_usage(cursor["usage"], update["usage"])
    if "stopped" in update:
        merged["stopped"] = cursor["stopped"] or update["stopped"]
    if "open" in update:
        steps = {**cursor["open"], **update["open"]}
        merged["open"] = {step: entry for step, entry in steps.items() if entry is not None}
    return cast(Cursor, merged)


def append_steps(steps: list[StepRecord], writes: Sequence[list[StepRecord]]) -> list[StepRecord]:
    """Reducer of `steps`: each write appends records (reset with `Overwrite([])`)."""
    return [*steps, *(record for write in writes for record in write)]


def latest(value: T, writes: Sequence[T]) -> T:
    """Reducer of `task` and `plan`: the latest write replaces the value."""
    return writes[-1] if writes else value


def append_messages(messages: list[AnyMessage], writes: Sequence[Any]) -> list[AnyMessage]:
    """Reducer of `messages`: `add_messages`, write by write (every message written has an
    id, so replaying the writes gives the same list)."""
    for write in writes:
        messages = cast(list[AnyMessage], add_messages(cast(Any, messages), write))
    return messages


Task = Annotated[str, DeltaChannel(latest)]
"""Stored as deltas: a checkpoint does not copy the task again, however long it is."""
Plan = Annotated[list[str], DeltaChannel(latest)]
"""Stored as deltas: a checkpoint does not copy the plan again."""
Steps = Annotated[list["StepRecord"], DeltaChannel(append_steps)]
"""Stored as deltas: a checkpoint does not rewrite every earlier step."""
Messages = Annotated[list[AnyMessage], DeltaChannel(append_messages)]
"""Stored as deltas: a reused thread's checkpoints do not copy its whole history again."""


class InputState(TypedDict):
    """What callers pass in: a task, or messages whose last human message is the task."""

    task: NotRequired[Task]
    """The task to plan and execute."""
    messages: NotRequired[Messages]
    """Conversation; its last human message is the task when `task` is not given."""


class OutputState(TypedDict):
    """What every run returns; every key is always present (`dependencies` in every run of
    a parallel loop)."""

    task_id: str
    """Short id of the run, also carried by every progress event."""
    task: Task
    """The task that was run."""
    plan: Plan
    """The planned steps, after truncation to `max_steps`."""
    steps: Steps
    """One record per finished step, in plan order."""
    summary: str | None
    """Counts line, or the planning failure."""
    answer: str | None
    """The model-written final answer, or None."""
    status: RunStatus | None
    """`completed`, `partial`, `failed`, or `cancelled` (plan rejected at approval)."""
    total_duration_ms: int | None
    """Wall time of the whole run."""
    usage: UsageMetadata | None
    """Tokens of every model call of the run."""
    messages: Messages
    """Input messages with an AI message carrying the answer or summary appended."""
    dependencies: NotRequired[list[list[int]]]
    """Parallel runs: for each planned step, the steps it waits for (1-based)."""


class AgentLoopState(OutputState):
    """The graph's full state: the output keys plus the run's cursor."""

    cursor: NotRequired[Annotated[Cursor, advance]]
    """Progress through the plan, started by the planner; internal to the loop."""


class TypedOutputState(OutputState):
    """What every run of a loop with `response_format` returns."""

    structured_response: Any
    """The final answer in the `response_format` shape, or None."""


class TypedAgentLoopState(AgentLoopState):
    """The full state of a loop with `response_format`."""

    structured_response: Any


# What each node reads (its router reads the same). A node reads only these channels, not
# the whole state: every channel read costs on every node execution.


class PlannerInput(TypedDict):
    """The planner's view (and its router's: the plan it wrote, what a first wave needs); the
    run so far when it revises the plan."""

    task: Task
    plan: Plan
    task_id: NotRequired[str]
    steps: NotRequired[Steps]
    cursor: NotRequired[Cursor]
    status: NotRequired[RunStatus | None]
    dependencies: NotRequired[list[list[int]]]


class StepInput(TypedDict):
    """The executor's and the adapter's view (and their routers'); a step of a parallel run
    gets a `Branch` instead."""

    task_id: str
    task: Task
    plan: Plan
    steps: Steps
    cursor: Cursor
    status: RunStatus | None
    dependencies: NotRequired[list[list[int]]]


class Branch(StepInput):
    """One step of a parallel run, as LangGraph `Send`s it to the executor or adapter: the
    run's view, `steps` holding the records of the steps it waits for."""

    step: int


class SummariserInput(StepInput):
    """The summariser's view: also the summary planning may have settled."""

    summary: str | None


def no_usage() -> UsageMetadata:
    """Zero tokens."""
    return {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}


def new_cursor(*, approved: bool, started_at: float) -> Cursor:
    """The cursor of a new run, before its plan."""
    return {
        "started_at": started_at,
        "planned": 0,
        "approved": approved,
        "max_parallel": 0,
        "agents": [],
        "replans": 0,
        "replan_reason": None,
        "failed_seen": 0,
        "stopped": None,
        "model_calls": 0,
        "usage": no_usage(),
        "open": {},
    }


def open_step(state: StepInput) -> int:
    """The 1-based number of the step a node works on: the one a parallel run's `Branch`
    names, else the one after the ended ones."""
    step = cast("Mapping[str, Any]", state).get("step")  # a string: no typing at run time
    return int(step) if step else len(state["steps"]) + 1


def progress_of(state: StepInput, started_at: float) -> StepProgress:
    """The open step's progress (a fresh one before its first attempt)."""
    found = state["cursor"]["open"].get(str(open_step(state)))
    if found is not None:
        return found
    return {
        "attempt": 0,
        "started_at": started_at,
        "description": None,
        "error": None,
        "first_error": None,
        "revisions": [],
        "needs_adaptation": False,
        "usage": no_usage(),
    }


def with_id(message: BaseMessage) -> BaseMessage:
    """`message` with an id, so that replaying the writes of `messages` gives the same list."""
    return message if message.id else message.model_copy(update={"id": str(uuid.uuid4())})


def loop_input(value: object) -> dict[str, Any]:
    """The input of a new run with its task made explicit: the input's `task`, else the
    text of its last human message.

    Raises:
        ValueError: The input is not a mapping (or state object), or names no task, or
            its task is not a string or is blank.
    """
    if isinstance(value, Mapping):
        fields = dict(value)
    elif hasattr(value, "__dict__"):  # a parent graph's dataclass or pydantic state
        fields = dict(vars(value))
    else:
        raise ValueError(
            'the input must be {"task": "..."} or {"messages": [...]}, '
            f"got {type(value).__name__}"
        )
    task = fields.get("task")
    messages = fields.get("messages")
    if task is None and messages:
        try:
            humans = [m for m in convert_to_messages(messages) if isinstance(m, HumanMessage)]
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise ValueError(f"messages in the input are not chat messages: {exc}") from None
        task = humans[-1].text if humans else None
    if task is None:
        raise ValueError('task is missing: pass {"task": "..."} or a human message')
    if not isinstance(task, str):
        raise ValueError(f"task must be a string, got {type(task).__name__}")
    if not task.strip():
        raise ValueError("task is empty: describe what the loop should do")
    cleaned: dict[str, Any] = {"task": storable(task.strip())}
    if messages:
        cleaned["messages"] = [with_id(storable_message(m)) for m in convert_to_messages(messages)]
    return cleaned
