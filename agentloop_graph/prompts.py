"""Every prompt the loop sends, rendered in one place.

Each phase renders its template (the default below, or the one given to
`create_agent_loop(prompts=...)`) with `str.format`. Without a system prompt the result is
passed as text, the cheapest input for LangChain to convert (one human message); with one,
the model gets `[SystemMessage(system), HumanMessage(prompt)]`.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agentloop_graph.state import StepRecord

PLANNER = (
    "Break this task into numbered steps (at most {max_steps}). "
    "Return ONLY the numbered list, one step per line, nothing else.\n\n"
    "Task: {task}"
)

REPLANNER = (
    "Task: {task}\n"
    "Steps ended so far:\n{done}\n\n"
    "Steps not yet started:\n{remaining}\n\n"
    "A step failed. Write the steps that should replace the steps not yet started, so that "
    "the task still gets done (at most {max_steps}). "
    "Return ONLY the numbered list, one step per line, nothing else."
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

FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "planner": (frozenset({"task"}), frozenset({"max_steps"})),
    "replanner": (frozenset({"task", "done", "remaining"}), frozenset({"max_steps"})),
    "executor": (frozenset({"task", "description"}), frozenset({"step", "total", "recent"})),
    "adapter": (frozenset({"description", "error"}), frozenset({"task", "step", "total"})),
    "summariser": (frozenset({"results"}), frozenset({"task"})),
}
"""Each phase's template fields: (required, optional). A template must name every required
field, may name optional ones, and nothing else: without its required fields a phase would
ask the model about something it never shows it."""

_SAMPLES: dict[str, object] = {"max_steps": 10, "step": 1, "total": 10}
"""Fields rendered as integers (the rest are text), for a trial render of a template."""

PromptInput = str | list[BaseMessage]
"""What a phase hands its model: the prompt as text, or preceded by the system message."""


@dataclass(frozen=True, slots=True)
class Prompts:
    """The templates each phase renders, and the system prompt sent before each of them."""

    planner: str = PLANNER
    replanner: str = REPLANNER
    executor: str = EXECUTOR
    adapter: str = ADAPTER
    summariser: str = SUMMARISER
    system: str | None = None
    """Sent as is (not a template) as a system message before every phase's prompt."""

    def model_input(self, prompt: str) -> PromptInput:
        """`prompt` as the model gets it: the text alone, or after the system message."""
        if self.system is None:
            return prompt
        return [SystemMessage(self.system), HumanMessage(prompt)]


def _fields(phase: str, template: str) -> set[str]:
    """The fields `template` names, nested ones in format specs included.

    Raises:
        ValueError: The template is malformed, or a field is not a plain name.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"prompts[{phase!r}] is not a valid template: {exc}") from None
    names: set[str] = set()
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(
                f"prompts[{phase!r}] has the field {{{name}}}; fields are plain names "
                "(no positions, attributes or indexes)"
            )
        names.add(name)
        if spec:
            names |= _fields(phase, spec)
    return names


def _check_template(phase: str, template: object) -> str:
    """`template`, if it names every required field of `phase` and no unknown one.

    Raises:
        TypeError: The template is not a string.
        ValueError: The template is malformed, lacks a required field or names an unknown one.
    """
    if not isinstance(template, str):
        raise TypeError(f"prompts[{phase!r}] must be a string, got {template!r}")
    required, optional = FIELDS[phase]
    names = _fields(phase, template)
    if unknown := sorted(names - required - optional):
        raise ValueError(
            f"prompts[{phase!r}] names unknown fields {unknown}; "
            f"{phase} supplies {sorted(required | optional)}"
        )
    if missing := sorted(required - names):
        raise ValueError(
            f"prompts[{phase!r}] lacks the required fields {missing}; "
            f"{phase} requires {sorted(required)}"
        )
    samples = {name: _SAMPLES.get(name, name) for name in required | optional}
    try:
        template.format(**samples)
    except (ValueError, TypeError) as exc:
        # A format spec or conversion the field's value does not take, e.g. `{task:d}`.
        raise ValueError(f"prompts[{phase!r}] cannot be rendered: {exc}") from None
    return template


def build_prompts(system_prompt: object, templates: object) -> Prompts:
    """The loop's `Prompts`: the defaults, with `templates` replacing those it names.

    Raises:
        TypeError: `system_prompt` is not a string, `templates` not a mapping, or a
            template not a string.
        ValueError: `system_prompt` is blank, `templates` names an unknown phase, or a
            template is malformed, lacks a required field or names an unknown one.
    """
    if system_prompt is not None:
        if not isinstance(system_prompt, str):
            raise TypeError(f"system_prompt must be a string or None, got {system_prompt!r}")
        if not system_prompt.strip():
            raise ValueError("system_prompt must not be blank (pass None for no system prompt)")
    if templates is None:
        templates = {}
    if not isinstance(templates, Mapping):
        raise TypeError(f"prompts must be a mapping of phase to template, got {templates!r}")
    if unknown := sorted(str(phase) for phase in templates if phase not in FIELDS):
        raise ValueError(f"prompts names unknown phases {unknown}; the phases are {list(FIELDS)}")
    checked: dict[str, Any] = {
        phase: _check_template(phase, template) for phase, template in templates.items()
    }
    return Prompts(**checked, system=system_prompt)


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


DEPENDENCY_HINT = (
    "\n\nSteps may run at the same time. End each step with the numbers of the steps "
    "whose results it needs, as (after 1, 2), or with (after none) if it needs none."
)
"""Added to the planner's prompt in a parallel run (`parallel=True`)."""

