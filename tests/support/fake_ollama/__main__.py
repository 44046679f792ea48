"""Serve the fake Ollama server until interrupted: `python -m tests.support.fake_ollama --help`."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from tests.support.fake_ollama.backends import Backend, Recorded
from tests.support.fake_ollama.llama import RealModel
from tests.support.fake_ollama.protocol import FIXTURES
from tests.support.fake_ollama.server import FakeOllama


def main(argv: Sequence[str] | None = None) -> int:
    """Serve recorded answers (or the real model) on `--port` until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.fake_ollama",
        description="A fake Ollama server answering every phase of the agent loop.",
    )
    parser.add_argument("--port", type=int, default=11434, help="0 picks a free port")
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, help="recorded answers")
    parser.add_argument(
        "--real-model", action="store_true", help="answer with SmolLM2 through llama.cpp"
    )
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        backend: Backend
        if args.real_model:
            backend = stack.enter_context(RealModel.load())
        else:
            backend = Recorded(fixtures=args.fixtures)
        server = stack.enter_context(FakeOllama(backend, port=args.port))
        print(f"Ollama test server listening on {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
