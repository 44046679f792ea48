"""State, input and output schemas of the agent loop graph."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, NotRequired, TypeVar

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, convert_to_messages
from langgraph.channels import DeltaChannel
from langgraph.graph.message import add_messages
from langgraph.types import Overwrite
from typing_extensions import TypedDict

from agentloop_graph.budget import Spent
from agentloop_graph.parsing import storable, storable_message

T = TypeVar("T")

RunStatus = Literal["completed", "partial", "failed", "cancelled"]
StepStatus = Literal["completed", "adapted", "failed"]


class Usage(TypedDict):
    """Tokens spent, from the models' usage metadata (0 where a model reports none)."""

    input_tokens: int
    output_tokens: int
    total_tokens: int


def no_usage() -> Usage:
    """Zero tokens."""
    return {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}


def add_usage(total: Usage, replies: Sequence[AIMessage]) -> Usage:
    """`total` plus the usage the `replies` report."""
    spent = total
    for reply in replies:
        if meta := reply.usage_metadata:
            spent = {
                "input_tokens": spent["input_tokens"] + meta["input_tokens"],
                "output_tokens": spent["output_tokens"] + meta["output_tokens"],
                "total_tokens": spent["total_tokens"] + meta["total_tokens"],
            }
    return spent


def combined(usage: Usage, more: Usage, sign: int = 1) -> Usage:
    """`usage` plus `more` (minus, with `sign=-1`)."""
    return {
        "input_tokens": usage["input_tokens"] + sign * more["input_tokens"],
        "output_tokens": usage["output_tokens"] + sign * more["output_tokens"],
        "total_tokens": usage["total_tokens"] + sign * more["total_tokens"],
    }


def append_steps(steps: list[StepRecord], writes: Sequence[list[StepRecord]]) -> list[StepRecord]:
    """Reducer of `steps`: each write appends records (reset with `Overwrite([])`)."""
    return [*steps, *(record for write in writes for record in write)]


def latest(value: T, writes: Sequence[T]) -> T:
    """Reducer of `task` and `plan`: the latest write replaces the value."""
    return writes[-1] if writes else value


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
    usage: Usage
    """Tokens of every model call of the step, adapter calls included."""


class OpenStep(TypedDict):
    """Progress on the open step: reset when the step ends."""

    attempt: int
    """Executor attempts made so far for the open step."""
    step_started_at: float | None
    """Epoch seconds when the open step's first attempt began."""
    description: str | None
    """Revised text to attempt next for the open step, or None for the planned text."""
    error: str | None
    """The open step's last failure, or None."""
    first_error: str | None
    """The open step's first failure, or None: the root cause, kept when later attempts
    fail differently."""
    revisions: list[str]
    """The revised step texts the adapter proposed for the open step."""
    needs_adaptation: bool
    """The last attempt failed and the adapter may still revise the step."""
    step_usage: Usage
    """Tokens spent on the open step so far."""


class Cursor(OpenStep):
    """Where the run is: the open step's attempts and the run's bookkeeping."""

    started_at: float
    """Epoch seconds when planning began."""
    planned: int
    """Steps in the plan before it was cut to `max_steps`."""
    approved: bool
    """Whether the plan may run: approved by a person, or no approval asked."""
    run_usage: Usage
    """Tokens spent by the run so far."""
    model_calls: int
    """Model calls the run has made so far (each retry counts)."""
    stopped: Spent | None
    """The budget that stopped the run, or None."""
    replans: int
    """Replans made so far (`max_replans` bounds them)."""
    replan_reason: str | None
    """The failure of the step that just ended, while the planner is to revise the steps
    not yet started; None otherwise."""
    max_parallel: int
    """Steps that may run at once in a parallel run (`parallel=True`), 0 in a sequential one:
    fixed when the plan is made."""
    failed_seen: int
    """Parallel runs: failed steps already weighed for a replan."""


class Spending(TypedDict):
    """What the steps of a parallel run have spent beyond the cursor's counts: each step
    adds its own, as steps running at once cannot all write the cursor."""

    model_calls: int
    usage: Usage
    stopped: Spent | None
    """The budget a step found spent, or None."""


def no_spending() -> Spending:
    """Nothing spent."""
    return {"model_calls": 0, "usage": no_usage(), "stopped": None}


def add_spending(total: Spending, more: Spending) -> Spending:
    """Reducer of `spending`: counts add up; the first spent budget stays."""
    start: Spending = {**no_spending(), **total}  # LangGraph starts the channel as {}
    return {
        "model_calls": start["model_calls"] + more["model_calls"],
        "usage": combined(start["usage"], more["usage"]),
        "stopped": start["stopped"] or more["stopped"],
    }


