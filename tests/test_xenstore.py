"""The Xenstore transport against Debian's C xenstored: mapping, round trips with the C
clients, refusals and odd domains that change nothing, transactions that conflict."""

from __future__ import annotations

import os
import re

import pytest
from conftest import assert_clean_failure
from xen_fixtures import MIB

WEB = "/local/domain/1"


def test_nodes_map_onto_libxl_layout(xs):
    outcome = xs("-d", "web", "-a")
    assert outcome.status == 0, outcome
    assert outcome.stdout == (
        "machdep.xen.balloon.current = 786432\n"
        "machdep.xen.balloon.target = 786432\n"
        "machdep.xen.balloon.min = 262144\n"  # a guest that publishes no minimum: a quarter of static-max
        "machdep.xen.balloon.max = 1048576\n"
        "machdep.xen.balloon.xen-max = 1048576\n"
    )
    # No libxenctrl here: one note says so, and nothing else is said.
    assert outcome.stderr.count("xbctl: note: hypervisor not used: ") == 1
    assert outcome.stderr.count("\n") == 1


def test_guest_published_nodes_shape_current_min_and_max(xs):
    xs.write(f"{WEB}/data/balloon/current", "700000")
    xs.write(f"{WEB}/data/balloon/min", "8192")
    xs.write(f"{WEB}/data/balloon/max", "917504")
    xs.write(f"{WEB}/memory/dynamic-min", "4096")
    document = xs("-d", "web", "--json", "-a").json()
    nodes = {key: node["value_kib"] for key, node in document["nodes"].items()}
    assert nodes == {"current": 700000, "target": 786432, "min": 8192, "max": 917504, "xen-max": 1048576}
    assert document["nodes"]["current"]["source"] == "guest"
    assert document["transport"] == "xenstore"
    # dynamic-min above the guest's floor wins; static-max below the guest's max wins.
    xs.write(f"{WEB}/memory/dynamic-min", "262144")
    xs.write(f"{WEB}/memory/static-max", "800000")
    assert xs("-d", "web", "-n", "min").stdout == "262144\n"
    assert xs("-d", "web", "-n", "max").stdout == "800000\n"


def test_current_falls_back_to_target_and_says_so(xs):
    document = xs("-d", "db", "--json", "current").json()
    assert document["nodes"]["current"] == {
        "name": "machdep.xen.balloon.current",
        "value_kib": 1572864,
        "source": "target",
    }


def test_xbctl_writes_are_what_the_c_client_reads(xs):
    assert xs("-d", "web", "target", "600M").status == 0
    assert xs.read(f"{WEB}/memory/target") == "614400"
    assert xs.process("mem-max", "web", "900").stdout == "machdep.xen.balloon.xen-max: 1048576 -> 921600\n"
    assert xs.read(f"{WEB}/memory/static-max") == "921600"
    assert xs.process("mem-set", "1", "512").stdout == "machdep.xen.balloon.target: 614400 -> 524288\n"
    assert xs.read(f"{WEB}/memory/target") == "524288"
    assert xs("-d", "web", "-w", "machdep.xen.balloon.min=128M").status == 0
    assert xs.read(f"{WEB}/memory/dynamic-min") == "131072"


def test_c_client_writes_are_what_xbctl_reads(xs):
    xs.write(f"{WEB}/memory/target", "655360")
    xs.write(f"{WEB}/memory/static-max", "983040")
    xs.write(f"{WEB}/memory/dynamic-min", "65536")
    names = ("machdep.xen.balloon.target", "machdep.xen.balloon.xen-max", "machdep.xen.balloon.min")
    assert xs("-d", "web", "-n", *names).stdout == "655360\n983040\n65536\n"
    assert xs.process("-d", "1", "-e", "target").stdout == "[web]\nmachdep.xen.balloon.target=655360\n"
    # And xbctl's reading is what a later write starts from.
    assert xs("-n", "mem-set", "web", "+64").stdout == "655360 -> 720896\n"


