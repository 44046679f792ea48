"""Reading model output: plans out of free text, answers out of reasoning noise."""

from __future__ import annotations

import json
import re
import zlib

from langchain_core.messages import AIMessage, BaseMessage

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
# "1. x", "1) x", "Step 1: x", "**1.** x", "- Step 1 - x", "### 2. x": the number is what counts.
_NUMBERED = re.compile(
    r"^\s*(?:[-*+>#]+\s*)?(?:\*\*|__)?\s*(?:step\s*)?(\d+)\s*(?:[.):](?!\d)|\s-)\s*(?:\*\*|__)?\s*(.*)$",
    re.IGNORECASE,
)
_THINK_TAGS = re.compile(r"</?think>", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*+>#]+\s+)")
_EMPHASIS = re.compile(r"(\*\*|__)")


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
    return _THINK.sub("", text).strip()


def reasoning_of(reply: AIMessage) -> str | None:
    """What a reasoning model thought: its reasoning content and `<think>` blocks."""
    parts = [str(reply.additional_kwargs.get("reasoning_content") or "")]
    parts += [_THINK_TAGS.sub("", block) for block in _THINK.findall(reply.text)]
    thought = "\n".join(part.strip() for part in parts if part.strip())
    return cap(thought, MAX_RESULT_CHARS) if thought else None


_STEPS_ARRAY = re.compile(r'^\s*\{\s*"steps"\s*:\s*\[')


def _complete_items(text: str) -> list[object]:
    # A plan cut off at the token limit (or followed by chatter): keep its complete items.
    start = _STEPS_ARRAY.search(text)
    if start is None:
        return []
    items: list[object] = []
    position = start.end()
    while True:
        position = len(text) - len(text[position:].lstrip(", \t\r\n"))
        try:
            item, position = json.JSONDecoder().raw_decode(text, position)
        except ValueError:
            return items
        items.append(item)


def json_plan_items(text: str) -> list[object] | None:
    """The items of a plan written as `{"steps": [...]}` (its complete ones, if it was cut
    off mid-way), or None if the answer is not a JSON object (the model answered in text).

    A JSON object is never read as text: its lines are no steps. One of another shape, or
    cut off before its first complete item, has no items.
    """
    answer = clean_answer(text)
    if not answer.startswith("{"):
        return None
    try:
        data = json.loads(answer)
    except ValueError:
        return _complete_items(answer)
    items = data.get("steps") if isinstance(data, dict) else None
    return items if isinstance(items, list) else []


def tidy_step(text: str) -> str:
    """A planned step without a model's own numbering and decoration, capped."""
    numbered = _NUMBERED.match(text)
    return cap(_tidy(numbered[2] if numbered else text), MAX_TEXT_CHARS)


def parse_json_plan(text: str) -> list[str] | None:
    """The steps of a plan written as `{"steps": [...]}` (none when it holds no text
    steps), or None if the answer is not JSON.

    A plan cut off mid-way keeps its complete steps; a model's own numbering inside
    the strings is dropped, as in numbered-list plans.
    """
    items = json_plan_items(text)
    if items is None:
        return None
    return [step for item in items if isinstance(item, str) and (step := tidy_step(item))]


def _tidy(item: str) -> str:
    return _EMPHASIS.sub("", item).strip(" \t:-")


def parse_plan(text: str) -> list[str]:
    """Extract the steps of a plan.

    Numbered items win (`1.`, `1)`, `Step 1:`, with markdown decoration); text around
    them, such as a preamble, is ignored. Without numbered items every non-empty line is
    a step.

    Example:
        >>> parse_plan("Sure! Here is the plan:\\n1. Boil water\\n2) **Add** tea")
        ['Boil water', 'Add tea']
    """
    lines = clean_answer(text).splitlines()
    numbered = [m.group(2) for line in lines if (m := _NUMBERED.match(line))]
    items = numbered if numbered else [_BULLET.sub("", line) for line in lines]
    return [cap(step, MAX_TEXT_CHARS) for step in map(_tidy, items) if step]
