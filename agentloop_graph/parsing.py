"""Reading model answers: text out of reasoning noise, capped and storable."""

from __future__ import annotations

import json
import re
import zlib

from langchain_core.messages import AIMessage, BaseMessage

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
_THINK_TAGS = re.compile(r"</?think>", re.IGNORECASE)


MAX_RESULT_CHARS = 16_384
"""Longest step result (and tool output) kept in state; longer ones are cut with a marker."""
MAX_TEXT_CHARS = 2_000
"""Longest planned step, revised step or error text kept in state."""


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""NUL and surrogates: PostgreSQL's JSON cannot hold the one, UTF-8 cannot encode the other."""


def storable(text: str) -> str:
    """`text` with what a checkpointer cannot store (NUL, lone surrogates) replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


def storable_message(message: BaseMessage) -> BaseMessage:
    """`message`, its text content made `storable`."""
    content = message.content
    if isinstance(content, str) and _UNSTORABLE.search(content):
        return message.model_copy(update={"content": storable(content)})
    return message


def cap(text: str, limit: int) -> str:
    """`text` made `storable`, cut to its start and a marker if longer than `limit`."""
    text = storable(text)
    if len(text) <= limit:
        return text
    marker = f" …[{len(text)} characters, cut]"
    return text[: limit - len(marker)] + marker


REPEATS_MIN_CHARS = 400
"""Shorter answers are never judged repetitive."""


def repeats_itself(text: str) -> bool:
    """Whether `text` is one short passage repeated (a small model caught in a loop, as
    `1.1.1: 1.1.1: ...`): it compresses to under a tenth of its size, which prose, lists
    and code do not."""
    data = text.encode("utf-8", "replace")
    return len(data) >= REPEATS_MIN_CHARS and len(zlib.compress(data)) * 10 < len(data)


class RepeatingAnswer(Exception):
    """An answer cut off as it streamed, because it had become one passage repeated.

    `reply` holds what had streamed, its pieces counted as its output tokens, so a
    budget counts what the model spent.
    """

    def __init__(self, reply: AIMessage) -> None:
        super().__init__("the model repeated itself")
        self.reply = reply


REPEAT_WINDOW = 500
"""Characters at the end of a streaming answer judged for repetition (prose of this length
compresses to about half, a looping answer to a few percent)."""
REPEAT_CHECK_EVERY = 100
"""Characters streamed between two judgements (each compresses the window once)."""


class RepetitionWatch:
    """Watches an answer as it streams, to stop it as soon as its end repeats itself."""

    def __init__(self) -> None:
        self.text = ""
        self.pieces = 0
        self._judged = 0

    def add(self, piece: str) -> None:
        """Take the next streamed piece.

        Raises:
            RepeatingAnswer: The last `REPEAT_WINDOW` characters are one passage repeated.
        """
        self.text += piece
        self.pieces += 1
        if len(self.text) - self._judged < REPEAT_CHECK_EVERY or len(self.text) < REPEAT_WINDOW:
            return
        self._judged = len(self.text)
        if repeats_itself(self.text[-REPEAT_WINDOW:]):
            usage = {"input_tokens": 0, "output_tokens": self.pieces, "total_tokens": self.pieces}
            raise RepeatingAnswer(AIMessage(self.text, usage_metadata=usage))


def clean_answer(text: str) -> str:
    """Drop `<think>` blocks (closed or cut off) and surrounding white space."""
    return _THINK.sub("", text).strip() if "<" in text else text.strip()


def reasoning_of(reply: AIMessage) -> str | None:
    """What a reasoning model thought: its reasoning content and `<think>` blocks."""
    parts = [str(reply.additional_kwargs.get("reasoning_content") or "")]
    if "<" in reply.text:
        parts += [_THINK_TAGS.sub("", block) for block in _THINK.findall(reply.text)]
    thought = "\n".join(part.strip() for part in parts if part.strip())
    return cap(thought, MAX_RESULT_CHARS) if thought else None


def structured_data(reply: AIMessage) -> object:
    """What an answer held to a schema carries: the object a provider parsed, its tool call's
    arguments, or its JSON text read; None for an answer in prose or JSON that does not read.
    """
    if (parsed := reply.additional_kwargs.get("parsed")) is not None:
        return parsed
    if reply.tool_calls:
        return reply.tool_calls[0]["args"]
    text = clean_answer(reply.text)
    if not text.startswith("{"):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None
