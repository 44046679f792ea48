"""Reading plans: the planner's answer to its steps, what each step waits for, and which agent
does it.

Pure functions, no LangGraph. An answer is read as structured (the plan's JSON schema, as a
parsed object, a tool call's arguments, or JSON text) or as a numbered list. Step numbers are
1-based and count in the whole plan: a revision's steps come after `offset` ended ones, so its
step k is number offset + k. Every dependency points to an earlier step, so a plan is always
acyclic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage

from agentloop_graph.parsing import MAX_TEXT_CHARS, cap, clean_answer

PlanFormat = Literal["json", "text"]

# "1. x", "1) x", "Step 1: x", "**1.** x", "- Step 1 - x", "### 2. x": the number is what counts.
_NUMBERED = re.compile(
    r"^\s*(?:[-*+>#]+\s*)?(?:\*\*|__)?\s*(?:step\s*)?(\d+)\s*(?:[.):](?!\d)|\s-)\s*(?:\*\*|__)?\s*(.*)$",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^\s*(?:[-*+>#]+\s+)")
_EMPHASIS = re.compile(r"(\*\*|__)")
# "(after 1, 3)", "(after steps 1 and 3)", "(depends on: 1)", "[after: 1, 3]", "(after none)",
# at the end of a step (a full stop may follow).
_MARKER = re.compile(
    r"\s*[(\[]\s*(?:after|depends\s+on)\s*:?\s*"
    r"((?:steps?\s*)?\d+(?:\s*(?:,\s*(?:and\s+)?|and\s+|&\s*)(?:steps?\s*)?\d+)*|none|nothing)"
    r"\s*[)\]]\s*\.?\s*$",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d+")
_AGENT = re.compile(r"^\s*\[\s*([^\]\n]+?)\s*\]\s*")
_STEPS_ARRAY = re.compile(r'^\s*\{\s*"steps"\s*:\s*\[')


@dataclass(frozen=True)
class Plan:
    """What a planner's answer says."""

    steps: list[str]
    dependencies: list[list[int]]
    """For each step, the steps it waits for (in sequence when the answer says nothing)."""
    agents: list[str | None]
    """For each step, the roster's agent to do it (None without a roster)."""
    format: PlanFormat


def plan_schema(*, parallel: bool, max_steps: int, agents: Sequence[str] = ()) -> dict[str, Any]:
    """The plan's JSON schema, for models that can be held to one: a step is a string, or an
    object with its `depends_on` (parallel runs) and `agent` (with a roster).

    Held to it as it writes, a small model would often answer with no step at all, or
    fill its answer with step numbers: a plan has a step, and a step waits for at most
    the `max_steps - 1` that can come before it.
    """
    item: dict[str, Any] = {"type": "string"}
    if parallel or agents:
        properties: dict[str, Any] = {"description": {"type": "string", "minLength": 1}}
        if parallel:
            properties["depends_on"] = {
                "type": "array",
                "items": {"type": "integer"},
                "maxItems": max(max_steps - 1, 0),
            }
        if agents:
            properties["agent"] = {"type": "string", "enum": list(agents)}
        item = {"type": "object", "properties": properties, "required": list(properties)}
    return {
        "title": "plan",
        "description": "The steps that do the task, in order.",
        "type": "object",
        "properties": {"steps": {"type": "array", "items": item, "minItems": 1}},
        "required": ["steps"],
    }


def in_sequence(count: int, *, offset: int = 0) -> list[list[int]]:
    """The dependencies of `count` steps run one after another, after `offset` ended ones:
    each waits for the step before it (the first, for the last ended one, if any).

    Example:
        >>> in_sequence(3), in_sequence(2, offset=2)
        ([[], [1], [2]], [[2], [3]])
    """
    return [[n - 1] if n > 1 else [] for n in range(offset + 1, offset + count + 1)]


def _tidy(item: str) -> str:
    return _EMPHASIS.sub("", item).strip(" \t:-")


def tidy_step(text: str) -> str:
    """A planned step without a model's own numbering and decoration, capped."""
    numbered = _NUMBERED.match(text)
    return cap(_tidy(numbered[2] if numbered else text), MAX_TEXT_CHARS)


def parse_plan(text: str) -> list[str]:
    """Extract the steps of a plan written as a list.

    Numbered items win (`1.`, `1)`, `Step 1:`, with markdown decoration); text around
    them, such as a preamble, is ignored. Without numbered items every non-empty line is
    a step.

    Example:
        >>> parse_plan("Sure! Here is the plan:\\n1. Boil water\\n2) **Add** tea")
        ['Boil water', 'Add tea']
    """
    lines = clean_answer(text).splitlines()
    numbered = [m.group(2) for line in lines if (m := _NUMBERED.match(line))]
    items = numbered if numbered else [_BULLET.sub("", line) for line in lines]
    return [cap(step, MAX_TEXT_CHARS) for step in map(_tidy, items) if step]


def _complete_items(text: str) -> list[object]:
    # A plan cut off at the token limit (or followed by chatter): keep its complete items.
    start = _STEPS_ARRAY.search(text)
    if start is None:
        return []
    items: list[object] = []
    position = start.end()
    while True:
        position = len(text) - len(text[position:].lstrip(", \t\r\n"))
        try:
            item, position = json.JSONDecoder().raw_decode(text, position)
        except (ValueError, RecursionError):
            return items
        items.append(item)


