"""Every prompt the loop sends, rendered in one place.

Each phase sends its prompt as one human message (passed as text, the cheapest input
for LangChain to convert).
"""

from __future__ import annotations

from collections.abc import Sequence

from agentloop_graph.state import StepRecord

PLANNER = (
    "Break this task into numbered steps (at most {max_steps}). "
    "Return ONLY the numbered list, one step per line, nothing else.\n\n"
    "Task: {task}"
)

EXECUTOR = (
    "Task: {task}\n"
    "Step {step}/{total}: {description}\n"
    "Recent progress:\n{recent}\n\n"
    "Execute this step and report what you did and what you found."
)

ADAPTER = (
    "Task: {task}\n"
    "Step {step}/{total} failed: {description}\n"
    "Error: {error}\n\n"
    "Propose one alternative way to do this step that avoids the error. "
    "Reply with the revised step only, as one sentence."
)

SUMMARISER = (
    "Task: {task}\n"
    "Results of the steps:\n{results}\n\n"
    "Write the final answer to the task from these results."
)

PLAN_SCHEMA = {
    "type": "object",
    "properties": {"steps": {"type": "array", "items": {"type": "string"}}},
    "required": ["steps"],
}
"""The plan's shape, for models that can be held to a JSON schema."""

RECENT_STEPS = 2
"""How many earlier step results the executor sees: the context stays bounded."""

RESULT_EXCERPT = 200
"""Characters of an earlier step's result quoted to the executor."""

SUMMARY_EXCERPT = 1000
"""Characters of each step's result quoted to the summariser."""


def _outcome(record: StepRecord, limit: int) -> str:
    if record["status"] == "failed":
        return f"FAILED ({record['error']})"
    return record["result"][:limit]


def planner_prompt(task: str, max_steps: int) -> str:
    """Asks for a numbered plan of at most `max_steps` steps."""
    return PLANNER.format(task=task, max_steps=max_steps)


def executor_prompt(
    task: str, step: int, total: int, description: str, done: Sequence[StepRecord]
) -> str:
    """One attempt at a step, quoting only the last few results."""
    recent = done[-RECENT_STEPS:]
    lines = [f"Step {r['step_num']}: {_outcome(r, RESULT_EXCERPT)}" for r in recent] or [
        "(none yet)"
    ]
    return EXECUTOR.format(
        task=task, step=step, total=total, description=description, recent="\n".join(lines)
    )


def adapter_prompt(task: str, step: int, total: int, description: str, error: str) -> str:
    """Asks for a revised version of a failed step."""
    return ADAPTER.format(task=task, step=step, total=total, description=description, error=error)


def summariser_prompt(task: str, steps: Sequence[StepRecord]) -> str:
    """Asks for the final answer from the step results."""
    results = "\n".join(
        f"{r['step_num']}. {r['description']}: {_outcome(r, SUMMARY_EXCERPT)}" for r in steps
    )
    return SUMMARISER.format(task=task, results=results)
