"""Sizes as administrators write them, parsed strictly, and page rounding.

Python's int() and float() accept far more than anyone means ("1_000", full-width
digits, "1e6", "inf", surrounding blanks), so sizes are matched against one ASCII
grammar and converted with exact fractions.
"""

from __future__ import annotations

from .errors import usage_error

PAGE_KIB = 4
KIB = 1024
UNIT_BYTES = {
    "b": 1,
    "k": KIB,
    "kib": KIB,
    "m": KIB**2,
    "mib": KIB**2,
    "g": KIB**3,
    "gib": KIB**3,
    "t": KIB**4,
    "tib": KIB**4,
}
UNIT_SUFFIXES = ("b", "k", "m", "g", "t", "KiB", "MiB", "GiB", "TiB")
# The balloon nodes are 64-bit counters of KiB; anything larger is a typo. The one limit
# for what xbctl writes and what it accepts when reading a node: what it reads, it can
# write back (xbctl -e ... | xbctl -f -), and anything larger reads as malformed.
MAX_KIB = 2**54
MAX_KIB_DIGITS = len(str(MAX_KIB))
_MAX_TEXT = 64

DIGITS = frozenset("0123456789")
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_decimal(text: str) -> bool:
    """TEXT is DIGITS or DIGITS.DIGITS (ASCII only: no sign, blank, underscore or exponent)."""
    whole, dot, fraction = text.partition(".")
    return bool(whole) and set(whole) <= DIGITS and (not dot or (bool(fraction) and set(fraction) <= DIGITS))


def _split_size(text: str) -> tuple[str, str | None, str | None, str | None] | None:
    """TEXT as (sign, hex digits, decimal number, unit), or None when it is no size.

    The grammar: [+-] then 0x HEX, or DECIMAL[.DECIMAL] followed by letters (the unit).
    """
    sign = text[:1] if text[:1] in ("+", "-") else ""
    body = text[len(sign) :]
    if body[:2] in ("0x", "0X") and len(body) > 2 and set(body[2:]) <= HEX_DIGITS:
        return sign, body, None, None
    end = len(body)
    while end > 0 and body[end - 1] in LETTERS:
        end -= 1
    number, unit = body[:end], body[end:] or None
    if not _is_decimal(number):
        return None
    return sign, None, number, unit


class Size:
    """A parsed size: an exact amount in KiB (an int, or a Fraction when not whole), absolute
    or a signed change."""

    __slots__ = ("kib", "relative", "text", "unit")

    def __init__(self, kib, relative: bool, text: str, unit: str = "k") -> None:
        self.kib, self.relative, self.text = kib, relative, text
        self.unit = unit  # the unit it was written in (a UNIT_BYTES key; a bare number's default)

    @property
    def bare(self) -> bool:
        """True when written as a plain decimal number, without a unit."""
        return self.text.lstrip("+-").isdigit()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Size) and (self.kib, self.relative, self.text) == (
            other.kib,
            other.relative,
            other.text,
        )

    def __repr__(self) -> str:
        return f"Size(kib={self.kib!r}, relative={self.relative!r}, text={self.text!r})"


def _kib_of(number: str, unit_bytes: int):
    """NUMBER (decimal text) of units of UNIT_BYTES, in KiB: an int when whole, else a Fraction."""
    if "." not in number:
        whole, rest = divmod(int(number) * unit_bytes, KIB)
        if not rest:
            return whole
    from fractions import Fraction  # only sizes that are no whole number of KiB need it

    return Fraction(number) * unit_bytes / KIB


def parse_size(text: str, *, default_unit: str = "k", allow_relative: bool = False) -> Size:
    """Parse TEXT as a size; a bare number counts in DEFAULT_UNIT ("k" or "m")."""
    shown = text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."
    if text == "":
        raise usage_error("empty size", hint="give a number, e.g. 524288 or 512M")
    if len(text) > _MAX_TEXT:
        raise usage_error(f"size {shown!r} is too long")
    parts = _split_size(text)
    if parts is None:
        raise usage_error(f"invalid size {text!r}", hint=_grammar_hint(default_unit))
    sign, hex_digits, number, unit = parts
    if sign and not allow_relative:
        raise usage_error(
            f"invalid size {text!r}: a signed (relative) change is only allowed for target",
        )
    if hex_digits is not None:
        if default_unit != "k":
            raise usage_error(
                f"invalid size {text!r}: hexadecimal is only accepted for KiB values",
                hint=_grammar_hint(default_unit),
            )
        amount = int(hex_digits, 16)
        unit_key = "k"
    else:
        assert number is not None  # _split_size gives hex digits or a decimal number
        unit_key = (unit or default_unit).lower()
        if unit_key not in UNIT_BYTES:
            raise usage_error(
                f"invalid size {text!r}: unknown unit {unit!r}",
                hint="units: " + " ".join(UNIT_SUFFIXES) + " (case-insensitive, powers of 1024)",
            )
        if "." in number and unit is None:
            raise usage_error(f"invalid size {text!r}: a decimal needs a unit", hint="e.g. 1.5G or 1536M")
        amount = _kib_of(number, UNIT_BYTES[unit_key])
    if amount > MAX_KIB:
        raise usage_error(f"invalid size {text!r}: out of range (at most {MAX_KIB} KiB)")
    return Size(kib=-amount if sign == "-" else amount, relative=bool(sign), text=text, unit=unit_key)