def test_multi_node_change_lands_together(xs, tmp_path):
    settings = tmp_path / "grow.conf"
    settings.write_text("machdep.xen.balloon.xen-max=2G\nmachdep.xen.balloon.target=1536M\n")
    trace_mark = len(xs.daemon.trace_path.read_bytes())
    outcome = xs("-d", "web", "-f", str(settings))
    assert outcome.status == 0, outcome
    assert (xs.read(f"{WEB}/memory/static-max"), xs.read(f"{WEB}/memory/target")) == ("2097152", "1572864")
    # The daemon saw one transaction carrying both writes: started before the first, not
    # ended (nor another started) between them, committed after the second.
    requests = _traced_requests(xs.daemon.trace_path.read_bytes()[trace_mark:].decode())
    writes = [i for i, r in enumerate(requests) if r.startswith("WRITE ")]
    assert [requests[i] for i in writes] == [f"WRITE {WEB}/memory/static-max", f"WRITE {WEB}/memory/target"]
    first, second = writes
    transactions = [r for r in requests[:first] if r.startswith("TRANSACTION_")]
    assert transactions == ["TRANSACTION_START"], requests
    assert not [r for r in requests[first:second] if r.startswith("TRANSACTION_")], requests
    assert [r for r in requests[second:] if r.startswith("TRANSACTION_")] == ["TRANSACTION_END T"], requests


def _traced_requests(trace: str) -> list[str]:
    """The requests in xenstored's trace, as 'KIND' or 'KIND first-argument' (WRITE path, TRANSACTION_END T)."""
    found = []
    for line in trace.splitlines():
        match = re.match(r"IN \S+ \S+ \S+ (\w+) \((\S*)", line)
        if match:
            kind, argument = match.groups()
            found.append(f"{kind} {argument}" if kind in ("WRITE", "TRANSACTION_END") else kind)
    return found


REFUSALS = [
    (("-d", "web", "target", "16M"), "below min"),  # below the guest's floor once published
    (("-d", "web", "target", "2G"), "above max 1 GiB (1048576 KiB)"),
    (("-d", "web", "xen-max", "512M"), "below target 768 MiB (786432 KiB)"),
    (("-d", "web", "min", "4K"), "safeguard floor"),
    (("-d", "web", "min", "900M"), "above target"),
    (("-d", "web", "current", "512M"), "read-only node"),
    (("-d", "web", "max", "512M"), "read-only node"),
    (("mem-max", "web", "100"), "below target"),
    (("-d", "web", "-w", "target=1.0000001K"), "not a whole number of KiB"),
]


@pytest.mark.parametrize("args, reason", REFUSALS)
def test_refused_change_leaves_the_tree_unchanged(xs, args, reason):
    xs.write(f"{WEB}/data/balloon/min", "32768")
    before = xs.listing()
    outcome = xs(*args)
    assert_clean_failure(outcome, 1, "Operation not permitted", reason)
    assert xs.listing() == before


def test_refused_file_writes_nothing_even_when_its_first_line_is_fine(xs, tmp_path):
    settings = tmp_path / "bad.conf"
    settings.write_text("machdep.xen.balloon.target=600M\nmachdep.xen.balloon.xen-max=100M\n")
    before = xs.listing()
    assert_clean_failure(xs("-d", "web", "-f", str(settings)), 1, "xen-max", "below target 600 MiB (614400 KiB)")
    assert xs.listing() == before


ODD_DOMAINS = [
    ("../../tool", 4),
    ("/local/domain/1", 4),
    ("web/../1", 4),
    ("WEB", 4),
    (" web", 4),
    ("web\n", 4),
    ("0x1", 4),
    ("-1", 4),
    ("99", 4),
    ("6", 4),
    ("32752", 4),
    ("99999999999999999999", 4),
    ("７", 4),
    ("*", 4),
    ("", 2),
]


@pytest.mark.parametrize("spec, status", ODD_DOMAINS)
def test_unknown_or_odd_domain_changes_nothing(xs, spec, status):
    before = xs.listing()
    for args in (
        ("-d", spec, "target", "200M"),
        ("mem-set", spec, "200"),
        ("mem-max", spec, "300"),
        ("-d", spec, "-a"),
    ):
        outcome = xs(*args)
        assert_clean_failure(outcome, status, "domain")
    assert xs.listing() == before


