"""Range checks of the loop's settings, one set for the factory, `Context`, `Budget` and the
command line. Nothing here imports LangChain, so `agentloop --help` stays quick."""

from __future__ import annotations

import math


def check_count(name: str, value: object, minimum: int) -> int:
    """`value`, if it is an integer >= `minimum`.

    Raises:
        ValueError: It is not; the message names `name`.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_seconds(name: str, value: object) -> float | None:
    """`value`, if it is None or a finite number of seconds > 0.

    Raises:
        ValueError: It is not; the message names `name`.
    """
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return value


def check_flag(name: str, value: object) -> bool:
    """`value`, if it is a bool.

    Raises:
        ValueError: It is not; the message names `name`.
    """
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value
