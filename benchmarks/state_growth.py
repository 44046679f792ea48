"""State growth: bytes a SQLite checkpointer stores per step, for plans of 20 and 200 steps.

Each plan length runs once, on a fresh thread in its own temporary SQLite file, with a
scripted model (no latency, `max_steps` raised to the plan's length,
`summarise_with_model=False`). Two figures per run, both divided by the number of steps
(planning and summarising included, so they are amortised over the steps):

- rows: the bytes of the serialized values the checkpointer stored, read back from its
  tables: `checkpoints.checkpoint` + `checkpoints.metadata` + `writes.value`. This is what
  the checkpointer chose to write, independent of SQLite's page layout; the target is
  judged on it.
- file: growth of the database file once the write-ahead log is folded into it (pages,
  indexes and free space included).

Target: rows per step at 200 steps at most 3x rows per step at 20 steps. The script also
breaks the largest run's rows down by table and channel (each checkpoint's channel values
re-serialized one by one, each write as stored), to show which state grows.

    python benchmarks/state_growth.py [--steps 20 200] [--check]

With `--check` the exit status is 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver

from agentloop_graph import create_agent_loop
from agentloop_graph.testing import ModelCall, ScriptedChatModel

TARGET_RATIO = 3.0
MINOR_BYTES = 20
"""Parts smaller than this per step, in both runs, are summed into one line."""
RESULT = "Checked the inventory, ordered what was missing and noted the delivery dates. "
"""A step result of a realistic length (about 80 characters)."""


@dataclass(frozen=True)
class Growth:
    """What one run stored."""

    steps: int
    checkpoints: int
    row_bytes: int
    file_bytes: int
    by_part: Counter[str]
    """Row bytes by `checkpoints.<channel>`, `checkpoints.<other>` and `writes.<channel>`."""

    @property
    def rows_per_step(self) -> float:
        return self.row_bytes / self.steps

    @property
    def file_per_step(self) -> float:
        return self.file_bytes / self.steps


def scripted_model(steps: int) -> ScriptedChatModel:
    plan = "\n".join(f"{i}. Do part {i} of the job" for i in range(1, steps + 1))

    def answer(call: ModelCall) -> str:
        return plan if call.node == "planner" else RESULT

    return ScriptedChatModel(responses=answer)


def file_size(conn: sqlite3.Connection, path: Path) -> int:
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def breakdown(saver: SqliteSaver) -> Counter[str]:
    parts: Counter[str] = Counter()
    for type_, blob, metadata in saver.conn.execute(
        "SELECT type, checkpoint, metadata FROM checkpoints"
    ):
        checkpoint = saver.serde.loads_typed((type_, blob))
        values = checkpoint["channel_values"]
        for channel, value in values.items():
            parts[f"checkpoints.{channel}"] += len(saver.serde.dumps_typed(value)[1])
        parts["checkpoints.<versions, ids, other>"] += len(
            saver.serde.dumps_typed({**checkpoint, "channel_values": {}})[1]
        )
        parts["checkpoints.<metadata>"] += len(metadata)
    for channel, size in saver.conn.execute(
        "SELECT channel, SUM(LENGTH(value)) FROM writes GROUP BY channel"
    ):
        parts[f"writes.{channel}"] += size
    return parts


def measure(steps: int, directory: Path) -> Growth:
    path = directory / f"checkpoints-{steps}.db"
    with SqliteSaver.from_conn_string(str(path)) as saver:
        saver.setup()
        empty = file_size(saver.conn, path)
        graph = create_agent_loop(
            scripted_model(steps),
            max_steps=steps,
            summarise_with_model=False,
            checkpointer=saver,
        )
        out = graph.invoke({"task": "Run the job"}, {"configurable": {"thread_id": "growth"}})
        assert out["status"] == "completed" and len(out["steps"]) == steps, out["summary"]
        (checkpoints,) = saver.conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()
        (row_bytes,) = saver.conn.execute(
            "SELECT (SELECT SUM(LENGTH(checkpoint) + LENGTH(metadata)) FROM checkpoints)"
            " + (SELECT SUM(LENGTH(value)) FROM writes)"
        ).fetchone()
        return Growth(
            steps=steps,
            checkpoints=checkpoints,
            row_bytes=row_bytes,
            file_bytes=file_size(saver.conn, path) - empty,
            by_part=breakdown(saver),
        )


def report(small: Growth, large: Growth) -> float:
    print("SQLite checkpointer, bytes stored per step (scripted model, no summary call)")
    print(f"{'steps':>6} {'checkpoints':>12} {'rows/step':>12} {'file/step':>12}")
    for run in (small, large):
        print(
            f"{run.steps:>6} {run.checkpoints:>12} "
            f"{run.rows_per_step:>12,.0f} {run.file_per_step:>12,.0f}"
        )
    ratio = large.rows_per_step / small.rows_per_step
    file_ratio = large.file_per_step / small.file_per_step
    verdict = "met" if round(ratio, 2) <= TARGET_RATIO else "NOT met"
    print(
        f"ratio {large.steps}/{small.steps}: rows {ratio:.2f}, file {file_ratio:.2f} "
        f"(target rows <= {TARGET_RATIO:g}: {verdict})"
    )
    print(f"\nwhere the rows go, bytes per step (at {small.steps} -> at {large.steps} steps):")
    rest = (0.0, 0.0)
    for part, size in large.by_part.most_common():
        sizes = (small.by_part[part] / small.steps, size / large.steps)
        if max(sizes) < MINOR_BYTES:
            rest = (rest[0] + sizes[0], rest[1] + sizes[1])
        else:
            print(f"  {part:<40} {sizes[0]:>10,.0f} -> {sizes[1]:>10,.0f}")
    print(f"  {'(everything else)':<40} {rest[0]:>10,.0f} -> {rest[1]:>10,.0f}")
    return ratio


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs=2, default=(20, 200), metavar=("SMALL", "LARGE"))
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="state-growth-") as directory:
        small, large = (measure(steps, Path(directory)) for steps in args.steps)
        ratio = report(small, large)
    return 1 if args.check and ratio > TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