def json_items(text: str) -> list[object] | None:
    """The items of a plan written as `{"steps": [...]}` (its complete ones, if it was cut
    off mid-way), or None if the answer is not a JSON object (the model answered in text).

    A JSON object is never read as text: its lines are no steps. One of another shape, one
    nested too deep to read, or one cut off before its first complete item has no items.
    """
    answer = clean_answer(text)
    if not answer.startswith("{"):
        return None
    try:
        data = json.loads(answer)
    except RecursionError:
        return []
    except ValueError:
        return _complete_items(answer)
    return _steps_of(data)


def _steps_of(data: object) -> list[object]:
    items = data.get("steps") if isinstance(data, dict) else None
    return items if isinstance(items, list) else []


def _structured_items(reply: AIMessage) -> list[object] | None:
    """The plan's items where the model answered in its schema: the arguments of its tool
    call, or JSON text (its complete items, if cut off); None for an answer in prose."""
    if reply.tool_calls:
        return _steps_of(reply.tool_calls[0]["args"])
    return json_items(reply.text)


def _earlier(wanted: Sequence[object], number: int) -> list[int]:
    # Only earlier, existing steps: a dependency on itself or a later step is dropped.
    numbers = (d for d in wanted if isinstance(d, int) and not isinstance(d, bool))
    return sorted({dep for dep in numbers if 1 <= dep < number})


def _agent_marker(text: str, roster: Sequence[str]) -> tuple[str | None, str]:
    """The `[name]` a step's text begins with (with a roster), and the text without it."""
    marker = _AGENT.match(text) if roster else None
    return (marker[1], text[marker.end() :]) if marker else (None, text)


def _assigned(named: object, roster: Sequence[str]) -> str | None:
    """The roster's agent a step names; the first agent for no or an unknown name."""
    if not roster:
        return None
    return named if isinstance(named, str) and named in roster else roster[0]


Entry = tuple[str, list[object] | None, object]
"""A step as read: its text, the steps it says it waits for (None: it says nothing), and the
agent it names."""


def _entry(text: str, *, parallel: bool, agents: Sequence[str]) -> Entry:
    """A step written as text: its `[name]` (with a roster) and `(after ...)` (parallel runs)
    markers read and removed."""
    named, text = _agent_marker(text, agents)
    waits: list[object] | None = None
    if parallel and (marker := _MARKER.search(text)):
        waits = [int(n) for n in _NUMBER.findall(marker[1])]
        text = text[: marker.start()]
    return tidy_step(text), waits, named


def _json_entry(item: object, *, agents: Sequence[str]) -> Entry | None:
    """A step written as a JSON item: a string, or `{"description", "depends_on", "agent"}`."""
    entry = item if isinstance(item, dict) else {"description": item}
    description = entry.get("description")
    if not isinstance(description, str):
        return None
    named, text = _agent_marker(description, agents)
    deps = entry.get("depends_on", [])
    return tidy_step(text), deps if isinstance(deps, list) else [deps], entry.get("agent", named)


def _plan(
    entries: Sequence[Entry],
    plan_format: PlanFormat,
    *,
    parallel: bool,
    offset: int,
    agents: Sequence[str],
) -> Plan:
    kept = [entry for entry in entries if entry[0]]
    steps = [step for step, _, _ in kept]
    if not parallel or all(waits is None for _, waits, _ in kept):
        # A plan that says nothing of what waits for what runs in sequence.
        dependencies = in_sequence(len(steps), offset=offset)
    else:
        dependencies = [
            _earlier(waits or [], number) for number, (_, waits, _) in enumerate(kept, offset + 1)
        ]
    return Plan(
        steps, dependencies, [_assigned(agent, agents) for _, _, agent in kept], plan_format
    )


def read_plan(
    reply: AIMessage, *, parallel: bool, offset: int = 0, agents: Sequence[str] = ()
) -> Plan:
    """The plan the planner's `reply` gives.

    Structured, each item is a string or `{"description", "depends_on", "agent"}`; a string
    item, or one without `depends_on`, waits for nothing. As a numbered list, a step may end
    with `(after 1, 3)` in a parallel run: without any marker the plan runs in sequence (a
    revision's first step after the last ended one, `offset`), and once a step carries one,
    an unmarked step waits for nothing. With a roster (`agents`), a step may begin with
    `[name]`; a JSON item's `agent` wins over it; no or an unknown name is the first agent's.

    Example:
        >>> from langchain_core.messages import AIMessage
        >>> answer = AIMessage("1. Fetch A\\n2. Fetch B\\n3. Compare (after 1, 2)")
        >>> plan = read_plan(answer, parallel=True)
        >>> plan.steps, plan.dependencies
        (['Fetch A', 'Fetch B', 'Compare'], [[], [], [1, 2]])
    """
    items = _structured_items(reply)
    if items is None:
        entries = [
            _entry(step, parallel=parallel, agents=agents) for step in parse_plan(reply.text)
        ]
        return _plan(entries, "text", parallel=parallel, offset=offset, agents=agents)
    found = (_json_entry(item, agents=agents) for item in items)
    entries = [entry if parallel else (entry[0], None, entry[2]) for entry in found if entry]
    return _plan(entries, "json", parallel=parallel, offset=offset, agents=agents)


def read_steps(
    steps: Sequence[str], *, parallel: bool, offset: int = 0, agents: Sequence[str] = ()
) -> Plan:
    """A plan given as a list of steps (a person's, at approval), each read as `read_plan`
    reads a numbered list's steps."""
    entries = [_entry(step, parallel=parallel, agents=agents) for step in steps]
    return _plan(entries, "text", parallel=parallel, offset=offset, agents=agents)


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
