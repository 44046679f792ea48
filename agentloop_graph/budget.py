"""Hard limits on what one run may spend, and the meter that counts its spending."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, fields
from typing import Annotated, Literal

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


class BudgetExhausted(Exception):
    """A model call was not made: the run's budget is spent."""

    def __init__(self, spent: Spent) -> None:
        super().__init__(f"budget exhausted: {spent}")
        self.spent: Spent = spent


class Meter:
    """What a run has spent, counted as its model calls start and answer.

    One per run, in the run's config (`METER_KEY`), shared by the steps of a parallel run
    running at once, so that together they stay within the budget. Where a node finds none
    (a graph compiled from `build_agent_loop` by someone else), it counts alone from what the
    run's state records, as a resumed run's meter starts from it.
    """

    def __init__(self, started_at: float, model_calls: int = 0, tokens: int = 0) -> None:
        self._lock = threading.Lock()
        self.started_at = started_at
        self.model_calls = model_calls
        self.tokens = tokens

    def catch_up(self, model_calls: int, tokens: int) -> None:
        """Count what the run's state records as spent, if this meter has counted less."""
        with self._lock:
            self.model_calls = max(self.model_calls, model_calls)
            self.tokens = max(self.tokens, tokens)

    def take(self, budget: Budget | None, input_tokens: int = 0) -> Spent | None:
        """Count the call about to be made; or, counting nothing, the budget it would overrun.

        `input_tokens`: what the call's prompt is expected to spend (0 when unknown)."""
        with self._lock:
            if budget is not None:
                if (
                    budget.max_model_calls is not None
                    and self.model_calls >= budget.max_model_calls
                ):
                    return "model calls"
                if budget.max_tokens is not None and (
                    self.tokens + input_tokens >= budget.max_tokens
                ):
                    return "tokens"
                if (left := self.seconds_left(budget)) is not None and left <= 0:
                    return "time"
            self.model_calls += 1
            return None

    def spend(self, tokens: int) -> None:
        """Count the tokens an answer reported."""
        with self._lock:
            self.tokens += tokens

    def seconds_left(self, budget: Budget | None) -> float | None:
        """Seconds the run may still take (None: no time budget)."""
        if budget is None or budget.max_seconds is None:
            return None
        return self.started_at + budget.max_seconds - time.time()

    def tokens_left(self, budget: Budget | None) -> int | None:
        """Tokens the run may still spend (None: no token budget)."""
        if budget is None or budget.max_tokens is None:
            return None
        return budget.max_tokens - self.tokens

    def spent(self) -> Spending:
        """The run's spending so far, as progress events carry it."""
        return {"model_calls": self.model_calls, "tokens": self.tokens}


METER_KEY = "__agentloop_meter"
"""Where a run's `Meter` travels in `config["configurable"]`."""


class Spending(TypedDict):
    """What a run had spent when a progress event was written."""

    model_calls: int
    tokens: int


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
