"""The traced run the LangSmith and OpenTelemetry suites share, and resetting `langsmith`.

`scripted_model()` runs `TASK` as a two-step plan whose first step fails once and is
adapted; `NODE_RUNS` and `STEP_METADATA` are what its trace must show. The fixtures that
use `forget_langsmith_settings` (`langsmith_env`, `collector`) are in `tests/conftest.py`.
"""

from __future__ import annotations

from langsmith import utils as ls_utils

from agentloop_graph.testing import ScriptedChatModel
from tests.support.helpers import numbered

TASK = "Cross the stream"

NODE_RUNS = ["planner", "executor", "adapter", "executor", "executor", "summariser"]
"""The graph's node runs under the root, in the order they start."""

STEP_METADATA = [(None, None), (1, 1), (1, 1), (1, 2), (2, 1), (None, None)]
"""`(step, attempt)` metadata of the model call under each node run of `NODE_RUNS`."""

RUN_COUNT = 1 + 2 * len(NODE_RUNS)
"""The root, each node run and the model run under it."""


def scripted_model() -> ScriptedChatModel:
    """A model whose plan has two steps; the first fails once and is adapted."""
    return ScriptedChatModel(
        responses={
            "planner": [numbered("Look", "Leap")],
            "executor": [RuntimeError("slipped"), "looked", "leapt"],
            "adapter": ["Look more carefully"],
            "summariser": ["Across."],
        }
    )


def forget_langsmith_settings() -> None:
    """Make `langsmith` read its environment variables again."""
    ls_utils.get_env_var.cache_clear()  # type: ignore[attr-defined]
