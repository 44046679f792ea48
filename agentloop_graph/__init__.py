"""A plan -> execute -> adapt -> summarise agent loop as a LangGraph state machine."""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:
    from agentloop_graph.agents import StepAgent
    from agentloop_graph.budget import Budget
    from agentloop_graph.compat import AgenticResult, AgenticStep, run_agentic_loop
    from agentloop_graph.compiled import UnfinishedRunError
    from agentloop_graph.context import Context
    from agentloop_graph.graph import build_agent_loop, create_agent_loop
    from agentloop_graph.leases import ThreadBusyError
    from agentloop_graph.state import StepRecord
    from agentloop_graph.tool import plan_and_execute_tool

# Each public name is imported on first use: the `agentloop` command lives in this
# package, and its `--help` should not wait for LangChain and LangGraph to load.
_HOMES = MappingProxyType(
    {
        "AgenticResult": "agentloop_graph.compat",
        "AgenticStep": "agentloop_graph.compat",
        "Budget": "agentloop_graph.budget",
        "Context": "agentloop_graph.context",
        "StepAgent": "agentloop_graph.agents",
        "StepRecord": "agentloop_graph.state",
        "ThreadBusyError": "agentloop_graph.leases",
        "UnfinishedRunError": "agentloop_graph.compiled",
        "build_agent_loop": "agentloop_graph.graph",
        "create_agent_loop": "agentloop_graph.graph",
        "plan_and_execute_tool": "agentloop_graph.tool",
        "run_agentic_loop": "agentloop_graph.compat",
    }
)

__all__ = [
    "AgenticResult",
    "AgenticStep",
    "Budget",
    "Context",
    "StepAgent",
    "StepRecord",
    "ThreadBusyError",
    "UnfinishedRunError",
    "build_agent_loop",
    "create_agent_loop",
    "plan_and_execute_tool",
    "run_agentic_loop",
]


def __dir__() -> list[str]:
    return [*__all__, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
