"""Parallel runs (`parallel=True`): every ready step an executor node execution of its own.

LangGraph runs the `Send`s of one superstep at once, each with its own input. A step's attempt
(or adapter call) is sent a `Branch`: the run's view, naming its step, with the records of the
steps it waits for; it writes the cursor as a sequential run's step does (its own entry of
`open`, what it spent), which steps running at once can all do. Each branch's router only
sees its own writes, so branches route to a plain `executor` execution, which LangGraph runs
once after the whole wave: its router, seeing every step, sends the next wave or ends the run.
The first wave is sent by the planner's router, unless a person is to approve the plan first
(the executor asks them); the branch that ends the plan's last step goes to the summariser
itself.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.types import Send

from agentloop_graph.context import Settings
from agentloop_graph.plans import ready_steps
from agentloop_graph.state import Branch, PlannerInput, StepInput

PUSH = "__pregel_push"
"""What LangGraph's run metadata lists as the trigger of a task it was `Send` (its
`langgraph_triggers`), as opposed to one an edge triggered."""


def was_sent(config: RunnableConfig) -> bool:
    """Whether the task whose router this is was `Send` (a branch), read from its config."""
    return PUSH in config.get("metadata", {}).get("langgraph_triggers", ())


def between_waves(state: StepInput, settings: Settings) -> dict[str, Any] | None:
    """The update of a parallel run's executor execution between two waves, or None for an
    attempt at a step (a branch, or a sequential run's execution).

    A replan is due once a step failed since the last look, replans are left and steps have
    not started; a replan replaces only steps that have not started, so it waits for the
    steps running now.
    """
    cursor = state["cursor"]
    if not cursor["max_parallel"] or "step" in state:
        return None
    failed = [record for record in state["steps"] if record["status"] == "failed"]
    if len(failed) == cursor["failed_seen"]:
        return {}
    begun = len(state["steps"]) + len(cursor["open"])
    due = (
        cursor["replans"] < settings.max_replans
        and begun < len(state["plan"])
        and cursor["stopped"] is None
    )
    reason = failed[-1]["error"] if due else None
    return {
        "cursor": {"failed_seen": len(failed), "replan_reason": cursor["replan_reason"] or reason}
    }


def wave(state: StepInput | PlannerInput) -> list[Send]:
    """The next attempt or adaptation of every open step, and the steps whose dependencies
    have all ended (at most `max_parallel` running in all).

    A spent budget starts no new step; open steps go on, to be refused their next call. A
    replan that is due starts none either.
    """
    cursor = state["cursor"]
    ended = {record["step_num"]: record for record in state["steps"]}
    running = {int(step) for step in cursor["open"]}
    starting: list[int] = []
    if (
        cursor["stopped"] is None
        and cursor["replan_reason"] is None
        and state["status"] != "cancelled"
    ):
        dependencies = state.get("dependencies", [])
        starting = ready_steps(dependencies, set(ended), running, cursor["max_parallel"])
    sends = []
    for step in sorted(running | set(starting)):
        progress = cursor["open"].get(str(step))
        node = "adapter" if progress is not None and progress["needs_adaptation"] else "executor"
        after = [ended[number] for number in state.get("dependencies", [])[step - 1]]
        branch: Branch = {
            "task_id": state["task_id"],
            "task": state["task"],
            "plan": state["plan"],
            "steps": after,
            "cursor": cursor,
            "status": None,
            "step": step,
        }
        sends.append(Send(node, branch))
    return sends


def next_wave(state: StepInput) -> list[Send] | Literal["planner", "summariser"]:
    """The next wave; the planner once a replan is due and no step is open; the summariser
    once no step is left."""
    if state["cursor"]["replan_reason"] is not None and not state["cursor"]["open"]:
        return "planner"
    return wave(state) or "summariser"


def after_branch(state: StepInput) -> Literal["executor", "summariser"]:
    """Where a branch goes once its attempt or adaptation is recorded: the executor's turn
    between waves, or the summariser at once when its step was the last of the plan to
    end. A branch's router sees only its own writes, and a step still running has no
    record: one that sees a record for every step is the only branch left."""
    return "summariser" if len(state["steps"]) == len(state["plan"]) else "executor"
