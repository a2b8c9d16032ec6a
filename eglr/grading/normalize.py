"""Cheap string normalisation of extracted answers (no symbolic work).

``normalize_answer`` rewrites the surface forms that carry no mathematical
meaning for grading into one canonical spelling: ``\\dfrac``, ``\\left(``,
``\\text{}``, braced one-character subscripts (``E_{1}`` -> ``E_1``), relation
spellings (``\\leq``, ``\\lt``, ``!=``, ``≥``), units after a number (a
``\\text{}`` unit with any exponent, or trailing words: ``3 bolts``, ``10 miles
per hour``), ``^\\circ``, percent signs, thousands separators, ``x = ``
prefixes, a choice letter's text (``(C) Plane``), Python spellings found in
Minerva's golds (``-1./3``, ``np.arcsin(10/13)``), and repeating decimals
(``0.\\overline{3}`` -> ``\\frac{1}{3}``). ``answer_key`` goes one step further
and prints plain numbers canonically (``016``, ``16.0`` and ``\\frac{32}{2}``
all become ``16``), so equal keys mean equal answers. Every function here
runs in time linear in its input: they are called in the parent process,
outside the time-bounded worker.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from eglr.grading.extract import BOX_COMMANDS, matching_brace, split_top_level
from eglr.grading.numbers import DECIMAL, format_number, parse_number, repeating_decimal

# Longer answers are not normalised further than whitespace: real answers are
# short, and this keeps pathological inputs cheap.
MAX_NORMALIZE_CHARS = 4000
MAX_UNWRAP_ROUNDS = 8

_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ('\\"', '\\"'), ('"', '"'))
_TEXT_COMMANDS = (
    r"text|textbf|textit|textrm|textnormal|textsf|texttt|mbox|mathrm|mathbf|mathit|mathsf|mathtt|operatorname"
)

# ``\\le`` outside a matrix is an over-escaped ``\le`` (a row break before letters means nothing).
_DOUBLED_BACKSLASH = re.compile(r"\\\\(?=[a-zA-Z]{2})")
# ``\\`` (a matrix row break) is matched first so that it is never read as ``\`` + space.
_SPACING = re.compile(
    r"(\\\\)"
    r"|\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)(?![a-zA-Z])"
    r"|\\(?:displaystyle|textstyle|scriptstyle|limits)(?![a-zA-Z])"
    r"|\\[!,;:> ]|\\q?quad(?![a-zA-Z])|~"
)
_LATEX_THOUSANDS = re.compile(r"(?<=\d),\\!\s*(?=\d{3})|\{,\}")
_FRAC_VARIANT = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_FRAC_TWO_TOKENS = re.compile(r"\\frac\s*([0-9a-zA-Z])\s*([0-9a-zA-Z])")
_FRAC_FIRST_TOKEN = re.compile(r"\\frac\s*([0-9a-zA-Z])\s*\{")
_FRAC_SECOND_TOKEN = re.compile(r"\\frac\s*\{([^{}]*)\}\s*([0-9a-zA-Z])")
_SQRT_TOKEN = re.compile(r"\\sqrt\s*([0-9a-zA-Z])")
_REPEATING_DECIMAL = re.compile(r"(?<![\d.])(-?)(\d*)\.(\d*)\\(?:overline|dot|bar)\s*\{(\d{1,12})\}")
_PYTHON_FUNCTION = re.compile(
    r"(?<![\w.])(?:np|numpy|math|sympy|sp)\.(arcsin|arccos|arctan|sinh|cosh|tanh|sin|cos|tan|exp|log10|log|sqrt|pi|e)"
    r"(?![\w])"
)
_PYTHON_NAMES = {"log": "\\ln", "log10": "\\log_{10}", "e": "e"}
_INVERSE_TRIG = re.compile(r"\\(sin|cos|tan|sec|csc|cot)\s*\^\s*(?:\{\s*-\s*1\s*\}|-1(?!\d))")
_ROUND_BRACKET_SQRT = re.compile(r"\\sqrt\(([^()]*)\)")
# ``1./3``: a digit, a bare decimal point, then no digit.
_BARE_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?![\d.])")
_RELATION_SPELLINGS = (
    (re.compile(r"\\leqslant(?![a-zA-Z])|\\leq(?![a-zA-Z])|≤|⩽"), r"\\le "),
    (re.compile(r"\\geqslant(?![a-zA-Z])|\\geq(?![a-zA-Z])|≥|⩾"), r"\\ge "),
    (re.compile(r"\\neq(?![a-zA-Z])|≠|(?<![\d)!])!="), r"\\ne "),
    (re.compile(r"\\lt(?![a-zA-Z])"), "<"),
    (re.compile(r"\\gt(?![a-zA-Z])"), ">"),
)
_BRACED_SUBSCRIPT = re.compile(r"_\{\s*([A-Za-z0-9])\s*\}")
_CONNECTOR = re.compile(
    r"\s*(?:\\(?:" + _TEXT_COMMANDS + r")\{\s*(?:and|or|,)\s*\}|(?<![a-zA-Z\\])(?:and|or)(?![a-zA-Z]))\s*"
)
_REPEATED_COMMA = re.compile(r",(?:\s*,)+")
_TEXT_COMMAND = re.compile(r"\\(?:" + _TEXT_COMMANDS + r")\s*\{([^{}]*)\}")
_DEGREES = re.compile(
    r"(?:\^\s*\{?\s*\\circ\s*\}?|\\circ(?![a-zA-Z])|°|\\degree(?![a-zA-Z]))"
    r"(?:\s*(?:\\(?:mathrm|text)\s*\{\s*[CFK]\s*\}|[CFK](?![a-zA-Z])))?"
)
_PERCENT = re.compile(r"\\%|%|\s*(?<![a-zA-Z])(?:percentage|percent|pct)(?![a-zA-Z])")
_DOLLAR = re.compile(r"\\\$|\$")
_EXPONENT = r"(?:\s*\^\s*\{?\s*-?\d+\s*\}?|[²³])?"
# A unit in a text command after a number or symbol: ``15\mbox{ cm}^2``, ``5\text{ s}^{-1}``,
# ``3\mathrm{m}/\mathrm{s}`` (single letters count here: a text command says it is a unit).
_TEXT_UNIT = r"\\(?:" + _TEXT_COMMANDS + r")\s*\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}" + _EXPONENT
_TEXT_UNIT_TAIL = re.compile(
    r"(?<=[0-9}).a-zA-Z])\s*" + _TEXT_UNIT + r"(?:\s*(?:/|\\cdot)?\s*" + _TEXT_UNIT + r")*\s*$"
)
# Words after a number are its unit or what it counts (``3 bolts``, ``70 gold coins``,
# ``10 miles per hour``, ``7 dozen``); single letters are left alone because
# ``6 m`` may be an expression in ``m``, and so are names of functions and constants.
_MATH_WORDS = r"(?:pi|sqrt|sin|cos|tan|cot|sec|csc|log|ln|exp|mod|infty|inf|and|or)(?![a-zA-Z])"
_UNIT_WORD = r"(?!" + _MATH_WORDS + r")(?:[a-zA-Z]+\s*/\s*[a-zA-Z]+|[a-zA-Z]{2,})" + _EXPONENT
_WORD_UNIT_TAIL = re.compile(r"(?<=[0-9}])(?:\s+" + _UNIT_WORD + r")+\s*\.?$")
_VARIABLE_PREFIX = re.compile(
    r"^\s*(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?[\w,]+\}?)?(?:\^\{?[\w]+\}?)?(?:\([a-zA-Z]\))?\s*(?:=|\\in(?![a-zA-Z]))\s*"
)
_LABEL = re.compile(r"^\s*([a-zA-Z](?:_\{?\w+\}?)?)\s*=(?!=)")
RELATION = re.compile(r"=|<|>|\\(?:le|ge|ne|in|approx|equiv)(?![a-zA-Z])")
_THOUSANDS = re.compile(r"^[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$")
_CHOICE = re.compile(r"^\(?([A-E])\)?$")
_CHOICE_WITH_TEXT = re.compile(r"^\(([A-E])\)\s*(\S.*)$", re.DOTALL)
_WHITESPACE_RUN = re.compile(r"\s+")
_SPACE_BETWEEN_LETTERS = re.compile(r"(?<=[a-zA-Z])\s+(?=[a-zA-Z])")


@dataclass(frozen=True)
class NormalizedAnswer:
    """An answer in canonical spelling.

    ``text`` is the canonical form the fast comparisons use (``x = 5`` -> ``5``);
    ``expression`` is the same without dropping a ``x =`` prefix, for the
    symbolic comparison, which needs ``y = 2x`` to compare it with the equation
    ``2x - y = 0``. ``percent`` records that a percent sign was removed, so
    ``28\\%`` can also match ``0.28``. ``choice`` is the letter of a multiple
    choice answer written with its text (``(C) Plane``); ``text`` is then the text.
    """

    text: str
    expression: str
    percent: bool = False
    choice: str | None = None


def strip_wrappers(answer: str) -> str:
    """Remove math delimiters and a ``\\boxed{}`` that wrap the whole answer."""
    text = answer.strip()
    changed = True
    for _ in range(MAX_UNWRAP_ROUNDS):
        if not (changed and text):
            break
        changed = False
        for opening, closing in _WRAPPERS:
            if len(text) >= len(opening) + len(closing) and text.startswith(opening) and text.endswith(closing):
                text = text[len(opening) : len(text) - len(closing)].strip()
                changed = True
                break
        for command in BOX_COMMANDS:
            if text.startswith(command + "{") and text.endswith("}"):
                if matching_brace(text, len(command)) == len(text) - 1:
                    text = text[len(command) + 1 : -1].strip()
                    changed = True
                    break
        if text.startswith("{") and matching_brace(text, 0) == len(text) - 1:
            text = text[1:-1].strip()  # plain braces only group: ``{35 cm, 4}``
            changed = True
        if text.endswith((".", ";")) and not DECIMAL.match(text):
            text = text[:-1].rstrip()
            changed = True
    return text


def _unwrap_text_commands(text: str) -> str:
    """``\\text{abc}`` -> ``abc`` for every text-like command (innermost first)."""
    for _ in range(MAX_UNWRAP_ROUNDS):
        unwrapped = _TEXT_COMMAND.sub(lambda match: match.group(1), text)
        if unwrapped == text:
            break
        text = unwrapped
    return text


def _as_fraction(match: re.Match) -> str:
    value = repeating_decimal(match.group(2), match.group(3), match.group(4))
    sign = "-" if match.group(1) else ""
    if value.denominator == 1:
        return f"{sign}{value.numerator}"
    return f"{sign}\\frac{{{value.numerator}}}{{{value.denominator}}}"


def _python_function(match: re.Match) -> str:
    name = match.group(1)
    return _PYTHON_NAMES.get(name, "\\" + name)


def _rewrite_spellings(text: str) -> str:
    """One spelling for fractions, roots, inverse trigonometric functions, relations,
    subscripts, repeating decimals and Python syntax."""
    text = _FRAC_VARIANT.sub(r"\\frac", text)
    text = _FRAC_TWO_TOKENS.sub(r"\\frac{\1}{\2}", text)
    text = _FRAC_FIRST_TOKEN.sub(r"\\frac{\1}{", text)
    text = _FRAC_SECOND_TOKEN.sub(r"\\frac{\1}{\2}", text)
    text = _SQRT_TOKEN.sub(r"\\sqrt{\1}", text)
    text = _REPEATING_DECIMAL.sub(_as_fraction, text)
    text = _PYTHON_FUNCTION.sub(_python_function, text)
    text = _INVERSE_TRIG.sub(r"\\arc\1", text)
    text = _ROUND_BRACKET_SQRT.sub(r"\\sqrt{\1}", text)
    text = _BARE_DECIMAL_POINT.sub("", text)
    for pattern, replacement in _RELATION_SPELLINGS:
        text = pattern.sub(replacement, text)
    return _BRACED_SUBSCRIPT.sub(r"_\1", text)


def _each_item(text: str, rewrite) -> str:
    """Apply ``rewrite`` to every top-level comma-separated item of ``text``."""
    items = split_top_level(text)
    return ",".join(rewrite(item) for item in items) if len(items) > 1 else rewrite(text)


def _strip_text_units(item: str) -> str:
    stripped = _TEXT_UNIT_TAIL.sub("", item)
    return stripped if stripped.strip() else item


def _strip_word_units(item: str) -> str:
    stripped = _WORD_UNIT_TAIL.sub("", item)
    return stripped if stripped.strip() else item


def _collapse_whitespace(text: str, keep_comma_space: bool = False) -> str:
    """Drop spaces except between two letters (``\\pi r`` must not become ``\\pir``).

    With ``keep_comma_space``, ``, `` stays as is: math-verify reads ``32,349``
    as one number and ``32, 349`` as a list.
    """
    text = _WHITESPACE_RUN.sub(" ", text).strip()
    if keep_comma_space:
        text = text.replace(", ", ",\u0001")
    text = _SPACE_BETWEEN_LETTERS.sub("\u0000", text)
    return text.replace(" ", "").replace("\u0000", " ").replace("\u0001", " ")


def _finish(text: str, keep_comma_space: bool = False) -> str:
    # Thousands separators are checked before spaces go: "32, 349" is a list.
    text = text.strip().strip(",").strip()
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    text = _collapse_whitespace(text, keep_comma_space)
    choice = _CHOICE.match(text)
    return choice.group(1) if choice else text


def _without_labels(text: str) -> str:
    """``x = 5`` -> ``5``, and ``x = 1, x = -2`` -> ``1, -2`` (one name for every item).

    Items with different names (``a = 1, b = 2``) keep them: the order of
    named values matters.
    """
    if len(RELATION.findall(text)) == 1:
        return _VARIABLE_PREFIX.sub("", text, count=1)
    items = split_top_level(text)
    labels = [_LABEL.match(item) for item in items]
    if len(items) > 1 and all(labels) and len({label.group(1) for label in labels}) == 1:
        return ",".join(item[label.end() :] for item, label in zip(items, labels))
    return text


@lru_cache(maxsize=65536)
def normalize_answer(answer: str) -> NormalizedAnswer:
    """Canonical spelling of one extracted answer (see module docstring); memoised."""
    if len(answer) > MAX_NORMALIZE_CHARS:
        return NormalizedAnswer(answer.strip(), answer.strip())
    text = strip_wrappers(answer.replace("\u0000", "").replace("\u0001", ""))
    if "\\begin" not in text:
        text = _DOUBLED_BACKSLASH.sub(r"\\", text)
    text = _LATEX_THOUSANDS.sub(",", text)
    text = text.replace("\\!", "").replace("**", "")
    text = _SPACING.sub(lambda match: match.group(1) or " ", text)
    text = _rewrite_spellings(text)
    text = _REPEATED_COMMA.sub(",", _CONNECTOR.sub(",", text))
    text = _DEGREES.sub("", text)
    percent = bool(_PERCENT.search(text))
    text = _PERCENT.sub("", text)
    text = _DOLLAR.sub("", text)
    text = _each_item(text, _strip_text_units)
    text = strip_wrappers(_unwrap_text_commands(text))
    text = _each_item(text, _strip_word_units)
    choice = None
    lettered = _CHOICE_WITH_TEXT.match(text)
    if lettered:
        choice, text = lettered.group(1), lettered.group(2)
    expression = _finish(text, keep_comma_space=True)
    return NormalizedAnswer(_finish(_without_labels(text)), expression, percent, choice)


def answer_key(extracted: str | None) -> str:
    """Cheap canonical string of an extracted answer, for grouping and caching.

    Equal keys imply equal answers; unequal keys may still be equal answers
    (``0.5`` vs ``\\frac{\\sqrt{4}}{4}``), which only the full grader decides.
    ``None`` (no answer) maps to the empty string.
    """
    if extracted is None:
        return ""
    normalized = normalize_answer(extracted)
    value = parse_number(normalized.text)
    if value is not None:
        return format_number(value)
    return normalized.choice or normalized.text

