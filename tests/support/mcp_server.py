"""A stdio MCP server for the tests, built with the `mcp` package's `FastMCP`.

Run as `python tests/support/mcp_server.py`; a client (`langchain-mcp-adapters`) starts it
as a subprocess and talks to it over stdin/stdout. Its tools:

- `weather(city)`: a forecast naming this server's process id, so a test can tell that the
  answer came from the server and not from anything in the test's own process.
- `long_report(size)`: `size` characters of text (to test the cap on tool results).
- `broken(reason)`: raises, which FastMCP reports as a result with `isError` set.
"""

from __future__ import annotations

import os

from mcp.server.fastmcp import FastMCP

# WARNING: no log line for every request on the test output.
server = FastMCP("agentloop-test-tools", log_level="WARNING")


@server.tool()
def weather(city: str) -> str:
    """Look up the weather forecast for a city."""
    return f"Sunny in {city} (MCP server {os.getpid()})"


@server.tool()
def long_report(size: int) -> str:
    """Write a report of `size` characters."""
    line = "All quiet on the western front. "
    return (line * (size // len(line) + 1))[:size]


@server.tool()
def broken(reason: str) -> str:
    """A tool that always fails."""
    raise ValueError(f"broken on purpose: {reason}")


if __name__ == "__main__":
    server.run("stdio")
