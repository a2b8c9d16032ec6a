"""Exact values of plain numbers written in normalised spelling (no symbolic work)."""
from __future__ import annotations

import re
from fractions import Fraction

# Plain numbers with more characters than this are compared as strings only.
MAX_NUMBER_CHARS = 80
MAX_EXPONENT = 400

# An integer or a decimal as written (``016``, ``-3``; ``2.50``, ``.5``).
INTEGER = re.compile(r"^[+-]?\d+$")
DECIMAL = re.compile(r"^[+-]?(?:\d+\.\d*|\.\d+)$")
_SCIENTIFIC = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))[eE]([+-]?\d+)$")
_TIMES_TEN = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))\s*(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?$")
_POWER_OF_TEN = re.compile(r"^([+-]?)10\s*\^\s*\{\s*([+-]?\d+)\s*\}$|^([+-]?)10\s*\^\s*([+-]?\d)$")
_SLASH_FRACTION = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*/\s*([+-]?\d+(?:\.\d+)?)$")
_LATEX_FRACTION = re.compile(r"^([+-]?)\\frac\{([+-]?\d+(?:\.\d+)?)\}\{([+-]?\d+(?:\.\d+)?)\}$")
_MIXED_NUMBER = re.compile(r"^([+-]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$")
_MEASURED = re.compile(r"^[+-]?\d*(\.\d*)?(?:[eE]([+-]?\d+)|\\times10\^\{?([+-]?\d+)\}?)?$")


def _signed(sign: str, value: Fraction) -> Fraction:
    return -value if sign == "-" else value


def parse_number(text: str) -> Fraction | None:
    """Exact value of a plain number in normalised spelling, else None.

    Accepts integers (leading zeros allowed), decimals, ``a/b``,
    ``\\frac{a}{b}``, mixed numbers ``3\\frac{1}{2}``, and scientific notation
    (``6.7e-9``, ``6.7\\times10^{-9}``, ``10^{5}``). Anything symbolic (``\\pi``,
    ``\\sqrt{}``) returns None and is left to the symbolic comparison.
    """
    if not text or len(text) > MAX_NUMBER_CHARS:
        return None
    try:
        if INTEGER.match(text) or DECIMAL.match(text):
            return Fraction(text)
        match = _SCIENTIFIC.match(text) or _TIMES_TEN.match(text)
        if match:
            exponent = int(match.group(2))
            return Fraction(match.group(1)) * Fraction(10) ** exponent if abs(exponent) <= MAX_EXPONENT else None
        match = _POWER_OF_TEN.match(text)
        if match:
            exponent = int(match.group(2) or match.group(4))
            if abs(exponent) > MAX_EXPONENT:
                return None
            return _signed(match.group(1) or match.group(3) or "", Fraction(10) ** exponent)
        match = _SLASH_FRACTION.match(text)
        if match:
            return Fraction(match.group(1)) / Fraction(match.group(2))
        match = _LATEX_FRACTION.match(text)
        if match:
            return _signed(match.group(1), Fraction(match.group(2)) / Fraction(match.group(3)))
        match = _MIXED_NUMBER.match(text)
        if match and int(match.group(3)) < int(match.group(4)):
            return _signed(match.group(1), int(match.group(2)) + Fraction(int(match.group(3)), int(match.group(4))))
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return None


def repeating_decimal(integer: str, fixed: str, repeating: str) -> Fraction:
    """Exact value of ``integer.fixed(repeating)...``: ``0.1\\overline{6}`` is 1/6."""
    whole = Fraction(int(integer or "0"))
    period = 10 ** len(repeating) - 1
    numerator = int(fixed + repeating) - int(fixed or "0")
    return whole + Fraction(numerator, 10 ** len(fixed) * period)


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
