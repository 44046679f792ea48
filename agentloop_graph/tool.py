"""The loop as a LangChain tool, the way a chat agent hands over multi-step work."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.graph.state import CompiledStateGraph

from agentloop_graph.graph import create_agent_loop
from agentloop_graph.models import DEFAULT_MODEL

DESCRIPTION = (
    "Plan and carry out a task that needs several steps in sequence (research, then compare, "
    "then write up, ...). Give the whole task in plain words; returns the outcome and answer."
)


def _reply(output: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    text = f"{output['status']}: {output['answer'] or output['summary']}"
    return text, output


def plan_and_execute_tool(
    loop: CompiledStateGraph[Any, Any, Any, Any] | None = None,
    *,
    model: BaseChatModel | str = DEFAULT_MODEL,
    name: str = "plan_and_execute",
    description: str = DESCRIPTION,
    **loop_options: Any,
) -> BaseTool:
    """Wrap the agent loop as a tool `plan_and_execute(task)`.

    The tool runs the loop with the caller's config, so its progress events reach the
    caller's custom stream (under the tool's namespace with `subgraphs=True`). Its
    message content is `"<status>: <answer or summary>"`; the loop's whole output is
    the tool message's `artifact`.

    Args:
        loop: A compiled loop to run; built from `model` and `loop_options` when None.
        model: Model for the loop it builds.
        name: The tool's name.
        description: What the calling model reads about the tool.
        **loop_options: Keyword options for `create_agent_loop` (e.g. `max_steps`).

    Returns:
        A tool with sync and async implementations.

    Example:
        >>> from agentloop_graph import plan_and_execute_tool
        >>> tool = plan_and_execute_tool(model="demo")
        >>> tool.invoke({"task": "Plan a picnic"}).split(":")[0]
        'completed'
    """
    graph = loop if loop is not None else create_agent_loop(model, **loop_options)

    def plan_and_execute(task: str, config: RunnableConfig) -> tuple[str, dict[str, Any]]:
        return _reply(graph.invoke({"task": task}, config))

    async def aplan_and_execute(task: str, config: RunnableConfig) -> tuple[str, dict[str, Any]]:
        return _reply(await graph.ainvoke({"task": task}, config))

    return StructuredTool.from_function(
        func=plan_and_execute,
        coroutine=aplan_and_execute,
        name=name,
        description=description,
        response_format="content_and_artifact",
    )
