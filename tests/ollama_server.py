"""A local stand-in for an Ollama server, answering from a script, for HTTP-level tests.

It speaks the parts of the Ollama REST API that `ChatOllama` and the `ollama` client use:
`POST /api/chat` (NDJSON stream when `"stream"` is true or absent, one JSON object when
false), `GET /api/tags`, `POST /api/show`, `GET /api/version` and `GET /` ("Ollama is
running"). Every request is recorded with its JSON body (`server.requests`,
`server.chat_requests`), so a test can check what the client sent. Chat requests are
answered from a *script*: responses consumed in order (`server.play(...)`), or a function
of the `Request` (`server.respond(fn)`). A chat request the script has no answer for gets
a 400 and is listed in `server.unscripted`. A response is one of

- `Answer`: a model answer, streamed as Ollama streams it (`reply(...)` builds one,
  `fixture(name)` loads a recorded one from `tests/fixtures/ollama/<name>.ndjson`);
- `HttpError(status, error)`: Ollama's JSON error body, e.g. `HttpError.model_not_found()`
  or a recorded one, `error_fixture("server_busy")`;
- `Drop(answer, after, reset)`: `after` chunks, then the connection is closed (or reset);
- `StreamError(answer, error, after)`: `after` chunks, then an in-stream `{"error": ...}`;
- `Delay(seconds, response)`: nothing for `seconds`, then `response`;
- `Trickle(answer, interval)`: the chunks, `interval` seconds apart;
- `Hang(answer, after)`: `after` chunks (none by default), then silence until the server
  stops.

The server is threaded, so blocking and asyncio clients can use it at once. Stopping it
(leaving its `with` block) releases handlers held by `Hang` or `Delay` and closes every
connection. In a test:

    pytestmark = [pytest.mark.filterwarnings(f) for f in UNCLOSED_CLIENT_WARNINGS]

    @pytest.fixture
    def ollama(monkeypatch):
        with OllamaServer() as server:
            monkeypatch.setenv("OLLAMA_HOST", server.url)
            yield server

    def test_retried(ollama):
        ollama.play(fixture("plan"), error_fixture("runner_terminated"), fixture("step_1"))
        ...
        assert ollama.chat_requests[0].options["temperature"] == 0

(and `collect_unclosed_clients()` once the module's tests are done, see
`UNCLOSED_CLIENT_WARNINGS`). From a shell, answering each phase of the agent loop from
the fixture files (see `fixture_script`; port 0 picks a free port):

    python tests/ollama_server.py --port 11434 --fixtures tests/fixtures/ollama

Only the standard library is used, so the file runs with any Python 3.11+.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import re
import socket
import struct
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

FIXTURES = Path(__file__).parent / "fixtures" / "ollama"
"""The recorded responses shipped with the tests."""

Chunk = dict[str, Any]

UNCLOSED_CLIENT_WARNINGS = (
    "ignore:unclosed <socket.socket:ResourceWarning",
    "ignore:unclosed transport:ResourceWarning",
)
"""pytest `filterwarnings` entries for tests that build `ChatOllama`: it opens httpx clients
it offers no way to close, so their pooled connections are closed by the garbage collector,
which warns about each."""


def collect_unclosed_clients() -> None:
    """Finalise unreachable HTTP clients now, quietly, rather than during a later test."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "unclosed", ResourceWarning)
        gc.collect()


# --- answers -------------------------------------------------------------------------------


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pieces(text: str) -> list[str]:
    # Ollama streams one token per chunk; words with their leading white space come close.
    return re.findall(r"\s*\S+|\s+$", text)