def test_names_match_exactly_and_ids_are_ids(xs):
    # Domain 4 is called "web " and domain 5 is called "7": lookups never confuse them.
    assert xs("-n", "mem-set", "web ", "200").stdout == "262144 -> 204800\n"
    assert xs.read("/local/domain/4/memory/target") == "204800"
    assert xs.read(f"{WEB}/memory/target") == "786432"
    assert_clean_failure(xs("-d", "7", "-a"), 4, "unknown domain")  # id 7, which does not exist
    assert xs("--json", "-d", "5", "target").json()["domain"] == {"id": 5, "name": "7"}


def test_domain_gone_between_lookup_and_write_is_not_recreated(xs, monkeypatch):
    from xbctl.transports.xenstore.transport import XenstoreTransport

    original = XenstoreTransport.update_balloon

    def vanish_first(self, domain, plan):
        xs.rm(f"/local/domain/{domain.id}")  # the toolstack destroys the domain meanwhile
        return original(self, domain, plan)

    monkeypatch.setattr(XenstoreTransport, "update_balloon", vanish_first)
    outcome = xs("-d", "web", "target", "600M")
    assert_clean_failure(outcome, 4, "domain 1", "gone")
    assert not xs.exists(WEB)
    assert f"{WEB}/" not in xs.listing()


def test_write_warns_only_when_the_domain_says_it_has_no_driver(xs):
    # No control/feature-balloon (every Linux guest): unknown, the normal case, no warning.
    outcome = xs("-d", "db", "target", "1G")
    assert outcome.status == 0, outcome
    assert "warning" not in outcome.stderr and "balloon driver" not in outcome.stderr, outcome
    assert xs.read("/local/domain/2/memory/target") == "1048576"
    xs.write("/local/domain/2/control/feature-balloon", "1")
    quiet = xs("-d", "db", "target", "1200M")
    assert quiet.status == 0 and "warning" not in quiet.stderr, quiet
    # feature-balloon = 0: the domain says nothing in it acts on target; that is worth a warning.
    xs.write("/local/domain/2/control/feature-balloon", "0")
    warned = xs("-d", "db", "target", "1G")
    assert warned.status == 0, warned
    assert "xbctl: warning: domain db says it has no balloon driver (control/feature-balloon = 0)" in warned.stderr
    assert xs.read("/local/domain/2/memory/target") == "1048576"


def test_new_target_clears_the_drivers_old_complaint(xs):
    xs.write(f"{WEB}/control/feature-balloon", "1")
    xs.write(f"{WEB}/data/balloon/diagnostic", "WARNING: balloon could not reach target 1 (current 2)")
    assert xs("--json", "list").json()["domains"][1]["diagnostic"].startswith("WARNING")
    assert xs("-d", "web", "target", "700M").status == 0
    assert not xs.exists(f"{WEB}/data/balloon/diagnostic")
    # A refused write leaves it in place.
    xs.write(f"{WEB}/data/balloon/diagnostic", "still stuck")
    assert xs("-d", "web", "target", "4G").status == 1
    assert xs.read(f"{WEB}/data/balloon/diagnostic") == "still stuck"


def test_list_shows_every_domain(xs):
    document = xs("--json", "list").json()
    assert [(d["id"], d["name"]) for d in document["domains"]] == [
        (0, "Domain-0"),
        (1, "web"),
        (2, "db"),
        (3, "mail"),
        (4, "web "),
        (5, "7"),
    ]
    table = xs.process("list")
    assert table.status == 0 and "mail" in table.stdout and "Traceback" not in table.stderr


def test_malformed_node_value_is_reported_not_crashed_on(xs):
    xs.write(f"{WEB}/memory/target", "lots")
    outcome = xs("-d", "web", "-a")
    assert_clean_failure(outcome, 3, f"{WEB}/memory/target", "'lots'", "not a number of KiB")


# ---------------------------------------------------------------- transactions


def _interfere(monkeypatch, xs, path, values):
    """Make another client write PATH between xbctl's read and its commit, once per value."""
    import xbctl.rules as policy

    original = policy.plan_writes
    calls = []

    def plan_and_interfere(balloon, requests, **rules):
        calls.append(balloon)
        if len(calls) <= len(values):
            xs.write(path, values[len(calls) - 1])
        return original(balloon, requests, **rules)

    monkeypatch.setattr(policy, "plan_writes", plan_and_interfere)
    return calls


