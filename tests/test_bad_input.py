"""Malformed values and usage fail with exit 2, a clear message, no traceback, and no change."""

import pytest
from conftest import assert_clean_failure

MALFORMED = [
    "",
    " 512",
    "512 ",
    "5 12",
    "\uff15\uff11\uff12",  # full-width digits, which int() accepts
    "\u0969\u0968",  # Devanagari digits
    "1_000",
    "1e6",
    "1E6",
    "inf",
    "nan",
    "Infinity",
    "12x",
    "512MB",
    "512kb",
    "0x",
    "0xZZ",
    "0x10M",
    "1.",
    ".5",
    # A dot needs digits on both sides, a unit or not: a grammar that lets either side be empty
    # would read 1.G as 1 GiB (tests/test_properties.py generates such spellings too).
    "1.G",
    ".5G",
    "+.5G",
    "-1.M",
    "1.k",
    "0.g",
    ".G",
    "1..0M",
    "1.5.2G",
    "1,5G",
    "++5",
    "5-",
    "+",
    "M",
    "0b101",
    "0o17",
    "99999999999999999999999999999",
    "9" * 200,
    "5\n",
    "5\t",
    "\x00",
    "-inf",
    "1 G",
]


def _ids(values):
    return [repr(v)[:24] for v in values]


@pytest.fixture
def guarded(xbctl):
    """xbctl, checked afterwards to have changed nothing."""
    before = xbctl.snapshot()
    yield xbctl
    assert xbctl.snapshot() == before


@pytest.mark.parametrize("value", MALFORMED, ids=_ids(MALFORMED))
def test_subcommand_form(guarded, value):
    assert_clean_failure(guarded("-d", "web", "target", value), 2)


@pytest.mark.parametrize("value", MALFORMED, ids=_ids(MALFORMED))
def test_sysctl_form(guarded, value):
    assert_clean_failure(guarded("-d", "web", "-w", f"machdep.xen.balloon.target={value}"), 2)


@pytest.mark.parametrize("value", MALFORMED, ids=_ids(MALFORMED))
def test_mem_set(guarded, value):
    assert_clean_failure(guarded("mem-set", "web", value), 2)


@pytest.mark.parametrize("value", MALFORMED, ids=_ids(MALFORMED))
def test_mem_max(guarded, value):
    assert_clean_failure(guarded("mem-max", "web", value), 2)


@pytest.mark.parametrize(
    "value", [v for v in MALFORMED if "\n" not in v], ids=_ids([v for v in MALFORMED if "\n" not in v])
)
def test_settings_file(guarded, tmp_path, value):
    settings = tmp_path / "balloon.conf"
    settings.write_text(f"# web\nmachdep.xen.balloon.min=256M\nmachdep.xen.balloon.target={value}X\n")
    assert_clean_failure(guarded("-d", "web", "-f", str(settings)), 2, f"{settings}:3:")


@pytest.mark.parametrize(
    "args",
    [
        ["-d", "web", "min", "+4M"],
        ["-d", "web", "min", "-4M"],
        ["-d", "web", "-w", "machdep.xen.balloon.min=+4M"],
        ["-d", "web", "xen-max", "+1G"],
        ["mem-max", "web", "+512"],
        ["mem-max", "web", "-512"],
    ],
)
def test_relative_changes_only_for_target(guarded, args):
    assert_clean_failure(guarded(*args), 2, "only allowed for target")


def test_hex_is_only_for_kib(guarded):
    assert_clean_failure(guarded("mem-set", "web", "0x100"), 2, "hexadecimal")


def test_decimal_needs_a_unit(guarded):
    assert_clean_failure(guarded("-d", "web", "target", "1.5"), 2, "a decimal needs a unit")


@pytest.mark.parametrize("value", ["1.G", ".5G", "1..0M", "+.5G", "1.k"])
def test_a_dot_without_digits_on_both_sides_is_no_size(guarded, value):
    """Refused by the size grammar itself, not by a later rule (exit 2, the grammar's hint)."""
    for args in (["-d", "web", "target", value], ["mem-set", "web", value], ["mem-max", "web", value]):
        outcome = guarded(*args)
        assert_clean_failure(outcome, 2, f"invalid size {value!r}", "1.5G")
        assert "Traceback" not in outcome.stderr and "internal error" not in outcome.stderr


@pytest.mark.parametrize("value", ["1.", ".5", "1..0", "1.5.", "."])
def test_a_number_of_seconds_needs_digits_on_both_sides_of_its_dot(guarded, value):
    for args in (["--wait", "--timeout", value, "-d", "web", "target", "1G"], ["sim", "advance", value]):
        assert_clean_failure(guarded(*args), 2, f"invalid number {value!r}")


def test_unknown_unit_names_the_units(guarded):
    assert_clean_failure(guarded("-d", "web", "target", "5Q"), 2, "unknown unit", "KiB MiB GiB TiB")


@pytest.mark.parametrize(
    "args, message",
    [
        (["-w", "machdep.xen.balloon.target"], "-w needs name=value"),
        (["-w", "target"], "-w needs a value"),
        (["-a", "machdep.xen.balloon.target"], "-a lists every node"),
        (["-a", "target"], "-a and -f go with the sysctl form"),
        (["machdep.xen.balloon.target", "machdep.xen.balloon.min=1G"], "cannot be mixed"),
        (["=5"], "missing name"),
        (["--timeout", "5", "target"], "--timeout needs --wait"),
        (["--wait", "--timeout", "-1", "target", "1G"], "--timeout"),
        (["--nope"], "no such option"),
        (["mem-set", "web"], "missing argument"),
        (["mem-set"], "missing argument"),
        (["--transport", "carrier-pigeon", "-a"], "carrier-pigeon"),
        (["sim", "advance", "soon"], "SECONDS: invalid number"),
        (["sim", "advance", "nan"], "invalid number 'nan'"),
        (["sim", "advance", "-1"], "invalid number '-1'"),
        (["sim", "advance", "1e3"], "invalid number"),
        (["--wait", "--timeout", "nan", "target", "1G"], "--timeout: invalid number 'nan'"),
        (["--wait", "--timeout", "inf", "target", "1G"], "--timeout: invalid number 'inf'"),
        (["--wait", "--timeout", "\uff15", "target", "1G"], "--timeout: invalid number"),
        (["--wait", "--timeout", "1_0", "target", "1G"], "--timeout: invalid number"),
        (["--wait", "--timeout", "99999999999", "target", "1G"], "out of range"),
        (["sim", "reset", "--rate", "abc"], "--rate: invalid number"),
        (["sim", "reset", "--rate", "0", "--clock", "wall"], "cannot go with --clock wall"),
        (["-d", "", "target"], "empty domain name"),
        (["mem-sett", "web", "512"], "no such command or node 'mem-sett'"),
        (["help"], "no such command or node 'help'"),
        ([""], "no such command or node ''"),
        (["--sim-state", "", "-a"], "--sim-state: empty path"),
        (["-f", "/nonexistent/balloon.conf"], "No such file"),
    ],
)
def test_bad_usage_exits_2(guarded, args, message):
    assert_clean_failure(guarded(*args), 2, message)


def test_domain_name_is_never_a_path(guarded):
    for spec in ("../../tool", "/local/domain/1", "web/../db", "1/..", "web\n", " web"):
        assert_clean_failure(guarded("-d", spec, "target", "512M"), 4, "unknown domain")
        assert_clean_failure(guarded("mem-set", spec, "512"), 4, "unknown domain")
