"""The `planner` node: turns the task into a plan, and revises the steps not yet started when
a step fails (`max_replans`).

A revision keeps the ended steps first: in a sequential run they already are the plan's first
steps; in a parallel run they may not be, and are renumbered 1..k in plan order (records,
agents and dependencies follow), so the revision's step numbers refer to the whole plan it
joins.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.runtime import get_runtime
from langgraph.types import Overwrite

from agentloop_graph.budget import BudgetExhausted
from agentloop_graph.calls import ModelRequest, NodeRun, acall_model, call_model
from agentloop_graph.context import Settings, with_schema
from agentloop_graph.models import describe_error
from agentloop_graph.parsing import MAX_TEXT_CHARS, cap
from agentloop_graph.plans import kept_dependencies, plan_schema, read_plan, renumber
from agentloop_graph.progress import PlanReady, PlanRevised, ProgressEvent, aemit, emit
from agentloop_graph.prompts import planner_prompt, replanner_prompt
from agentloop_graph.state import CursorUpdate, PlannerInput, StepRecord, new_cursor

logger = logging.getLogger(__name__)


def replanning(state: PlannerInput) -> bool:
    """Whether the planner is called to revise the plan, not to make a run's first one."""
    cursor = state.get("cursor")
    if not cursor:  # empty before a thread's first run
        return False
    return cursor["replan_reason"] is not None


def _roster(settings: Settings) -> list[tuple[str, str]]:
    """The agents the planner assigns steps to, and what each does: none without a roster
    (`executor=`'s one agent does every step)."""
    if not settings.roster:
        return []
    return [(agent.name, agent.description) for agent in settings.agents]


def _plan_request(
    settings: Settings, prompt: Any, trace: dict[str, Any], parallel: bool
) -> ModelRequest:
    """A call asking for a plan, held to the plan's schema where the model can be."""
    schema = plan_schema(parallel=parallel, max_steps=settings.max_steps, agents=settings.roster)
    model = settings.models.planner
    return ModelRequest(
        "planner",
        model,
        prompt,
        trace,
        runnable=settings.models.structured("planner", schema),
        shape=lambda capped: with_schema(capped, schema) or capped,
    )


def _request(state: PlannerInput, settings: Settings) -> ModelRequest:
    if replanning(state):
        return _replan_request(state, settings)
    if settings.approve_plan and _unsaved():
        # Without a checkpointer the pause could never be resumed.
        raise ValueError(
            "approve_plan needs a checkpointer: pass checkpointer= to create_agent_loop "
            "(or nest the loop in a graph that has one) and a thread_id in the config"
        )
    prompt = planner_prompt(
        settings.prompts, state["task"], settings.max_steps, settings.parallel, _roster(settings)
    )
    return _plan_request(settings, prompt, {"task_id": uuid.uuid4().hex[:12]}, settings.parallel)


def _unsaved() -> bool:
    info = get_runtime().execution_info
    return info is None or info.thread_id is None


def _apply(
    state: PlannerInput, run: NodeRun, request: ModelRequest, reply: AIMessage | Exception
) -> tuple[dict[str, Any], list[ProgressEvent]]:
    """The update that starts the run (every output key set afresh) with its plan."""
    if replanning(state):
        return _apply_replan(state, run, reply)
    settings, task_id = run.settings, request.trace["task_id"]
    cursor = new_cursor(approved=not settings.approve_plan, started_at=run.meter.started_at)
    cursor["model_calls"], cursor["usage"] = run.model_calls, run.usage
    update: dict[str, Any] = {
        "task_id": task_id,
        "plan": [],
        "steps": Overwrite([]),
        "summary": None,
        "answer": None,
        "status": None,
        "total_duration_ms": None,
        "usage": None,
        "cursor": Overwrite(cursor),
    }
    if isinstance(reply, BudgetExhausted):  # the summary goes on to say which budget
        cursor["stopped"] = reply.spent
        return {**update, "status": "failed", "summary": f"Planning failed: {reply}"}, []
    if isinstance(reply, Exception):
        error = describe_error(settings.models.planner, reply)
        summary = f"Planning failed: {cap(error, MAX_TEXT_CHARS)}"
        return {**update, "status": "failed", "summary": summary}, []
    plan = read_plan(reply, parallel=settings.parallel, agents=settings.roster)
    if not plan.steps:
        return {**update, "status": "failed", "summary": "Planning produced no steps."}, []
    kept = plan.steps[: settings.max_steps]
    cursor["planned"], cursor["agents"] = len(plan.steps), plan.agents[: len(kept)]
    event: PlanReady = {
        "event": "agentic.plan_ready",
        "task_id": task_id,
        "task": cap(state["task"], MAX_TEXT_CHARS),
        "steps": kept,
        "total": len(kept),
        "plan_format": plan.format,
    }
    if settings.roster:
        event["agents"] = cursor["agents"]
    if settings.parallel:
        cursor["max_parallel"] = settings.max_parallel
        event["dependencies"] = update["dependencies"] = plan.dependencies[: len(kept)]
    return {**update, "plan": kept}, [event]


