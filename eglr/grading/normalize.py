"""Cheap string normalisation of extracted answers (no symbolic work).

``normalize_answer`` rewrites the LaTeX surface forms that carry no
mathematical meaning for grading (``\\dfrac``, ``\\left(``, ``\\text{}``, units,
``^\\circ``, percent signs, thousands separators, ``x = `` prefixes, ...) into
one canonical spelling. ``answer_key`` goes one step further and prints plain
numbers canonically (``016``, ``16.0`` and ``\\frac{32}{2}`` all become ``16``),
so equal keys mean equal answers. Every function here runs in time linear in
its input: they are called in the parent process, outside the time-bounded
worker.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

# Longer answers are not normalised further than whitespace: real answers are
# short, and this keeps pathological inputs cheap.
MAX_NORMALIZE_CHARS = 4000
# Plain numbers with more digits than this are compared as strings only.
MAX_NUMBER_DIGITS = 80
MAX_EXPONENT = 400
MAX_UNWRAP_ROUNDS = 8

_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ('\\"', '\\"'), ('"', '"'))
_BOX_COMMANDS = ("\\boxed", "\\fbox", "\\framebox")
_TEXT_COMMANDS = (
    r"text|textbf|textit|textrm|textnormal|textsf|texttt|mbox|mathrm|mathbf|mathit|mathsf|mathtt|operatorname"
)

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
_CONNECTOR = re.compile(
    r"\s*(?:\\(?:" + _TEXT_COMMANDS + r")\{\s*(?:and|or|,)\s*\}|(?<![a-zA-Z\\])(?:and|or)(?![a-zA-Z]))\s*"
)
_TEXT_COMMAND = re.compile(r"\\(?:" + _TEXT_COMMANDS + r")\s*\{([^{}]*)\}")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![a-zA-Z])|°|\\degree(?![a-zA-Z])")
_PERCENT = re.compile(r"\\%|%|\s*(?<![a-zA-Z])(?:percentage|percent|pct)(?![a-zA-Z])")
_DOLLAR = re.compile(r"\\\$|\$")
_TEXT_UNIT_TAIL = re.compile(
    r"(?<=[0-9}).a-zA-Z])\s*\\(?:" + _TEXT_COMMANDS + r")\s*\{[^{}]*\}(?:\s*\^\s*\{?\s*[23]\s*\}?)?\s*$"
)
# Bare unit words stripped after a number; single letters are left alone
# because ``6 m`` may be an expression in ``m`` (units written as ``\\mathrm{m}``
# are handled by ``_TEXT_UNIT_TAIL``).
_UNIT_WORDS = (
    "cm|mm|km|nm|ft|feet|foot|inch|inches|yd|yard|yards|mile|miles|meter|meters|metre|metres|"
    "centimeter|centimeters|kilometer|kilometers|millimeter|millimeters|"
    "kg|mg|gram|grams|kilogram|kilograms|lb|lbs|pound|pounds|ounce|ounces|oz|ton|tons|"
    "sec|secs|second|seconds|min|mins|minute|minutes|hr|hrs|hour|hours|day|days|week|weeks|"
    "month|months|year|years|mph|kph|"
    "liter|liters|litre|litres|ml|mL|gallon|gallons|cup|cups|"
    "dollar|dollars|cent|cents|yuan|euro|euros|"
    "degree|degrees|deg|radian|radians|"
    "unit|units|sq|square|cubic|"
    "Pa|Hz|eV|keV|MeV|GeV|erg|ergs|AU|pc|kpc|Mpc|"
    "people|persons|students|times|ways|points"
)
_UNIT_WORD = r"(?:" + _UNIT_WORDS + r")(?![a-zA-Z])"
_WORD_UNIT_TAIL = re.compile(
    r"(?<=[0-9}])(?:\s+" + _UNIT_WORD + r"(?:\s*/\s*" + _UNIT_WORD + r")?(?:\s*\^\s*\{?[23]\}?|[²³])?)+\s*\.?$"
)
_VARIABLE_PREFIX = re.compile(
    r"^\s*(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?[\w,]+\}?)?(?:\^\{?[\w]+\}?)?(?:\([a-zA-Z]\))?\s*(?:=|\\in(?![a-zA-Z]))\s*"
)
_RELATION_CHARS = re.compile(r"=|<|>|\\le|\\ge|\\ne|\\neq|\\in(?![a-zA-Z])")
_THOUSANDS = re.compile(r"^[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$")
_CHOICE = re.compile(r"^\(?([A-E])\)?$")
_WHITESPACE_RUN = re.compile(r"\s+")
_SPACE_BETWEEN_LETTERS = re.compile(r"(?<=[a-zA-Z])\s+(?=[a-zA-Z])")

_INTEGER = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?(?:\d+\.\d*|\.\d+)$")
_SCIENTIFIC = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))[eE]([+-]?\d+)$")
_TIMES_TEN = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))\s*(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?$")
_POWER_OF_TEN = re.compile(r"^([+-]?)10\s*\^\s*\{\s*([+-]?\d+)\s*\}$|^([+-]?)10\s*\^\s*([+-]?\d)$")
_SLASH_FRACTION = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*/\s*([+-]?\d+(?:\.\d+)?)$")
_LATEX_FRACTION = re.compile(r"^([+-]?)\\frac\{([+-]?\d+(?:\.\d+)?)\}\{([+-]?\d+(?:\.\d+)?)\}$")
_MIXED_NUMBER = re.compile(r"^([+-]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$")
_MEASURED = re.compile(r"^[+-]?\d*(\.\d*)?(?:[eE]([+-]?\d+)|\\times10\^\{?([+-]?\d+)\}?)?$")


@dataclass(frozen=True)
class NormalizedAnswer:
    """An answer in canonical spelling.

    ``text`` is the canonical form the fast comparisons use (``x = 5`` -> ``5``);
    ``expression`` is the same without dropping a ``x =`` prefix, for the
    symbolic comparison, which needs ``y = 2x`` to compare it with the equation
    ``2x - y = 0``. ``percent`` records that a percent sign was removed, so
    ``28\\%`` can also match ``0.28``.
    """

    text: str
    expression: str
    percent: bool = False


_BRACE_OR_ESCAPE = re.compile(r"\\.|[{}]", re.DOTALL)


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
        for command in _BOX_COMMANDS:
            if text.startswith(command + "{") and text.endswith("}"):
                inner_end = matching_brace(text, len(command))
                if inner_end == len(text) - 1:
                    text = text[len(command) + 1 : -1].strip()
                    changed = True
                    break
        if text.endswith((".", ";")) and not _DECIMAL.match(text):
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


@lru_cache(maxsize=65536)
def normalize_answer(answer: str) -> NormalizedAnswer:
    """Canonical spelling of one extracted answer (see module docstring); memoised."""
    if len(answer) > MAX_NORMALIZE_CHARS:
        return NormalizedAnswer(answer.strip(), answer.strip())
    text = strip_wrappers(answer.replace("\u0000", "").replace("\u0001", ""))
    text = _LATEX_THOUSANDS.sub(",", text)
    text = text.replace("\\!", "").replace("**", "")
    text = _SPACING.sub(lambda match: match.group(1) or " ", text)
    text = _FRAC_VARIANT.sub(r"\\frac", text)
    text = _FRAC_TWO_TOKENS.sub(r"\\frac{\1}{\2}", text)
    text = _FRAC_FIRST_TOKEN.sub(r"\\frac{\1}{", text)
    text = _FRAC_SECOND_TOKEN.sub(r"\\frac{\1}{\2}", text)
    text = _SQRT_TOKEN.sub(r"\\sqrt{\1}", text)
    text = _CONNECTOR.sub(",", text)
    text = _DEGREES.sub("", text)
    percent = bool(_PERCENT.search(text))
    text = _PERCENT.sub("", text)
    text = _DOLLAR.sub("", text)
    text = _TEXT_UNIT_TAIL.sub("", text)
    text = _WORD_UNIT_TAIL.sub("", text)
    text = strip_wrappers(_unwrap_text_commands(text))
    expression = _finish(text, keep_comma_space=True)
    if len(_RELATION_CHARS.findall(text)) == 1:
        text = _VARIABLE_PREFIX.sub("", text, count=1)
    return NormalizedAnswer(_finish(text), expression, percent)


def parse_number(text: str) -> Fraction | None:
    """Exact value of a plain number in normalised spelling, else None.

    Accepts integers (leading zeros allowed), decimals, ``a/b``,
    ``\\frac{a}{b}``, mixed numbers ``3\\frac{1}{2}``, and scientific notation
    (``6.7e-9``, ``6.7\\times10^{-9}``, ``10^{5}``). Anything symbolic (``\\pi``,
    ``\\sqrt{}``) returns None and is left to the symbolic comparison.
    """
    if not text or len(text) > MAX_NUMBER_DIGITS:
        return None
    try:
        if _INTEGER.match(text) or _DECIMAL.match(text):
            return Fraction(text)
        match = _SCIENTIFIC.match(text) or _TIMES_TEN.match(text)
        if match:
            exponent = int(match.group(2))
            if abs(exponent) > MAX_EXPONENT:
                return None
            return Fraction(match.group(1)) * Fraction(10) ** exponent
        match = _POWER_OF_TEN.match(text)
        if match:
            sign = match.group(1) or match.group(3) or ""
            exponent = int(match.group(2) or match.group(4))
            if abs(exponent) > MAX_EXPONENT:
                return None
            value = Fraction(10) ** exponent
            return -value if sign == "-" else value
        match = _SLASH_FRACTION.match(text)
        if match:
            return Fraction(match.group(1)) / Fraction(match.group(2))
        match = _LATEX_FRACTION.match(text)
        if match:
            value = Fraction(match.group(2)) / Fraction(match.group(3))
            return -value if match.group(1) == "-" else value
        match = _MIXED_NUMBER.match(text)
        if match and int(match.group(3)) < int(match.group(4)):
            value = int(match.group(2)) + Fraction(int(match.group(3)), int(match.group(4)))
            return -value if match.group(1) == "-" else value
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return None


def half_unit_in_last_place(text: str) -> Fraction | None:
    """Half a unit of the last written digit of a measured value, else None.

    ``1.6`` -> 0.05 and ``4.5e33`` -> 5e31: a value written with a decimal point
    or an exponent is read as rounded to its significant figures. Integers and
    fractions are exact and give None.
    """
    match = _MEASURED.match(text)
    if not match or not any(char.isdigit() for char in text):
        return None
    decimals, exponent = match.group(1), match.group(2) or match.group(3)
    if decimals is None and exponent is None:
        return None
    places = len(decimals) - 1 if decimals else 0
    power = int(exponent or 0) - places
    if abs(power) > MAX_EXPONENT:
        return None
    return Fraction(1, 2) * Fraction(10) ** power


def format_number(value: Fraction) -> str:
    """Canonical text of an exact number: ``16``, ``-1/2``."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


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
    return normalized.text