def merge_open_steps(
    steps: dict[str, OpenStep], more: dict[str, OpenStep | None]
) -> dict[str, OpenStep]:
    """Reducer of `open_steps`: each step writes its own entry, None once it has ended."""
    merged = {**steps, **more}
    return {step: entry for step, entry in merged.items() if entry is not None}


Task = Annotated[str, DeltaChannel(latest)]
"""Stored as deltas: a checkpoint does not copy the task again, however long it is."""
Plan = Annotated[list[str], DeltaChannel(latest)]
"""Stored as deltas: a checkpoint does not copy the plan again."""
Steps = Annotated[list["StepRecord"], DeltaChannel(append_steps)]
"""Stored as deltas: a checkpoint does not rewrite every earlier step."""


class InputState(TypedDict):
    """What callers pass in: a task, or messages whose last human message is the task."""

    task: NotRequired[Task]
    """The task to plan and execute."""
    messages: NotRequired[Annotated[list[AnyMessage], add_messages]]
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
    usage: Usage | None
    """Tokens of every model call of the run."""
    messages: Annotated[list[AnyMessage], add_messages]
    """Input messages with an AI message carrying the answer or summary appended."""
    dependencies: NotRequired[list[list[int]]]
    """Parallel runs: for each planned step, the steps it waits for (1-based)."""


class AgentLoopState(OutputState):
    """The graph's full state: the output keys plus the run's cursor."""

    cursor: NotRequired[Cursor]
    """Progress through the plan, written by the planner; internal to the loop."""
    open_steps: NotRequired[Annotated[dict[str, OpenStep], merge_open_steps]]
    """Parallel runs: the steps begun and not ended, by step number."""
    spending: NotRequired[Annotated[Spending, add_spending]]
    """Parallel runs: what the steps have spent."""


# What each node reads (its router reads the same). A node reads only these channels,
# not the whole state: every channel read costs on every node execution.


class PlannerInput(TypedDict):
    """The planner's view (and, for its router, the plan it wrote and, in a parallel run,
    what its first wave needs); the run so far when it revises the plan."""

    task: Task
    plan: Plan
    task_id: NotRequired[str]
    steps: NotRequired[Steps]
    cursor: NotRequired[Cursor]
    status: NotRequired[RunStatus | None]
    dependencies: NotRequired[list[list[int]]]
    open_steps: NotRequired[dict[str, OpenStep]]
    spending: NotRequired[Spending]


class StepInput(TypedDict):
    """The executor's and the adapter's view (and their routers'). In a parallel run a
    step's attempt gets a `Branch` instead."""

    task_id: str
    task: Task
    plan: Plan
    steps: Steps
    cursor: Cursor
    status: RunStatus | None
    dependencies: NotRequired[list[list[int]]]
    open_steps: NotRequired[dict[str, OpenStep]]
    spending: NotRequired[Spending]


class Branch(StepInput):
    """One step of a parallel run, as LangGraph `Send`s it to the executor or adapter: the
    step's own progress in `cursor`, the run's counts brought up to date, `steps` empty."""

    step: int
    after: list[StepRecord]
    """The records of the steps it waits for."""


class SummariserInput(StepInput):
    """The summariser's view: also the summary planning may have settled."""

    summary: str | None


def new_run(task_id: str, cursor: Cursor) -> dict[str, Any]:
    """The update that starts a run: every output key but the input's `task` set afresh
    (so a new task on a thread starts from a clean slate), the plan empty until one is
    made."""
    return {
        "task_id": task_id,
        "plan": [],
        "steps": Overwrite([]),
        "summary": None,
        "answer": None,
        "status": None,
        "total_duration_ms": None,
        "usage": None,
        "cursor": cursor,
    }


def no_open_step() -> OpenStep:
    """An open step before its first attempt."""
    return {
        "attempt": 0,
        "step_started_at": None,
        "description": None,
        "error": None,
        "first_error": None,
        "revisions": [],
        "needs_adaptation": False,
        "step_usage": no_usage(),
    }


def new_cursor(*, approved: bool, started_at: float) -> Cursor:
    """The cursor of a new run, before its first step."""
    return {
        **no_open_step(),
        "started_at": started_at,
        "planned": 0,
        "approved": approved,
        "run_usage": no_usage(),
        "model_calls": 0,
        "stopped": None,
        "replans": 0,
        "replan_reason": None,
        "max_parallel": 0,
        "failed_seen": 0,
    }


def next_cursor(cursor: Cursor) -> Cursor:
    """The cursor for the step after the one `cursor` was on."""
    return {**cursor, **no_open_step()}


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
        cleaned["messages"] = [storable_message(m) for m in convert_to_messages(messages)]
    return cleaned
