"""The offline, deterministic demo model behind the `"demo"` model string.

It tells the loop's phases apart by the node that calls it (LangGraph's `langgraph_node` run
metadata), never by the prompts' wording, so it keeps working when the prompt templates are
replaced or a system prompt comes first. Of the prompt (the last human message) it reads only
what every loop prompt carries: the task from a `Task: ...` line (else the whole prompt), the
step from `Step i/N: <description>`, the plan's limit from "at most N".

- `planner`: up to four steps for any task.
- `executor`: `[demo] Step N done: <description>.` With tools bound, it first calls one (the
  one the step names, else the first) with arguments made from its schema, then reports what
  the tool said.
- `adapter`: the failed step, to be done "one small piece at a time".
- `summariser`: a final answer that says which steps failed, if any did.

Asked for a plan held to a schema (the loop asks every model that supports it), it answers in
that schema: with what each step waits for when the schema has `depends_on` (a parallel run),
two steps at once; with the agent to do each when it names agents. Asked for the final answer
in a schema (`response_format`), it fills the schema's required fields with its answer.

A task that says `fail step N` makes the first attempt at step N fail, so the adapter path
shows; `break step N` makes every attempt at step N fail, so the step ends failed and the run
partial. Every such phrase in the task counts (`fail step 1, break step 3`).

Inside an agent that does a loop's step (`executor=`: a call from within the `executor` node,
as its checkpoint namespace says), it answers as the executor does, tool call included.

Outside the loop's nodes (in a chat app's own node, or called directly) it is a chat model:
with a `plan_and_execute` tool bound it hands requests that look multi-step (they mention a
plan, steps, or "then") to that tool, relays what the tool reports, and answers everything
else directly.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from agentloop_graph.plans import read_steps
from agentloop_graph.testing import ModelCall, ScriptedChatModel

_TASK = re.compile(r"^Task: (.*)$", re.MULTILINE)
# The description is what follows the first colon on the step's line (`Step 2/4: ...`,
# `Step 2/4 failed: ...`); "Step 1: <result>" lines of earlier steps have no "/N".
_STEP = re.compile(r"\bStep (\d+)/\d+(?:[^:\n]*:[ \t]*(.*))?")
_AT_MOST = re.compile(r"at most (\d+)")
_FAIL = re.compile(r"fail step (\d+)", re.IGNORECASE)
_BREAK = re.compile(r"break step (\d+)", re.IGNORECASE)
_RESULT_LINE = re.compile(r"^\d+\. ", re.MULTILINE)
_FAILED_LINE = re.compile(r"^(?:(\d+)\. )?.*?FAILED \((.*)\)[ \t]*$", re.MULTILINE)
_MULTI_STEP = re.compile(r"\b(plan|steps?|then)\b", re.IGNORECASE)
_REVISED = "Alternative approach: "
_LOOP_TOOL = "plan_and_execute"
_EXCERPT = 120
"""Characters of a tool's result quoted in a step's answer."""

PLAN = (
    "Pin down what is being asked: {task}",
    "Collect the facts and inputs the task needs",
    "Work out the result from those facts",
    "Check the result and write it up",
)
PARALLEL_PLAN = (
    "Pin down what is being asked: {task} (after none)",
    "Collect the facts the task needs (after 1)",
    "Collect the inputs and constraints (after 1)",
    "Work out the result from those facts and inputs (after 2, 3)",
    "Check the result and write it up (after 4)",
)
"""The plan when asked which steps each waits for (a parallel run): two steps at once."""


class DemoModelError(RuntimeError):
    """The failure the demo model simulates when a task asks for one."""


class DemoChatModel(ScriptedChatModel):
    """Offline chat model that plays every phase of the loop deterministically.

    Example:
        >>> from agentloop_graph import create_agent_loop
        >>> graph = create_agent_loop("demo")
        >>> graph.invoke({"task": "Plan a picnic"})["status"]
        'completed'
    """

    report_usage: bool = True
    record_calls: bool = False

    def model_post_init(self, context: Any) -> None:
        self.responses = answer
        super().model_post_init(context)

    @property
    def _llm_type(self) -> str:
        return "agentloop-demo"


def answer(call: ModelCall) -> AIMessage | str | dict[str, Any]:
    """The demo's answer to a call: by the node that makes it (any other node, or none, makes
    it a chat turn), and what the call asks for (a schema, tools).

    Raises:
        DemoModelError: The task asks for this step attempt to fail.
    """
    prompt = _last_human_text(call.messages)
    if call.node == "planner":
        return _plan(prompt, call.tool_schemas)
    if call.node == "executor" or _in_executor(call.namespace):
        return _execute(prompt, call.messages, call.tool_schemas)
    if call.node == "adapter":
        _, description = _step(prompt)
        return f"{_REVISED}{description}, one small piece at a time"
    if call.node == "summariser" and call.tool_schemas:  # an answer in `response_format`
        schema = call.tool_schemas[0]["function"].get("parameters", {})
        return _arguments(schema, _final_answer(prompt))
    if call.node == "summariser":
        return _final_answer(prompt)
    return _chat(prompt, call.messages, call.tool_schemas)


def _in_executor(namespace: str) -> bool:
    """Whether a call comes from inside the loop's `executor` node (an agent doing a step)."""
    return any(part.split(":", 1)[0] == "executor" for part in namespace.split("|")[:-1])


def _last_human_text(messages: Sequence[BaseMessage]) -> str:
    # A system prompt may come first, and tool results after it.
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    return ""


def _task(prompt: str) -> str:
    if match := _TASK.search(prompt):
        return match.group(1).strip()
    # One line, so that a plan step quoting it stays one numbered item.
    return " ".join(prompt.split())


