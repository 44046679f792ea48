"""Worker processes that a test kills mid-run (crash and resume tests)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@contextmanager
def killed_worker(
    args: list[str], stderr: Path
) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str | None]]]:
    """Start a worker and hand over its stdout lines as they come (None at the end);
    SIGKILL it on leaving the block, however the block ends.

    The worker leads its own session, so killing its process group leaves nothing behind.
    """
    lines: queue.Queue[str | None] = queue.Queue()
    with (
        stderr.open("w") as errors,
        subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True
        ) as worker,
    ):
        assert worker.stdout is not None
        reader = threading.Thread(target=_read_lines, args=(worker.stdout, lines), daemon=True)
        reader.start()
        try:
            yield worker, lines
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            reader.join(timeout=10)
