"""Model strings to chat models, and model errors to sentences people can act on."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from pydantic import ValidationError

from agentloop_graph.parsing import RepeatingAnswer

DEFAULT_MODEL = "ollama:llama3.2"
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
OLLAMA_CLIENT_TIMEOUT = 300.0
"""Seconds the HTTP client of an Ollama model waits when the loop sets no `model_timeout`."""
CLIENT_TIMEOUT_GRACE = 5.0
"""The HTTP client's limit trails the loop's, so the loop's clearer message wins the race."""


OLLAMA_PORT = 11434
_ANY_ADDRESS = MappingProxyType({"0.0.0.0": "127.0.0.1", "::": "::1"})
"""A server's "listen on every interface", which for a client means this machine."""


def ollama_base_url(host: str | None = None, *, argument: str = "host") -> str:
    """Ollama's address, read the way Ollama's own client reads `OLLAMA_HOST`.

    The scheme is optional (http when none). Without a port, a bare host gets Ollama's
    11434 and an explicit `http://` or `https://` its scheme's own (80, 443), as in
    the `ollama` package. `0.0.0.0`, which a server sets to listen everywhere, means
    this machine.

    Args:
        host: An address to use instead of `OLLAMA_HOST` (e.g. a command-line option).
        argument: The name `host` goes by, for error messages.

    Returns:
        `scheme://host:port[/path]`, e.g. `http://127.0.0.1:11434`.

    Raises:
        ValueError: The address is not one (a port that is no number, a broken IPv6
            address); the message names `OLLAMA_HOST` or `argument`.

    Example:
        >>> ollama_base_url("0.0.0.0"), ollama_base_url("https://ollama.internal")
        ('http://127.0.0.1:11434', 'https://ollama.internal:443')
    """
    name = argument if host is not None else "OLLAMA_HOST"
    text = (os.environ.get("OLLAMA_HOST", "") if host is None else host).strip()
    scheme, separator, rest = text.partition("://")
    default_port = OLLAMA_PORT
    if not separator:
        scheme, rest = "http", text
    elif scheme in ("http", "https"):
        default_port = 80 if scheme == "http" else 443
    try:
        split = urllib.parse.urlsplit(f"{scheme}://{rest}")
        port = split.port or default_port
    except ValueError as exc:
        raise ValueError(f"{name} {text!r} is not a host address: {exc}") from None
    address = split.hostname or "127.0.0.1"
    address = _ANY_ADDRESS.get(address, address)
    if ":" in address:
        address = f"[{address}]"
    path = split.path.strip("/")
    return f"{scheme}://{address}:{port}" + (f"/{path}" if path else "")


class ModelCallTimeout(Exception):
    """A model call that did not answer within the loop's `model_timeout`."""


def resolve_model(
    spec: object,
    *,
    argument: str = "model",
    options: Mapping[str, Any] | None = None,
    timeout: float | None = None,
) -> BaseChatModel:
    """Turn a model argument into a chat model.

    Args:
        spec: A chat model, `"demo"`, `"ollama:<model>"` or another `"provider:model"`
            string for LangChain's `init_chat_model`.
        argument: The argument's name, for error messages.
        options: Keyword arguments for the model a string builds (e.g. `num_ctx`,
            `keep_alive`, `reasoning`, `client_kwargs` for `ChatOllama`; its `base_url`
            replaces the one `OLLAMA_HOST` gives).
        timeout: The loop's `model_timeout`. An Ollama model's HTTP client waits a little
            longer than that, or `OLLAMA_CLIENT_TIMEOUT` without one, unless `options`
            sets `client_kwargs` (the Ollama client has no timeout of its own).

    Returns:
        The chat model. Nothing is contacted.

    Raises:
        TypeError: `spec` is neither a chat model nor a string.
        ValueError: `spec` is a string no provider understands, or its model cannot be
            built (a missing API key or package, a proxy the HTTP client cannot use); the
            message says what to set or install.
    """
    if isinstance(spec, BaseChatModel):
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"{argument} must be a LangChain chat model or a model string, "
            f"got {type(spec).__name__}"
        )
    if spec == "demo":
        from agentloop_graph.demo import DemoChatModel

        return DemoChatModel()
    provider, _, name = spec.partition(":")
    if not provider or not name:
        raise ValueError(
            f'{argument} {spec!r} is not a model string: use "demo", "ollama:<model>" '
            'or "provider:model"'
        )
    if provider == "ollama":
        return _chat_ollama(spec, name, argument, options or {}, timeout)
    return _init_chat_model(spec, argument, options or {})


