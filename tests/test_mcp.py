"""MCP tools in the loop, loaded with `langchain-mcp-adapters` as a user loads them.

MCP tools are async-only `StructuredTool`s whose results are lists of content blocks, with
the server's structured content as the artifact. The quick tests build them with the
adapter from a stand-in for the client session (the adapter's own conversion, errors
included, with no server); the slow ones load them from a real FastMCP server over stdio
(`tests/support/mcp_server.py`), which the adapter starts afresh for every call.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.sessions import StdioConnection
from langchain_mcp_adapters.tools import convert_mcp_tool_to_langchain_tool
from mcp.types import CallToolResult, ImageContent, TextContent, Tool

from agentloop_graph import create_agent_loop
from agentloop_graph.parsing import MAX_RESULT_CHARS
from agentloop_graph.testing import ModelCall, ScriptedChatModel
from tests.support.helpers import Run, numbered

SERVER = Path(__file__).parent / "support" / "mcp_server.py"

LONG = 100_000
"""Characters of the long tool result: six times the cap."""


def call(*calls: tuple[str, dict[str, Any]]) -> AIMessage:
    """A model reply calling tools by name."""
    return AIMessage(
        "", tool_calls=[{"name": n, "args": a, "id": f"c{i}"} for i, (n, a) in enumerate(calls)]
    )


def relay(call: ModelCall) -> str:
    """An executor answer reporting what the tools said."""
    return " | ".join(f"{m.name}: {m.text}" for m in call.messages if isinstance(m, ToolMessage))


def tool_results(model: ScriptedChatModel) -> list[ToolMessage]:
    """The tool messages the model received, in order (each executor call repeats the
    earlier ones of its attempt, so only each attempt's last call is read)."""
    last = model.calls_from("executor")[-1]
    return [m for m in last.messages if isinstance(m, ToolMessage)]


# --- MCP tools built by the adapter, answered by a stand-in session -----------------------

Answer = Callable[[dict[str, Any]], CallToolResult]


class Session:
    """Answers `call_tool` as an MCP client session does, from `answers` (tool name ->
    function of the arguments), and records each call."""

    def __init__(self, answers: dict[str, Answer]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call_tool(self, name: str, arguments: dict[str, Any], **_: Any) -> CallToolResult:
        self.calls.append((name, arguments))
        await asyncio.sleep(0)  # a real suspension, as a session's round trip is
        return self.answers[name](arguments)


def text(value: str, *, error: bool = False) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=value)], isError=error)


def mcp_tools(session: Session, **options: Any) -> list[BaseTool]:
    """The adapter's tools for every tool the session answers (each takes a string `x`)."""
    schema = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}
    return [
        convert_mcp_tool_to_langchain_tool(
            session,  # type: ignore[arg-type]
            Tool(name=name, description=f"The {name} tool.", inputSchema=schema),
            **options,
        )
        for name in session.answers
    ]


def one_step(*replies: Any) -> ScriptedChatModel:
    return ScriptedChatModel(
        responses={"planner": [numbered("Use the tools")], "executor": replies}
    )


def test_mcp_tools_are_async_only() -> None:
    (tool,) = mcp_tools(Session({"weather": lambda args: text("Sunny")}))
    with pytest.raises(NotImplementedError):  # what the loop had to work around under invoke
        tool.invoke({"x": "Paris"})


def test_an_async_only_tool_runs_and_its_result_reaches_the_model(run: Run) -> None:
    session = Session({"weather": lambda args: text(f"Sunny in {args['x']}")})
    model = one_step(call(("weather", {"x": "Paris"})), relay)
    out = run(
        create_agent_loop(model, tools=mcp_tools(session), summarise_with_model=False),
        {"task": "t"},
    )
    assert session.calls == [("weather", {"x": "Paris"})]
    (result,) = tool_results(model)
    assert result.status == "success"
    assert result.text == "Sunny in Paris"
    assert out["steps"][0]["result"] == "weather: Sunny in Paris"


