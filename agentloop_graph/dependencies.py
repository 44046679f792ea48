"""Plans as dependency graphs: which step waits for which, read from the planner's reply.

Pure functions, no LangGraph. Step numbers are 1-based and count in the whole plan: a
revision's steps come after `offset` finished ones, so its step k is number offset + k.
Every dependency points to an earlier step, so a plan is always acyclic.
"""

from __future__ import annotations

import re
from typing import Any

from agentloop_graph.parsing import json_plan_items, parse_json_plan, parse_plan, tidy_step
from agentloop_graph.progress import PlanFormat


def dependency_plan_schema(max_steps: int) -> dict[str, Any]:
    """A plan with dependencies, for models that can be held to a JSON schema.

    Held to it as it writes, a small model would often answer with no step at all, or
    fill its answer with step numbers: a plan has a step, and a step waits for at most
    the `max_steps - 1` that can come before it.
    """
    depends_on = {"type": "array", "items": {"type": "integer"}, "maxItems": max(max_steps - 1, 0)}
    step = {
        "type": "object",
        "properties": {"description": {"type": "string", "minLength": 1}, "depends_on": depends_on},
        "required": ["description", "depends_on"],
    }
    return {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": step, "minItems": 1}},
        "required": ["steps"],
    }


# "(after 1, 3)", "(after steps 1 and 3)", "(depends on: 1)", "[after: 1, 3]", "(depends on none)",
# at the end of a step (a full stop may follow).
_MARKER = re.compile(
    r"\s*[(\[]\s*(?:after|depends\s+on)\s*:?\s*"
    r"((?:steps?\s*)?\d+(?:\s*(?:,\s*(?:and\s+)?|and\s+|&\s*)(?:steps?\s*)?\d+)*|none|nothing)"
    r"\s*[)\]]\s*\.?\s*$",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d+")

Plan = tuple[list[str], list[list[int]]]
"""Steps and, for each, the numbers of the steps it waits for."""


def _earlier(wanted: list[int], number: int) -> list[int]:
    # Only earlier, existing steps: a dependency on itself or a later step is dropped.
    return sorted({dep for dep in wanted if 1 <= dep < number})


def in_sequence(count: int, *, offset: int = 0) -> list[list[int]]:
    """The dependencies of `count` steps run one after another, after `offset` ended ones:
    each waits for the step before it (the first, for the last ended one, if any).

    Example:
        >>> in_sequence(3), in_sequence(2, offset=2)
        ([[], [1], [2]], [[2], [3]])
    """
    return [[n - 1] if n > 1 else [] for n in range(offset + 1, offset + count + 1)]


def parse_dependency_plan(text: str, *, offset: int = 0) -> Plan:
    """The steps of a numbered-list plan and their `(after 1, 3)` markers, markers removed.

    Steps are read as `parse_plan` reads them and numbered by position. Without any marker
    the plan runs in sequence: each step waits for the one before it, and a revision's
    first step for the last finished one (`offset`). Once a step carries a marker, an
    unmarked step waits for nothing.

    Example:
        >>> parse_dependency_plan("1. Fetch A\\n2. Fetch B\\n3. Compare (after 1, 2)")
        (['Fetch A', 'Fetch B', 'Compare'], [[], [], [1, 2]])
    """
    steps: list[str] = []
    marked: list[list[int] | None] = []
    for item in parse_plan(text):
        marker = _MARKER.search(item)
        step = tidy_step(item[: marker.start()]) if marker else item
        if step:
            steps.append(step)
            marked.append([int(n) for n in _NUMBER.findall(marker[1])] if marker else None)
    if all(deps is None for deps in marked):
        return steps, in_sequence(len(steps), offset=offset)
    return steps, [_earlier(deps or [], n) for n, deps in enumerate(marked, offset + 1)]


def parse_json_dependency_plan(text: str, *, offset: int = 0) -> Plan | None:
    """The steps of a `{"steps": [{"description", "depends_on"}, ...]}` plan (none when it
    holds no step with text), or None if the reply is not JSON (the caller then reads it
    as text).

    A plain string item waits for nothing, as does an item without `depends_on`; entries
    that are not integers are dropped. A plan cut off mid-way keeps its complete items.
    Items without text are dropped before numbering, as empty steps are in text plans.
    """
    items = json_plan_items(text)
    if items is None:
        return None
    steps: list[str] = []
    wanted: list[list[int]] = []
    for item in items:
        entry = item if isinstance(item, dict) else {"description": item}
        description, deps = entry.get("description"), entry.get("depends_on", [])
        step = tidy_step(description) if isinstance(description, str) else ""
        if step:
            steps.append(step)
            deps = deps if isinstance(deps, list) else [deps]
            wanted.append([d for d in deps if isinstance(d, int) and not isinstance(d, bool)])
    return steps, [_earlier(deps, n) for n, deps in enumerate(wanted, offset + 1)]


def ready_steps(
    dependencies: list[list[int]], ended: set[int], running: set[int], limit: int
) -> list[int]:
    """The steps that may start now, in plan order: not ended, not running, every step they
    wait for ended, and no more than `limit` running at once."""
    busy = ended | running
    ready = [n for n, deps in enumerate(dependencies, 1) if n not in busy and ended >= set(deps)]
    return ready[: max(limit - len(running), 0)]


def renumber(ended: set[int]) -> dict[int, int]:
    """{old: new} for every ended step when a revision moves them to 1..k in plan order;
    `{}` when they already are the plan's first k steps (nothing moves)."""
    mapping = {old: new for new, old in enumerate(sorted(ended), 1)}
    return {} if all(old == new for old, new in mapping.items()) else mapping


def kept_dependencies(dependencies: list[list[int]], ended: set[int]) -> list[list[int]]:
    """The dependencies of the ended steps, renumbered as `renumber` does: the part of the plan
    a revision keeps, before its new steps (waits on steps that did not end are dropped)."""
    mapping = {old: new for new, old in enumerate(sorted(ended), 1)}
    return [[mapping[dep] for dep in dependencies[old - 1] if dep in mapping] for old in mapping]


def read_plan(
    text: str, *, structured: bool, parallel: bool, offset: int = 0
) -> tuple[list[str], list[list[int]], PlanFormat]:
    """The steps of the planner's reply, the steps each waits for (in a parallel run; else
    none), and whether the reply was the JSON the model was held to (`structured`) or a list.
    """
    if not parallel:
        steps = parse_json_plan(text) if structured else None
        return (steps, [], "json") if steps is not None else (parse_plan(text), [], "text")
    plan = parse_json_dependency_plan(text, offset=offset) if structured else None
    if plan is not None:
        return *plan, "json"
    return *parse_dependency_plan(text, offset=offset), "text"
