"""-h/--human: sizes in the largest exact unit (768M, 1.5G, 1000K) where people read them,
exact KiB wherever scripts and files do (-n, -e, --json); `xbctl -h` alone is still help."""

from __future__ import annotations

import pytest
from conftest import assert_clean_failure


def test_reads_show_the_largest_exact_unit(xbctl):
    assert xbctl("-h", "target").stdout == "machdep.xen.balloon.target = 4G\n"
    assert xbctl("--human", "-d", "db", "target").stdout == "machdep.xen.balloon.target = 1.5G\n"
    outcome = xbctl("-d", "web", "-a", "-h")
    assert (outcome.status, outcome.stderr) == (0, ""), outcome
    assert outcome.stdout == (
        "machdep.xen.balloon.current = 768M\n"
        "machdep.xen.balloon.target = 768M\n"
        "machdep.xen.balloon.min = 128M\n"
        "machdep.xen.balloon.max = 1G\n"
        "machdep.xen.balloon.xen-max = 1G\n"
    )
    assert "db: machdep.xen.balloon.target = 1.5G\n" in xbctl("-h", "-A").stdout


def test_a_size_with_no_exact_tenth_falls_to_the_next_unit(xbctl):
    # 1.25G has no exact tenth: 1280M; 1000 KiB is less than 1M: 1000K.
    outcome = xbctl("-h", "-d", "db", "target", "1310720")
    assert (outcome.status, outcome.stdout) == (0, "machdep.xen.balloon.target: 1.5G -> 1280M\n"), outcome
    outcome = xbctl("-h", "-d", "db", "min", "1000")
    assert (outcome.status, outcome.stdout) == (0, "machdep.xen.balloon.min: 512M -> 1000K\n"), outcome
    assert xbctl("-h", "-d", "db", "min").stdout == "machdep.xen.balloon.min = 1000K\n"


def test_what_it_shows_writes_back_as_the_same_value(xbctl):
    assert xbctl("-d", "db", "target", "1310720").status == 0
    shown = xbctl("-h", "-d", "db", "target").stdout.split(" = ")[1].strip()
    outcome = xbctl("-h", "-d", "db", f"machdep.xen.balloon.target={shown}")
    assert outcome.stdout == "machdep.xen.balloon.target: 1280M -> 1280M (unchanged)\n", outcome
    assert xbctl.value("target", "db") == 1310720


@pytest.mark.parametrize(
    "args",
    [
        ["-n", "-d", "db", "target"],
        ["-e", "-d", "db", "-a"],
        ["--json", "-d", "db", "-a"],
        ["-n", "list"],
        ["--json", "list"],
        ["-A", "-e"],
    ],
    ids=["-n", "-e", "--json", "list -n", "list --json", "-A -e"],
)
def test_scripts_and_files_keep_kib(xbctl, args):
    plain, human = xbctl(*args), xbctl("-h", *args)
    assert plain.status == 0 and plain.stdout, plain
    assert (human.status, human.stdout, human.stderr) == (plain.status, plain.stdout, plain.stderr)


def test_list_lines_in_a_pipe_and_long(xbctl):
    lines = xbctl("list", "-h").stdout.splitlines()
    assert lines[0].split() == ["Name", "ID", "current", "target", "min", "max", "xen-max", "balloon"]
    assert lines[2].split() == ["web", "1", "768M", "768M", "128M", "1G", "1G", "steady"]
    assert lines[3].split()[:7] == ["db", "2", "1.5G", "1.5G", "512M", "4G", "4G"]
    long = xbctl("list", "--long", "-h").stdout.splitlines()
    assert long[2].split()[:7] == ["web", "1", "768M", "768M", "128M", "1G", "1G"]


def test_h_alone_is_help_and_help_stays(xbctl):
    for args in (["-h"], ["--help"]):
        outcome = xbctl(*args)
        assert outcome.status == 0 and outcome.stdout.startswith("Usage: xbctl [OPTIONS] COMMAND"), outcome
        assert "-h, --human" in outcome.stdout
    outcome = xbctl("top", "--help")
    assert outcome.status == 0 and "--batch" in outcome.stdout, outcome


@pytest.mark.parametrize(
    "args", [["-h", "policy"], ["sim", "log", "-h"], ["-h", "exporter", "--listen", "127.0.0.1:9"]]
)
def test_h_where_no_size_is_shown_is_refused(xbctl, args):
    before = xbctl.snapshot()
    outcome = xbctl(*args)
    assert_clean_failure(outcome, 2, "-h does not go with the ")
    assert xbctl.snapshot() == before