def _grammar_hint(default_unit: str) -> str:
    bare = "KiB" if default_unit == "k" else "MiB"
    hexa = ", 0x hex" if default_unit == "k" else ""
    return (
        f"sizes are whole numbers (in {bare} without a unit{hexa}), or numbers with a unit "
        "b k m g t / KiB MiB GiB TiB, e.g. 524288, 512M, 1.5G"
    )


def parse_kib(text: str, *, what: str, default_unit: str = "k") -> int:
    """TEXT as a whole, non-negative number of KiB (for settings, not balloon nodes)."""
    amount = parse_size(text, default_unit=default_unit).kib
    if amount.denominator != 1:
        raise usage_error(f"{what}: {text!r} is not a whole number of KiB")
    return int(amount)


def parse_number(text: str, *, what: str, maximum: float, positive: bool = False) -> float:
    """TEXT as a plain decimal number (no sign, exponent, nan, inf or underscores) for WHAT."""
    if len(text) > _MAX_TEXT or not _is_decimal(text):
        raise usage_error(f"{what}: invalid number {text[:_MAX_TEXT]!r}", hint="a plain decimal number, e.g. 30 or 2.5")
    value = float(text)
    if value > maximum or (positive and value == 0):
        low = "above 0" if positive else "from 0"
        raise usage_error(f"{what}: {text} is out of range ({low} to {maximum:g})")
    return value


def is_node_kib(text: str) -> bool:
    """True when TEXT, as read from a node, is a plain decimal KiB count within MAX_KIB."""
    return text.isascii() and text.isdigit() and len(text) <= MAX_KIB_DIGITS and int(text) <= MAX_KIB


def round_up_to_page(kib: int) -> int:
    """Round KIB up to a whole 4 KiB page, as the balloon driver does."""
    return -(-kib // PAGE_KIB) * PAGE_KIB


_UNIT_NAMES = {KIB**2: "MiB", KIB**3: "GiB", KIB**4: "TiB"}


def size_in_unit(kib: int, unit: str) -> str:
    """KIB for a message in UNIT (a UNIT_BYTES key), with the exact KiB beside it: `1 GiB
    (1048576 KiB)`; KiB and bytes show as `N KiB`."""
    unit_bytes = UNIT_BYTES.get(unit.lower(), KIB)
    if unit_bytes not in _UNIT_NAMES:
        return f"{kib} KiB"
    unit_kib = unit_bytes // KIB
    amount = str(kib // unit_kib) if kib % unit_kib == 0 else f"{kib / unit_kib:.2f}".rstrip("0")
    return f"{amount} {_UNIT_NAMES[unit_bytes]} ({kib} KiB)"


def whole_mib(kib: int) -> str:
    """KIB as whole MiB, rounded down, as xl list prints Mem (a number a script compares)."""
    return str(kib // KIB)


def format_mib(kib: int) -> str:
    """KIB as MiB for people: whole where exact, else one decimal."""
    if kib % KIB == 0:
        return str(kib // KIB)
    return f"{kib / KIB:.1f}"


# -h/--human: the suffixes xbctl's own size parser reads (powers of 1024), largest first, in KiB.
_HUMAN_UNITS = (("T", KIB**3), ("G", KIB**2), ("M", KIB))


def human_size(kib: int) -> str:
    """KIB in the largest unit (T, G, M, else K) in which it is at least 1 and exact to one
    decimal: 786432 -> 768M, 1572864 -> 1.5G, 1000 -> 1000K; read back, it is KIB again."""
    for suffix, unit_kib in _HUMAN_UNITS:
        if kib >= unit_kib and kib * 10 % unit_kib == 0:
            whole, tenths = divmod(kib * 10 // unit_kib, 10)
            return f"{whole}{suffix}" if not tenths else f"{whole}.{tenths}{suffix}"
    return f"{kib}K"