def _chat_ollama(
    spec: str, name: str, argument: str, options: Mapping[str, Any], timeout: float | None
) -> BaseChatModel:
    client_timeout = OLLAMA_CLIENT_TIMEOUT if timeout is None else timeout + CLIENT_TIMEOUT_GRACE
    settings = {
        "base_url": ollama_base_url(),
        "client_kwargs": {"timeout": client_timeout},
        **options,
    }
    try:
        # Importing `ollama` builds a default client, which a proxy setting can break.
        from agentloop_graph.ollama import LoopChatOllama

        return LoopChatOllama(model=name, **settings)
    except (ValidationError, TypeError) as exc:
        raise ValueError(f"model_options do not suit ChatOllama: {exc}") from None
    except Exception as exc:
        raise ValueError(_cannot_build(argument, spec, exc)) from None


_API_KEYS = MappingProxyType(
    {
        "anthropic": "ANTHROPIC_API_KEY",
        "cohere": "COHERE_API_KEY",
        "deepseek": "DEEPSEEK_API_KEY",
        "fireworks": "FIREWORKS_API_KEY",
        "google_genai": "GOOGLE_API_KEY",
        "groq": "GROQ_API_KEY",
        "mistralai": "MISTRAL_API_KEY",
        "openai": "OPENAI_API_KEY",
        "together": "TOGETHER_API_KEY",
        "xai": "XAI_API_KEY",
    }
)
"""The environment variable each provider's LangChain package reads its API key from."""
_PROXIES = ("ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
_REASON_CHARS = 300


def _cannot_build(argument: str, spec: str, exc: BaseException) -> str:
    """One line saying why the model `spec` names cannot be built, and what to do.

    A missing API key names the variable to set; a SOCKS proxy without `socksio` (httpx
    refuses to build a client then) says to install it or unset the proxy; anything else
    gives the original reason, on one line.

    Args:
        argument: The argument's name, e.g. `model` or `--model`.
        spec: The model string.
        exc: What building the model raised.

    Returns:
        The message, e.g. `model 'openai:gpt-4o-mini' cannot be built: set OPENAI_API_KEY
        (OpenAIError: Missing credentials. ...)`.
    """
    text = " ".join(str(exc).split())[:_REASON_CHARS]
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    problem = f"{argument} {spec!r} cannot be built"
    if isinstance(exc, ImportError) and "socksio" in text:
        proxy = next((name for name in _PROXIES if "socks" in os.environ.get(name, "")), None)
        return (
            f"{problem}: a SOCKS proxy is set{f' ({proxy})' if proxy else ''} but the socksio "
            f"package is missing: pip install socksio, or unset {proxy or 'the proxy'}"
        )
    key = _API_KEYS.get(spec.partition(":")[0])
    credentials = any(word in text.lower() for word in ("api_key", "api key", "credential"))
    if key and credentials and not os.environ.get(key):
        return f"{problem}: set {key} ({reason})"
    return f"{problem}: {reason}"


def _init_chat_model(spec: str, argument: str, options: Mapping[str, Any]) -> BaseChatModel:
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        raise ValueError(
            f"{argument} {spec!r} needs LangChain's init_chat_model: "
            'pip install \'agentloop-graph[providers]\' (or use "demo" / "ollama:<model>")'
        ) from None
    try:
        model = init_chat_model(spec, **options)
    except ImportError as exc:
        if "socksio" in str(exc):
            raise ValueError(_cannot_build(argument, spec, exc)) from None
        # The provider's package is missing; the message names it.
        raise ValueError(f"{argument} {spec!r}: {exc}") from None
    except ValueError as exc:
        text = str(exc)
        if "model_provider" not in text and "Unsupported provider" not in text:
            raise ValueError(_cannot_build(argument, spec, exc)) from None
        # init_chat_model's advice ("specify model_provider") is for its own callers; the
        # provider belongs before the colon here.
        known = next((line for line in text.splitlines() if line.startswith("Supported")), "")
        raise ValueError(
            f"{argument} {spec!r} names no provider LangChain knows: write provider:model, "
            f"e.g. openai:gpt-4o-mini ({known.rstrip('.') or 'see init_chat_model'})"
        ) from None
    except Exception as exc:
        raise ValueError(_cannot_build(argument, spec, exc)) from None
    if not isinstance(model, BaseChatModel):
        raise ValueError(f"{argument} {spec!r} did not resolve to one chat model")
    return model


def is_ollama(model: object) -> bool:
    """Whether `model` is a `ChatOllama` (the loop's own subclass included), told without
    importing `langchain_ollama`."""
    return any(cls.__name__ == "ChatOllama" for cls in type(model).__mro__)


def with_json_schema(model: BaseChatModel, schema: dict[str, Any]) -> Runnable[Any, Any] | None:
    """`model` held to answer in `schema`'s shape, where the model supports it, else None.

    Ollama takes the schema as its `format` and enforces it while the model writes.
    """
    if is_ollama(model):
        return model.bind(format=schema)
    return None


def _status_code(exc: BaseException) -> int | None:
    # ollama.ResponseError, openai/anthropic API errors and httpx errors all carry one.
    code = getattr(exc, "status_code", None)
    if code is None and isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
    return code if isinstance(code, int) else None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the server hiccuped (5xx, 429, a connection cut mid-answer).

    A refused connection (nothing listening) and other 4xx errors are not: retrying
    would only delay the same answer.
    """
    if isinstance(exc, httpx.ConnectError):
        return False
    if isinstance(
        exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError | ConnectionResetError
    ):
        return True
    code = _status_code(exc)
    # Ollama reports a runner that died mid-answer as an error line, status -1.
    return code is not None and (code in (429, -1) or code >= 500)


def describe_error(model: object, exc: BaseException) -> str:
    """One line saying what went wrong in a model call, and where it was aimed."""
    text = str(exc) or type(exc).__name__
    ollama = is_ollama(model)
    if ollama and _status_code(exc) == 404:
        name = getattr(model, "model", "")
        return (
            f"model {name!r} is not available on the Ollama server at "
            f"{getattr(model, 'base_url', None) or ollama_base_url()}: "
            f"pull it with `ollama pull {name}` ({text})"
        )
    # Only a connection that never opened means nothing listens; a reset or an abort
    # mid-answer comes from a server that is running.
    unreachable = isinstance(exc, httpx.ConnectError | ConnectionRefusedError) or (
        type(exc) is ConnectionError
    )
    if unreachable:
        base_url = getattr(model, "base_url", None)
        if ollama:
            return (
                f"cannot reach the Ollama server at {base_url or ollama_base_url()} ({text}). "
                "Start it with `ollama serve` (or set OLLAMA_HOST), "
                'or use the offline "demo" model (`--model demo` on the command line)'
            )
        if base_url:
            return f"cannot reach the model server at {base_url} ({text})"
    if isinstance(exc, ModelCallTimeout | TimeoutError | RepeatingAnswer):
        return text
    if isinstance(exc, httpx.TimeoutException):
        return f"the model server did not answer in time ({type(exc).__name__}: {text})"
    return f"{type(exc).__name__}: {text}"


ANSWER_TOKENS = MappingProxyType(
    {"planner": 512, "executor": 1024, "adapter": 256, "summariser": 1024}
)
"""Each phase's longest answer from an Ollama model the loop built, unless `model_options`
sets `num_predict`: Ollama lets a model write until its context is full, and a small model
that repeats itself would hold a step for minutes."""


GUARDED_PHASES = ("executor", "summariser")
"""Phases whose long answers are cut off once they repeat themselves; a plan that loops
still yields its first steps, and the adapter's answers are short."""


def for_phase(model: BaseChatModel, phase: str) -> BaseChatModel:
    """The copy of a model the loop built from a string that `phase` uses.

    The planner's has temperature 0 where it is unset (a plan should not change between
    two runs of the same task); an Ollama model's answers are capped at `ANSWER_TOKENS`,
    and the executor's and summariser's stop as soon as they repeat themselves.
    """
    update: dict[str, Any] = {}
    unset_temperature = getattr(model, "temperature", 0) is None
    if phase == "planner" and "temperature" in type(model).model_fields and unset_temperature:
        update["temperature"] = 0
    if is_ollama(model):
        if getattr(model, "num_predict", 0) is None:
            update["num_predict"] = ANSWER_TOKENS[phase]
        if phase in GUARDED_PHASES and "stop_repeating" in type(model).model_fields:
            update["stop_repeating"] = True
    return model.model_copy(update=update) if update else model
