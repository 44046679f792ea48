"""Ollama: the chat model the loop builds from `ollama:` strings, and what is particular to it
(where the server is, how long answers may be, how its errors read). Imported only when an
Ollama model is built or its error described.

Ollama lets a model write until it stops or its context is full, and a small model caught
in a loop (`1.1.1: 1.1.1: ...`) holds a step for its whole token cap. So each phase's answers
are capped, and the executor's and summariser's are stopped as they stream once they repeat
themselves: leaving the stream closes the HTTP response, and Ollama stops generating when
its client leaves.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Mapping
from contextlib import aclosing, closing
from types import MappingProxyType
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_ollama import ChatOllama
from pydantic import ValidationError

from agentloop_graph.models import is_unreachable
from agentloop_graph.parsing import RepetitionWatch

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


ANSWER_TOKENS = MappingProxyType(
    {"planner": 512, "executor": 1024, "adapter": 256, "summariser": 1024}
)
"""Each phase's longest answer from an Ollama model the loop built, unless `model_options`
sets `num_predict`: Ollama lets a model write until its context is full, and a small model
that repeats itself would hold a step for minutes."""


GUARDED_PHASES = ("executor", "summariser")
"""Phases whose long answers are cut off once they repeat themselves; a plan that loops
still yields its first steps, and the adapter's answers are short."""


class LoopChatOllama(ChatOllama):
    """`ChatOllama`, whose answers end once they repeat themselves when `stop_repeating`."""

    stop_repeating: bool = False
    """Fail an answer with `RepeatingAnswer` as soon as its end is one passage repeated."""

    def _iterate_over_stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        watch = RepetitionWatch() if self.stop_repeating else None
        # Closed at once when the watch stops the answer: that ends the HTTP response.
        stream = cast(
            Generator[ChatGenerationChunk], super()._iterate_over_stream(messages, stop, **kwargs)
        )
        with closing(stream) as chunks:
            for chunk in chunks:
                if watch is not None:
                    watch.add(chunk.text)
                yield chunk

    async def _aiterate_over_stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        watch = RepetitionWatch() if self.stop_repeating else None
        stream = cast(
            AsyncGenerator[ChatGenerationChunk],
            super()._aiterate_over_stream(messages, stop, **kwargs),
        )
        async with aclosing(stream) as chunks:
            async for chunk in chunks:
                if watch is not None:
                    watch.add(chunk.text)
                yield chunk


def chat_ollama(
    name: str,
    options: Mapping[str, Any],
    timeout: float | None,
    cannot_build: Callable[[BaseException], str],
) -> BaseChatModel:
    """The Ollama model `name` at `OLLAMA_HOST` (or `options`' `base_url`), with `options`.

    Ollama's HTTP client has no timeout of its own: it gets `OLLAMA_CLIENT_TIMEOUT`, or a
    little more than the loop's `model_timeout`, unless `options` sets `client_kwargs`.

    Raises:
        ValueError: The options do not suit `ChatOllama`, or the model cannot be built
            (`cannot_build` words why).
    """
    client_timeout = OLLAMA_CLIENT_TIMEOUT if timeout is None else timeout + CLIENT_TIMEOUT_GRACE
    settings = {
        "base_url": ollama_base_url(),
        "client_kwargs": {"timeout": client_timeout},
        **options,
    }
    try:
        return LoopChatOllama(model=name, **settings)
    except (ValidationError, TypeError) as exc:
        raise ValueError(f"model_options do not suit ChatOllama: {exc}") from None
    except Exception as exc:
        raise ValueError(cannot_build(exc)) from None


def phase_settings(model: BaseChatModel, phase: str) -> dict[str, Any]:
    """What an Ollama model the loop built changes for `phase`: its answer cap (unless
    `model_options` set one), and its stop on repetition."""
    update: dict[str, Any] = {}
    if getattr(model, "num_predict", 0) is None:
        update["num_predict"] = ANSWER_TOKENS[phase]
    if phase in GUARDED_PHASES and "stop_repeating" in type(model).model_fields:
        update["stop_repeating"] = True
    return update


def describe_ollama_error(
    model: object, exc: BaseException, text: str, status: int | None
) -> str | None:
    """What to say of an Ollama model's failed call where Ollama has its own advice: a model
    the server lacks, or no server; None otherwise."""
    base_url = getattr(model, "base_url", None) or ollama_base_url()
    if status == 404:
        name = getattr(model, "model", "")
        return (
            f"model {name!r} is not available on the Ollama server at {base_url}: "
            f"pull it with `ollama pull {name}` ({text})"
        )
    if is_unreachable(exc):
        return (
            f"cannot reach the Ollama server at {base_url} ({text}). "
            "Start it with `ollama serve` (or set OLLAMA_HOST), "
            'or use the offline "demo" model (`--model demo` on the command line)'
        )
    return None
