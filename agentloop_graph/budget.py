"""Hard limits on what one run may spend, checked before every model call."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage
from pydantic import Field
from typing_extensions import TypedDict

from agentloop_graph.checks import check_count, check_seconds

Spent = Literal["model calls", "tokens", "time"]
"""Which budget stopped a run."""


@dataclass(frozen=True, kw_only=True)
class Budget:
    """What one run may spend; a limit left as None is not enforced.

    Checked before every model call (the summariser's included): a call is never started
    once a limit is reached. The open step then ends `failed` with `budget exhausted:
    <which>`, no later step starts, and the summary says which budget was spent.

    Example:
        >>> from agentloop_graph import Budget, create_agent_loop
        >>> loop = create_agent_loop("demo", budget=Budget(max_model_calls=3))
        >>> out = loop.invoke({"task": "Plan a picnic"})
        >>> out["status"], out["summary"].endswith("Stopped: model calls budget spent.")
        ('partial', True)
    """

    max_model_calls: Annotated[
        int | None, Field(description="Model calls one run may make, planning included.")
    ] = None
    max_tokens: Annotated[
        int | None, Field(description="Tokens (input + output) one run may spend.")
    ] = None
    max_seconds: Annotated[
        float | None, Field(description="Seconds one run may take from the start of planning.")
    ] = None

    def __post_init__(self) -> None:
        for name in ("max_model_calls", "max_tokens"):
            if (value := getattr(self, name)) is not None:
                check_count(f"budget {name}", value, 1)
        check_seconds("budget max_seconds", self.max_seconds)


def as_budget(value: object) -> Budget | None:
    """A `Budget` from a `Budget`, a mapping of its fields (as Studio sends it) or None.

    Raises:
        ValueError: The value is none of these, or a limit is out of range.
    """
    if value is None or isinstance(value, Budget):
        return value
    if isinstance(value, dict):
        limits = [field.name for field in fields(Budget)]
        if unknown := sorted(set(map(str, value)) - set(limits)):
            raise ValueError(f"budget has unknown limits {unknown}; Budget has {limits}")
        return Budget(**value)
    raise ValueError(f"budget must be a Budget or a dict of its limits, got {value!r}")


@dataclass
class Meter:
    """What a run has spent so far, brought up to date within one node."""

    model_calls: int
    tokens: int
    started_at: float

    @classmethod
    def of(cls, cursor: Mapping[str, Any]) -> Meter:
        """The spending a run's cursor records."""
        return cls(cursor["model_calls"], cursor["run_usage"]["total_tokens"], cursor["started_at"])

    def spend(self, reply: AIMessage) -> AIMessage:
        """Count `reply`'s tokens; `reply`."""
        if usage := reply.usage_metadata:
            self.tokens += usage["total_tokens"]
        return reply

    def refusal(self, budget: Budget | None) -> Spent | None:
        """The budget the next model call would overrun, or None if it may be made."""
        if budget is None:
            return None
        if budget.max_model_calls is not None and self.model_calls >= budget.max_model_calls:
            return "model calls"
        if budget.max_tokens is not None and self.tokens >= budget.max_tokens:
            return "tokens"
        if budget.max_seconds is not None and time.time() - self.started_at >= budget.max_seconds:
            return "time"
        return None


class CallCount:
    """The model calls a run has made, counted as they start by every step of the run.

    Steps of a parallel run start from what the run had spent when their wave began; each
    takes its next call from this one count, so together they never pass `max_model_calls`.
    One per run, in the run's config (`CALLS_KEY`); a resumed run starts a new one, from the
    checkpoint's count.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made = 0

    def take(self, meter: Meter, budget: Budget | None) -> bool:
        """Count the call about to be made; False, counting nothing, if the budget allows
        no more calls."""
        limit = None if budget is None else budget.max_model_calls
        with self._lock:
            made = max(self._made, meter.model_calls)
            if limit is not None and made >= limit:
                return False
            self._made = made + 1
            return True


CALLS_KEY = "__agentloop_calls"
"""Where a run's `CallCount` travels in `config["configurable"]`."""


class BudgetExhausted(Exception):
    """A model call was not made: the run's budget is spent."""

    def __init__(self, spent: Spent) -> None:
        super().__init__(f"budget exhausted: {spent}")
        self.spent: Spent = spent


class BudgetReport(TypedDict):
    """`agentic.task_complete`'s `budget`: the run's limits and what it spent."""

    limits: dict[str, float | None]
    spent: dict[str, float]


def report(budget: Budget | None, meter: Meter) -> BudgetReport:
    """The limits and spending `agentic.task_complete` reports."""
    limits = budget or Budget()
    return {
        "limits": {
            "max_model_calls": limits.max_model_calls,
            "max_tokens": limits.max_tokens,
            "max_seconds": limits.max_seconds,
        },
        "spent": {
            "model_calls": meter.model_calls,
            "tokens": meter.tokens,
            "seconds": round(time.time() - meter.started_at, 3),
        },
    }
