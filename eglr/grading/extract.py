"""Find the final answer in a model response.

Order of attempts (the first that finds something wins):

1. the last ``\\boxed{}`` / ``\\fbox{}`` / ``\\framebox{}`` (nested braces), joined
   with the boxes right before it when only connectors separate them
   (``\\boxed{3} and \\boxed{5}`` -> ``3, 5``);
2. for GSM8K-style benchmarks, the text after the last ``####``;
3. "the final answer is X" / "answer: X" (also before 1. when a "final
   answer is" comes after the last box);
4. the last markdown bold span that contains a digit or LaTeX (``**73**``);
5. the last inline math span (``$...$``, ``\\(...\\)``, ``\\[...\\]``);
6. except on GSM8K-style benchmarks, a short one-line response that is not
   prose, as a whole (``\\frac{10}{9}``);
7. for GSM8K-style benchmarks (and when no benchmark is given), the last number.

Every step is a linear scan; phrase and math fallbacks only look at the
response's tail, where a final answer lives, so megabyte-long responses stay
cheap.
"""
from __future__ import annotations

import re

from eglr.grading.normalize import matching_brace

# Benchmarks whose answers are plain numbers: they get the ``####`` and the
# last-number fallbacks.
NUMERIC_ANSWER_BENCHMARKS = frozenset({"gsm8k", "arith"})
TAIL_CHARS = 8000
MAX_JOINED_BOXES = 16
# A box whose braces do not close within this many characters is ignored.
MAX_BOX_CHARS = 10000
# A response this short, on one line, with no other marker is its own answer.
SHORT_RESPONSE_CHARS = 100

_BOX_COMMANDS = ("\\boxed", "\\fbox", "\\framebox")
_BOX_START = re.compile(r"\\(?:boxed|fbox|framebox)(?![a-zA-Z])")
_BOX_SEPARATOR = re.compile(
    r"^(?:\s|[,;.$]|\\[()\[\],;!:]|\\q?quad(?![a-zA-Z])|&|\\\\|"
    r"\\text\{\s*(?:and|or|,)?\s*\}|(?<![a-zA-Z])(?:and|or)(?![a-zA-Z]))*$"
)
_FINAL_ANSWER_PHRASE = re.compile(r"final\s+answer\s*(?:is|:)", re.IGNORECASE)
_ANSWER_PHRASE = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?\s*", re.IGNORECASE
)
_BOLD = re.compile(r"\*\*([^*\n]{1,200})\*\*")
_NUMBER = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?(?:/[0-9]+)?|-?\.[0-9]+")
_PROSE_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}")
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n|(?<=\S)\s+(?:I hope|which|because|since|so\s)", re.IGNORECASE)
_BARE_BOX_ARGUMENT = re.compile(r"[^\s$]+")
# GSM8K's "#### 18" (not a markdown heading such as "#### Step 2").
_HASHED_NUMBER = re.compile(r"####\s*(\$?\s*-?[0-9.][^\n]*)")
_MATH_SPAN = re.compile(r"\$[^$]*\$")


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
    for command in _BOX_COMMANDS:
        position = text.rfind(command)
        while position >= 0:
            if _BOX_START.match(text, position):
                starts.append(position)
            if len(starts) > 4 * MAX_JOINED_BOXES:
                break
            position = text.rfind(command, 0, position)
    return sorted(set(starts), reverse=True)


def last_boxed(text: str, join_adjacent: bool = True) -> str | None:
    """Content of the last complete box.

    With ``join_adjacent``, boxes right before it that only connectors separate
    from it are prepended: ``\\boxed{1} and \\boxed{2}`` -> ``1, 2``.
    """
    starts = _box_starts(text)
    contents: list[str] = []
    previous_start = None
    for start in starts:
        parsed = _box_content(text, start)
        if parsed is None:
            continue
        content, end = parsed
        if previous_start is not None:
            if end > previous_start or not _BOX_SEPARATOR.match(text[end:previous_start]):
                break
        contents.append(content.strip())
        previous_start = start
        if not join_adjacent or len(contents) >= MAX_JOINED_BOXES:
            break
    if not contents:
        return None
    return ", ".join(reversed(contents))


