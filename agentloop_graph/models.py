"""Model strings to chat models, and model errors to sentences people can act on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel

from agentloop_graph.parsing import RepeatingAnswer

DEFAULT_MODEL = "ollama:llama3.2"


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
        try:
            # Importing `ollama` builds a default client, which a proxy setting can break.
            from agentloop_graph.ollama import chat_ollama
        except Exception as exc:
            raise ValueError(_cannot_build(argument, spec, exc)) from None
        return chat_ollama(
            name, options or {}, timeout, lambda exc: _cannot_build(argument, spec, exc)
        )
    return _init_chat_model(spec, argument, options or {})


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
    if is_ollama(model):
        from agentloop_graph.ollama import describe_ollama_error

        if said := describe_ollama_error(model, exc, text, _status_code(exc)):
            return said
    if is_unreachable(exc) and (base_url := getattr(model, "base_url", None)):
        return f"cannot reach the model server at {base_url} ({text})"
    if isinstance(exc, ModelCallTimeout | TimeoutError | RepeatingAnswer):
        return text
    if isinstance(exc, httpx.TimeoutException):
        return f"the model server did not answer in time ({type(exc).__name__}: {text})"
    return f"{type(exc).__name__}: {text}"


def is_unreachable(exc: BaseException) -> bool:
    """Whether nothing listens where the call went: only a connection that never opened; a
    reset or an abort mid-answer comes from a server that is running."""
    return (
        isinstance(exc, httpx.ConnectError | ConnectionRefusedError) or type(exc) is ConnectionError
    )


def for_phase(model: BaseChatModel, phase: str) -> BaseChatModel:
    """The copy of a model the loop built from a string that `phase` uses.

    The planner's has temperature 0 where it is unset (a plan should not change between
    two runs of the same task); an Ollama model's answers are capped per phase, and the
    executor's and summariser's stop as soon as they repeat themselves.
    """
    update: dict[str, Any] = {}
    unset_temperature = getattr(model, "temperature", 0) is None
    if phase == "planner" and "temperature" in type(model).model_fields and unset_temperature:
        update["temperature"] = 0
    if is_ollama(model):
        from agentloop_graph.ollama import phase_settings

        update |= phase_settings(model, phase)
    return model.model_copy(update=update) if update else model