ROSTER_HINT = (
    "\n\nThese agents do the steps:\n{roster}\n"
    "Begin each step with the name of the agent that should do it, in brackets, as [{first}]."
)
"""Added to the planner's prompt when agents do the steps (`executors=`)."""


def _hints(parallel: bool, roster: Sequence[tuple[str, str]]) -> str:
    hints = DEPENDENCY_HINT if parallel else ""
    if roster:
        listed = "\n".join(f"- {name}: {description}" for name, description in roster)
        hints += ROSTER_HINT.format(roster=listed, first=roster[0][0])
    return hints


def planner_prompt(
    prompts: Prompts,
    task: str,
    max_steps: int,
    parallel: bool = False,
    roster: Sequence[tuple[str, str]] = (),
) -> PromptInput:
    """Asks for a numbered plan of at most `max_steps` steps (saying, when they may run in
    parallel, which steps each needs first; with a roster, which agent does each)."""
    text = prompts.planner.format(task=task, max_steps=max_steps)
    return prompts.model_input(text + _hints(parallel, roster))


def replanner_prompt(
    prompts: Prompts,
    task: str,
    plan: Sequence[str],
    done: Sequence[StepRecord],
    max_steps: int,
    parallel: bool = False,
    roster: Sequence[tuple[str, str]] = (),
) -> PromptInput:
    """Asks for the steps to replace the ones not yet started, given how the others ended."""
    ended = "\n".join(
        f"{r['step_num']}. {r['description']}: {_outcome(r, RESULT_EXCERPT)}" for r in done
    )
    remaining = "\n".join(f"{n}. {step}" for n, step in enumerate(plan, 1) if n > len(done))
    text = prompts.replanner.format(task=task, done=ended, remaining=remaining, max_steps=max_steps)
    return prompts.model_input(text + _hints(parallel, roster))


def executor_prompt(
    prompts: Prompts,
    task: str,
    step: int,
    total: int,
    description: str,
    quoted: Sequence[StepRecord],
) -> PromptInput:
    """One attempt at a step, quoting the results of earlier steps: the last few, or in a
    parallel run those of the steps it waits for."""
    lines = [f"Step {r['step_num']}: {_outcome(r, RESULT_EXCERPT)}" for r in quoted] or [
        "(none yet)"
    ]
    text = prompts.executor.format(
        task=task, step=step, total=total, description=description, recent="\n".join(lines)
    )
    return prompts.model_input(text)


def adapter_prompt(
    prompts: Prompts, task: str, step: int, total: int, description: str, error: str
) -> PromptInput:
    """Asks for a revised version of a failed step."""
    text = prompts.adapter.format(
        task=task, step=step, total=total, description=description, error=error
    )
    return prompts.model_input(text)


def summariser_prompt(prompts: Prompts, task: str, steps: Sequence[StepRecord]) -> PromptInput:
    """Asks for the final answer from the step results."""
    results = "\n".join(
        f"{r['step_num']}. {r['description']}: {_outcome(r, SUMMARY_EXCERPT)}" for r in steps
    )
    return prompts.model_input(prompts.summariser.format(task=task, results=results))
