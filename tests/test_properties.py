"""Property tests (Hypothesis): the size grammar against a simple reference, and settings
files that round-trip through `-e`."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import Xbctl
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from xbctl.errors import ExitStatus, XbctlError
from xbctl.units import MAX_KIB, parse_size

UNIT_KIB = {
    "b": Fraction(1, 1024),
    "k": 1,
    "kib": 1,
    "m": 1024,
    "mib": 1024,
    "g": 1024**2,
    "gib": 1024**2,
    "t": 1024**3,
    "tib": 1024**3,
}
WRITABLE = ("machdep.xen.balloon.target", "machdep.xen.balloon.min", "machdep.xen.balloon.xen-max")
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def reference_kib(text: str, default_unit: str) -> Fraction | None:
    """The KiB TEXT means by the documented grammar, or None when it is not a size: a plain
    reading written without regular expressions' help, to check the parser against."""
    sign = 1
    if text[:1] in ("+", "-"):
        sign, text = (-1 if text[0] == "-" else 1), text[1:]
    ascii_digits = set("0123456789")
    if text[:2] in ("0x", "0X"):
        digits = text[2:]
        if not digits or any(c not in ascii_digits | set("abcdefABCDEF") for c in digits):
            return None
        return None if default_unit != "k" else sign * Fraction(int(digits, 16))
    whole = ""
    while text and text[0] in ascii_digits:
        whole, text = whole + text[0], text[1:]
    fraction = ""
    if text.startswith("."):
        text = text[1:]
        while text and text[0] in ascii_digits:
            fraction, text = fraction + text[0], text[1:]
        if not fraction:
            return None
    if not whole:
        return None
    unit = text.lower()
    if unit and unit not in UNIT_KIB:
        return None
    if fraction and not unit:
        return None
    amount = Fraction(int(whole + fraction), 10 ** len(fraction)) * UNIT_KIB[unit or default_unit]
    return sign * amount


def units_in_any_case():
    return st.sampled_from(sorted(UNIT_KIB)).flatmap(
        lambda unit: st.tuples(*[st.sampled_from([c.lower(), c.upper()]) for c in unit]).map("".join)
    )


# Around the dot: digits on neither, one or both sides, one dot or more, a unit or none
# (1.G, .5G, 1., 1..0M). Few choices each, so that 80 examples meet every kind: a grammar
# loosened on either side of the dot is caught by the examples alone.
around_the_dot = st.tuples(
    st.sampled_from(["", "+", "-"]),
    st.sampled_from(["1", "", "25"]),
    st.sampled_from([".", "..", ".5."]),
    st.sampled_from(["", "5", "05"]),
    st.sampled_from(["G", "", "m", "KiB"]),
).map("".join)

sizes = st.one_of(
    st.tuples(
        st.sampled_from(["", "+", "-"]),
        st.integers(min_value=0, max_value=10**20).map(str),
        st.one_of(st.just(""), st.integers(min_value=0, max_value=10**6).map(lambda n: f".{n}")),
        st.one_of(st.just(""), units_in_any_case()),
    ).map("".join),
    st.tuples(
        st.sampled_from(["", "+", "-"]),
        st.sampled_from(["0x", "0X"]),
        st.integers(min_value=0, max_value=2**60).map(lambda n: f"{n:x}"),
    ).map("".join),
    st.text(max_size=30),
    st.text(alphabet="0123456789.+-xXkKmMgGtTbBiI _\t\n\u0665\uff15", max_size=12),
    around_the_dot,
)


@SETTINGS
@given(text=sizes, default_unit=st.sampled_from(["k", "m"]), relative=st.booleans())
@example(text="18014398509481984", default_unit="k", relative=False)
@example(text="18014398509481985", default_unit="k", relative=False)
@example(text="1_000", default_unit="k", relative=False)
@example(text="1e6", default_unit="k", relative=False)
@example(text="1.G", default_unit="k", relative=False)
@example(text=".5G", default_unit="m", relative=False)
@example(text="1.", default_unit="m", relative=False)
@example(text="1..0M", default_unit="k", relative=False)
@example(text="-.5G", default_unit="k", relative=True)
def test_every_accepted_size_is_what_the_reference_says_and_every_rejection_is_exit_2(text, default_unit, relative):
    check_against_the_reference(text, default_unit, relative)


@SETTINGS
@given(text=around_the_dot, default_unit=st.sampled_from(["k", "m"]), relative=st.booleans())
def test_every_spelling_around_the_dot_is_what_the_reference_says(text, default_unit, relative):
    check_against_the_reference(text, default_unit, relative)


def check_against_the_reference(text: str, default_unit: str, relative: bool) -> None:
    """parse_size accepts TEXT exactly when the reference does, as the same amount; else exit 2."""
    expected = reference_kib(text, default_unit)
    try:
        size = parse_size(text, default_unit=default_unit, allow_relative=relative)
    except XbctlError as exc:
        assert exc.status == ExitStatus.USAGE, exc
        assert (
            expected is None
            or abs(expected) > MAX_KIB
            or (text[:1] in "+-" and text and not relative)
            or len(text) > 64
        ), (text, expected, exc.message)
        return
    assert expected is not None and abs(expected) <= MAX_KIB, (text, size)
    assert size.kib == expected
    assert size.relative == (text[:1] in ("+", "-"))


