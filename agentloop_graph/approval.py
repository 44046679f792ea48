"""Plan approval (`approve_plan`): the run pauses with the plan, or a revision of it, until a
person approves, edits or rejects it.

It runs at the top of the `executor` node, not in the planner: a node resumed after
`interrupt` runs again from its top, and the planner's top is a model call.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from agentloop_graph.calls import NodeRun
from agentloop_graph.parsing import MAX_TEXT_CHARS, cap
from agentloop_graph.plans import read_steps
from agentloop_graph.state import CursorUpdate, StepInput
from agentloop_graph.summariser import counts_line

ANSWER_SCHEMA: dict[str, Any] = {
    "title": "Plan approval",
    "description": "Run the plan, run your own steps instead, or cancel the run.",
    "type": "object",
    "properties": {
        "decision": {
            "type": "string",
            "enum": ["approve", "edit", "reject"],
            "description": "approve: run the plan; edit: run `steps` instead; reject: cancel.",
        },
        "steps": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "description": "With edit: the steps to run, in order (a step may end with "
            "`(after 1, 2)` in a parallel run, and begin with `[agent]` with a roster).",
        },
    },
    "required": ["decision"],
}
"""What the approval `interrupt` accepts, as a form: besides `True`, `False` and a list of
steps, `{"decision": "approve" | "reject"}` or `{"decision": "edit", "steps": [...]}`."""

_HOW = (
    "resume a plan approval with True (run it), False (cancel) or a non-empty list of step "
    'strings (run that plan), or a form\'s {"decision": "approve" | "edit" | "reject", '
    '"steps": [...]}'
)


def _decision(answer: object) -> bool | list[str] | None:
    """What a person's answer says: run (True), cancel (False), run these steps, or nothing
    the loop understands (None)."""
    if isinstance(answer, dict):
        choice = answer.get("decision")
        if choice in ("approve", "reject"):
            return bool(choice == "approve")
        answer = answer.get("steps") if choice == "edit" else None
    if isinstance(answer, bool):
        return answer
    steps = answer if isinstance(answer, list) and answer else None
    if steps is None or not all(isinstance(step, str) and step.strip() for step in steps):
        return None
    return [cap(step.strip(), MAX_TEXT_CHARS) for step in steps]


def review(state: StepInput, run: NodeRun) -> dict[str, Any]:
    """Pause until a person answers on the plan (or its revision); the update the answer makes.

    An answer that is none of the kinds accepted pauses the run again, saying what was
    wrong, so a typo never jams the thread.
    """
    cursor, plan, settings = state["cursor"], state["plan"], run.settings
    ended = len(state["steps"])
    question: dict[str, Any] = {"task_id": state["task_id"], "task": state["task"], "plan": plan}
    if cursor["replans"]:  # a revision, made after a step failed
        failed = [record["error"] for record in state["steps"] if record["status"] == "failed"]
        question |= {"revision": cursor["replans"], "reason": failed[-1] if failed else ""}
    given = interrupt(question, response_schema=ANSWER_SCHEMA)
    while (answer := _decision(given)) is None:
        retry = {**question, "error": f"{_HOW}, got {given!r}"}
        given = interrupt(retry, response_schema=ANSWER_SCHEMA)
    update: CursorUpdate = {"approved": True, "replan_reason": None}
    if answer is True:
        return {"cursor": update}
    if answer is False:
        task = cap(state["task"], MAX_TEXT_CHARS)
        if not ended:
            return {"status": "cancelled", "summary": f"{task}: Plan rejected; no step ran."}
        counts = counts_line(task, len(plan), state["steps"])
        return {"status": "cancelled", "summary": f"{counts} The revised plan was rejected."}
    parallel = bool(cursor["max_parallel"])
    edited = read_steps(answer, parallel=parallel, offset=ended, agents=settings.roster)
    kept = [*plan[:ended], *edited.steps][: settings.max_steps]
    update["planned"] = ended + len(edited.steps)
    update["agents"] = [*cursor["agents"][:ended], *edited.agents][: len(kept)]
    writes: dict[str, Any] = {"plan": kept, "cursor": update}
    if cursor["max_parallel"]:
        dependencies = [*state.get("dependencies", [])[:ended], *edited.dependencies]
        writes["dependencies"] = dependencies[: len(kept)]
    return writes
