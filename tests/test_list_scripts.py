"""`xbctl list` for scripts and at scale: domain arguments, fixed columns in a pipe, -n,
--long, refusals that change nothing, `sim reset --guests N`, and 1,000 domains listed right
on the simulator and over the real xenstored."""

from __future__ import annotations

import re

from conftest import assert_clean_failure
from pyxs import Client
from xen_fixtures import MANY_FIRST_ID, lay_out_many_domains, many_domain

MIB = 1024
GIB = 1024 * MIB
HEADER = "Name                                        ID  current   target      min      max  xen-max balloon"
BOX_DRAWING = set("─│┃━┏┓┗┛┡┩└┘├┤┬┴┼╇")


def fields(line: str, count: int) -> list[str]:
    """The first COUNT blank-separated fields of LINE, then the rest (the balloon column) as one."""
    parts = line.split(None, count)
    return parts[:count] + [parts[count]] if len(parts) > count else parts


# ---------------------------------------------------------------- fixed columns in a pipe


def test_in_a_pipe_list_prints_one_header_line_and_fixed_columns(xbctl):
    outcome = xbctl("list")
    assert outcome.status == 0, outcome
    lines = outcome.stdout.splitlines()
    assert lines[0] == HEADER
    assert not BOX_DRAWING & set(outcome.stdout)
    assert [fields(line, 7) for line in lines[1:]] == [
        ["Domain-0", "0", "4096", "4096", "1024", "4096", "4096", "steady"],
        ["web", "1", "768", "768", "128", "1024", "1024", "steady"],
        ["db", "2", "1536", "1536", "512", "4096", "4096", "unknown"],
        ["mail", "3", "512", "512", "256", "512", "512", "no driver"],
    ]
    # Fixed columns: every value from ID to xen-max ends where its header does.
    ends = [match.end() for match in re.finditer(r"\S+", HEADER)][1:7]
    for line in lines[1:]:
        assert all(line[end - 1] != " " and line[end] == " " for end in ends), line


def test_minus_n_drops_the_header_and_long_shows_every_node_in_kib_with_the_driver(xbctl):
    assert xbctl("list", "-n").stdout.splitlines()[0].startswith("Domain-0 ")
    long = xbctl("list", "--long")
    assert long.status == 0, long
    header, *rows = long.stdout.splitlines()
    assert header.split() == ["Name", "ID", "current", "target", "min", "max", "xen-max", "driver", "balloon"]
    assert [fields(row, 8) for row in rows][1:] == [
        ["web", "1", "786432", "786432", "131072", "1048576", "1048576", "yes", "steady"],
        ["db", "2", "1572864", "1572864", "524288", "4194304", "4194304", "unknown", "unknown"],
        ["mail", "3", "524288", "524288", "262144", "524288", "524288", "no", "no driver"],
    ]
    assert xbctl("list", "-l", "-n", "mail").stdout == rows[3] + "\n"


def test_a_stuck_balloons_complaint_stays_on_its_line(xbctl):
    xbctl("-q", "-d", "web", "target", "256M")
    xbctl("sim", "advance", "60")
    lines = xbctl("list", "web").stdout.splitlines()
    assert len(lines) == 2 and fields(lines[1], 7)[-1].startswith("driver: WARNING: balloon could not reach target")


# ---------------------------------------------------------------- domain arguments


def test_named_domains_are_listed_in_the_order_given_each_once(xbctl):
    outcome = xbctl("-n", "list", "mail", "0", "web", "mail", "1")
    assert outcome.status == 0, outcome
    assert [line.split()[0] for line in outcome.stdout.splitlines()] == ["mail", "Domain-0", "web"]
    document = xbctl("--json", "list", "db", "web").json()
    assert [d["name"] for d in document["domains"]] == ["db", "web"]
    assert document["host_free_kib"] == 2 * GIB