@dataclass(frozen=True)
class Answer:
    """A model answer as the NDJSON chunks Ollama streams for it.

    Build one with `reply(...)` or load a recording with `fixture(name)`. The last chunk has
    `"done": true`, `done_reason` and the usage counts; Ollama's non-streamed answer is the
    same chunks folded into one object (`single`).
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

    def stream(self, model: str | None) -> list[Chunk]:
        """The chunks to send, naming `model` (the request's) like Ollama does."""
        if model is None:
            return [dict(c) for c in self.chunks]
        return [{**c, "model": model} for c in self.chunks]

    def single(self, model: str | None) -> Chunk:
        """The non-streamed answer: one object with the whole message and the final stats."""
        chunks = self.stream(model)
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.thinking:
            message["thinking"] = self.thinking
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return {**chunks[-1], "message": message}


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
    for piece in _pieces(thinking or ""):
        message = {"role": "assistant", "content": "", "thinking": piece}
        chunks.append({**head, "created_at": _timestamp(), "message": message, "done": False})
    for piece in _pieces(content):
        message = {"role": "assistant", "content": piece}
        chunks.append({**head, "created_at": _timestamp(), "message": message, "done": False})
    if tool_calls:
        calls = [{"function": {"name": name, "arguments": dict(args)}} for name, args in tool_calls]
        message = {"role": "assistant", "content": "", "tool_calls": calls}
        chunks.append({**head, "created_at": _timestamp(), "message": message, "done": False})
    produced = eval_count if eval_count is not None else len(chunks) + 1
    chunks.append(
        {
            **head,
            "created_at": _timestamp(),
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
        """What Ollama answers for a model it does not have."""
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


Response = Answer | HttpError | Drop | StreamError | Delay | Trickle | Hang
"""One scripted answer to one chat request."""


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
        """Sampling and runtime options (`temperature`, `num_ctx`, ...)."""
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


Script = Sequence[Response] | Callable[[Request], Response]


# --- the server --------------------------------------------------------------------------


class _Cut(Exception):
    """The handler ended the connection on purpose."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ollama-test-server"
    # A last resort against a client that keeps a connection open and goes silent.
    timeout = 60
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Like Ollama (Go sets it on every TCP connection): without it, Nagle's algorithm and
        # delayed ACKs stall each answer on a kept-alive connection by some 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.owner = self.server.owner
        self.owner._track(self.connection)

    def finish(self) -> None:
        self.owner._untrack(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # routes

    def do_HEAD(self) -> None:
        self._record(None)
        self._send_bytes(200, b"", "text/plain; charset=utf-8")

    def do_GET(self) -> None:
        request = self._record(None)
        if request.path == "/":
            self._send_bytes(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif request.path == "/api/tags":
            self._send_json(200, self.owner.tags())
        elif request.path == "/api/version":
            self._send_json(200, {"version": self.owner.version})
        else:
            self._not_found()

    def do_POST(self) -> None:
        try:
            body = self._read_json()
        except ValueError as exc:
            self._record(None)
            self._send_json(400, {"error": str(exc)})
            return
        request = self._record(body)
        if request.path == "/api/chat":
            self._chat(request)
        elif request.path == "/api/show":
            self._show(request)
        else:
            self._not_found()

    def _chat(self, request: Request) -> None:
        if not request.model:
            self._send_json(400, {"error": "model is required"})
            return
        try:
            self._respond(request, self.owner._next(request))
        except _Cut:
            self.close_connection = True
        except OSError:
            # The client went away (a timeout on its side, a cancelled task).
            self.close_connection = True

    def _show(self, request: Request) -> None:
        info = self.owner.show(request.model or "")
        if info is None:
            self._send_json(404, {"error": f"model '{request.model}' not found"})
        else:
            self._send_json(200, info)

    def _not_found(self) -> None:
        self._send_bytes(404, b"404 page not found", "text/plain")

    # responses

    def _respond(self, request: Request, response: Response) -> None:
        model = request.model
        match response:
            case Answer():
                if request.stream:
                    self._stream(response.stream(model))
                else:
                    self._send_json(200, response.single(model))
            case HttpError(status=status, error=error):
                self._send_json(status, {"error": error.replace("{model}", model or "")})
            case Delay(seconds=seconds, response=inner):
                self._wait(seconds)
                self._respond(request, inner)
            case Trickle(answer=answer, interval=interval):
                self._stream(answer.stream(model), interval=interval)
            case StreamError(answer=answer, error=error, after=after):
                self._stream([*answer.stream(model)[:after], {"error": error}])
            case Drop(answer=answer, after=after, reset=reset):
                self._partial(request, answer, after)
                self._cut(reset=reset)
            case Hang(answer=answer, after=after):
                if answer is not None:
                    self._partial(request, answer, after)
                self._wait(None)
            case _:
                raise TypeError(f"not a scripted response: {response!r}")

    def _wait(self, seconds: float | None) -> None:
        """Sleep `seconds` (None: forever); when the server stops, end the connection."""
        if self.owner._stopping.wait(seconds):
            self._cut(reset=False)

    def _cut(self, *, reset: bool) -> None:
        if reset:
            # SO_LINGER with a zero timeout turns close() into a TCP reset.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        self.connection.close()
        raise _Cut

    def _partial(self, request: Request, answer: Answer, after: int) -> None:
        if request.stream:
            self._start_stream()
            for chunk in answer.stream(request.model)[:after]:
                self._write_chunk(chunk)
            return
        # Non-streamed: promise the whole body, deliver half of it.
        data = json.dumps(answer.single(request.model)).encode()
        self._headers(200, "application/json; charset=utf-8", len(data))
        self.wfile.write(data[: len(data) // 2])

    def _stream(self, chunks: Iterable[Chunk], *, interval: float = 0.0) -> None:
        self._start_stream()
        for chunk in chunks:
            if interval:
                self._wait(interval)
            self._write_chunk(chunk)
        self.wfile.write(b"0\r\n\r\n")

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Date", self.date_time_string())
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _write_chunk(self, chunk: Chunk) -> None:
        data = json.dumps(chunk, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _headers(self, status: int, content_type: str, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
        self._headers(status, content_type, len(data))
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self._send_bytes(status, data, "application/json; charset=utf-8")

    # requests

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON body: {exc}") from None

    def _record(self, body: Any) -> Request:
        request = Request(
            method=self.command,
            path=self.path.split("?", 1)[0],
            body=body,
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        self.owner._requests_append(request)
        return request


class _HTTPServer(ThreadingHTTPServer):
    # Handler threads are joined on close (block_on_close), after `stop` released them.
    daemon_threads = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: OllamaServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # a client that hung up; nothing to report
        self.owner._errors_append(exc)
        super().handle_error(request, client_address)


class OllamaServer:
    """An Ollama-API test server on 127.0.0.1, answering chat requests from a script.

    Use it as a context manager (it starts on entry and stops on exit, releasing any
    handler held by `Hang` or `Delay`), or call `start()`/`stop()`.

    Args:
        script: Responses for the chat requests, in order, or a function of the `Request`.
            More can be given later with `play` or `respond`.
        port: The port to listen on; 0 picks a free one.
        fixtures: Where `tags.json` and `show_*.json` are read from.
        models: Model names `/api/tags` lists (default: those in `tags.json`).
    """

    version: ClassVar[str] = "0.9.6"

    def __init__(
        self,
        script: Script = (),
        *,
        port: int = 0,
        fixtures: Path = FIXTURES,
        models: Sequence[str] | None = None,
    ) -> None:
        self.fixtures = Path(fixtures)
        self._models = list(models) if models is not None else None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requests: list[Request] = []
        self._errors: list[BaseException] = []
        self._unscripted: list[Request] = []
        self._connections: set[socket.socket] = set()
        self._queue: list[Response] = []
        self._answer: Callable[[Request], Response] | None = None
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        if callable(script):
            self.respond(script)
        else:
            self.play(*script)

    # scripting

    def play(self, *responses: Response) -> OllamaServer:
        """Answer the next chat requests with `responses`, in order (replaces the script)."""
        with self._lock:
            self._queue = list(responses)
            self._answer = None
        return self

    def respond(self, answer: Callable[[Request], Response]) -> OllamaServer:
        """Answer every chat request with `answer(request)` (replaces the script)."""
        with self._lock:
            self._queue = []
            self._answer = answer
        return self

    def _next(self, request: Request) -> Response:
        with self._lock:
            if self._answer is not None:
                answer = self._answer
            elif self._queue:
                return self._queue.pop(0)
            else:
                self._unscripted.append(request)
                number = sum(r.path == "/api/chat" for r in self._requests)
                # 400 is not retried by clients, so a short script fails fast and visibly.
                return HttpError(400, f"test server: no scripted answer for chat request {number}")
        return answer(request)

    # what happened

    @property
    def requests(self) -> list[Request]:
        """Every request received, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[Request]:
        """The `/api/chat` requests received, in order."""
        return [r for r in self.requests if r.path == "/api/chat"]

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

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised inside the server's handlers (bugs of the server, or the script)."""
        with self._lock:
            return list(self._errors)

    def _requests_append(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def _errors_append(self, exc: BaseException | None) -> None:
        if exc is not None:
            with self._lock:
                self._errors.append(exc)

    # model listing

    def tags(self) -> dict[str, Any]:
        """The `/api/tags` body."""
        recorded = json.loads((self.fixtures / "tags.json").read_text(encoding="utf-8"))
        if self._models is None:
            return dict(recorded)
        template = recorded["models"][0]
        listed = [{**template, "name": name, "model": name} for name in self._models]
        return {"models": listed}

    def show(self, model: str) -> dict[str, Any] | None:
        """The `/api/show` body for `model`, or None if `/api/tags` does not list it."""
        names = {m["name"] for m in self.tags()["models"]}
        wanted = model if ":" in model else f"{model}:latest"
        if wanted not in names and model not in names:
            return None
        family = model.split(":", 1)[0]
        path = self.fixtures / f"show_{family}.json"
        if not path.exists():
            path = self.fixtures / "show_llama3.2.json"
        shown: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return shown

    # lifecycle

    @property
    def port(self) -> int:
        """The port listened on."""
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:54321` (a value for `OLLAMA_HOST`)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OllamaServer:
        """Listen and serve in a background thread."""
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"ollama-test-server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release held handlers, close every connection, join the threads."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            # Wakes handlers waiting on an idle keep-alive connection.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = None
        self._thread = None

    def _track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)
        if self._stopping.is_set():
            connection.close()

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def __enter__(self) -> OllamaServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- the command line --------------------------------------------------------------------


def phase_of(request: Request) -> str:
    """Which phase of the agent loop a chat request comes from, judged by its prompt.

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


def fixture_script(directory: Path = FIXTURES) -> Callable[[Request], Response]:
    """Answers for every phase of the loop from the fixture files (for interactive use).

    Plans come from `plan_json` when the request asks for a JSON format, else `plan`;
    executor turns cycle through `step_*` (calling a tool first when tools are bound);
    the adapter gets `adapted_step` and the summariser `final_answer`.
    """
    steps = itertools.cycle(sorted(p.stem for p in directory.glob("step_*.ndjson")) or ["step_1"])
    lock = threading.Lock()

    def answer(request: Request) -> Response:
        phase = phase_of(request)
        if phase == "planner":
            return fixture("plan_json" if request.format else "plan", directory)
        if phase == "adapter":
            return fixture("adapted_step", directory)
        if phase == "summariser":
            return fixture("final_answer", directory)
        if phase == "executor" and request.tools:
            return fixture("tool_call", directory)
        with lock:
            name = next(steps)
        return fixture(name, directory)

    return answer


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the fixture-backed Ollama stand-in until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=11434, help="0 picks a free port")
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, help="recorded responses")
    args = parser.parse_args(argv)
    server = OllamaServer(fixture_script(args.fixtures), port=args.port, fixtures=args.fixtures)
    with server:
        print(f"Ollama test server listening on {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
