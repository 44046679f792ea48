"""A local stand-in for the LangSmith API that records what the `langsmith` client sends.

It answers the requests the client makes when tracing is on: `GET /info` at start-up, then
runs as `POST /runs/multipart` (multipart/form-data, zstd-compressed when `/info` says the
server accepts that), `POST /runs/batch` (JSON) or single `POST /runs` / `PATCH /runs/<id>`.
Every request is recorded, so a test can also prove that nothing arrived.

Example:
    >>> with LangSmithCollector() as collector:  # doctest: +SKIP
    ...     client = langsmith.Client(api_url=collector.url, api_key="test")
    ...     ...  # trace something with `client`, then `client.flush()`
    ...     collector.runs()  # run id -> merged run dict
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import zstandard

RUN_FIELDS = ("inputs", "outputs", "events", "extra", "error", "serialized")
"""Fields the client sends as parts of their own (`post.<id>.<field>`), apart from the run."""


@dataclass(frozen=True)
class Request:
    """One request the collector received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    """The body as sent (still compressed, if it was)."""


@dataclass
class _Run:
    """What arrived for one run id: its creations and updates, in arrival order."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    patches: list[dict[str, Any]] = field(default_factory=list)

    def merged(self) -> dict[str, Any]:
        # Batches travel on several threads, so an update may arrive before its run's
        # creation: apply creations first, then every non-empty field of the updates.
        run: dict[str, Any] = {}
        for post in self.posts:
            run.update(post)
        for patch in self.patches:
            run.update({key: value for key, value in patch.items() if value is not None})
        return run


def _boundary(content_type: str) -> bytes:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip('"').encode()
    raise ValueError(f"multipart body without a boundary: {content_type!r}")


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """The `(name, data)` parts of a multipart/form-data body, in order."""
    delimiter = b"--" + _boundary(content_type)
    parts: list[tuple[str, bytes]] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = ""
        for line in head.decode().split("\r\n"):
            header, _, value = line.partition(":")
            if header.strip().lower() == "content-disposition":
                for param in value.split(";"):
                    key, _, param_value = param.strip().partition("=")
                    if key == "name":
                        name = param_value.strip('"')
        parts.append((name, data.removesuffix(b"\r\n")))
    return parts


def _decode(body: bytes, encoding: str) -> bytes:
    if encoding == "zstd":
        # The client streams its frames without a content size in the header.
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return body


class LangSmithCollector:
    """A threaded HTTP server on 127.0.0.1 (a free port) that collects traced runs.

    Args:
        compression: Tell the client (through `/info`) that the server accepts
            zstd-compressed multipart batches, as LangSmith does; False makes the client
            send them uncompressed (and log that it falls back).
    """

    def __init__(self, *, compression: bool = True) -> None:
        self._compression = compression
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._runs: dict[str, _Run] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll keeps `close` quick: `shutdown` waits for the serving loop to look.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="langsmith-collector",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """The base URL to give the client as its endpoint (`api_url`)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> LangSmithCollector:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    @property
    def requests(self) -> list[Request]:
        """Every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def paths(self) -> list[str]:
        """`"METHOD /path"` of every request received so far."""
        return [f"{r.method} {r.path}" for r in self.requests]

    def runs(self) -> dict[str, dict[str, Any]]:
        """Every run received so far, its creation and updates merged, by run id."""
        with self._lock:
            return {run_id: run.merged() for run_id, run in self._runs.items()}

    def wait_until(
        self, condition: Callable[[LangSmithCollector], bool], timeout: float = 5.0
    ) -> bool:
        """Poll `condition(self)` until it holds or `timeout` seconds pass; its last value."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _record(self, request: Request) -> tuple[int, dict[str, Any]]:
        """Store `request` and what it carries; the status and JSON body to answer with."""
        with self._lock:
            self._requests.append(request)
            if request.method == "GET" and request.path == "/info":
                return 200, self._info()
            body = _decode(request.body, request.headers.get("content-encoding", ""))
            if request.method == "POST" and request.path == "/runs/multipart":
                self._add_parts(parse_multipart(body, request.headers.get("content-type", "")))
            elif request.method == "POST" and request.path == "/runs/batch":
                batch = json.loads(body)
                for run in batch.get("post", ()):
                    self._run(run["id"]).posts.append(run)
                for run in batch.get("patch", ()):
                    self._run(run["id"]).patches.append(run)
            elif request.method == "POST" and request.path == "/runs":
                run = json.loads(body)
                self._run(run["id"]).posts.append(run)
            elif request.method == "PATCH" and request.path.startswith("/runs/"):
                run_id = request.path.removeprefix("/runs/")
                self._run(run_id).patches.append({**json.loads(body), "id": run_id})
            else:
                return 404, {"detail": "Not Found"}
            return 202, {}

    def _info(self) -> dict[str, Any]:
        # The client keeps its own batching defaults when `batch_ingest_config` is absent,
        # and compares no server version when `version` is.
        return {"instance_flags": {"zstd_compression_enabled": self._compression}}

    def _run(self, run_id: str) -> _Run:
        return self._runs.setdefault(str(run_id), _Run())

    def _add_parts(self, parts: list[tuple[str, bytes]]) -> None:
        for name, data in parts:
            kind, _, rest = name.partition(".")
            run_id, _, run_field = rest.partition(".")
            if kind not in ("post", "patch"):
                continue  # feedback and attachments are not runs
            run = self._run(run_id)
            layer = run.posts if kind == "post" else run.patches
            value = json.loads(data)
            if run_field in RUN_FIELDS:
                layer.append({"id": run_id, run_field: value})
            elif not run_field:
                layer.append(value)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                request = Request(
                    method=self.command,
                    path=self.path.split("?", 1)[0],
                    headers={key.lower(): value for key, value in self.headers.items()},
                    body=self._body(),
                )
                try:
                    status, answer = collector._record(request)
                except Exception as exc:
                    # A body the collector cannot read fails the request, so the client
                    # logs it and the test sees the run missing rather than a hang.
                    status, answer = 400, {"detail": f"{type(exc).__name__}: {exc}"}
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                """Keep the test output quiet."""

        return Handler
