"""Model strings to chat models, and model errors to sentences people can act on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from pydantic import ValidationError

DEFAULT_MODEL = "ollama:llama3.2"
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
OLLAMA_CLIENT_TIMEOUT = 300.0
"""Seconds the HTTP client of an Ollama model waits when the loop sets no `model_timeout`."""
CLIENT_TIMEOUT_GRACE = 5.0
"""The HTTP client's limit trails the loop's, so the loop's clearer message wins the race."""


def ollama_base_url() -> str:
    """Ollama's address: `OLLAMA_HOST` (scheme optional) or the local default."""
    host = os.environ.get("OLLAMA_HOST", "").strip() or DEFAULT_OLLAMA_HOST
    if "://" not in host:
        host = f"http://{host}"
    return host.rstrip("/")


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
            `keep_alive`, `reasoning`, `client_kwargs` for `ChatOllama`).
        timeout: The loop's `model_timeout`. An Ollama model's HTTP client waits a little
            longer than that, or `OLLAMA_CLIENT_TIMEOUT` without one, unless `options`
            sets `client_kwargs` (the Ollama client has no timeout of its own).

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

        client_timeout = (
            OLLAMA_CLIENT_TIMEOUT if timeout is None else timeout + CLIENT_TIMEOUT_GRACE
        )
        settings = {"client_kwargs": {"timeout": client_timeout}, **(options or {})}
        try:
            return ChatOllama(model=name, base_url=ollama_base_url(), **settings)
        except (ValidationError, TypeError) as exc:
            raise ValueError(f"model_options do not suit ChatOllama: {exc}") from None
    return _init_chat_model(spec, argument, options or {})


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
        raise ValueError(f"{argument} {spec!r}: {exc}") from None
    except ValueError as exc:
        # init_chat_model appends a long list of providers; its first line says enough.
        reason = str(exc).splitlines()[0]
        raise ValueError(f"{argument} {spec!r} is not a known model string: {reason}") from None
    if not isinstance(model, BaseChatModel):
        raise ValueError(f"{argument} {spec!r} did not resolve to one chat model")
    return model


def with_json_schema(model: BaseChatModel, schema: dict[str, Any]) -> Runnable[Any, Any] | None:
    """`model` held to answer in `schema`'s shape, where the model supports it, else None.

    Ollama takes the schema as its `format` and enforces it while the model writes.
    """
    if type(model).__name__ == "ChatOllama":
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
    ollama = type(model).__name__ == "ChatOllama"
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
    if isinstance(exc, ModelCallTimeout | TimeoutError):
        return text
    if isinstance(exc, httpx.TimeoutException):
        return f"the model server did not answer in time ({type(exc).__name__}: {text})"
    return f"{type(exc).__name__}: {text}"


def for_planning(model: BaseChatModel) -> BaseChatModel:
    """The planner's copy of a model the loop built: temperature 0 where it is unset.

    A plan should not change between two runs of the same task.
    """
    if "temperature" in type(model).model_fields and getattr(model, "temperature", 0) is None:
        return model.model_copy(update={"temperature": 0})
    return model
