"""Find the final answer in a model response. Every scan of LaTeX text lives here.

The scanning primitives (matching braces, top-level separators, boxes, math
spans, amounts) are shared with normalisation and the structural fast path.

What the final answer is (the first rule that finds something wins):

1. **The last marker.** Markers are a box (``\\boxed{}``, ``\\fbox{}``,
   ``\\framebox{}``), a "final answer is/:" phrase and, unless the answers are
   expressions, GSM8K's ``#### X``. The last marker in the response gives the
   answer. Prose after it never overrides it: a response that boxes 12 and
   then ends "so she has 15 apples left" is graded on 12, because a number
   restated after the box is more often a side remark (change, a total, a
   check) than a correction, and a model that corrects itself marks the new
   answer again. Boxes next to each other join into one answer
   (``\\boxed{3}, \\boxed{5}`` -> ``3, 5``): those inside one math span
   (``$x = \\boxed{1}, y = \\boxed{2}$``), and those separated only by
   one or two connectors, labels and at most one other word
   (``$n = \\boxed{1}$ and $n = \\boxed{-2}$``, ``\\boxed{1} papers and \\boxed{2}``).
2. **An answer phrase**: "the answer is X", "answer: X". X is the math span,
   bold span or sentence that follows; when that sentence is prose, the
   amount it starts with, else the amount it ends with.
3. **The final statement**: the last value the response states, which is a
   bold span (headings such as ``**Step 2:**`` excepted), a math span (adjacent
   spans joined as boxes are) or, unless the answers are expressions, a
   plain amount (``$18``, ``1,250``, ``-3``, ``45%``). A ``$`` followed by a
   number is a currency sign, not a math delimiter, when what it would open
   reads as prose (``makes $18 every day. But she spends $2``). The final
   amount is the last one, except that a trailing time span (``$224 in 4
   weeks``, ``for 3 days``) yields to an amount before it in its sentence.
4. Unless the answers are numbers, a short one-line response that is not
   prose, as a whole (``\\frac{10}{9}``).

For number answers, an equation (``9 \\times 2 = 18``) is read as its last side.

Every step is a linear scan; the phrase and final-statement rules only look
at the response's tail, where a final answer lives, so megabyte-long
responses stay cheap.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from eglr.grading.policy import AnswerFormat, BenchmarkLike, resolve_policy

TAIL_CHARS = 8000
MAX_JOINED_BOXES = 16
# A box whose braces do not close within this many characters is ignored.
MAX_BOX_CHARS = 10000
# A response this short, on one line, with no other marker is its own answer.
SHORT_RESPONSE_CHARS = 100
# Boxes further apart than this are separate answers.
MAX_BOX_SEPARATOR_CHARS = 80
# Words other than connectors and labels allowed between two joined boxes.
MAX_SEPARATOR_WORDS = 1

BOX_COMMANDS = ("\\boxed", "\\fbox", "\\framebox")

# ---------------------------------------------------------------- braces and top-level splits

_BRACE_OR_ESCAPE = re.compile(r"\\.|[{}]", re.DOTALL)
_OPENERS, _CLOSERS = "([{", ")]}"


def matching_brace(text: str, open_index: int, limit: int | None = None) -> int:
    """Index of the ``}`` closing the ``{`` at ``open_index``, or -1.

    -1 also when the brace is not closed within ``limit`` characters. Escaped
    braces (``\\{``) do not count.
    """
    end = len(text) if limit is None else min(len(text), open_index + limit)
    depth = 0
    for match in _BRACE_OR_ESCAPE.finditer(text, open_index, end):
        token = match.group(0)
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                return match.start()
    return -1


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """``text`` split at ``separator`` outside any bracket (``\\{`` counts as one)."""
    parts, depth, start, index = [], 0, 0, 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in "{}":
            depth += 1 if text[index + 1] == "{" else -1
            index += 2
            continue
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth -= 1
        elif depth == 0 and text.startswith(separator, index):
            parts.append(text[start:index])
            start = index + len(separator)
            index = start
            continue
        index += 1
    parts.append(text[start:])
    return parts


# ---------------------------------------------------------------- math spans

@dataclass(frozen=True)
class Span:
    """A piece of the scanned text: ``text[start:end]`` holds ``content``."""

    start: int
    end: int
    content: str


# Tokens the math-span scanner stops at; everything between them is skipped in C.
_SPAN_TOKEN = re.compile(r"\\[()\[\]$\\]|\$\$?")
_CLOSING = {"\\(": "\\)", "\\[": "\\]", "$": "$", "$$": "$$"}
# A word of prose (not a command, not inside \text{}), or a line break: not math.
_COMMAND_ARGUMENT = re.compile(r"\\[a-zA-Z]+\s*(?:\{[^{}]*\})?")
_PROSE_IN_MATH = re.compile(r"(?<![a-zA-Z])(?!(?:and|or)(?![a-zA-Z]))[A-Za-z][a-z]{2,}|\n")
_CURRENCY_START = re.compile(r"\s?-?\d")


def _reads_as_prose(content: str) -> bool:
    """Whether what a ``$`` before a number would open is prose, so the ``$`` is money.

    Prose: a word of three letters or more, lower case after the first, outside
    LaTeX commands (``and`` and ``or`` excepted: they join values in math
    too), a line break, or a span that ends in a space although it starts
    with the number (``$5, $10`` -> ``5, ``).
    """
    if _PROSE_IN_MATH.search(_COMMAND_ARGUMENT.sub(" ", content)):
        return True
    return content[:1] not in (" ", "") and content[-1:] in (" ", "\t")


def scan_math(text: str) -> list[Span]:
    """The complete math spans of ``text`` in order.

    Spans are ``$..$``, ``$$..$$``, ``\\(..\\)`` and ``\\[..\\]``; an escaped
    ``\\$`` is never a delimiter, nor is a currency ``$`` (see ``_reads_as_prose``).
    """
    spans: list[Span] = []
    open_token, open_at, open_end = "", -1, -1
    tokens = list(_SPAN_TOKEN.finditer(text))
    index = 0
    while index < len(tokens):
        match = tokens[index]
        token = match.group(0)
        index += 1
        if token in ("\\$", "\\\\"):
            continue
        if open_at < 0:
            if token in ("\\)", "\\]"):
                continue
            if token == "$" and _CURRENCY_START.match(text, match.end()):
                close = _next_token(tokens, index, "$")
                if close is None or _reads_as_prose(text[match.end() : tokens[close].start()]):
                    continue
            open_token, open_at, open_end = token, match.start(), match.end()
        elif token == _CLOSING[open_token]:
            spans.append(Span(open_at, match.end(), text[open_end : match.start()].strip()))
            open_at = -1
    return spans


def _next_token(tokens: list[re.Match], index: int, wanted: str) -> int | None:
    for position in range(index, len(tokens)):
        token = tokens[position].group(0)
        if token == wanted:
            return position
        if token == "$$":
            return None
    return None


def last_math_span(text: str, first: bool = False) -> str | None:
    """Content of the last (or first) non-empty math span of ``text``, adjacent spans joined."""
    spans = [span for span in scan_math(text) if span.content]
    if not spans:
        return None
    group = _joined_group(text, spans, 0 if first else len(spans) - 1, first)
    return ", ".join(span.content for span in group)


def _joined_group(text: str, spans: list[Span], anchor: int, forward: bool) -> list[Span]:
    """The spans that only connectors separate from ``spans[anchor]``, in text order."""
    group = [spans[anchor]]
    step = 1 if forward else -1
    position = anchor + step
    while 0 <= position < len(spans) and len(group) < MAX_JOINED_BOXES:
        before, after = (group[-1], spans[position]) if forward else (spans[position], group[0])
        if not _CONNECTORS_ONLY.match(text[before.end : after.start]):
            break
        if forward:
            group.append(spans[position])
        else:
            group.insert(0, spans[position])
        position += step
    return group


# ---------------------------------------------------------------- boxes

_BOX_START = re.compile(r"\\(?:boxed|fbox|framebox)(?![a-zA-Z])")
_BARE_BOX_ARGUMENT = re.compile(r"[^\s$]+")
_CONNECTORS_ONLY = re.compile(
    r"^(?:\s|[,;]|\\[,;!: ]|\\q?quad(?![a-zA-Z])|\\text\{\s*(?:and|or|,)?\s*\}|(?<![a-zA-Z])(?:and|or)(?![a-zA-Z]))*$"
)
# What may separate joined boxes besides words: delimiters, spacing, punctuation, labels.
_SEPARATOR_NOISE = re.compile(
    r"\\[()\[\]]|\$|\\\\|\\[,;!: ]|\\q?quad(?![a-zA-Z])|\\(?:text|mbox|textrm|mathrm)\s*\{|[{}&.,;:]"
    r"|(?<![a-zA-Z\\])[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?\s*='?"
    r"|\((?:[a-z]|i{1,3}|iv|v)\)"
)
_SEPARATOR_CONNECTOR = re.compile(r"^(?:and|or)$")
_SENTENCE_BREAK = re.compile(r"[.!?]\s+[A-Z]|\n\s*\n")


def _box_content(text: str, start: int) -> tuple[str, int] | None:
    """Content and end index of the box command starting at ``start``."""
    command_end = start + 1
    while command_end < len(text) and text[command_end].isalpha():
        command_end += 1
    index = command_end
    while index < len(text) and text[index] == " ":
        index += 1
    if index >= len(text):
        return None
    if text[index] == "{":
        close = matching_brace(text, index, MAX_BOX_CHARS)
        if close < 0:
            return None
        return text[index + 1 : close], close + 1
    # ``\boxed 5``: the argument is the next token up to whitespace or ``$``.
    match = _BARE_BOX_ARGUMENT.match(text, index, index + 200)
    if match is None:
        return None
    return match.group(0), match.end()


def _box_starts(text: str) -> list[int]:
    """Start indices of box commands, last first (lazy, via rfind)."""
    starts: list[int] = []
    for command in BOX_COMMANDS:
        position = text.rfind(command)
        while position >= 0:
            if _BOX_START.match(text, position):
                starts.append(position)
            if len(starts) > 4 * MAX_JOINED_BOXES:
                break
            position = text.rfind(command, 0, position)
    return sorted(set(starts), reverse=True)


def last_box_start(text: str) -> int:
    """Where the last box command starts, or -1."""
    return max(text.rfind(command) for command in BOX_COMMANDS)


def _separates_parts(separator: str) -> bool:
    """Whether text between two boxes only separates parts of one answer."""
    if len(separator) > MAX_BOX_SEPARATOR_CHARS or _SENTENCE_BREAK.search(separator):
        return False
    words = _SEPARATOR_NOISE.sub(" ", separator).split()
    connectors = [word for word in words if _SEPARATOR_CONNECTOR.match(word)]
    others = [word for word in words if not _SEPARATOR_CONNECTOR.match(word)]
    if not others:
        return True
    return 0 < len(connectors) <= 2 and len(others) <= MAX_SEPARATOR_WORDS and all(word.isalpha() for word in others)


def _enclosing_span(text: str, position: int) -> Span | None:
    """The math span of ``text`` around ``position``, if any (looked for in the tail only)."""
    offset = max(0, len(text) - TAIL_CHARS)
    if position < offset:
        return None
    for span in scan_math(text[offset:]):
        if span.start + offset < position < span.end + offset:
            return Span(span.start + offset, span.end + offset, span.content)
    return None


def last_boxed(text: str, join_adjacent: bool = True) -> str | None:
    """Content of the last complete box.

    With ``join_adjacent``, boxes before it that belong to the same answer are
    prepended (see the module docstring): ``\\boxed{1} and \\boxed{2}`` -> ``1, 2``.
    """
    contents: list[str] = []
    previous_start = None
    enclosing: Span | None = None
    enclosing_known = False
    for start in _box_starts(text):
        parsed = _box_content(text, start)
        if parsed is None:
            continue
        content, end = parsed
        if previous_start is not None:
            if end > previous_start:
                break
            if not enclosing_known:
                enclosing, enclosing_known = _enclosing_span(text, previous_start), True
            in_same_span = enclosing is not None and enclosing.start < start
            if not in_same_span and not _separates_parts(text[end:previous_start]):
                break
        contents.append(content.strip())
        previous_start = start
        if not join_adjacent or len(contents) >= MAX_JOINED_BOXES:
            break
    if not contents:
        return None
    return ", ".join(reversed(contents))


# ---------------------------------------------------------------- amounts

@dataclass(frozen=True)
class Amount:
    """A number stated in prose, as written; ``period`` when it is a time span (``in 4 weeks``)."""

    start: int
    end: int
    text: str
    period: bool


_AMOUNT = re.compile(
    r"(?<![A-Za-z0-9_.,])"
    r"(?:-?\\[dt]?frac\{-?\d+\}\{\d+\}|-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+(?![\d/]))?|-?\.\d+)"
    r"(?![\d])(?:\s*(?:\\?%|percent(?![a-zA-Z])))?"
)
_PERIOD_BEFORE = re.compile(
    r"(?<![a-zA-Z])(?:in|for|over|after|within|during)\s+(?:another\s+|the\s+next\s+)?$", re.IGNORECASE
)
_PERIOD_AFTER = re.compile(
    r"\s*(?:more\s+)?(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?)(?![a-zA-Z])", re.IGNORECASE
)
_AMOUNT_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


def amounts(text: str) -> list[Amount]:
    """The numbers stated in ``text``, in order."""
    found: list[Amount] = []
    for match in _AMOUNT.finditer(text):
        period = bool(_PERIOD_BEFORE.search(text, max(0, match.start() - 24), match.start()))
        period = period and bool(_PERIOD_AFTER.match(text, match.end()))
        found.append(Amount(match.start(), match.end(), match.group(0).strip(), period))
    return found


def _final_amount(text: str, found: list[Amount]) -> Amount:
    """The amount the final sentence states: its last one, unless that is a trailing
    time span (``$224 in 4 weeks``) after another amount. ``found`` is non-empty."""
    last = found[-1]
    if not last.period:
        return last
    sentence_start = 0
    for end in _AMOUNT_SENTENCE_END.finditer(text, 0, last.start):
        sentence_start = end.end()
    earlier = [amount for amount in found if amount.start >= sentence_start and not amount.period]
    return earlier[-1] if earlier else last


# ---------------------------------------------------------------- phrases, bold, final statement

_FINAL_ANSWER_PHRASE = re.compile(r"final\s+answer\s*(?:\*\*|__)?\s*(?:is\b|:)", re.IGNORECASE)
_ANSWER_PHRASE = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:\*\*|__)?\s*(?:is|:|=)\s*:?\s*", re.IGNORECASE
)
# GSM8K's "#### 18" (not a markdown heading such as "#### Step 2").
_HASHED_NUMBER = re.compile(r"####\s*(\\?\$?\s*-?[0-9.][^\n]*)")
_BOLD = re.compile(r"\*\*([^*\n]{1,200})\*\*")
_HEADING = re.compile(r"^(?:step|part|case)\s+\w+\b|[:：]$", re.IGNORECASE)
_PROSE_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}")
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n|(?<=\S)\s+(?:I hope|which|because|since|so\s)", re.IGNORECASE)
_MATH_DELIMITED = re.compile(r"\$[^$]*\$")
_MAX_BOLD_WORDS = 4
_TEXT_GROUP = re.compile(r"\\(?:text|mathrm|mbox|textrm)\s*\{[^{}]*\}")


def _leading_amount(candidate: str) -> str | None:
    """The amount a prose answer starts with (``224 dollars in 4 weeks`` -> ``224``)."""
    stripped = re.sub(r"^(?:\\?\$|[€£¥₹]|approximately|about|exactly|=|\s)+", "", candidate, flags=re.IGNORECASE)
    match = _AMOUNT.match(stripped)
    return match.group(0).strip() if match else None


def _after_phrase(rest: str, answer_format: AnswerFormat) -> str | None:
    """The answer stated right after an answer phrase, ``rest`` being what follows it."""
    rest = rest.lstrip()
    if rest.startswith("**") and not _BOLD.match(rest):
        rest = rest[2:].lstrip()  # the closing ``**`` of ``**Final Answer:**``
    if rest.startswith(("$", "\\(", "\\[")):
        spans = scan_math(rest)
        if spans and spans[0].start == 0 and spans[0].content:
            return ", ".join(span.content for span in _joined_group(rest, spans, 0, forward=True))
    bold = _BOLD.match(rest)
    if bold:
        return _bold_answer(bold.group(1))
    end = _SENTENCE_END.search(rest)
    candidate = (rest[: end.start()] if end else rest).strip().strip("*").strip()
    if not candidate:
        return None
    if len(_PROSE_WORD.findall(_MATH_DELIMITED.sub(" ", candidate))) >= 3:
        leading = _leading_amount(candidate)
        if leading is not None:
            return leading
        found = amounts(candidate)
        return _final_amount(candidate, found).text if found else candidate
    return candidate


def _phrase_answer(tail: str, answer_format: AnswerFormat) -> str | None:
    for match in reversed(list(_ANSWER_PHRASE.finditer(tail))):
        found = _after_phrase(tail[match.end() : match.end() + 500], answer_format)
        if found:
            return found
    return None


def _bold_answer(content: str) -> str:
    content = content.strip()
    math = last_math_span(content)
    return math if math is not None else content.rstrip(".:").strip()


def _bold_candidate(tail: str, answer_format: AnswerFormat) -> Span | None:
    """The last bold span that states an answer (not a heading such as ``**Step 2:**``)."""
    for match in reversed(list(_BOLD.finditer(tail))):
        content = match.group(1).strip()
        if not content or _HEADING.search(content) or tail[match.end() : match.end() + 1] in (":", "："):
            continue
        has_math = any(char.isdigit() for char in content) or "$" in content or "\\" in content
        if has_math or (answer_format is not AnswerFormat.NUMBER and len(content.split()) <= _MAX_BOLD_WORDS):
            return Span(match.start(), match.end(), _bold_answer(content))
    return None


def _pure_amount(content: str) -> bool:
    """Whether a math span holds just a number (``18``, ``\\$1,250``, ``45\\%``, ``16 \\text{ apples}``)."""
    stripped = _TEXT_GROUP.sub("", content)
    for noise in ("\\$", "\\%", "%", "\\,", "\\!"):
        stripped = stripped.replace(noise, "")
    return _AMOUNT.fullmatch(stripped.replace("{,}", ",").strip()) is not None


def _final_statement(tail: str, answer_format: AnswerFormat) -> str | None:
    """The last value the response states (rule 3 of the module docstring)."""
    math = [span for span in scan_math(tail) if span.content]
    if answer_format is AnswerFormat.NUMBER:
        # Spans that hold just a number are read as amounts (so the final-sentence rules apply).
        math = [span for span in math if any(char.isdigit() for char in span.content)]
        math = [span for span in math if not _pure_amount(span.content)]
    found = amounts(tail) if answer_format is not AnswerFormat.EXPRESSION else []
    candidates: list[tuple[int, str]] = []
    bold = _bold_candidate(tail, answer_format)
    if bold is not None:
        candidates.append((bold.end, bold.content))
    if math:
        group = _joined_group(tail, math, len(math) - 1, forward=False)
        candidates.append((group[-1].end, ", ".join(span.content for span in group)))
    if found:
        candidates.append((found[-1].end, _final_amount(tail, found).text))
    if not candidates:
        return None
    # Latest first; a bold or math span wins over an amount that ends inside it.
    return max(enumerate(candidates), key=lambda item: (item[1][0], -item[0]))[1][1]


def _last_side(answer: str) -> str:
    """``9 \\times 2 = 18`` -> ``18``: the result of a chain of equalities."""
    sides = [side.strip() for side in split_top_level(answer, "=")]
    return sides[-1] if len(sides) > 1 and sides[-1] else answer


def _marked_answer(response: str, tail: str, answer_format: AnswerFormat) -> str | None:
    """The answer given by the last marker: a box, a "final answer" phrase, or ``####``."""
    box_at = last_box_start(response)
    tail_offset = len(response) - len(tail)
    phrases = list(_FINAL_ANSWER_PHRASE.finditer(tail))
    phrase_at = tail_offset + phrases[-1].start() if phrases else -1
    hashed = list(_HASHED_NUMBER.finditer(tail)) if answer_format is not AnswerFormat.EXPRESSION else []
    hashed_at = tail_offset + hashed[-1].start() if hashed else -1
    if hashed_at > max(box_at, phrase_at):
        return hashed[-1].group(1).strip()
    if phrase_at > box_at:
        for match in reversed(phrases):
            found = _after_phrase(tail[match.end() : match.end() + 500], answer_format)
            if found:
                return found
    return last_boxed(response) if box_at >= 0 else None


def _short_response(response: str) -> str | None:
    """A short one-line response without math delimiters or bold that is not prose, as a whole."""
    stripped = response.strip()
    if (
        stripped
        and len(stripped) <= SHORT_RESPONSE_CHARS
        and stripped.isascii()
        and "\n" not in stripped
        and not any(delimiter in stripped for delimiter in ("$", "\\(", "\\[", "**"))
        and len(_PROSE_WORD.findall(stripped)) <= 1
    ):
        return stripped
    return None


def extract_answer(response: str | None, benchmark: BenchmarkLike = None) -> str | None:
    """The final answer stated in ``response``, or None if it states none.

    ``benchmark`` (a name, a registry spec or a ``GradingPolicy``; None for
    "not known") decides through its answer format which rules apply; see the
    module docstring.
    """
    if not response:
        return None
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    answer_format = resolve_policy(benchmark).answer_format
    tail = response[-TAIL_CHARS:]
    found = _marked_answer(response, tail, answer_format) or _phrase_answer(tail, answer_format)
    if not found and answer_format is not AnswerFormat.NUMBER:
        found = _short_response(response)
    found = found or _final_statement(tail, answer_format)
    if found and answer_format is AnswerFormat.NUMBER:
        found = _last_side(found)
    return found or None