def test_an_unknown_domain_fails_the_whole_list_and_prints_nothing(xbctl):
    for args in (
        ["list", "web", "nosuch"],
        ["list", "nosuch", "web"],
        ["list", "--long", "99"],
        ["-n", "list", "32752"],
    ):
        assert_clean_failure(xbctl(*args), 4, "unknown domain")
    assert_clean_failure(xbctl("list", ""), 2, "empty domain name")


def test_a_guest_lists_only_itself(xbctl):
    xbctl("sim", "reset", "--clock", "manual", "--position", "web")
    assert [line.split()[0] for line in xbctl("list", "-n").stdout.splitlines()] == ["web"]
    assert_clean_failure(xbctl("list", "2"), 1, "a guest sees only its own domain")
    assert_clean_failure(xbctl("list", "db"), 4, "unknown domain")


def test_options_list_does_not_take_are_refused_and_change_nothing(xbctl):
    before = xbctl.snapshot()
    for args, says in (
        (["-e", "list"], "-e does not go with the list command"),
        (["-d", "web", "list"], "-d does not go with the list command"),
        (["--json", "list", "--long"], "--long and --json are two outputs"),
        (["list", "--format", "prometheus", "web"], "takes no DOMAIN"),
        (["list", "--format", "prometheus", "-l"], "two formats"),
        (["list", "--long=yes"], "does not take a value"),
    ):
        outcome = xbctl(*args)
        if "--json" in args:
            assert outcome.json()["error"]["exit_status"] == 2
            outcome.stdout = ""
        assert_clean_failure(outcome, 2, says)
    assert xbctl.snapshot() == before


def test_as_a_process_in_a_pipe_too(xbctl):
    outcome = xbctl.process("list", "-l", "web")
    assert outcome.status == 0 and outcome.stdout.splitlines()[1].split()[:3] == ["web", "1", "786432"], outcome


# ---------------------------------------------------------------- sim reset --guests


def test_sim_reset_guests_boots_a_varied_host_the_same_every_time(xbctl):
    assert xbctl("sim", "reset", "--clock", "manual", "--guests", "40").status == 0
    first = xbctl("--json", "list").json()
    assert xbctl("sim", "reset", "--clock", "manual", "--guests", "40").status == 0
    assert xbctl("--json", "list").json() == first
    domains = first["domains"]
    assert [d["id"] for d in domains] == list(range(41))
    assert [d["name"] for d in domains[:5]] == ["Domain-0", "web", "db", "mail", "guest4"]
    assert {d["driver"] for d in domains} == {"yes", "no", "unknown"}
    assert len({d["nodes"]["xen-max"]["value_kib"] for d in domains}) >= 5  # varied sizes
    assert xbctl("sim", "reset", "--guests", "0").status == 0
    assert [d["name"] for d in xbctl("--json", "list").json()["domains"]] == ["Domain-0"]
    # The default host is --guests 3.
    xbctl("sim", "reset", "--clock", "manual")
    default = xbctl("--json", "list").json()
    xbctl("sim", "reset", "--clock", "manual", "--guests", "3")
    assert xbctl("--json", "list").json() == default


def test_sim_reset_guests_refuses_what_it_cannot_boot_and_changes_nothing(xbctl):
    xbctl("-q", "-d", "web", "target", "600M")
    before = xbctl.snapshot()
    for text, says in (
        ("2001", "at most 2000 guests"),
        ("99999999999", "not a whole number"),
        ("-1", "--guests"),
        ("1e3", "not a whole number"),
        ("", "not a whole number"),
        ("٣", "not a whole number"),
        ("+3", "not a whole"),
    ):
        assert_clean_failure(xbctl("sim", "reset", "--guests", text), 2, says)
    assert xbctl.snapshot() == before


def test_guests_move_like_any_other(xbctl):
    xbctl("sim", "reset", "--clock", "manual", "--guests", "12")
    assert xbctl("-q", "mem-set", "guest9", "512").status == 0
    xbctl("sim", "advance", "60")
    assert xbctl.value("current", "guest9") == 512 * MIB


