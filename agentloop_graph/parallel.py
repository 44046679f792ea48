"""Parallel runs (`parallel=True`): every ready step an executor node execution of its own.

LangGraph runs the `Send`s of one superstep at once, each with its own input. A step's attempt
(or adapter call) is sent a `Branch`: the step's progress and the run's counts, shaped as a
sequential run's cursor holds them, so the executor and adapter treat it as the open step.
Its update is then turned into writes that steps running at once can all make
(`open_steps`, `spending`). Each branch's router only sees its own writes, so branches route
to a plain `executor` execution, which LangGraph runs once after the whole wave: its router,
seeing every step, sends the next wave or ends the run. The first wave is sent by the
planner's router, unless a person is to approve the plan first (the executor asks them);
the branch that ends the plan's last step goes to the summariser itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.types import Send

from agentloop_graph.dependencies import ready_steps
from agentloop_graph.state import (
    Branch,
    Cursor,
    OpenStep,
    PlannerInput,
    Spending,
    StepInput,
    StepRecord,
    combined,
    no_open_step,
)
from agentloop_graph.steps import open_step

PUSH = "__pregel_push"
"""What LangGraph's run metadata lists as the trigger of a task it was `Send` (its
`langgraph_triggers`), as opposed to one an edge triggered."""


def is_branch(state: Mapping[str, Any]) -> bool:
    """Whether a node's input is one step of a parallel run."""
    return "step" in state


def waited_for(state: Mapping[str, Any]) -> list[StepRecord] | None:
    """A branch's records of the steps it waits for; None outside a parallel run."""
    after: list[StepRecord] | None = state.get("after")
    return after


def was_sent(config: RunnableConfig) -> bool:
    """Whether the task whose router this is was `Send` (a branch), read from its config."""
    return PUSH in config.get("metadata", {}).get("langgraph_triggers", ())


def settled(state: StepInput | PlannerInput) -> Cursor:
    """The run's cursor with what the steps of a parallel run spent added to its counts."""
    cursor, spending = state["cursor"], state.get("spending")
    if not cursor["max_parallel"] or not spending:  # a sequential run spends in its cursor
        return cursor
    return {
        **cursor,
        "model_calls": cursor["model_calls"] + spending["model_calls"],
        "run_usage": combined(cursor["run_usage"], spending["usage"]),
        "stopped": cursor["stopped"] or spending["stopped"],
    }


def _branch(
    state: StepInput | PlannerInput,
    step: int,
    progress: OpenStep,
    cursor: Cursor,
    ended: dict[int, StepRecord],
) -> Send:
    node = "adapter" if progress["needs_adaptation"] else "executor"
    after = [ended[number] for number in state.get("dependencies", [])[step - 1]]
    branch: Branch = {
        "task_id": state["task_id"],
        "task": state["task"],
        "plan": state["plan"],
        "steps": [],
        "cursor": {**cursor, **progress},
        "status": None,
        "step": step,
        "after": after,
    }
    return Send(node, branch)


def replan_due(state: StepInput, max_replans: int) -> dict[str, Any]:
    """The update that has a parallel run replanned once no step is running: a step failed
    since the last look, replans are left and steps have not started. A replan replaces
    only steps that have not started, so it waits for the steps running now."""
    cursor = state["cursor"]
    failed = [record for record in state["steps"] if record["status"] == "failed"]
    if len(failed) == cursor["failed_seen"]:
        return {}
    begun = len(state["steps"]) + len(state.get("open_steps") or {})
    due = (
        cursor["replans"] < max_replans
        and begun < len(state["plan"])
        and settled(state)["stopped"] is None
    )
    reason = failed[-1]["error"] if due else None
    return {
        "cursor": {
            **cursor,
            "failed_seen": len(failed),
            "replan_reason": cursor["replan_reason"] or reason,
        }
    }


def wave(state: StepInput | PlannerInput) -> list[Send]:
    """The next attempt or adaptation of every open step, and the steps whose dependencies
    have all ended (at most `max_parallel` running in all).

    A spent budget starts no new step; open steps go on, to be refused their next call. A
    replan that is due starts none either.
    """
    cursor = settled(state)
    ended = {record["step_num"]: record for record in state["steps"]}
    open_steps = {int(step): progress for step, progress in (state.get("open_steps") or {}).items()}
    starting: list[int] = []
    may_start = cursor["stopped"] is None and cursor["replan_reason"] is None
    if may_start and state["status"] != "cancelled":
        dependencies = state.get("dependencies", [])
        starting = ready_steps(dependencies, set(ended), set(open_steps), cursor["max_parallel"])
    due = {**open_steps, **{step: no_open_step() for step in starting}}
    return [_branch(state, step, due[step], cursor, ended) for step in sorted(due)]


def next_wave(state: StepInput) -> list[Send] | Literal["planner", "summariser"]:
    """The next wave; the planner once a replan is due and no step is open; the summariser
    once no step is left."""
    if state["cursor"]["replan_reason"] is not None and not state.get("open_steps"):
        return "planner"
    return wave(state) or "summariser"


def after_branch(state: StepInput) -> Literal["executor", "summariser"]:
    """Where a branch goes once its attempt or adaptation is recorded: the executor's turn
    between waves, or the summariser at once when its step was the last of the plan to
    end. A branch's router sees only its own writes, and a step still running has no
    record: one that sees a record for every step is the only branch left."""
    return "summariser" if len(state["steps"]) == len(state["plan"]) else "executor"


def open_step_of(cursor: Cursor) -> OpenStep:
    """The open step's progress a cursor holds."""
    return {
        "attempt": cursor["attempt"],
        "step_started_at": cursor["step_started_at"],
        "description": cursor["description"],
        "error": cursor["error"],
        "first_error": cursor["first_error"],
        "revisions": cursor["revisions"],
        "needs_adaptation": cursor["needs_adaptation"],
        "step_usage": cursor["step_usage"],
    }


def recorded(state: StepInput, update: dict[str, Any]) -> dict[str, Any]:
    """The writes of the executor's or adapter's `update`, made as for the open step: as is,
    or, for a branch, its step's progress (None once it ended) and what it spent, instead of
    a whole cursor."""
    if not is_branch(state):
        return update
    before: Cursor = state["cursor"]
    after: Cursor = update["cursor"]
    spent: Spending = {
        "model_calls": after["model_calls"] - before["model_calls"],
        "usage": combined(after["run_usage"], before["run_usage"], sign=-1),
        "stopped": after["stopped"] if before["stopped"] is None else None,
    }
    progress = None if "steps" in update else open_step_of(after)
    writes = {key: value for key, value in update.items() if key != "cursor"}
    return {**writes, "open_steps": {str(open_step(state)): progress}, "spending": spent}
