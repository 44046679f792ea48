"""Backends of the fake Ollama server that need no model: scripted and recorded answers.

A backend decides what the server answers; the server speaks HTTP. Each one lists its
models (`/api/tags`), describes one (`/api/show`) and answers chat requests (`/api/chat`).
The real model's backend is `tests.support.fake_ollama.llama.RealModel`.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tests.support.fake_ollama.protocol import FIXTURES, HttpError, Request, Response, fixture


class Backend(Protocol):
    """What answers the requests a `FakeOllama` server receives."""

    def tags(self) -> dict[str, Any]:
        """The `/api/tags` body: `{"models": [...]}`."""
        ...

    def show(self, model: str) -> dict[str, Any] | None:
        """The `/api/show` body for `model`, or None for a model it does not have (404)."""
        ...

    def chat(self, request: Request) -> Response:
        """The answer to one `/api/chat` request (called in the request's handler thread)."""
        ...


class FixtureModels:
    """Models listed and shown from recordings: `tags.json` and `show_<family>.json`.

    Args:
        fixtures: Where the recordings are.
        models: Model names `/api/tags` lists instead of those in `tags.json`.
    """

    def __init__(self, *, fixtures: Path = FIXTURES, models: Sequence[str] | None = None) -> None:
        self.fixtures = Path(fixtures)
        self._models = list(models) if models is not None else None

    def tags(self) -> dict[str, Any]:
        """The `/api/tags` body."""
        recorded = json.loads((self.fixtures / "tags.json").read_text(encoding="utf-8"))
        if self._models is None:
            return dict(recorded)
        template = recorded["models"][0]
        return {"models": [{**template, "name": name, "model": name} for name in self._models]}

    def show(self, model: str) -> dict[str, Any] | None:
        """The `/api/show` body for `model`, or None if `/api/tags` does not list it."""
        names = {m["name"] for m in self.tags()["models"]}
        wanted = model if ":" in model else f"{model}:latest"
        if wanted not in names and model not in names:
            return None
        path = self.fixtures / f"show_{model.split(':', 1)[0]}.json"
        if not path.exists():
            path = self.fixtures / "show_llama3.2.json"
        shown: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return shown


Script = Sequence[Response] | Callable[[Request], Response]
"""Responses for the chat requests, in order, or a function of the request."""


class Scripted(FixtureModels):
    """Chat requests answered from a script; models listed from the recordings.

    The script is a list of responses consumed in order (`play`) or a function of the
    `Request` (`respond`); any model name is answered. A chat request the script has no answer
    for gets a 400 (not retried by clients, so a short script fails fast and visibly) and is
    listed in `unscripted`.

    Args:
        script: The first script; `play` and `respond` replace it.
        fixtures: Where `tags.json` and `show_*.json` are read from.
        models: Model names `/api/tags` lists (default: those in `tags.json`).
    """

    def __init__(
        self,
        script: Script = (),
        *,
        fixtures: Path = FIXTURES,
        models: Sequence[str] | None = None,
    ) -> None:
        super().__init__(fixtures=fixtures, models=models)
        self._lock = threading.Lock()
        self._queue: list[Response] = []
        self._answer: Callable[[Request], Response] | None = None
        self._unscripted: list[Request] = []
        self._asked = 0
        if callable(script):
            self.respond(script)
        else:
            self.play(*script)

    def play(self, *responses: Response) -> None:
        """Answer the next chat requests with `responses`, in order (replaces the script)."""
        with self._lock:
            self._queue = list(responses)
            self._answer = None

    def respond(self, answer: Callable[[Request], Response]) -> None:
        """Answer every chat request with `answer(request)` (replaces the script)."""
        with self._lock:
            self._queue = []
            self._answer = answer

    def chat(self, request: Request) -> Response:
        """The script's next response."""
        with self._lock:
            self._asked += 1
            if self._answer is not None:
                answer = self._answer
            elif self._queue:
                return self._queue.pop(0)
            else:
                self._unscripted.append(request)
                return HttpError(
                    400, f"test server: no scripted answer for chat request {self._asked}"
                )
        return answer(request)

    @property
    def unscripted(self) -> list[Request]:
        """Chat requests that arrived after the script ran out."""
        with self._lock:
            return list(self._unscripted)

    @property
    def left(self) -> int:
        """Scripted responses not used yet."""
        with self._lock:
            return len(self._queue)


def phase_of(request: Request) -> str:
    """Which phase of the agent loop a chat request comes from.

    Nothing on the wire names the calling node, so the request's shape and prompt tell.

    Returns:
        `planner`, `adapter`, `summariser`, `tool_result` (an executor turn that carries a
        tool's answer) or `executor`.
    """
    prompt = request.prompt.lower()
    if request.format is not None or "numbered" in prompt or "break this task" in prompt:
        return "planner"
    if "alternative" in prompt or "revised step" in prompt:
        return "adapter"
    if "final answer" in prompt:
        return "summariser"
    if request.messages and request.messages[-1].get("role") == "tool":
        return "tool_result"
    return "executor"


class Recorded(FixtureModels):
    """Every phase of the agent loop answered from the recordings, for any number of runs.

    Plans come from `plan_json` when the request asks for a JSON format, else `plan`;
    executor turns cycle through `step_*` (calling a tool first when tools are bound);
    the adapter gets `adapted_step` and the summariser `final_answer`.

    Args:
        fixtures: Where the recordings are.
        models: Model names `/api/tags` lists (default: those in `tags.json`).
    """

    def __init__(self, *, fixtures: Path = FIXTURES, models: Sequence[str] | None = None) -> None:
        super().__init__(fixtures=fixtures, models=models)
        names = sorted(p.stem for p in self.fixtures.glob("step_*.ndjson")) or ["step_1"]
        self._steps = itertools.cycle(names)
        self._lock = threading.Lock()

    def chat(self, request: Request) -> Response:
        """The recording for the request's phase."""
        phase = phase_of(request)
        if phase == "planner":
            return fixture("plan_json" if request.format else "plan", self.fixtures)
        if phase == "adapter":
            return fixture("adapted_step", self.fixtures)
        if phase == "summariser":
            return fixture("final_answer", self.fixtures)
        if phase == "executor" and request.tools:
            return fixture("tool_call", self.fixtures)
        with self._lock:
            name = next(self._steps)
        return fixture(name, self.fixtures)
