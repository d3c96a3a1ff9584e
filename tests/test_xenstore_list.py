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
