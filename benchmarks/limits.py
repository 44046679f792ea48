"""What runs spend against their budgets: tokens and seconds, over a sweep of limits.

- Tokens: the demo model (about four characters a token, as the loop estimates a prompt it
  cannot count otherwise, and honouring the answer cap the loop sets) on a five-step task,
  with `Budget(max_tokens=...)`. Target: spent <= limit (the counting error is the difference
  between the loop's estimate of a prompt and what the model reports for it: none here).
- Seconds: a model whose step answers never come (an hour each), with
  `Budget(max_seconds=...)`, blocking `invoke` and async `ainvoke`. Target: the run ends
  within 1.5 s of the limit, the call in flight abandoned or cancelled.

    python benchmarks/limits.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from agentloop_graph import Budget, create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel, Slow

TOKEN_LIMITS = (100, 200, 400, 800, 1600, 3200)
SECOND_LIMITS = (0.5, 1.0, 2.0, 4.0)
GRACE = 1.5
TASK = "Plan a picnic for four friends in the park, with food, games and a rain plan"


def hung(call: ModelCall) -> Any:
    if call.node == "planner":
        return "1. Book the park\n2. Buy the food\n3. Pack the games"
    return Slow(3600, "too late")


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def tokens(limits: tuple[int, ...]) -> bool:
    print("tokens: the demo model, max_tokens swept")
    print(f"  {'limit':>6} {'spent':>6} {'spent / limit':>14}  status")
    ok = True
    for limit in limits:
        loop = create_agent_loop("demo", budget=Budget(max_tokens=limit))
        spent = loop.invoke({"task": TASK})["usage"]["total_tokens"]
        ok &= spent <= limit
        print(f"  {limit:>6} {spent:>6} {spent / limit:>14.2f}  {verdict(spent <= limit)}")
    return ok


def seconds(limits: tuple[float, ...]) -> bool:
    print(f"seconds: a model that never answers a step, max_seconds swept (target: +{GRACE} s)")
    print(f"  {'limit':>6} {'invoke':>8} {'ainvoke':>8}  status")
    ok = True
    for limit in limits:
        took = []
        for is_async in (False, True):
            loop = create_agent_loop(
                ScriptedChatModel(responses=hung), budget=Budget(max_seconds=limit)
            )
            started = time.monotonic()
            if is_async:
                asyncio.run(loop.ainvoke({"task": TASK}))
            else:
                loop.invoke({"task": TASK})
            took.append(time.monotonic() - started)
        met = max(took) <= limit + GRACE
        ok &= met
        print(f"  {limit:>6.1f} {took[0]:>7.2f}s {took[1]:>7.2f}s  {verdict(met)}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two limits of each")
    quick = parser.parse_args().quick
    print("command: python benchmarks/limits.py" + (" --quick" if quick else ""))
    met = tokens(TOKEN_LIMITS[:2] if quick else TOKEN_LIMITS)
    met &= seconds(SECOND_LIMITS[:2] if quick else SECOND_LIMITS)
    print(f"targets: {verdict(met)}")


if __name__ == "__main__":
    main()
