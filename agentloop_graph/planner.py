"""The `planner` node: turns the task into a numbered plan, and revises the steps not yet
started when a step fails (`max_replans`)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import get_runtime
from langgraph.types import Overwrite

from agentloop_graph.budget import BudgetExhausted, Meter
from agentloop_graph.calls import ModelRequest, acall_model, call_model
from agentloop_graph.context import Settings
from agentloop_graph.dependencies import (
    DEPENDENCY_PLAN_SCHEMA,
    parse_dependency_plan,
    parse_json_dependency_plan,
)
from agentloop_graph.models import describe_error, with_json_schema
from agentloop_graph.parsing import MAX_TEXT_CHARS, cap, parse_json_plan, parse_plan
from agentloop_graph.progress import PlanFormat, PlanReady, PlanRevised, ProgressEvent, aemit, emit
from agentloop_graph.prompts import PLAN_SCHEMA, planner_prompt, replanner_prompt
from agentloop_graph.state import (
    Cursor,
    PlannerInput,
    add_usage,
    new_cursor,
    new_run,
    no_spending,
)

logger = logging.getLogger(__name__)


def _unsaved() -> bool:
    info = get_runtime().execution_info
    return info is None or info.thread_id is None


def _replanning(state: PlannerInput) -> bool:
    cursor = state.get("cursor")
    return cursor is not None and cursor["replan_reason"] is not None


def _request(state: PlannerInput, settings: Settings) -> ModelRequest:
    if _replanning(state):
        return _replan_request(state, settings)
    if settings.approve_plan and _unsaved():
        # Without a checkpointer the pause could never be resumed.
        raise ValueError(
            "approve_plan needs a checkpointer: pass checkpointer= to create_agent_loop "
            "(or nest the loop in a graph that has one) and a thread_id in the config"
        )
    model = settings.models.planner
    schema = DEPENDENCY_PLAN_SCHEMA if settings.parallel else PLAN_SCHEMA
    return ModelRequest(
        with_json_schema(model, schema) or model,
        planner_prompt(settings.prompts, state["task"], settings.max_steps, settings.parallel),
        "planner",
        {"task_id": uuid.uuid4().hex[:12]},
        Meter(model_calls=0, tokens=0, started_at=time.time()),
    )


def _steps(
    request: ModelRequest, settings: Settings, reply: AIMessage
) -> tuple[list[str], PlanFormat]:
    """The steps of a plan the model wrote: in the JSON schema it was held to, else a list."""
    structured = request.model is not settings.models.planner
    steps = parse_json_plan(reply.text) if structured else None
    if steps is not None:
        return steps, "json"
    return parse_plan(reply.text), "text"


def _dependency_steps(
    request: ModelRequest, settings: Settings, reply: AIMessage
) -> tuple[list[str], list[list[int]], PlanFormat]:
    """`_steps` for a parallel run: each step with the steps it waits for."""
    structured = request.model is not settings.models.planner
    plan = parse_json_dependency_plan(reply.text) if structured else None
    if plan is not None:
        return *plan, "json"
    return *parse_dependency_plan(reply.text), "text"


def _apply(
    state: PlannerInput,
    settings: Settings,
    request: ModelRequest,
    reply: AIMessage | Exception,
) -> tuple[dict[str, Any], list[ProgressEvent]]:
    """The update that starts the run (every output key set afresh) with its plan."""
    if _replanning(state):
        return _apply_replan(state, settings, request, reply)
    task, task_id = state["task"], request.metadata["task_id"]
    cursor = new_cursor(approved=not settings.approve_plan, started_at=request.meter.started_at)
    cursor["model_calls"] = request.meter.model_calls
    update = new_run(task_id, cursor)
    if isinstance(reply, Exception):
        error = describe_error(settings.models.planner, reply)
        summary = f"Planning failed: {cap(error, MAX_TEXT_CHARS)}"
        return {**update, "status": "failed", "summary": summary}, []
    cursor["run_usage"] = add_usage(cursor["run_usage"], [reply])
    if settings.parallel:
        steps, dependencies, plan_format = _dependency_steps(request, settings, reply)
    else:
        (steps, plan_format), dependencies = _steps(request, settings, reply), []
    if not steps:
        return {**update, "status": "failed", "summary": "Planning produced no steps."}, []
    kept = steps[: settings.max_steps]
    event: PlanReady = {
        "event": "agentic.plan_ready",
        "task_id": task_id,
        "task": cap(task, MAX_TEXT_CHARS),
        "steps": kept,
        "total": len(kept),
        "plan_format": plan_format,
    }
    cursor["planned"] = len(steps)
    if not settings.parallel:
        return {**update, "plan": kept}, [event]
    cursor["max_parallel"] = settings.max_parallel
    event["dependencies"] = dependencies[: len(kept)]  # each waits only for earlier steps
    parallel = {
        "dependencies": event["dependencies"],
        "open_steps": Overwrite({}),
        "spending": Overwrite(no_spending()),
    }
    return {**update, "plan": kept, **parallel}, [event]


def _replan_request(state: PlannerInput, settings: Settings) -> ModelRequest:
    cursor, done = state["cursor"], state["steps"]
    model = settings.models.planner
    return ModelRequest(
        with_json_schema(model, PLAN_SCHEMA) or model,
        replanner_prompt(
            settings.prompts, state["task"], state["plan"], done, settings.max_steps - len(done)
        ),
        "planner",
        {"task_id": state["task_id"], "replan": cursor["replans"] + 1},
        Meter.of(cursor),
    )


def _apply_replan(
    state: PlannerInput, settings: Settings, request: ModelRequest, reply: AIMessage | Exception
) -> tuple[dict[str, Any], list[ProgressEvent]]:
    """The plan with the steps not yet started replaced by the model's; the old ones kept
    when the model gives none."""
    cursor, plan, done = state["cursor"], state["plan"], len(state["steps"])
    after: Cursor = {
        **cursor,
        "replans": cursor["replans"] + 1,
        "replan_reason": None,
        "model_calls": request.meter.model_calls,
    }
    if isinstance(reply, BudgetExhausted):
        return {"cursor": {**after, "stopped": reply.spent}}, []
    if isinstance(reply, Exception):
        error = describe_error(settings.models.planner, reply)
        logger.warning("the plan could not be revised, the run goes on with it: %s", error)
        return {"cursor": after}, []
    after["run_usage"] = add_usage(after["run_usage"], [reply])
    steps, _ = _steps(request, settings, reply)
    if not steps:
        return {"cursor": after}, []
    revised = [*plan[:done], *steps][: settings.max_steps]
    after["planned"] = done + len(steps)
    event: PlanRevised = {
        "event": "agentic.plan_revised",
        "task_id": state["task_id"],
        "steps": revised,
        "total": len(revised),
        "reason": cursor["replan_reason"] or "",
        "replan": after["replans"],
    }
    return {"plan": revised, "cursor": after}, [event]


def plan(state: PlannerInput, config: RunnableConfig, settings: Settings) -> dict[str, Any]:
    """Ask the model for a plan of at most `max_steps` steps."""
    request = _request(state, settings)
    update, events = _apply(state, settings, request, call_model(request, config, settings))
    emit(config, *events)
    return update


async def aplan(state: PlannerInput, config: RunnableConfig, settings: Settings) -> dict[str, Any]:
    """Async twin of `plan`."""
    request = _request(state, settings)
    reply = await acall_model(request, config, settings)
    update, events = _apply(state, settings, request, reply)
    await aemit(config, *events)
    return update
