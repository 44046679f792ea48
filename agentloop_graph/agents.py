"""Your own agents do the steps: `executor=` (one agent) and `executors=` (a roster the planner
assigns steps to)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import Runnable


@dataclass(frozen=True)
class StepAgent:
    """An agent that can do a plan's steps: any Runnable taking `{"messages": [...]}` and
    returning a dict with `messages` (LangChain's `create_agent`, a compiled `StateGraph`, a
    deepagents agent).
    """

    name: str
    """How the planner names it (`[name]` in text plans, `"agent"` in JSON ones)."""
    description: str
    """What the planner reads about it, to choose it for a step."""
    runnable: Runnable[Any, Any]
