"""The `planner` node: turns the task into a numbered plan."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

from agentloop_graph.models import describe_error, with_json_schema
from agentloop_graph.node import Body, CallModel, Emit
from agentloop_graph.parsing import MAX_TEXT_CHARS, cap, parse_json_plan, parse_plan
from agentloop_graph.progress import PlanFormat
from agentloop_graph.prompts import PLAN_SCHEMA, planner_prompt
from agentloop_graph.settings import Settings
from agentloop_graph.state import Cursor, PlannerInput, add_usage, new_cursor, new_run


def _last_human_text(messages: Sequence[AnyMessage]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    return None


def task_of(state: PlannerInput) -> str:
    """The task of a new run: the input's `task`, else its last human message.

    On a thread that already ran a task, `task` still holds that task; a newer human
    message then means the caller asked for something new.

    Raises:
        ValueError: the task is missing, not a string, or blank.
    """
    task: object = state.get("task")
    previous: Cursor | None = state.get("cursor")
    messages = state.get("messages") or []
    stale = previous is not None and task == previous["task"]
    if task is None or (stale and messages and isinstance(messages[-1], HumanMessage)):
        task = _last_human_text(messages)
    if task is None:
        raise ValueError('task is missing: pass {"task": "..."} or a human message')
    if not isinstance(task, str):
        raise ValueError(f"task must be a string, got {type(task).__name__}")
    if not task.strip():
        raise ValueError("task is empty: describe what the loop should do")
    return task.strip()


def _plan_from(reply: AIMessage, structured: bool) -> tuple[list[str], PlanFormat]:
    if structured and (steps := parse_json_plan(reply.text)) is not None:
        return steps, "json"
    return parse_plan(reply.text), "text"


def plan(state: PlannerInput, settings: Settings) -> Body:
    """Ask the model for a plan of at most `max_steps` steps.

    Writes every output key, so a new task on a thread starts from a clean slate.
    """
    task = task_of(state)
    task_id = uuid.uuid4().hex[:12]
    model = settings.models.planner
    structured = with_json_schema(model, PLAN_SCHEMA)
    cursor = new_cursor(task, approved=not settings.approve_plan)
    update = new_run(task_id, task, cursor)
    try:
        reply = yield CallModel(
            structured or model,
            planner_prompt(task, settings.max_steps),
            "planner",
            {"task_id": task_id},
        )
    except Exception as exc:
        summary = f"Planning failed: {cap(describe_error(model, exc), MAX_TEXT_CHARS)}"
        return {**update, "status": "failed", "summary": summary}
    cursor["run_usage"] = add_usage(cursor["run_usage"], [reply])
    steps, plan_format = _plan_from(reply, structured is not None)
    if not steps:
        return {**update, "status": "failed", "summary": "Planning produced no steps."}
    kept = steps[: settings.max_steps]
    yield Emit(
        {
            "event": "agentic.plan_ready",
            "task_id": task_id,
            "task": task,
            "steps": kept,
            "total": len(kept),
            "plan_format": plan_format,
        }
    )
    return {**update, "plan": kept, "cursor": {**cursor, "truncated": len(steps) > len(kept)}}