@SETTINGS
@given(value=sizes)
@example(value="1.G")
@example(value=".5G")
@example(value="1..0M")
def test_any_target_on_the_command_line_is_written_as_the_reference_says_or_refused_cleanly(xbctl, value):
    outcome = xbctl("--dry-run", "-d", "web", "-w", f"machdep.xen.balloon.target={value}")
    assert "Traceback" not in outcome.stderr
    expected = reference_kib(value, "k")
    if outcome.status == 0:
        new_kib = int(outcome.stdout.split(" -> ")[1].removesuffix(" (unchanged)\n"))
        absolute = expected + 786432 if value[:1] in "+-" else expected
        assert new_kib == -(-absolute // 4) * 4, (value, outcome)
    else:
        assert outcome.status in (ExitStatus.REFUSED, ExitStatus.USAGE), outcome
        assert outcome.stdout == "" and outcome.stderr.startswith("xbctl: "), outcome
        if outcome.status == ExitStatus.USAGE:
            assert expected is None or abs(expected) > MAX_KIB or len(value) > 64, (value, outcome)


# ---------------------------------------------------------------- settings files

blanks = st.text(alphabet=" \t", max_size=3)
plausible_values = st.one_of(
    st.sampled_from(
        [
            "600M",
            "700m",
            "786432",
            "0xC0000",
            "1G",
            "1.5G",
            "512MiB",
            "+4",
            "-4",
            "+1M",
            "-64m",
            "300M",
            "200M",
            "1024M",
            "2g",
            "2097152",
            "4096k",
            "1T",
        ]
    ),
    st.integers(min_value=100, max_value=2048).map(lambda n: f"{n}M"),
    sizes,
)


@st.composite
def settings_files(draw) -> str:
    lines = []
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        kind = draw(st.sampled_from(["assignment", "assignment", "assignment", "comment", "blank"]))
        if kind == "comment":
            line = draw(blanks) + "#" + draw(st.text(max_size=20).filter(lambda t: "\n" not in t))
        elif kind == "blank":
            line = draw(blanks)
        else:
            name = draw(st.sampled_from(WRITABLE))
            optional = draw(st.sampled_from(["", "?"]))
            comment = draw(st.one_of(st.just(""), st.just(" # note")))
            line = (
                f"{draw(blanks)}{name}{optional}{draw(blanks)}={draw(blanks)}{draw(plausible_values)}"
                f"{draw(blanks)}{comment}"
            )
        lines.append(line + draw(st.sampled_from(["\n", "\r\n"])))
    return "".join(lines)


def _export(xbctl: Xbctl) -> str:
    saved = xbctl("-e", "-d", "web", *WRITABLE)
    assert saved.status == 0, saved
    return saved.stdout


@SETTINGS
@given(text=settings_files())
def test_an_accepted_settings_file_round_trips_through_e(xbctl, tmp_path, text):
    assert xbctl("sim", "reset", "--clock", "manual").status == 0
    path = Path(tmp_path) / "balloon.conf"
    path.write_text(text, newline="")
    before = xbctl.snapshot()
    applied = xbctl("-d", "web", "-f", str(path))
    assert "Traceback" not in applied.stderr
    if applied.status != 0:
        assert applied.status in (ExitStatus.REFUSED, ExitStatus.USAGE), applied
        assert re.match(rf"xbctl: {re.escape(str(path))}:\d+: ", applied.stderr), applied
        assert xbctl.snapshot() == before  # a bad file writes nothing
        return
    exported = _export(xbctl)
    after_apply = xbctl.snapshot()
    path.write_text(exported)
    again = xbctl("-d", "web", "-f", str(path))  # whatever -e prints, -f accepts back
    assert again.status == 0, (exported, again)
    assert xbctl.snapshot() == after_apply  # and applying it changes nothing
    assert _export(xbctl) == exported


@SETTINGS
@given(text=st.text(max_size=200))
def test_any_text_as_a_settings_file_is_applied_whole_or_refused_cleanly(xbctl, tmp_path, text):
    assume(text.strip())
    path = Path(tmp_path) / "junk.conf"
    path.write_text(text, newline="")
    before = xbctl.snapshot()
    outcome = xbctl("-d", "web", "-f", str(path))
    assert "Traceback" not in outcome.stderr
    if outcome.status != 0:
        assert outcome.status in (ExitStatus.REFUSED, ExitStatus.USAGE, ExitStatus.UNKNOWN), outcome
        assert outcome.stdout == "" and outcome.stderr.startswith(f"xbctl: {path}:"), outcome
        assert xbctl.snapshot() == before


@pytest.mark.parametrize("node", ["target", "min", "xen-max"])
def test_every_value_xbctl_reads_is_accepted_back(xbctl, tmp_path, node):
    """After a spread of writes, each writable node's -e line is accepted by -f as it is."""
    for value in ("1G", "300M", "+4", "-4"):
        xbctl("-q", "-d", "web", node, value)
        line = xbctl("-e", "-d", "web", f"machdep.xen.balloon.{node}")
        path = Path(tmp_path) / "one.conf"
        path.write_text(line.stdout)
        before = xbctl.snapshot()
        assert xbctl("-q", "-d", "web", "-f", str(path)).status == 0
        assert xbctl.snapshot() == before
