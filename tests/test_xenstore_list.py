"""`xbctl list` over Xenstore when some domains are half built, half destroyed or odd."""

from conftest import assert_clean_failure


def test_one_odd_domain_does_not_hide_the_others(xs):
    xs.write("/local/domain/24/name", "nomem")  # being built: no memory nodes yet
    xs.write("/local/domain/23/name", "garbled")
    xs.write("/local/domain/23/memory/target", "12 KiB")
    outcome = xs("list")
    assert outcome.status == 0, outcome
    for name in ("Domain-0", "web", "db", "nomem", "garbled"):
        assert name in outcome.stdout
    assert outcome.stdout.count("unreadable") == 2
    document = xs("--json", "list").json()
    rows = {row["name"]: row for row in document["domains"]}
    assert rows["nomem"]["nodes"] is None and "memory/target does not exist" in rows["nomem"]["error"]
    assert rows["garbled"]["nodes"] is None and "not a number of KiB" in rows["garbled"]["error"]
    assert rows["web"]["nodes"]["target"]["value_kib"] == 786432 and "error" not in rows["web"]
    # reading the odd domain itself still fails clearly
    assert_clean_failure(xs("-d", "nomem", "-a"), 4, "no balloon")


def test_duplicate_names_are_ambiguous_not_guessed(xs):
    xs.write("/local/domain/21/name", "web")
    xs.write("/local/domain/21/memory/target", "524288")
    before = xs.listing()
    assert_clean_failure(xs("-d", "web", "target", "600M"), 2, "ambiguous name (ids 1, 21)")
    assert_clean_failure(xs("mem-set", "web", "600"), 2, "ambiguous")
    assert xs.listing() == before
    assert xs("-d", "21", "-n", "target").stdout == "524288\n"


def test_repeating_a_target_keeps_the_drivers_complaint_and_wait_ends_with_5(xs):
    web = "/local/domain/1"
    xs.write(f"{web}/control/feature-balloon", "1")
    xs.write(f"{web}/data/balloon/current", "786432")
    assert xs("-q", "-d", "web", "target", "700M").status == 0
    xs.write(f"{web}/data/balloon/diagnostic", "increase reservation incomplete: was 512, returned 0")
    again = xs("--wait", "--timeout", "30", "-d", "web", "target", "700M")
    assert again.status == 5, again
    assert "the driver reports: increase reservation incomplete" in again.stderr
    assert xs.read(f"{web}/data/balloon/diagnostic").startswith("increase reservation incomplete")
    # a different target clears it: the driver tries again
    assert xs("-q", "-d", "web", "target", "600M").status == 0
    assert not xs.exists(f"{web}/data/balloon/diagnostic")


def test_guest_cannot_write_target_over_xenbus_nor_in_the_simulator(xs):
    over_xenbus = xs.guest("target", "300M")
    assert_clean_failure(over_xenbus, 1, "Permission denied")


def test_xenstore_timeout_setting_is_parsed_strictly(xs):
    for text in ("nan", "abc", "0", "-1", "1e3"):
        outcome = xs("-d", "web", "-a", env={"XBCTL_XENSTORE_TIMEOUT": text})
        assert_clean_failure(outcome, 2, "XBCTL_XENSTORE_TIMEOUT")
    assert xs("-d", "web", "-n", "target", env={"XBCTL_XENSTORE_TIMEOUT": "2.5"}).stdout == "786432\n"
