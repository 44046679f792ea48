"""Replanning (`max_replans`): the `planner` node, called again after a step failed, replaces
the steps not yet started, given how the others ended.

The ended steps come first in the revised plan: in a sequential run they already are its first
steps; in a parallel run they may not be, and are renumbered 1..k in plan order (records and
dependencies follow), so the revision's step numbers refer to the whole plan it joins.
"""

from __future__ import annotations

import logging
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.types import Overwrite

from agentloop_graph.budget import BudgetExhausted, Meter
from agentloop_graph.calls import ModelRequest
from agentloop_graph.context import Settings
from agentloop_graph.dependencies import (
    dependency_plan_schema,
    kept_dependencies,
    read_plan,
    renumber,
)
from agentloop_graph.models import describe_error, with_json_schema
from agentloop_graph.parallel import settled
from agentloop_graph.progress import PlanRevised, ProgressEvent
from agentloop_graph.prompts import PLAN_SCHEMA, replanner_prompt
from agentloop_graph.state import Cursor, PlannerInput, StepRecord, add_usage, no_spending

logger = logging.getLogger(__name__)


def replanning(state: PlannerInput) -> bool:
    """Whether the planner is called to revise the plan, not to make a run's first one."""
    cursor = state.get("cursor")
    return cursor is not None and cursor["replan_reason"] is not None


def _ended_first(state: PlannerInput) -> tuple[list[str], list[StepRecord], dict[int, int]]:
    """The plan with its ended steps first (in plan order, then the steps not started), their
    records numbered 1..k, and how they were renumbered ({} when they already were 1..k)."""
    plan, records = state["plan"], state.get("steps", [])
    ended = {record["step_num"] for record in records}
    moved = renumber(ended)
    numbers = sorted(ended)
    order = [*numbers, *(n for n in range(1, len(plan) + 1) if n not in ended)]
    renumbered: list[StepRecord] = [
        {**record, "step_num": numbers.index(record["step_num"]) + 1}
        for record in sorted(records, key=lambda record: record["step_num"])
    ]
    return [plan[n - 1] for n in order], renumbered, moved


def replan_request(state: PlannerInput, settings: Settings) -> ModelRequest:
    """The call that asks for the steps to replace the ones not yet started."""
    plan, done, _ = _ended_first(state)
    model = settings.models.planner
    parallel = bool(state["cursor"]["max_parallel"])
    schema = dependency_plan_schema(settings.max_steps) if parallel else PLAN_SCHEMA
    prompt = replanner_prompt(
        settings.prompts,
        state["task"],
        plan,
        done,
        settings.max_steps - len(done),
        parallel=parallel,
    )
    cursor = settled(state)
    return ModelRequest(
        with_json_schema(model, schema) or model,
        prompt,
        "planner",
        {"task_id": state["task_id"], "replan": cursor["replans"] + 1},
        Meter.of(cursor),
    )


def apply_replan(
    state: PlannerInput, settings: Settings, request: ModelRequest, reply: AIMessage | Exception
) -> tuple[dict[str, Any], list[ProgressEvent]]:
    """The plan with the steps not yet started replaced by the model's; the old ones kept
    when the model gives none, and the run stopped when the budget refused the call."""
    cursor = settled(state)
    parallel = bool(cursor["max_parallel"])
    after: Cursor = {
        **cursor,
        "replans": cursor["replans"] + 1,
        "replan_reason": None,
        "model_calls": request.meter.model_calls,
    }
    # The steps' spending is now in the cursor: start their count afresh.
    update: dict[str, Any] = {"spending": Overwrite(no_spending())} if parallel else {}
    if isinstance(reply, BudgetExhausted):
        return {**update, "cursor": {**after, "stopped": reply.spent}}, []
    if isinstance(reply, Exception):
        error = describe_error(settings.models.planner, reply)
        logger.warning("the plan could not be revised, the run goes on with it: %s", error)
        return {**update, "cursor": after}, []
    after["run_usage"] = add_usage(after["run_usage"], [reply])
    plan, records, moved = _ended_first(state)
    structured = request.model is not settings.models.planner
    steps, dependencies, _ = read_plan(
        reply.text, structured=structured, parallel=parallel, offset=len(records)
    )
    if not steps:
        return {**update, "cursor": after}, []
    revised = [*plan[: len(records)], *steps][: settings.max_steps]
    after["planned"] = len(records) + len(steps)
    event: PlanRevised = {
        "event": "agentic.plan_revised",
        "task_id": state["task_id"],
        "steps": revised,
        "total": len(revised),
        "reason": cursor["replan_reason"] or "",
        "replan": after["replans"],
    }
    update |= {"plan": revised, "cursor": after}
    if parallel:
        ended = {record["step_num"] for record in state.get("steps", [])}
        kept = kept_dependencies(state.get("dependencies", []), ended)
        event["dependencies"] = [*kept, *dependencies][: len(revised)]
        event["renumbered"] = moved
        update["dependencies"] = event["dependencies"]
    if moved:
        update["steps"] = Overwrite(records)
    return update, [event]
