"""What crosses the wire of a fake Ollama server: requests, answers and faults.

A `Request` is what a client sent. An `Answer` is known in full before it is sent
(`reply(...)` builds one, `fixture(name)` loads a recording); a `Generation` is written while
it is sent (the real model's). Either is streamed as NDJSON chunks, or folded into one object
for `"stream": false`. The faults wrap an answer to break its delivery the ways tests need.
`Served` records a request answered in full.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ollama"
"""The recorded answers, `/api/tags` listing and `/api/show` answers shipped with the tests."""

Chunk = dict[str, Any]
"""One NDJSON object of a chat answer."""


# --- requests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    method: str
    path: str
    body: Any
    """The JSON body (None without one)."""
    headers: dict[str, str] = field(default_factory=dict)

    def _field(self, name: str) -> Any:
        return self.body.get(name) if isinstance(self.body, dict) else None

    @property
    def model(self) -> str | None:
        """The model the request names."""
        return self._field("model") or self._field("name")

    @property
    def stream(self) -> bool:
        """Whether the answer is streamed (Ollama's default when `stream` is absent)."""
        return self._field("stream") is not False

    @property
    def options(self) -> dict[str, Any]:
        """Sampling and runtime options (`temperature`, `num_ctx`, `num_predict`, ...)."""
        return self._field("options") or {}

    @property
    def format(self) -> Any:
        """The requested output format: `"json"`, a JSON schema, or None."""
        return self._field("format")

    @property
    def think(self) -> Any:
        """The `think` flag, or None when not sent."""
        return self._field("think")

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The tool schemas sent with the request."""
        return self._field("tools") or []

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools sent with the request."""
        return [t.get("function", {}).get("name") for t in self.tools]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages sent."""
        return self._field("messages") or []

    @property
    def prompt(self) -> str:
        """Text of the last user message."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return str(message.get("content") or "")
        return ""


# --- answers -----------------------------------------------------------------------------


def timestamp() -> str:
    """Now, as Ollama writes `created_at`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pieces(text: str) -> list[str]:
    # Ollama streams one token per chunk; words with their leading white space come close.
    return re.findall(r"\s*\S+|\s+$", text)


def fold(chunks: Iterable[Chunk]) -> Chunk:
    """Ollama's non-streamed answer: the chunks' message parts joined, the last one's stats.

    Raises:
        ValueError: A chunk is an in-stream `{"error": ...}` (its text is the message).
    """
    content: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    final: Chunk = {}
    for chunk in chunks:
        if "error" in chunk:
            raise ValueError(chunk["error"])
        message = chunk.get("message") or {}
        content.append(message.get("content") or "")
        thinking.append(message.get("thinking") or "")
        calls.extend(message.get("tool_calls") or [])
        final = chunk
    message = {"role": "assistant", "content": "".join(content)}
    if any(thinking):
        message["thinking"] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    return {**final, "message": message}


@dataclass(frozen=True)
class Answer:
    """A model answer as the NDJSON chunks Ollama streams for it.

    Build one with `reply(...)` or load a recording with `fixture(name)`. The last chunk has
    `"done": true`, `done_reason` and the usage counts.
    """

    chunks: tuple[Chunk, ...]
    name: str = "reply"

    @property
    def content(self) -> str:
        """The answer text, every chunk's `message.content` joined."""
        return "".join(c.get("message", {}).get("content") or "" for c in self.chunks)

    @property
    def thinking(self) -> str:
        """The reasoning text, every chunk's `message.thinking` joined."""
        return "".join(c.get("message", {}).get("thinking") or "" for c in self.chunks)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls of every chunk, in order."""
        calls: list[dict[str, Any]] = []
        for chunk in self.chunks:
            calls.extend(chunk.get("message", {}).get("tool_calls") or [])
        return calls

    @property
    def usage(self) -> dict[str, int]:
        """The final chunk's counts as LangChain's usage metadata names them."""
        final = self.chunks[-1]
        prompt, output = final.get("prompt_eval_count", 0), final.get("eval_count", 0)
        return {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output}

    def stream(self, model: str | None) -> Iterator[Chunk]:
        """The chunks to send, naming `model` (the request's) like Ollama does."""
        for chunk in self.chunks:
            yield dict(chunk) if model is None else {**chunk, "model": model}

    def single(self, model: str | None) -> Chunk:
        """The non-streamed answer: one object with the whole message and the final stats."""
        return fold(self.stream(model))


@dataclass
class Generation:
    """An answer written while it is sent: chunks from a running model.

    `chunks` ends with the `done` chunk. An exception it raises before its first chunk is a
    refused request: `ValueError` for a bad one (answered 400), anything else a failure
    (500); after the first chunk it reaches the client as an in-stream `{"error": ...}`.
    Closing `chunks` (the client went away) stops the model.
    """

    chunks: Iterator[Chunk]
    name: str = "generation"

    def stream(self, model: str | None) -> Iterator[Chunk]:
        """The chunks, as the model writes them (they name the request's model already)."""
        return self.chunks

    def close(self) -> None:
        """Stop generating (a generator's `close`)."""
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


def reply(
    content: str = "",
    *,
    thinking: str | None = None,
    tool_calls: Sequence[tuple[str, Mapping[str, Any]]] = (),
    prompt_eval_count: int = 32,
    eval_count: int | None = None,
    done_reason: str = "stop",
    model: str = "llama3.2",
) -> Answer:
    """An answer streamed the way Ollama streams one.

    Args:
        content: The answer text, sent a word at a time.
        thinking: Reasoning sent first in `message.thinking` chunks (as with `think: true`).
        tool_calls: `(name, arguments)` pairs, sent together in one chunk after the text.
        prompt_eval_count: Input tokens reported in the final chunk.
        eval_count: Output tokens reported; by default one per streamed piece.
        done_reason: `stop`, `length`, ...
        model: The model named when the request names none.

    Returns:
        The answer, usable in a script or compared against what the loop recorded.
    """
    head = {"model": model}
    chunks: list[Chunk] = []
    message: dict[str, Any]
    for piece in _pieces(thinking or ""):
        message = {"role": "assistant", "content": "", "thinking": piece}
        chunks.append({**head, "created_at": timestamp(), "message": message, "done": False})
    for piece in _pieces(content):
        message = {"role": "assistant", "content": piece}
        chunks.append({**head, "created_at": timestamp(), "message": message, "done": False})
    if tool_calls:
        calls = [{"function": {"name": name, "arguments": dict(args)}} for name, args in tool_calls]
        message = {"role": "assistant", "content": "", "tool_calls": calls}
        chunks.append({**head, "created_at": timestamp(), "message": message, "done": False})
    produced = eval_count if eval_count is not None else len(chunks) + 1
    chunks.append(
        {
            **head,
            "created_at": timestamp(),
            "message": {"role": "assistant", "content": ""},
            "done_reason": done_reason,
            "done": True,
            "total_duration": 250_000_000 + produced * 21_000_000,
            "load_duration": 18_000_000,
            "prompt_eval_count": prompt_eval_count,
            "prompt_eval_duration": prompt_eval_count * 1_400_000,
            "eval_count": produced,
            "eval_duration": produced * 20_500_000,
        }
    )
    return Answer(tuple(chunks))


def fixture(name: str, directory: Path = FIXTURES) -> Answer:
    """A recorded answer: `<directory>/<name>.ndjson`, one Ollama chunk per line."""
    path = directory / f"{name}.ndjson"
    lines = path.read_text(encoding="utf-8").splitlines()
    chunks = tuple(json.loads(line) for line in lines if line.strip())
    if not chunks or chunks[-1].get("done") is not True:
        raise ValueError(f"{path} does not end with a chunk whose done is true")
    return Answer(chunks, name=name)


# --- faults ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpError:
    """An HTTP error with Ollama's body, `{"error": ...}`; `{model}` names the request's."""

    status: int
    error: str

    @classmethod
    def model_not_found(cls) -> HttpError:
        """What Ollama answers a chat request for a model it does not have."""
        return cls(404, 'model "{model}" not found, try pulling it first')


def error_fixture(name: str, directory: Path = FIXTURES) -> HttpError:
    """A recorded error from `<directory>/errors.json` (name -> status and body)."""
    recorded = json.loads((directory / "errors.json").read_text(encoding="utf-8"))[name]
    return HttpError(recorded["status"], recorded["body"]["error"])


@dataclass(frozen=True)
class Drop:
    """Send `after` chunks of `answer`, then close the connection (`reset`: with a RST)."""

    answer: Answer
    after: int = 1
    reset: bool = False


@dataclass(frozen=True)
class StreamError:
    """Send `after` chunks, then `{"error": error}` in the stream, as a crashed runner does."""

    answer: Answer
    error: str = "an error was encountered while running the model: unexpected EOF"
    after: int = 1


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` (cut short when the server stops), then answer with `response`."""

    seconds: float
    response: Response


@dataclass(frozen=True)
class Trickle:
    """Stream `answer` with `interval` seconds before each chunk."""

    answer: Answer
    interval: float


@dataclass(frozen=True)
class Hang:
    """Send `after` chunks of `answer` (if any), then hold the connection until the server stops."""

    answer: Answer | None = None
    after: int = 0


Response = Answer | Generation | HttpError | Drop | StreamError | Delay | Trickle | Hang
"""What a backend gives the server for one chat request."""


@dataclass(frozen=True)
class Served:
    """A chat request answered in full, and the answer the client got."""

    request: Request
    answer: Chunk = field(repr=False)
    """The answer folded into one object: the whole message and the final chunk's stats."""

    @property
    def content(self) -> str:
        """The answer's text."""
        return str(self.answer["message"].get("content") or "")

    @property
    def done_reason(self) -> str | None:
        """`stop` (the model ended it, or a stop sequence) or `length` (a limit)."""
        reason = self.answer.get("done_reason")
        return None if reason is None else str(reason)

    @property
    def prompt_eval_count(self) -> int:
        """Input tokens, as reported."""
        return int(self.answer.get("prompt_eval_count") or 0)

    @property
    def eval_count(self) -> int:
        """Output tokens, as reported."""
        return int(self.answer.get("eval_count") or 0)
