"""The `planner` node: turns the task into a numbered plan, and revises the steps not yet
started when a step fails (`max_replans`)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import get_runtime
from langgraph.types import Overwrite

from agentloop_graph.budget import Meter
from agentloop_graph.calls import ModelRequest, acall_model, call_model
from agentloop_graph.context import Settings
from agentloop_graph.dependencies import dependency_plan_schema, read_plan
from agentloop_graph.models import describe_error, with_json_schema
from agentloop_graph.parsing import MAX_TEXT_CHARS, cap
from agentloop_graph.progress import PlanReady, ProgressEvent, aemit, emit
from agentloop_graph.prompts import PLAN_SCHEMA, planner_prompt
from agentloop_graph.replanner import apply_replan, replan_request, replanning
from agentloop_graph.state import (
    PlannerInput,
    add_usage,
    new_cursor,
    new_run,
    no_spending,
)


def _unsaved() -> bool:
    info = get_runtime().execution_info
    return info is None or info.thread_id is None


def _request(state: PlannerInput, settings: Settings) -> ModelRequest:
    if replanning(state):
        return replan_request(state, settings)
    if settings.approve_plan and _unsaved():
        # Without a checkpointer the pause could never be resumed.
        raise ValueError(
            "approve_plan needs a checkpointer: pass checkpointer= to create_agent_loop "
            "(or nest the loop in a graph that has one) and a thread_id in the config"
        )
    model = settings.models.planner
    schema = dependency_plan_schema(settings.max_steps) if settings.parallel else PLAN_SCHEMA
    return ModelRequest(
        with_json_schema(model, schema) or model,
        planner_prompt(settings.prompts, state["task"], settings.max_steps, settings.parallel),
        "planner",
        {"task_id": uuid.uuid4().hex[:12]},
        Meter(model_calls=0, tokens=0, started_at=time.time()),
    )


def _apply(
    state: PlannerInput,
    settings: Settings,
    request: ModelRequest,
    reply: AIMessage | Exception,
) -> tuple[dict[str, Any], list[ProgressEvent]]:
    """The update that starts the run (every output key set afresh) with its plan."""
    if replanning(state):
        return apply_replan(state, settings, request, reply)
    task, task_id = state["task"], request.metadata["task_id"]
    cursor = new_cursor(approved=not settings.approve_plan, started_at=request.meter.started_at)
    cursor["model_calls"] = request.meter.model_calls
    update = new_run(task_id, cursor)
    if isinstance(reply, Exception):
        error = describe_error(settings.models.planner, reply)
        summary = f"Planning failed: {cap(error, MAX_TEXT_CHARS)}"
        return {**update, "status": "failed", "summary": summary}, []
    cursor["run_usage"] = add_usage(cursor["run_usage"], [reply])
    structured = request.model is not settings.models.planner
    steps, dependencies, plan_format = read_plan(
        reply.text, structured=structured, parallel=settings.parallel
    )
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
