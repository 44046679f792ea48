"""Model strings to chat models, and model errors to sentences people can act on."""

from __future__ import annotations

import os

import httpx
from langchain_core.language_models import BaseChatModel

DEFAULT_MODEL = "ollama:llama3.2"
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


def ollama_base_url() -> str:
    """Ollama's address: `OLLAMA_HOST` (scheme optional) or the local default."""
    host = os.environ.get("OLLAMA_HOST", "").strip() or DEFAULT_OLLAMA_HOST
    if "://" not in host:
        host = f"http://{host}"
    return host.rstrip("/")


def resolve_model(spec: object, *, argument: str = "model") -> BaseChatModel:
    """Turn a model argument into a chat model.

    Args:
        spec: A chat model, `"demo"`, `"ollama:<model>"` or another `"provider:model"`
            string for LangChain's `init_chat_model`.
        argument: The argument's name, for error messages.

    Returns:
        The chat model. Nothing is contacted.

    Raises:
        TypeError: `spec` is neither a chat model nor a string.
        ValueError: `spec` is a string no provider understands.
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
        from langchain_ollama import ChatOllama

        return ChatOllama(model=name, base_url=ollama_base_url())
    return _init_chat_model(spec, argument)


def _init_chat_model(spec: str, argument: str) -> BaseChatModel:
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        raise ValueError(
            f"{argument} {spec!r} needs LangChain's init_chat_model: "
            'pip install \'agentloop-graph[providers]\' (or use "demo" / "ollama:<model>")'
        ) from None
    try:
        model = init_chat_model(spec)
    except ImportError as exc:
        raise ValueError(f"{argument} {spec!r}: {exc}") from None
    except ValueError as exc:
        # init_chat_model appends a long list of providers; its first line says enough.
        reason = str(exc).splitlines()[0]
        raise ValueError(f"{argument} {spec!r} is not a known model string: {reason}") from None
    if not isinstance(model, BaseChatModel):
        raise ValueError(f"{argument} {spec!r} did not resolve to one chat model")
    return model


def describe_error(model: object, exc: BaseException) -> str:
    """One line saying what went wrong in a model call, and where it was aimed."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError | ConnectionError):
        base_url = getattr(model, "base_url", None)
        if type(model).__name__ == "ChatOllama":
            return (
                f"cannot reach the Ollama server at {base_url or ollama_base_url()} ({text}). "
                "Start it with `ollama serve` (or set OLLAMA_HOST), "
                "or use the offline model with --model demo"
            )
        if base_url:
            return f"cannot reach the model server at {base_url} ({text})"
    if isinstance(exc, TimeoutError):
        return text if str(exc) else "timed out"
    return f"{type(exc).__name__}: {text}"
