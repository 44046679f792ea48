"""A plan -> execute -> adapt -> summarise agent loop as a LangGraph state machine."""

from agentloop_graph.compat import AgenticResult, AgenticStep, run_agentic_loop
from agentloop_graph.compiled import UnfinishedRunError
from agentloop_graph.context import Context
from agentloop_graph.graph import create_agent_loop
from agentloop_graph.leases import ThreadBusyError
from agentloop_graph.state import StepRecord
from agentloop_graph.tool import plan_and_execute_tool

__all__ = [
    "AgenticResult",
    "AgenticStep",
    "Context",
    "StepRecord",
    "ThreadBusyError",
    "UnfinishedRunError",
    "create_agent_loop",
    "plan_and_execute_tool",
    "run_agentic_loop",
]