def _step(prompt: str) -> tuple[int | None, str]:
    """The step's number and description; without a step line, the task stands in."""
    match = _STEP.search(prompt)
    description = match.group(2).strip() if match and match.group(2) else ""
    return (int(match.group(1)) if match else None), description or _task(prompt)


def _plan(prompt: str, tools: Sequence[Mapping[str, Any]]) -> str | dict[str, Any]:
    task = _task(prompt)
    # The task's own words ("in at most 3 hours") are not the plan's limit.
    limit = _AT_MOST.search(_TASK.sub("", prompt))
    item = tools[0]["function"]["parameters"]["properties"]["steps"]["items"] if tools else {}
    fields = item.get("properties", {})
    plan = PARALLEL_PLAN if "depends_on" in fields else PLAN
    steps = [s.format(task=task) for s in plan][: int(limit.group(1)) if limit else len(plan)]
    if not tools:
        return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    if not fields:
        return {"steps": steps}
    agents = fields.get("agent", {}).get("enum", [])
    read = read_steps(steps, parallel="depends_on" in fields)
    items: list[dict[str, Any]] = []
    for number, (step, waits) in enumerate(zip(read.steps, read.dependencies, strict=True)):
        entry: dict[str, Any] = {"description": step}
        if "depends_on" in fields:
            entry["depends_on"] = waits
        if agents:  # the roster's agents in turn
            entry["agent"] = agents[number % len(agents)]
        items.append(entry)
    return {"steps": items}


def _fails(task: str, number: int, description: str) -> bool:
    broken = {int(n) for n in _BREAK.findall(task)}
    failing = {int(n) for n in _FAIL.findall(task)}
    return number in broken or (number in failing and not description.startswith(_REVISED))


def _execute(
    prompt: str, messages: Sequence[BaseMessage], tools: Sequence[Mapping[str, Any]]
) -> AIMessage | str:
    number, description = _step(prompt)
    if number is not None and _fails(_task(prompt), number, description):
        raise DemoModelError(f"simulated failure of step {number}, as the task asked")
    done = f"[demo] Step {number} done: {description}"
    if number is None:
        done = f"[demo] Done: {description}"
    # One tool call per attempt, so the loop's tool loop shows and always ends.
    results = _tool_results(messages)
    if results:
        said = results[-1]
        return f"{done} ({said.name or 'the tool'} said: {_excerpt(said.text)})."
    callable_tools = [tool for tool in tools if _name(tool) != _LOOP_TOOL]
    if callable_tools:
        return _tool_call(_pick(callable_tools, description), description, prompt)
    return f"{done}."


def _tool_results(messages: Sequence[BaseMessage]) -> list[ToolMessage]:
    """The tool messages after the last human message: this attempt's tool results."""
    results: list[ToolMessage] = []
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, ToolMessage):
            results.insert(0, message)
    return results


def _name(tool: Mapping[str, Any]) -> str:
    return str(tool["function"]["name"])


def _pick(tools: Sequence[Mapping[str, Any]], description: str) -> Mapping[str, Any]:
    """The first tool the step names (`word_count` or "word count"), else the first tool."""
    text = description.lower()
    for tool in tools:
        name = _name(tool).lower()
        if name in text or name.replace("_", " ") in text:
            return tool
    return tools[0]


def _tool_call(tool: Mapping[str, Any], description: str, prompt: str) -> AIMessage:
    name = _name(tool)
    args = _arguments(tool["function"].get("parameters", {}), description)
    call = {"name": name, "args": args, "id": _call_id(f"{name}\n{prompt}")}
    return AIMessage("", tool_calls=[call])


def _arguments(schema: Mapping[str, Any], text: str) -> dict[str, Any]:
    """Values for the required properties of an object `schema`."""
    properties = schema.get("properties", {})
    return {key: _value(properties.get(key, {}), text) for key in schema.get("required", ())}


def _value(schema: Mapping[str, Any], text: str) -> Any:
    """A value `schema` accepts: `text` for a string, 1 for a number, and so on."""
    if schema.get("enum"):
        return schema["enum"][0]
    options = [o for o in schema.get("anyOf", ()) if o.get("type") != "null"]
    if options:
        return _value(options[0], text)
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return [_value(schema.get("items", {}), text)]
    if kind == "object":
        return _arguments(schema, text)
    # Strings, and whatever else the schema allows, get the step's words.
    return text


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT else flat[: _EXCERPT - 1] + "…"


def _final_answer(prompt: str) -> str:
    task = _task(prompt)
    failed = _FAILED_LINE.findall(prompt)
    if not failed:
        return f"[demo] Final answer for '{task}': every step was worked through in order."
    # The loop renders one numbered line per step that ran.
    total = max(len(_RESULT_LINE.findall(prompt)), len(failed))
    which = "; ".join(
        f"step {number} failed ({error})" if number else f"a step failed ({error})"
        for number, error in failed
    )
    return (
        f"[demo] Final answer for '{task}': {total - len(failed)} of {total} steps done; {which}."
    )


def _chat(
    prompt: str, messages: Sequence[BaseMessage], tools: Sequence[Mapping[str, Any]]
) -> AIMessage | str:
    if messages and isinstance(messages[-1], ToolMessage):
        return f"[demo] Here is what the agent loop reported: {messages[-1].text}"
    if any(_name(tool) == _LOOP_TOOL for tool in tools) and _MULTI_STEP.search(prompt):
        call = {"name": _LOOP_TOOL, "args": {"task": prompt.strip()}, "id": _call_id(prompt)}
        return AIMessage("", tool_calls=[call])
    return f"[demo] (answered directly) You said: {prompt.strip()}"


def _call_id(text: str) -> str:
    # Deterministic, like everything the demo says.
    return f"call_{zlib.crc32(text.encode()):08x}"
