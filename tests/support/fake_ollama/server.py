"""The fake Ollama server's HTTP layer: Ollama's REST API in front of a swappable backend.

It speaks the parts of the API that `ChatOllama` and the `ollama` client use:
`POST /api/chat` (NDJSON stream when `"stream"` is true or absent, one JSON object when
false), `GET /api/tags`, `POST /api/show`, `GET /api/version`, `GET /` ("Ollama is
running") and `HEAD /`, with Ollama's errors (`{"error": ...}` bodies; 404
`model "x" not found, try pulling it first`; an `{"error": ...}` chunk once a stream has
started). What a chat request gets is the backend's business (see `backends.py` and
`llama.py`): an answer, a live generation, or a fault. Every request is recorded
(`requests`, `chat_requests`), and every chat answered in full with what was sent
(`served`), whichever the backend.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import socket
import struct
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from tests.support.fake_ollama.backends import Backend, Scripted
from tests.support.fake_ollama.protocol import (
    Answer,
    Chunk,
    Delay,
    Drop,
    Generation,
    Hang,
    HttpError,
    Request,
    Response,
    Served,
    StreamError,
    Trickle,
    fold,
)

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

    def end_headers(self) -> None:
        if not self.owner.keep_alive:
            self.send_header("Connection", "close")
            self.close_connection = True
        super().end_headers()

    # routes

    def do_HEAD(self) -> None:
        self._record(None)
        self._send_bytes(200, b"", "text/plain; charset=utf-8")

    def do_GET(self) -> None:
        request = self._record(None)
        if request.path == "/":
            self._send_bytes(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif request.path == "/api/tags":
            self._send_json(200, self.owner.backend.tags())
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
        if not isinstance(request.body, dict):
            self._send_json(400, {"error": "the request body must be a JSON object"})
            return
        if not request.model:
            self._send_json(400, {"error": "model is required"})
            return
        try:
            self._respond(request, self.owner.backend.chat(request))
        except _Cut:
            self.close_connection = True
        except OSError:
            # The client went away (a timeout on its side, a cancelled task).
            self.close_connection = True

    def _show(self, request: Request) -> None:
        info = self.owner.backend.show(request.model or "")
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
            case Answer() | Generation():
                self._answer(request, response)
            case HttpError(status=status, error=error):
                self._send_json(status, {"error": error.replace("{model}", model or "")})
            case Delay(seconds=seconds, response=inner):
                self._wait(seconds)
                self._respond(request, inner)
            case Trickle(answer=answer, interval=interval):
                self._stream(answer.stream(model), interval=interval)
            case StreamError(answer=answer, error=error, after=after):
                self._stream([*itertools.islice(answer.stream(model), after), {"error": error}])
            case Drop(answer=answer, after=after, reset=reset):
                self._partial(request, answer, after)
                self._cut(reset=reset)
            case Hang(answer=answer, after=after):
                if answer is not None:
                    self._partial(request, answer, after)
                self._wait(None)
            case _:
                raise TypeError(f"not a response: {response!r}")

    def _answer(self, request: Request, answer: Answer | Generation) -> None:
        """Send a whole answer, streamed or folded into one object, and record it as served."""
        chunks = answer.stream(request.model)
        try:
            # A generation refuses a request before its first chunk, and fails after it.
            first = next(chunks)
        except ValueError as exc:
            self._send_json(400, {"error": str(exc)})
            return
        except Exception as exc:
            self._send_json(500, {"error": f"{type(exc).__name__}: {exc}"})
            return
        try:
            sent = self._recorded(request, _with_error_chunk(itertools.chain([first], chunks)))
            if request.stream:
                self._stream(sent)
                return
            try:
                whole = fold(sent)
            except ValueError as exc:
                self._send_json(500, {"error": str(exc)})
                return
            self._send_json(200, whole)
        finally:
            if isinstance(answer, Generation):
                answer.close()

    def _recorded(self, request: Request, chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        """The chunks; the answer is recorded as served before its last chunk goes out, so a
        test that reads `served` once its client has the answer finds it there."""
        seen: list[Chunk] = []
        for chunk in chunks:
            seen.append(chunk)
            if chunk.get("done") is True:
                self.owner._served_append(Served(request, fold(seen)))
            yield chunk

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
            for chunk in itertools.islice(answer.stream(request.model), after):
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
        self.wfile.flush()

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


def _with_error_chunk(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """The chunks, ending in an `{"error": ...}` chunk if producing them fails, as Ollama
    reports an error once the answer has started."""
    try:
        yield from chunks
    except Exception as exc:
        yield {"error": f"{type(exc).__name__}: {exc}"}


class _HTTPServer(ThreadingHTTPServer):
    # Handler threads are joined on close (block_on_close), after `stop` released them.
    daemon_threads = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: FakeOllama) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # a client that hung up; nothing to report
        self.owner._errors_append(exc)
        super().handle_error(request, client_address)


class FakeOllama:
    """An Ollama-API server on 127.0.0.1 whose answers come from `backend`.

    Use it as a context manager (it starts on entry and stops on exit, releasing any handler
    held by `Hang` or `Delay` and closing every connection), or call `start()`/`stop()`. It
    is threaded, so blocking and asyncio clients can use it at once.

    Example:
        >>> with FakeOllama() as server:  # doctest: +SKIP
        ...     server.play(fixture("plan"), reply("Done."))
        ...     os.environ["OLLAMA_HOST"] = server.url

    Args:
        backend: What answers: `Scripted()` (the default: `play`/`respond` script it),
            `Recorded()` (the fixture files, by phase of the loop) or `RealModel` (SmolLM2
            through llama.cpp).
        port: The port to listen on; 0 picks a free one.
        keep_alive: Keep connections open between requests, as Ollama does. False closes
            each one after its answer, so clients nobody closes (`ChatOllama`'s) leave no
            open socket for the garbage collector to warn about.
    """

    version: ClassVar[str] = "0.9.6"

    def __init__(
        self, backend: Backend | None = None, *, port: int = 0, keep_alive: bool = True
    ) -> None:
        self.backend: Backend = backend if backend is not None else Scripted()
        self.keep_alive = keep_alive
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requests: list[Request] = []
        self._served: list[Served] = []
        self._errors: list[BaseException] = []
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # scripting (a `Scripted` backend)

    def _scripted(self) -> Scripted:
        if not isinstance(self.backend, Scripted):
            raise TypeError(f"{type(self.backend).__name__} answers without a script")
        return self.backend

    def play(self, *responses: Response) -> FakeOllama:
        """Answer the next chat requests with `responses`, in order (replaces the script)."""
        self._scripted().play(*responses)
        return self

    def respond(self, answer: Callable[[Request], Response]) -> FakeOllama:
        """Answer every chat request with `answer(request)` (replaces the script)."""
        self._scripted().respond(answer)
        return self

    @property
    def unscripted(self) -> list[Request]:
        """Chat requests that arrived after the script ran out."""
        return self._scripted().unscripted

    @property
    def left(self) -> int:
        """Scripted responses not used yet."""
        return self._scripted().left

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
    def served(self) -> list[Served]:
        """The chat requests answered in full, with the answers sent, in order of completion."""
        with self._lock:
            return list(self._served)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised inside the server's handlers (bugs of the server, or the script)."""
        with self._lock:
            return list(self._errors)

    def _requests_append(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def _served_append(self, served: Served) -> None:
        with self._lock:
            self._served.append(served)

    def _errors_append(self, exc: BaseException | None) -> None:
        if exc is not None:
            with self._lock:
                self._errors.append(exc)

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

    def start(self) -> FakeOllama:
        """Listen and serve in a background thread."""
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"fake-ollama:{self.port}",
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

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
