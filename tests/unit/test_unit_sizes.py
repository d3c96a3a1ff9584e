"""Sizes as administrators write them (xbctl/units.py): pure, no process, no transport."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xbctl.errors import ExitStatus, XbctlError
from xbctl.units import KIB, MAX_KIB, format_mib, human_size, is_node_kib, parse_number, parse_size, round_up_to_page

VALID = [
    # text, default unit, relative allowed, KiB, relative
    ("524288", "k", False, 524288, False),
    ("512M", "k", False, 524288, False),
    ("512m", "k", False, 524288, False),
    ("512MiB", "k", False, 524288, False),
    ("512mib", "k", False, 524288, False),
    ("1.5G", "k", False, 1572864, False),
    ("1T", "k", False, 1024**3, False),
    ("4096b", "k", False, 4, False),
    ("1b", "k", False, Fraction(1, 1024), False),
    ("0x80000", "k", False, 524288, False),
    ("0X1f", "k", False, 31, False),
    ("512", "m", False, 524288, False),
    ("+256M", "k", True, 262144, True),
    ("-256M", "k", True, -262144, True),
    ("-4", "k", True, -4, True),
    ("0", "k", False, 0, False),
]


@pytest.mark.parametrize("text, unit, relative_ok, kib, relative", VALID)
def test_valid_sizes(text, unit, relative_ok, kib, relative):
    size = parse_size(text, default_unit=unit, allow_relative=relative_ok)
    assert (size.kib, size.relative, size.text) == (kib, relative, text)


INVALID = [
    ("", "k", False, "empty size"),
    (" 512", "k", False, "invalid size"),
    ("512 ", "k", False, "invalid size"),
    ("5 12", "k", False, "invalid size"),
    ("１２", "k", False, "invalid size"),  # full-width digits: int() takes them, we do not
    ("1_000", "k", False, "invalid size"),
    ("1e3", "k", False, "invalid size"),
    ("nan", "k", False, "invalid size"),
    ("inf", "k", False, "invalid size"),
    ("1.", "k", False, "invalid size"),
    (".5G", "k", False, "invalid size"),
    ("1.5", "k", False, "a decimal needs a unit"),
    ("12parsecs", "k", False, "unknown unit 'parsecs'"),
    ("0xg", "k", False, "unknown unit 'xg'"),
    ("0x10", "m", False, "hexadecimal is only accepted for KiB"),
    ("+4M", "k", False, "only allowed for target"),
    (f"{MAX_KIB + 1}", "k", False, "out of range"),
    ("9" * 65, "k", False, "too long"),
    ("--4", "k", True, "invalid size"),
]


@pytest.mark.parametrize("text, unit, relative_ok, says", INVALID)
def test_invalid_sizes_are_usage_errors(text, unit, relative_ok, says):
    with pytest.raises(XbctlError) as caught:
        parse_size(text, default_unit=unit, allow_relative=relative_ok)
    assert caught.value.status == ExitStatus.USAGE
    assert says in caught.value.message


def test_page_rounding_and_node_values():
    assert [round_up_to_page(k) for k in (0, 1, 4, 5, 8)] == [0, 4, 4, 8, 8]
    assert is_node_kib("524288") and is_node_kib(str(MAX_KIB))
    for text in ("", "-1", "１", "1e3", " 1", str(MAX_KIB + 1), "0x10"):
        assert not is_node_kib(text), text
    assert (format_mib(524288), format_mib(1536)) == ("512", "1.5")


def test_plain_numbers():
    assert parse_number("2.5", what="--timeout", maximum=10) == 2.5
    for text in ("nan", "-1", "1e3", "", "11"):
        with pytest.raises(XbctlError) as caught:
            parse_number(text, what="--timeout", maximum=10)
        assert caught.value.status == ExitStatus.USAGE and "--timeout" in caught.value.message
    with pytest.raises(XbctlError):
        parse_number("0", what="--rate", maximum=10, positive=True)


@pytest.mark.parametrize(
    "kib, shown",
    [
        (0, "0K"),
        (4, "4K"),
        (1000, "1000K"),
        (1023, "1023K"),
        (1024, "1M"),
        (1536, "1.5M"),
        (786432, "768M"),
        (1310720, "1280M"),
        (1572864, "1.5G"),
        (1024**3, "1T"),
        (MAX_KIB, "16777216T"),
    ],
)
def test_human_size_is_the_largest_exact_unit(kib, shown):
    assert human_size(kib) == shown


@given(
    st.one_of(
        st.integers(0, MAX_KIB),
        st.builds(
            lambda n, unit: min(n * unit, MAX_KIB), st.integers(0, 10**6), st.sampled_from([102, 1024, 104857, KIB**2])
        ),
    )
)
def test_human_size_reads_back_as_the_same_kib(kib):
    shown = human_size(kib)
    assert parse_size(shown).kib == kib
    number = shown[:-1]
    assert len(number.partition(".")[2]) <= 1  # one decimal at most
    assert float(number) >= 1 or kib == 0  # never 0.5G: 512M
