"""The Temporal workflow the Temporal suite runs: one task of a graph registered with
`LangGraphPlugin`, its progress on a `WorkflowStream` topic, plan approval by an update.

Kept apart from the harness: the worker loads it in Temporal's workflow sandbox, where
every module it imports is imported again, so it imports only what it needs, and that
passed through the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio import workflow
from temporalio.contrib.workflow_streams import WorkflowStream

with workflow.unsafe.imports_passed_through():
    from langchain_core.messages import BaseMessage
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command
    from temporalio.langgraph import graph

GRAPH = "agent_loop"
"""The name the worker registers the loop's graph under."""
TOPIC = "progress"
"""The plugin's `streaming_topic`: the nodes' progress events, and the workflow's own."""
WAITING = "temporal.waiting"
"""The event the workflow publishes when the run pauses for an answer (plan approval)."""
RECURSION_LIMIT = 10_000
"""The loop bounds its own work; LangGraph's default limit (25) would cut a long run."""


@dataclass
class LoopRequest:
    """What a client asks the workflow to run."""

    task: str
    context: dict[str, Any] | None = None
    """Per-run settings (`Context` fields), as plain data."""
    graph: str = GRAPH


def plain(value: Any) -> Any:
    """`value` with LangChain messages as `{"type", "content"}` dicts: JSON for Temporal."""
    if isinstance(value, BaseMessage):
        return {"type": value.type, "content": value.content}
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


@workflow.defn
class AgentLoopWorkflow:
    """Runs one task; pauses on each `interrupt` until the `answer` update resumes it."""

    def __init__(self) -> None:
        # Required by the plugin's `streaming_topic`: built here, in @workflow.init.
        self.stream = WorkflowStream()
        self.waiting: Any = None
        self.answers: list[Any] = []

    @workflow.query
    def question(self) -> Any:
        """The value of the `interrupt` the run waits on, or None."""
        return self.waiting

    @workflow.update
    async def answer(self, value: Any) -> None:
        """Resume the paused run with `value` (`Command(resume=value)`)."""
        self.answers.append(value)

    @answer.validator
    def _check_answer(self, value: Any) -> None:
        if self.waiting is None or self.answers:
            raise ValueError("the run is not waiting for an answer")

    @workflow.run
    async def run(self, request: LoopRequest) -> dict[str, Any]:
        app = graph(request.graph).compile(checkpointer=InMemorySaver())
        config: Any = {
            "configurable": {"thread_id": workflow.info().workflow_id},
            "recursion_limit": RECURSION_LIMIT,
        }
        progress = self.stream.topic(TOPIC)
        payload: Any = {"task": request.task}
        while True:
            output = await app.ainvoke(payload, config, context=request.context)
            interrupts = output.pop("__interrupt__", None)
            if not interrupts:
                break
            self.waiting = interrupts[0].value
            progress.publish({"event": WAITING, "value": self.waiting})
            await workflow.wait_condition(lambda: bool(self.answers))
            self.waiting = None
            payload = Command(resume=self.answers.pop(0))
        # Let subscribers' long polls return, so the run ends with no handler running.
        self.stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)
        result: dict[str, Any] = plain(output)
        return result