# ---------------------------------------------------------------- 1,000 domains


def test_a_thousand_simulated_domains_are_listed_right(xbctl):
    assert xbctl("sim", "reset", "--clock", "manual", "--guests", "999").status == 0
    document = xbctl.process("--json", "list").json()
    domains = document["domains"]
    assert [d["id"] for d in domains] == list(range(1000))
    assert [d["name"] for d in domains[4:]] == [f"guest{i}" for i in range(4, 1000)]
    # Each row is its own domain's: what `-d` reads for it, one domain at a time.
    for domid in (0, 1, 3, 4, 5, 500, 997, 998, 999):
        reading = xbctl("--json", "-d", str(domid), "-a").json()
        assert {k: v["value_kib"] for k, v in reading["nodes"].items()} == {
            k: v["value_kib"] for k, v in domains[domid]["nodes"].items()
        }, domid
    plain = xbctl.process("list")
    assert plain.status == 0, plain
    lines = plain.stdout.splitlines()
    assert len(lines) == 1001 and lines[0] == HEADER
    assert [line.split()[:2] for line in lines[1:]] == [[d["name"], str(d["id"])] for d in domains]
    assert xbctl("-n", "list", "guest999", "web").stdout.split()[:2] == ["guest999", "999"]


def test_a_thousand_domains_over_xenstore_are_listed_right(xs):
    with Client(unix_socket_path=str(xs.socket_path)) as client:
        domids = lay_out_many_domains(client, 1000)
    document = xs.process("--json", "list").json()
    rows = {d["id"]: d for d in document["domains"]}
    assert sorted(rows) == [0, 1, 2, 3, 4, 5, *domids]
    for domid in domids:
        name, static_max_kib, target_kib = many_domain(domid)
        row = rows[domid]
        assert row["name"] == name, row
        assert row["nodes"]["target"]["value_kib"] == target_kib, row
        assert row["nodes"]["xen-max"]["value_kib"] == static_max_kib, row
        publishes = domid % 3 == 0
        assert row["driver"] == ("yes" if publishes else "unknown"), row
        assert row["nodes"]["current"]["source"] == ("guest" if publishes else "target"), row
    assert rows[1]["nodes"]["target"]["value_kib"] == 768 * MIB
    plain = xs.process("list")
    assert plain.status == 0, plain
    lines = plain.stdout.splitlines()
    assert len(lines) == 1 + 6 + 1000
    assert lines[-1].split()[:4] == [
        f"guest{MANY_FIRST_ID + 999}",
        str(MANY_FIRST_ID + 999),
        *[str(many_domain(MANY_FIRST_ID + 999)[2] // MIB)] * 2,
    ]
    named = xs.process("-n", "list", f"guest{MANY_FIRST_ID + 500}", "db")
    assert [line.split()[0] for line in named.stdout.splitlines()] == [f"guest{MANY_FIRST_ID + 500}", "db"]


# ---------------------------------------------------------------- names from guests


def test_a_name_with_blanks_or_control_characters_stays_one_field(xs):
    xs.write("/local/domain/1/name", "evil\nname\tx y")
    outcome = xs("list")
    assert outcome.status == 0, outcome
    lines = outcome.stdout.splitlines()
    assert len(lines) == 1 + 6
    rows = {line.split()[1]: line.split()[0] for line in lines[1:]}
    assert rows["1"] == "evil\\nname\\tx\\x20y"
    assert rows["4"] == "web\\x20"  # "web " (a trailing blank) is not "web"
    xs.write("/local/domain/2/data/balloon/diagnostic", "stuck\nforged line")
    lines = xs("list").stdout.splitlines()
    assert len(lines) == 1 + 6 and lines[3].endswith("driver: stuck\\nforged line")