def test_conflicting_write_is_retried_on_fresh_values(xs, monkeypatch):
    calls = _interfere(monkeypatch, xs, f"{WEB}/memory/target", ["655360"])
    outcome = xs("-n", "-d", "web", "target", "+64M")
    assert outcome.status == 0, outcome
    # The retry started again from the other client's value, not from the stale one.
    assert [b.target_kib for b in calls] == [786432, 655360]
    assert outcome.stdout == "655360 -> 720896\n"
    assert xs.read(f"{WEB}/memory/target") == "720896"


def test_conflict_on_another_node_of_a_multi_node_change(xs, monkeypatch, tmp_path):
    calls = _interfere(monkeypatch, xs, f"{WEB}/memory/static-max", ["1572864"])
    settings = tmp_path / "f.conf"
    settings.write_text("machdep.xen.balloon.min=64M\nmachdep.xen.balloon.target=900M\n")
    outcome = xs("-d", "web", "-f", str(settings))
    assert outcome.status == 0, outcome
    assert [b.xen_max_kib for b in calls] == [1048576, 1572864]
    assert xs.read(f"{WEB}/memory/target") == "921600"
    assert xs.read(f"{WEB}/memory/dynamic-min") == "65536"
    assert xs.read(f"{WEB}/memory/static-max") == "1572864"


def test_conflict_that_makes_the_change_illegal_is_refused(xs, monkeypatch):
    _interfere(monkeypatch, xs, f"{WEB}/memory/static-max", ["786432"])
    outcome = xs("-d", "web", "target", "900M")
    assert_clean_failure(outcome, 1, "above max 768 MiB (786432 KiB)")
    assert xs.read(f"{WEB}/memory/target") == "786432"


def test_endless_conflicts_give_up_with_eagain(xs, monkeypatch):
    values = [str(600 * MIB + 4 * n) for n in range(1, 20)]
    calls = _interfere(monkeypatch, xs, f"{WEB}/memory/target", values)
    outcome = xs("-d", "web", "target", "700M")
    assert_clean_failure(outcome, 3, "EAGAIN", "gave up after 8")
    assert len(calls) == 8
    assert xs.read(f"{WEB}/memory/target") == values[7]  # the other client's last word, not ours


def test_wait_on_a_guest_that_publishes_no_current_ends_with_5(xs):
    """A Linux-style guest: it acts on target but publishes no current, so there is nothing to watch."""
    xs.write("/local/domain/2/control/feature-balloon", "1")
    outcome = xs("-d", "db", "--wait", "--timeout", "30", "target", "1G")
    assert outcome.status == 5, outcome
    assert outcome.stdout == "machdep.xen.balloon.target: 1572864 -> 1048576\n"
    assert "does not publish its current reservation" in outcome.stderr
    assert xs.read("/local/domain/2/memory/target") == "1048576"


# ---------------------------------------------------------------- review fixes


def test_domain_0_target_below_libxl_minimum_is_refused(xs):
    """libxl refuses a dom0 target below LIBXL_MIN_DOM0_MEM (128 MiB); so does xbctl."""
    before = xs.listing()
    for args in (("mem-set", "0", "0", "--dry-run"), ("mem-set", "0", "0"), ("-d", "Domain-0", "target", "127M")):
        assert_clean_failure(xs(*args), 1, "below min 128 MiB (131072 KiB)")
    assert xs.listing() == before
    assert xs("-d", "0", "-n", "min").stdout == "131072\n"
    # dynamic-min above the floor still wins, and 128 MiB itself is allowed.
    xs.write("/local/domain/0/memory/dynamic-min", "262144")
    assert xs("-d", "0", "-n", "min").stdout == "262144\n"
    xs.rm("/local/domain/0/memory/dynamic-min")
    assert xs("-n", "mem-set", "0", "128").stdout == "4194304 -> 131072\n"
    # Guests keep their own floor: none published here, so the default (a quarter of static-max).
    assert xs("-d", "web", "-n", "min").stdout == "262144\n"
    assert_clean_failure(xs("-n", "--dry-run", "mem-set", "web", "4K"), 1, "below min 262144 KiB", "static-max")


