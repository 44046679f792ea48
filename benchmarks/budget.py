"""Model calls and tokens per run, for the demo tasks, without and with budgets.

The demo model reports about four characters a token, as a real model's usage metadata
would; every figure is counted by the loop itself (`agentic.task_complete`'s `budget`).

    python benchmarks/budget.py
"""

from __future__ import annotations

from typing import Any

from agentloop_graph import Budget, create_agent_loop

TASKS = (
    "Plan a picnic",
    "Plan a picnic, fail step 2",
    "Plan a picnic, break step 2 and break step 3",
    "Plan a picnic, fail step 1, fail step 2, fail step 3, fail step 4",
)
BUDGETS: dict[str, Budget | None] = {
    "no budget": None,
    "max_model_calls=6": Budget(max_model_calls=6),
    "max_tokens=600": Budget(max_tokens=600),
}


def spent(task: str, budget: Budget | None) -> dict[str, Any]:
    """One run's status and what it spent, from its last progress event."""
    graph = create_agent_loop("demo", budget=budget, max_adaptations=2)
    events = list(graph.stream({"task": task}, stream_mode="custom"))
    done = events[-1]
    return {"status": done["status"], **done["budget"]["spent"]}


def main() -> None:
    width = max(map(len, TASKS))
    for name, budget in BUDGETS.items():
        print(f"{name}:")
        for task in TASKS:
            run = spent(task, budget)
            print(
                f"  {task:<{width}}  {run['status']:<9} {run['model_calls']:>2} model calls "
                f"{run['tokens']:>5} tokens"
            )


if __name__ == "__main__":
    main()