def _ended_first(
    state: PlannerInput,
) -> tuple[list[str], list[str | None], list[StepRecord], dict[int, int]]:
    """The plan and its agents with the ended steps first (in plan order, then the steps not
    started), their records numbered 1..k, and how they were renumbered ({} when they
    already were 1..k)."""
    plan, records, agents = state["plan"], state.get("steps", []), state["cursor"]["agents"]
    ended = {record["step_num"] for record in records}
    numbers = sorted(ended)
    order = [*numbers, *(n for n in range(1, len(plan) + 1) if n not in ended)]
    renumbered: list[StepRecord] = [
        {**record, "step_num": numbers.index(record["step_num"]) + 1}
        for record in sorted(records, key=lambda record: record["step_num"])
    ]
    reordered = [agents[n - 1] if n <= len(agents) else None for n in order]
    return [plan[n - 1] for n in order], reordered, renumbered, renumber(ended)


def _replan_request(state: PlannerInput, settings: Settings) -> ModelRequest:
    """The call that asks for the steps to replace the ones not yet started."""
    plan, _, done, _ = _ended_first(state)
    cursor = state["cursor"]
    parallel = bool(cursor["max_parallel"])
    prompt = replanner_prompt(
        settings.prompts,
        state["task"],
        plan,
        done,
        settings.max_steps - len(done),
        parallel=parallel,
        roster=_roster(settings),
    )
    trace = {"task_id": state.get("task_id"), "replan": cursor["replans"] + 1}
    return _plan_request(settings, prompt, trace, parallel)


def _apply_replan(
    state: PlannerInput, run: NodeRun, reply: AIMessage | Exception
) -> tuple[dict[str, Any], list[ProgressEvent]]:
    """The plan with the steps not yet started replaced by the model's; the old ones kept
    when the model gives none, and the run stopped when the budget refused the call."""
    cursor, settings = state["cursor"], run.settings
    parallel = bool(cursor["max_parallel"])
    update: CursorUpdate = {
        **run.counted(),
        "replans": cursor["replans"] + 1,
        "replan_reason": None,
    }
    if isinstance(reply, BudgetExhausted):
        return {"cursor": {**update, "stopped": reply.spent}}, []
    if isinstance(reply, Exception):
        error = describe_error(settings.models.planner, reply)
        logger.warning("the plan could not be revised, the run goes on with it: %s", error)
        return {"cursor": update}, []
    plan, agents, records, moved = _ended_first(state)
    new = read_plan(reply, parallel=parallel, offset=len(records), agents=settings.roster)
    if not new.steps:
        return {"cursor": update}, []
    revised = [*plan[: len(records)], *new.steps][: settings.max_steps]
    update["planned"] = len(records) + len(new.steps)
    update["agents"] = [*agents[: len(records)], *new.agents][: len(revised)]
    # A person who approved the plan approves its revision too, before it runs.
    update["approved"] = not settings.approve_plan
    event: PlanRevised = {
        "event": "agentic.plan_revised",
        "task_id": state["task_id"],
        "steps": revised,
        "total": len(revised),
        "reason": cursor["replan_reason"] or "",
        "replan": update["replans"],
    }
    if settings.roster:
        event["agents"] = update["agents"]
    writes: dict[str, Any] = {"plan": revised, "cursor": update}
    if parallel:
        ended = {record["step_num"] for record in state.get("steps", [])}
        kept = kept_dependencies(state.get("dependencies", []), ended)
        event["dependencies"] = writes["dependencies"] = [*kept, *new.dependencies][: len(revised)]
        event["renumbered"] = moved
    if moved:
        writes["steps"] = Overwrite(records)
    return writes, [event]


def plan(state: PlannerInput, run: NodeRun) -> dict[str, Any]:
    """Ask the model for a plan of at most `max_steps` steps (or a revision of one)."""
    request = _request(state, run.settings)
    update, events = _apply(state, run, request, call_model(request, run))
    emit(run, *events)
    return update


async def aplan(state: PlannerInput, run: NodeRun) -> dict[str, Any]:
    """Async twin of `plan`."""
    request = _request(state, run.settings)
    reply = await acall_model(request, run)
    update, events = _apply(state, run, request, reply)
    await aemit(run, *events)
    return update
