"""The Ollama chat model the loop builds from `ollama:` strings.

Ollama lets a model write until it stops or its context is full, and a small model caught
in a loop (`1.1.1: 1.1.1: ...`) holds a step for its whole token cap. This `ChatOllama`
can stop such an answer as it streams: leaving the stream closes the HTTP response, and
Ollama stops generating when its client leaves.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from contextlib import aclosing, closing
from typing import Any, cast

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_ollama import ChatOllama

from agentloop_graph.parsing import RepetitionWatch


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