def _after_phrase(tail: str) -> str | None:
    """The answer following the last "answer is" phrase, up to the sentence end.

    When that sentence is prose ("The largest $n$ is 34"), its last number.
    """
    matches = list(_ANSWER_PHRASE.finditer(tail))
    for match in reversed(matches):
        rest = tail[match.end() : match.end() + 500]
        if rest.lstrip().startswith(("$", "\\(", "\\[")):
            math = _last_math_span(rest, first=True)
            if math is not None:
                return math
        bold = _BOLD.match(rest.lstrip())
        if bold:
            return bold.group(1).strip()
        end = _SENTENCE_END.search(rest)
        candidate = (rest[: end.start()] if end else rest).strip().strip("*").strip()
        if len(_PROSE_WORD.findall(_MATH_SPAN.sub(" ", candidate))) >= 3:
            candidate = _last_number(candidate) or candidate
        if candidate:
            return candidate
    return None


def _last_math_span(text: str, first: bool = False) -> str | None:
    """Content of the last (or first) complete ``$..$``/``$$..$$``/``\\(..\\)``/``\\[..\\]``."""
    spans: list[tuple[int, str]] = []
    index = 0
    length = len(text)
    open_at = -1
    open_token = ""
    while index < length:
        char = text[index]
        if char == "\\" and index + 1 < length:
            token = text[index : index + 2]
            if token in ("\\(", "\\[") and open_at < 0:
                open_at, open_token = index + 2, token
            elif open_at >= 0 and token == {"\\(": "\\)", "\\[": "\\]"}.get(open_token):
                spans.append((open_at, text[open_at:index]))
                open_at = -1
            index += 2
            continue
        if char == "$":
            token = "$$" if text.startswith("$$", index) else "$"
            if open_at < 0:
                open_at, open_token = index + len(token), token
            elif open_token == token:
                spans.append((open_at, text[open_at:index]))
                open_at = -1
            index += len(token)
            continue
        index += 1
    contents = [content.strip() for _, content in spans if content.strip()]
    if not contents:
        return None
    return contents[0] if first else contents[-1]


def _last_bold(tail: str) -> str | None:
    for match in reversed(list(_BOLD.finditer(tail))):
        content = match.group(1).strip()
        if any(char.isdigit() for char in content) or "$" in content or "\\" in content:
            math = _last_math_span(content)
            return math if math is not None else content.rstrip(".:")
    return None


def _last_number(tail: str) -> str | None:
    numbers = _NUMBER.findall(tail)
    return numbers[-1].rstrip(",") if numbers else None


def _final_answer_after_last_box(response: str, tail: str) -> bool:
    """Whether "final answer is/:" comes after the last box (a later restatement wins)."""
    phrases = list(_FINAL_ANSWER_PHRASE.finditer(tail))
    if not phrases:
        return False
    phrase_at = len(response) - len(tail) + phrases[-1].start()
    return phrase_at > max(response.rfind(command) for command in _BOX_COMMANDS)


def extract_answer(response: str | None, benchmark: str | None = None) -> str | None:
    """The final answer stated in ``response``, or None if it states none.

    ``benchmark`` picks the fallbacks: GSM8K-style benchmarks also read
    ``#### X`` and, failing all else, the last number; so does ``None`` (no
    benchmark given), which tries every fallback.
    """
    if not response:
        return None
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    numeric = benchmark in NUMERIC_ANSWER_BENCHMARKS
    tail = response[-TAIL_CHARS:]
    boxed = last_boxed(response)
    if boxed and not _final_answer_after_last_box(response, tail):
        return boxed
    if numeric:
        hashed = _HASHED_NUMBER.findall(tail)
        if hashed:
            return hashed[-1].strip()
    for attempt in (_after_phrase, _last_bold, _last_math_span):
        found = attempt(tail)
        if found:
            return found
    stripped = response.strip()
    if (
        stripped
        and not numeric
        and len(stripped) <= SHORT_RESPONSE_CHARS
        and stripped.isascii()
        and "\n" not in stripped
        and len(_PROSE_WORD.findall(stripped)) <= 1
    ):
        return stripped
    if numeric or benchmark is None:
        return _last_number(tail)
    return None