def _write_raw(xs, path: str, value: bytes) -> None:
    # pyxs refuses anything but 7-bit ASCII; the C client writes the bytes as given.
    xs.write(path, os.fsdecode(value))


def test_non_utf8_names_and_diagnostics_print_as_valid_utf8(xs):
    import json
    import subprocess

    from xen_fixtures import xbctl_command

    _write_raw(xs, "/local/domain/2/name", b"bad\xff\xfename")
    _write_raw(xs, f"{WEB}/data/balloon/diagnostic", b"stuck \xed\xb3\xbf")  # UTF-8 of a lone surrogate
    for args in (("--json", "list"), ("list",), ("--json", "-d", "2", "target")):
        done = subprocess.run([xbctl_command(), *args], env=xs.process_env(), capture_output=True, timeout=60)
        assert done.returncode == 0, done
        text = done.stdout.decode("utf-8")  # strict: raises on anything that is not UTF-8
        if args[0] == "--json":
            shown = json.dumps(json.loads(text), ensure_ascii=False)
            assert not any(0xD800 <= ord(c) <= 0xDFFF for c in shown), text  # no lone surrogates
            assert json.dumps("bad\\xff\\xfename") in text, text
        else:
            assert "bad\\xff\\xfename" in text, text
    domains = {d["id"]: d for d in xs("--json", "list").json()["domains"]}
    assert domains[2]["name"] == "bad\\xff\\xfename"
    assert domains[1]["diagnostic"] == "stuck \\xed\\xb3\\xbf"
    # Ordinary names still match exactly, and the odd one by what xbctl shows.
    assert xs("-d", "web", "-n", "target").stdout == "786432\n"
    assert xs("-d", "bad\\xff\\xfename", "-n", "target").stdout == "1572864\n"
    assert_clean_failure(xs("-d", "bad", "-n", "target"), 4, "unknown domain")


def test_two_domains_with_one_name_are_not_guessed_between(xs):
    xs.write("/local/domain/21/name", "Domain-0")
    xs.write("/local/domain/21/memory/target", "262144")
    xs.write("/local/domain/21/memory/static-max", "262144")
    before = xs.listing()
    for args in (("-d", "Domain-0", "-a"), ("mem-set", "Domain-0", "200"), ("-d", "Domain-0", "target", "300M")):
        assert_clean_failure(xs(*args), 2, "'Domain-0'", "ambiguous name (ids 0, 21)")
    assert xs.listing() == before
    # Ids still say which one is meant.
    assert xs("-d", "21", "-n", "target").stdout == "262144\n"


def test_absolute_target_repairs_a_malformed_one(xs):
    """xl mem-set overwrites a target that is not a number; an absolute xbctl write may too."""
    for bad in ("", "lots"):
        xs.write(f"{WEB}/memory/target", bad)
        outcome = xs("mem-set", "web", "400")
        assert outcome.status == 0, outcome
        assert outcome.stdout == "machdep.xen.balloon.target: 0 -> 409600\n"
        assert xs.read(f"{WEB}/memory/target") == "409600"


def test_malformed_target_still_checks_min_and_max_and_refuses_relative_changes(xs):
    xs.write(f"{WEB}/data/balloon/min", "32768")
    xs.write(f"{WEB}/memory/target", "")
    before = xs.listing()
    assert_clean_failure(xs("mem-set", "web", "16"), 1, "below min 32 MiB (32768 KiB)")
    assert_clean_failure(xs("mem-set", "web", "2G"), 1, "above max 1 GiB (1048576 KiB)")
    for args in (
        ("mem-set", "web", "+64"),
        ("-d", "web", "target", "-64M"),
        ("-d", "web", "min", "64M"),
        ("mem-max", "web", "900"),
    ):
        assert_clean_failure(xs(*args), 3, f"{WEB}/memory/target", "not a number of KiB")
    # Reads keep reporting it.
    assert_clean_failure(xs("-d", "web", "-a"), 3, "not a number of KiB")
    assert xs.listing() == before