def test_a_long_result_reaches_the_model_capped(run: Run) -> None:
    session = Session({"report": lambda args: text("word " * (LONG // 5))})
    model = one_step(call(("report", {"x": "all"})), "read it")
    run(
        create_agent_loop(model, tools=mcp_tools(session), summarise_with_model=False),
        {"task": "t"},
    )
    (result,) = tool_results(model)
    assert len(result.text) <= MAX_RESULT_CHARS
    assert result.text.startswith("word word")
    assert result.text.endswith(f"…[{LONG} characters, cut]")


def picture(size: int) -> ImageContent:
    return ImageContent(
        type="image", data=base64.b64encode(bytes(size)).decode(), mimeType="image/png"
    )


@pytest.mark.parametrize("caption", [10, LONG], ids=["short-text", "long-text"])
def test_an_image_reaches_the_model_as_an_image_and_only_text_is_capped(
    run: Run, caption: int
) -> None:
    # A screenshot is base64 data well past the cap; the model must get it as an image,
    # not as the cap's worth of its characters.
    image = picture(3 * MAX_RESULT_CHARS)
    result = CallToolResult(content=[TextContent(type="text", text="x" * caption), image])
    model = one_step(call(("screenshot", {"x": "page"})), "seen it")
    tools = mcp_tools(Session({"screenshot": lambda args: result}))
    run(create_agent_loop(model, tools=tools, summarise_with_model=False), {"task": "t"})
    (message,) = tool_results(model)
    first, second = message.content
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["type"] == "text" and len(first["text"]) == min(caption, MAX_RESULT_CHARS)
    assert second["type"] == "image" and second["base64"] == image.data


def dropped(args: dict[str, Any]) -> CallToolResult:
    raise ConnectionError("gone")


@pytest.mark.parametrize(
    ("session", "options", "expected"),
    [
        # The server ran the tool and reported that it failed (`isError`).
        (Session({"broken": lambda args: text("no such city", error=True)}), {}, "no such city"),
        # The same with the adapter's error handling off: it raises `ToolException`.
        (
            Session({"broken": lambda args: text("no such city", error=True)}),
            {"handle_tool_errors": False},
            "Error: _MCPToolExecutionError: no such city",
        ),
        # The session failed (a dropped connection, say).
        (
            Session({"broken": dropped}),
            {},
            "Error: ConnectionError: gone",
        ),
    ],
    ids=["is-error", "tool-exception", "session-failed"],
)
def test_a_failed_call_goes_back_to_the_model_as_an_error(
    run: Run, session: Session, options: dict[str, Any], expected: str
) -> None:
    model = one_step(call(("broken", {"x": "Atlantis"})), "the tool failed; reporting that")
    tools = mcp_tools(session, **options)
    out = run(create_agent_loop(model, tools=tools, summarise_with_model=False), {"task": "t"})
    (result,) = tool_results(model)
    assert result.status == "error"
    assert result.text == expected
    assert out["steps"][0]["result"] == "the tool failed; reporting that"


def parallel_model(argument: str) -> ScriptedChatModel:
    """Two steps that each call `weather` (its `argument` the city) at once, then a step
    that joins them."""

    def answer(call_: ModelCall) -> Any:
        if call_.node == "planner":
            return "1. Paris (after none)\n2. Rome (after none)\n3. Compare (after 1, 2)"
        if call_.node == "summariser":
            return "compared"
        if isinstance(call_.messages[-1], ToolMessage):
            return relay(call_)
        step = call_.prompt.split("\n")[1].split(": ", 1)[1]  # "Step i/N: <step>"
        return "compared" if step == "Compare" else call(("weather", {argument: step}))

    return ScriptedChatModel(responses=answer)


def test_mcp_tools_in_a_parallel_run(run: Run) -> None:
    session = Session({"weather": lambda args: text(f"Sunny in {args['x']}")})
    model = parallel_model("x")
    out = run(create_agent_loop(model, tools=mcp_tools(session), parallel=True), {"task": "t"})
    assert out["status"] == "completed"
    assert sorted(args["x"] for _, args in session.calls) == ["Paris", "Rome"]
    assert [s["result"] for s in out["steps"]] == [
        "weather: Sunny in Paris",
        "weather: Sunny in Rome",
        "compared",
    ]


# --- A real FastMCP server over stdio ----------------------------------------------------


@pytest.fixture(scope="module")
def server_tools() -> dict[str, BaseTool]:
    """The stdio server's tools, loaded once per module (each call starts the server)."""
    connection: StdioConnection = {
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(SERVER)],
    }
    tools = asyncio.run(MultiServerMCPClient({"test": connection}).get_tools())
    return {tool.name: tool for tool in tools}


@pytest.mark.slow
def test_stdio_tool_runs_in_the_server_and_its_result_reaches_the_model(
    run: Run, server_tools: dict[str, BaseTool]
) -> None:
    model = one_step(call(("weather", {"city": "Paris"})), relay)
    graph = create_agent_loop(model, tools=[server_tools["weather"]], summarise_with_model=False)
    out = run(graph, {"task": "t"})
    (result,) = tool_results(model)
    assert result.status == "success"
    assert result.text.startswith("Sunny in Paris (MCP server ")
    assert f"(MCP server {os.getpid()})" not in result.text  # it ran in the server's process
    assert out["steps"][0]["result"] == f"weather: {result.text}"
    assert result.artifact == {"structured_content": {"result": result.text}}


@pytest.mark.slow
def test_stdio_long_results_are_capped_and_errors_reported(
    run: Run, server_tools: dict[str, BaseTool]
) -> None:
    model = one_step(call(("long_report", {"size": LONG}), ("broken", {"reason": "test"})), "ok")
    tools = [server_tools["long_report"], server_tools["broken"]]
    out = run(create_agent_loop(model, tools=tools, summarise_with_model=False), {"task": "t"})
    assert out["steps"][0]["status"] == "completed"
    report, error = tool_results(model)
    assert report.status == "success"
    assert len(report.text) == MAX_RESULT_CHARS
    assert report.text.endswith(f"…[{LONG} characters, cut]")
    assert error.status == "error"
    assert error.text == "Error executing tool broken: broken on purpose: test"


@pytest.mark.slow
def test_stdio_tools_in_a_parallel_run(run: Run, server_tools: dict[str, BaseTool]) -> None:
    model = parallel_model("city")
    graph = create_agent_loop(model, tools=[server_tools["weather"]], parallel=True)
    out = run(graph, {"task": "t"})
    assert out["status"] == "completed"
    paris, rome, compare = (s["result"] for s in out["steps"])
    assert paris.startswith("weather: Sunny in Paris (MCP server ")
    assert rome.startswith("weather: Sunny in Rome (MCP server ")
    assert compare == "compared"
