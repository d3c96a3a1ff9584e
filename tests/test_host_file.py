"""A whole host in one settings file: [DOMAIN] sections, -d's rules, -e's header, -A, and one
change for every domain (one simulator save; one transaction in a real xenstored)."""

from __future__ import annotations

import pytest
from conftest import assert_clean_failure
from pyxs import Client
from xen_fixtures import MIB, XL_MAXMEM_CONSTANT_KIB, domain_uuid, lay_out_many_hypervisor_domains, many_domain

TARGET = "machdep.xen.balloon.target"
MIN = "machdep.xen.balloon.min"
XEN_MAX = "machdep.xen.balloon.xen-max"


def settings(tmp_path, text: str, name: str = "host.conf") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- the simulator


def test_sections_set_their_own_domains_and_every_line_names_its_domain(xbctl, tmp_path):
    path = settings(tmp_path, f"[web]\n{TARGET}=512M\n[db]\n{TARGET}=1G\n{MIN}=256M\n")
    outcome = xbctl("-f", path)
    assert outcome.status == 0, outcome
    assert outcome.stdout == (
        f"web: {TARGET}: 786432 -> 524288\ndb: {TARGET}: 1572864 -> 1048576\ndb: {MIN}: 524288 -> 262144\n"
    )
    assert xbctl.value("target", "web") == 524288
    assert (xbctl.value("target", "db"), xbctl.value("min", "db")) == (1048576, 262144)
    assert xbctl.value("target") == 4194304  # our own domain: untouched


def test_lines_before_any_section_are_our_own_domain(xbctl, tmp_path):
    path = settings(tmp_path, f"{TARGET}=3G\n[web]\n{TARGET}=512M\n")
    outcome = xbctl("-f", path)
    assert outcome.status == 0, outcome
    assert outcome.stdout == f"Domain-0: {TARGET}: 4194304 -> 3145728\nweb: {TARGET}: 786432 -> 524288\n"


def test_each_line_sees_the_lines_before_it_in_its_domain(xbctl, tmp_path):
    # db's min may rise above its old target only because the line before raised the target.
    path = settings(tmp_path, f"[db]\n{TARGET}=3G\n[web]\n{TARGET}=600M\n[db]\n{MIN}=2G\n")
    outcome = xbctl("-f", path)
    assert outcome.status == 0, outcome
    assert xbctl.value("min", "db") == 2 * 1024 * MIB


def test_a_refused_line_in_the_last_domain_writes_nothing_anywhere(xbctl, tmp_path):
    path = settings(tmp_path, f"[web]\n{TARGET}=512M\n[db]\n{TARGET}=1G\n[mail]\n{TARGET}=4G\n")
    before = xbctl.snapshot()
    outcome = xbctl("-f", path)
    assert_clean_failure(outcome, 1, f"{path}:6: {TARGET}: Operation not permitted", "above max")
    assert xbctl.snapshot() == before


@pytest.mark.parametrize(
    "text, status, message",
    [
        (f"[web]\n{TARGET}=512M\n[nosuch]\n{TARGET}=1G\n", 4, ":3: domain 'nosuch': unknown domain"),
        (f"[web]\n{TARGET}=512M\n[99]\n{TARGET}=1G\n", 4, ":3: domain '99': unknown domain"),
        (f"[web]\n{TARGET}=512M\n[]\n", 2, ":3: empty section name"),
        (f"[web\n{TARGET}=512M\n", 2, ":1: '[web' is neither a section nor an assignment"),
        (f"[web]\n{TARGET}=512M\n[db]\n{TARGET}=lots\n", 2, ":4: machdep.xen.balloon.target: invalid size 'lots'"),
        (
            f"[web]\n{TARGET}=512M\n[db]\nmachdep.xen.balloon.colour=1\n",
            4,
            ":4: machdep.xen.balloon.colour: unknown node",
        ),
        (f"[web]\n{TARGET}=512M\n[db]\nmachdep.xen.balloon.current=1G\n", 1, ":4: machdep.xen.balloon.current"),
    ],
    ids=["unknown-name", "unknown-id", "empty-section", "unclosed-section", "malformed", "unknown-node", "read-only"],
)
def test_every_bad_file_fails_clearly_citing_file_and_line_and_changes_nothing(xbctl, tmp_path, text, status, message):
    path = settings(tmp_path, text)
    before = xbctl.snapshot()
    assert_clean_failure(xbctl("-f", path), status, f"{path}{message}")
    assert xbctl.snapshot() == before


def test_with_d_unsectioned_lines_go_to_that_domain_and_a_section_naming_it_is_fine(xbctl, tmp_path):
    path = settings(tmp_path, f"{TARGET}=512M\n[1]\n{MIN}=256M\n")  # [1] is web by its id
    outcome = xbctl("-d", "web", "-f", path)
    assert outcome.status == 0, outcome
    assert outcome.stdout == f"{TARGET}: 786432 -> 524288\n{MIN}: 131072 -> 262144\n"  # -d named it


def test_with_d_a_section_naming_another_domain_is_refused_and_nothing_is_written(xbctl, tmp_path):
    path = settings(tmp_path, f"{TARGET}=512M\n[db]\n{TARGET}=1G\n")
    before = xbctl.snapshot()
    outcome = xbctl("-d", "web", "-f", path)
    assert_clean_failure(outcome, 2, f"{path}:2: section [db] names domain db (id 2), but -d names web (id 1)")
    assert "applies without -d" in outcome.stderr
    assert xbctl.snapshot() == before


def test_the_db_incident_an_export_for_db_applied_without_d_changes_db_only(xbctl, tmp_path):
    saved = xbctl("-d", "db", "-e", "-a")
    assert saved.status == 0, saved
    # -e with -d records the domain; -a with -e means every node -f can set.
    assert saved.stdout == f"[db]\n{TARGET}=1572864\n{MIN}=524288\n{XEN_MAX}=4194304\n"
    assert xbctl("-q", "-d", "db", "target", "1G").status == 0
    own_before = xbctl("-a").stdout
    outcome = xbctl("-f", settings(tmp_path, saved.stdout, "db.conf"))
    assert outcome.status == 0, outcome
    assert outcome.stdout.splitlines()[0] == f"db: {TARGET}: 1048576 -> 1572864"
    assert all(line.startswith("db: ") for line in outcome.stdout.splitlines())
    assert xbctl.value("target", "db") == 1572864
    assert xbctl("-a").stdout == own_before  # Domain-0 untouched


def test_e_without_d_prints_no_header_and_n_never_changes(xbctl):
    assert xbctl("-e", "target").stdout == f"{TARGET}=4194304\n"  # the sysctl idiom stays as it was
    assert xbctl("-n", "-d", "web", "target").stdout == "786432\n"
    assert xbctl("-n", "-A", TARGET).stdout == "4194304\n786432\n1572864\n524288\n"


def test_write_without_d_names_our_own_domain(xbctl):
    outcome = xbctl("target", "3G")
    assert outcome.stdout == f"Domain-0: {TARGET}: 4194304 -> 3145728\n"
    assert xbctl("-n", "target", "2G").stdout == "3145728 -> 2097152\n"  # -n: values only, as ever
    assert xbctl("-d", "web", "target", "512M").stdout == f"{TARGET}: 786432 -> 524288\n"
    assert xbctl("mem-set", "db", "1024").stdout == f"{TARGET}: 1572864 -> 1048576\n"  # named in the command


def test_all_domains_reads_every_domain_naming_each_line(xbctl):
    outcome = xbctl("-A", TARGET, XEN_MAX)
    assert outcome.status == 0, outcome
    assert outcome.stdout == (
        f"Domain-0: {TARGET} = 4194304\nDomain-0: {XEN_MAX} = 4194304\n"
        f"web: {TARGET} = 786432\nweb: {XEN_MAX} = 1048576\n"
        f"db: {TARGET} = 1572864\ndb: {XEN_MAX} = 4194304\n"
        f"mail: {TARGET} = 524288\nmail: {XEN_MAX} = 524288\n"
    )
    assert len(xbctl("--all-domains").stdout.splitlines()) == 4 * 5
    document = xbctl("--json", "-A").json()
    assert document["kind"] == "reads"
    assert [d["domain"]["name"] for d in document["domains"]] == ["Domain-0", "web", "db", "mail"]
    assert document["domains"][1]["nodes"]["target"]["value_kib"] == 786432


def test_all_domains_with_d_or_with_writes_is_a_usage_error(xbctl, tmp_path):
    before = xbctl.snapshot()
    assert_clean_failure(xbctl("-A", "-d", "web"), 2, "-A reads every domain; -d names one")
    assert_clean_failure(xbctl("-A", f"{TARGET}=1G"), 2, "reads and writes cannot be mixed")
    assert xbctl.snapshot() == before


def test_export_of_the_whole_host_applies_back_as_a_no_op(xbctl, tmp_path):
    xbctl("-q", "-d", "db", "target", "1G")
    exported = xbctl("-A", "-e")
    assert exported.status == 0, exported
    assert exported.stdout.startswith(f"[Domain-0]\n{TARGET}=4194304\n{MIN}=1048576\n{XEN_MAX}=4194304\n[web]\n")
    assert exported.stdout.count("[") == 4 and "current" not in exported.stdout
    path = settings(tmp_path, exported.stdout, "export.conf")
    before = xbctl.snapshot()
    outcome = xbctl("-f", path)
    # No target is written, so no driver warning either; the unchanged lines are counted, not shown.
    assert (outcome.status, outcome.stdout, outcome.stderr) == (
        0,
        "",
        "xbctl: note: nothing changed: 12 settings unchanged (-v lists them)\n",
    ), outcome
    document = xbctl("--json", "-f", path).json()
    assert document["kind"] == "writes" and document["changed"] is False
    assert [d["domain"]["name"] for d in document["domains"]] == ["Domain-0", "web", "db", "mail"]
    assert xbctl.snapshot() == before


def test_restoring_an_export_shows_what_changes_and_counts_the_rest(xbctl, tmp_path):
    assert xbctl("sim", "reset", "--clock", "manual", "--guests", "300").status == 0
    path = settings(tmp_path, xbctl("-A", "-e").stdout, "export.conf")
    xbctl("-q", "-d", "web", "target", "600M")
    xbctl("-q", "-d", "guest300", "min", "100M")
    after_change = xbctl.snapshot()
    dry = xbctl("--dry-run", "-f", path)
    changed = f"web: {TARGET}: {600 * MIB} -> {768 * MIB}\nguest300: {MIN}: {100 * MIB} -> "
    assert dry.status == 0 and dry.stdout.startswith(changed) and dry.stdout.count("\n") == 2, dry
    assert dry.stderr == "xbctl: note: 901 settings unchanged (-v lists them)\nxbctl: dry run: nothing was written\n"
    assert xbctl.snapshot() == after_change
    # -v lists every line of the file, in its order; --json carries every line whatever -v says.
    verbose = xbctl("--dry-run", "-v", "-f", path)
    lines = verbose.stdout.splitlines()
    assert len(lines) == 903 and lines[0] == f"Domain-0: {TARGET}: 4194304 -> 4194304 (unchanged)", verbose.stdout[:200]
    assert [line for line in lines if not line.endswith(" (unchanged)")] == dry.stdout.splitlines()
    assert verbose.stderr == "xbctl: note: 901 settings unchanged\nxbctl: dry run: nothing was written\n"
    for flag in ([], ["-v"]):
        document = xbctl("--json", "--dry-run", *flag, "-f", path).json()
        assert sum(len(d["changes"]) for d in document["domains"]) == 903 and document["changed"] is True
    quiet = xbctl("-q", "-f", path)
    assert (quiet.status, quiet.stdout, quiet.stderr) == (0, "", ""), quiet
    assert (xbctl.value("target", "web"), xbctl.value("min", "guest300")) == (768 * MIB, int(dry.stdout.split()[-1]))
    again = xbctl("-f", path)
    assert (again.status, again.stdout, again.stderr) == (
        0,
        "",
        "xbctl: note: nothing changed: 903 settings unchanged (-v lists them)\n",
    ), again


def test_one_unchanged_setting_is_counted_in_the_singular(xbctl, tmp_path):
    path = settings(tmp_path, f"{TARGET}=3G\n{MIN}=1G\n")
    outcome = xbctl("-f", path)
    assert outcome.stdout == f"Domain-0: {TARGET}: 4194304 -> 3145728\n", outcome
    assert outcome.stderr == "xbctl: note: 1 setting unchanged (-v lists it)\n", outcome


def test_several_domains_in_json_dry_run_and_quiet(xbctl, tmp_path):
    path = settings(tmp_path, f"[web]\n{TARGET}=512M\n[db]\n{TARGET}=1G\n")
    before = xbctl.snapshot()
    dry = xbctl("--dry-run", "-f", path)
    assert dry.status == 0, dry
    assert dry.stdout == f"web: {TARGET}: 786432 -> 524288\ndb: {TARGET}: 1572864 -> 1048576\n"
    assert "dry run: nothing was written" in dry.stderr
    document = xbctl("--json", "--dry-run", "-f", path).json()
    assert (document["kind"], document["dry_run"], document["changed"]) == ("writes", True, True)
    assert document["domains"][1]["changes"] == [
        {"node": "target", "name": TARGET, "old_kib": 1572864, "new_kib": 1048576, "origin": f"{path}:4"}
    ]
    assert xbctl.snapshot() == before
    quiet = xbctl("-q", "-f", path)
    assert (quiet.status, quiet.stdout, quiet.stderr) == (0, "", "")
    assert xbctl.value("target", "db") == 1048576
    # One domain involved: the single write document, as before.
    single = xbctl("--json", "-f", settings(tmp_path, f"[web]\n{TARGET}=600M\n", "one.conf")).json()
    assert single["kind"] == "write" and single["domain"] == {"id": 1, "name": "web"}


def test_wait_with_several_domains_is_refused_before_anything_is_written(xbctl, tmp_path):
    path = settings(tmp_path, f"[web]\n{TARGET}=512M\n[db]\n{TARGET}=1G\n")
    before = xbctl.snapshot()
    assert_clean_failure(xbctl("--wait", "-f", path), 2, "--wait follows one domain; these settings change 2")
    assert xbctl.snapshot() == before


def test_sections_naming_one_domain_twice_merge_in_file_order(xbctl, tmp_path):
    path = settings(tmp_path, f"[web]\n{TARGET}=512M\n[db]\n{TARGET}=1G\n[1]\n{TARGET}=+64M\n")
    outcome = xbctl("-f", path)
    assert outcome.status == 0, outcome
    assert xbctl.value("target", "web") == 524288 + 65536


# ---------------------------------------------------------------- a real xenstored


def add_guests(xs, count: int, first: int = 10) -> list[int]:
    """COUNT more guests laid out as libxl would (name guestN), in one pyxs connection."""
    domids = list(range(first, first + count))
    with Client(unix_socket_path=str(xs.socket_path)) as client:
        for domid in domids:
            base = f"/local/domain/{domid}"
            for rel, value in (
                ("name", f"guest{domid}"),
                ("domid", str(domid)),
                ("memory/static-max", str(1024 * MIB)),
                ("memory/target", str(768 * MIB)),
                ("memory/videoram", "-1"),
            ):
                client.write(f"{base}/{rel}".encode(), value.encode())
    return domids


def test_a_thousand_domains_with_a_bad_last_line_write_nothing(xs, tmp_path):
    domids = add_guests(xs, 1000)
    lines = [f"[guest{domid}]\n{TARGET}={512 * MIB + 4 * n}\n" for n, domid in enumerate(domids)]
    lines[-1] = f"[guest{domids[-1]}]\n{TARGET}=2G\n"  # above its max: refused
    path = settings(tmp_path, "".join(lines))
    before = xs.listing()
    outcome = xs.process("-f", path)
    assert_clean_failure(outcome, 1, f"{path}:2000: {TARGET}: Operation not permitted", "above max")
    assert xs.listing() == before  # xenstore-ls: not one node of the 999 good lines was written
    lines[-1] = f"[guest{domids[-1]}]\n{TARGET}=1G\n"
    applied = xs.process("-q", "-f", settings(tmp_path, "".join(lines)))
    assert (applied.status, applied.stdout) == (0, ""), applied
    assert xs.dom(domids[0], "memory/target") == str(512 * MIB)
    assert xs.dom(domids[500], "memory/target") == str(512 * MIB + 4 * 500)
    assert xs.dom(domids[-1], "memory/target") == str(1024 * MIB)


def test_the_db_incident_over_xenstore(xs, tmp_path):
    saved = xs.process("-d", "db", "-e", "-a")
    assert saved.stdout == f"[db]\n{TARGET}=1572864\n{MIN}=524288\n{XEN_MAX}=2097152\n", saved
    xs.write("/local/domain/2/memory/target", "1048576")
    own_target = xs.dom(0, "memory/target")
    outcome = xs.process("-f", settings(tmp_path, saved.stdout, "db.conf"))
    assert outcome.status == 0, outcome
    assert outcome.stdout.splitlines()[0] == f"db: {TARGET}: 1048576 -> 1572864"
    assert xs.dom(2, "memory/target") == "1572864"
    assert xs.dom(0, "memory/target") == own_target


def test_export_of_the_whole_host_round_trips_over_xenstore(xs, tmp_path):
    exported = xs.process("-A", "-e")
    assert exported.status == 0, exported
    # "web " (blanks) and "7" (looks like an id) cannot be named by a header: their ids are.
    headers = [line for line in exported.stdout.splitlines() if line.startswith("[")]
    assert headers == ["[Domain-0]", "[web]", "[db]", "[mail]", "[4]", "[5]"]
    before = xs.listing()
    path = settings(tmp_path, exported.stdout, "export.conf")
    outcome = xs.process("-f", path)
    assert outcome.status == 0, outcome
    assert "nothing changed" in outcome.stderr
    assert xs.listing() == before  # not even memory/dynamic-min appeared: nothing was written
    document = xs.process("--json", "-f", path).json()
    assert document["kind"] == "writes" and document["changed"] is False
    # And it restores: change two domains, apply the export, both are back.
    xs.write("/local/domain/1/memory/target", str(600 * MIB))
    xs.write("/local/domain/4/memory/target", str(200 * MIB))
    restored = xs.process("-f", path)
    assert restored.status == 0, restored
    assert f"web: {TARGET}: {600 * MIB} -> {768 * MIB}" in restored.stdout
    assert f"web : {TARGET}: {200 * MIB} -> {256 * MIB}" in restored.stdout
    assert xs.listing() == before


def test_all_domains_over_xenstore_names_every_domain(xs):
    outcome = xs.process("-A", TARGET)
    assert outcome.status == 0, outcome
    assert outcome.stdout.splitlines() == [
        f"Domain-0: {TARGET} = 4194304",
        f"web: {TARGET} = 786432",
        f"db: {TARGET} = 1572864",
        f"mail: {TARGET} = 524288",
        f"web : {TARGET} = 262144",
        f"7: {TARGET} = 262144",
    ]


def test_a_node_changed_between_snapshot_and_transaction_is_planned_again(xs, monkeypatch, tmp_path):
    import xbctl.rules as policy

    original = policy.plan_writes
    seen = []

    def plan_and_interfere(balloon, requests, **rules):
        seen.append((rules["domain"].name, balloon.target_kib))
        if len(seen) == 2:  # db planned, web's snapshot already taken: another client moves web
            xs.write("/local/domain/1/memory/target", str(600 * MIB))
        return original(balloon, requests, **rules)

    monkeypatch.setattr(policy, "plan_writes", plan_and_interfere)
    path = settings(tmp_path, f"[web]\n{TARGET}=+64M\n[db]\n{TARGET}=1G\n")
    outcome = xs("-f", path)
    assert outcome.status == 0, outcome
    assert seen == [("web", 786432), ("db", 1572864), ("web", 600 * MIB), ("db", 1572864)]
    assert xs.dom(1, "memory/target") == str(664 * MIB)  # from the other client's value, not the stale one
    assert xs.dom(2, "memory/target") == str(1024 * MIB)


def test_a_conflict_at_commit_is_retried_and_planned_again_on_fresh_values(xs, monkeypatch, tmp_path):
    from xbctl.transports.xenstore.xl import XlWrites

    original = XlWrites._write_domains
    attempts = []

    def write_then_interfere(self, staged, txns, originals, pod_set):
        results = original(self, staged, txns, originals, pod_set)
        attempts.append([entry[2].target_kib for entry in staged])
        if len(attempts) == 1:  # another client, outside the transaction, before its commit: EAGAIN
            xs.write("/local/domain/1/memory/target", str(600 * MIB))
        return results

    monkeypatch.setattr(XlWrites, "_write_domains", write_then_interfere)
    outcome = xs("-f", settings(tmp_path, f"[web]\n{TARGET}=+64M\n[db]\n{TARGET}=1G\n"))
    assert outcome.status == 0, outcome
    # The commit conflicted; the retry found web moved, so the whole file was planned again.
    assert attempts == [[786432, 1572864], [600 * MIB, 1572864]]
    assert outcome.stdout.splitlines()[0] == f"web: {TARGET}: {600 * MIB} -> {664 * MIB}"
    assert xs.dom(1, "memory/target") == str(664 * MIB)
    assert xs.dom(2, "memory/target") == str(1024 * MIB)


def test_a_domain_destroyed_before_the_transaction_is_not_recreated(xs, monkeypatch, tmp_path):
    import xbctl.rules as policy

    original = policy.plan_writes

    def plan_and_destroy(balloon, requests, **rules):
        if rules["domain"].name == "db":
            xs.rm("/local/domain/1")
        return original(balloon, requests, **rules)

    monkeypatch.setattr(policy, "plan_writes", plan_and_destroy)
    path = settings(tmp_path, f"[web]\n{TARGET}=512M\n[db]\n{TARGET}=1G\n")
    outcome = xs("-f", path)
    assert_clean_failure(outcome, 4, "domain 1: no such domain (it is gone)")
    assert not xs.exists("/local/domain/1")
    assert xs.dom(2, "memory/target") == "1572864"


def test_endless_changes_give_up_and_write_nothing(xs, monkeypatch, tmp_path):
    import xbctl.rules as policy

    original = policy.plan_writes
    moves = iter(range(1, 100))

    def plan_and_interfere(balloon, requests, **rules):
        if rules["domain"].name == "db":
            xs.write("/local/domain/1/memory/target", str(600 * MIB + 4 * next(moves)))
        return original(balloon, requests, **rules)

    monkeypatch.setattr(policy, "plan_writes", plan_and_interfere)
    path = settings(tmp_path, f"[web]\n{TARGET}=512M\n[db]\n{TARGET}=1G\n")
    outcome = xs("-f", path)
    assert_clean_failure(outcome, 3, "EAGAIN", "gave up after 8 attempts")
    assert xs.dom(2, "memory/target") == "1572864"


# ---------------------------------------------------------------- as Domain-0 with the hypervisor


def test_a_refusal_in_any_domain_makes_no_hypercall_at_all(hv_host, tmp_path):
    before = hv_host.tree()
    path = settings(tmp_path, f"[web]\n{TARGET}=512M\n[db]\n{TARGET}=8G\n")
    assert_clean_failure(hv_host.process("-f", path), 1, f"{path}:4:", "above max")
    assert hv_host.hv.writes() == []
    assert hv_host.tree() == before


def test_several_domains_make_xls_hypercalls_domain_by_domain(hv_host, tmp_path):
    path = settings(tmp_path, f"[web]\n{TARGET}=512M\n[db]\n{TARGET}=1G\n")
    outcome = hv_host.process("-f", path)
    assert outcome.status == 0, outcome
    writes = hv_host.hv.writes()
    assert writes[0] == f"max_mem domid=1 max_memkb={512 * MIB + 1024}"
    assert writes[1].startswith("max_mem domid=2 ") and writes[2].startswith("set_pod_target domid=2 ")
    assert hv_host.read("/local/domain/1/memory/target") == str(512 * MIB)
    assert hv_host.read("/local/domain/2/memory/target") == str(1024 * MIB - 8 * MIB)  # less its videoram


def test_a_failed_hypercall_puts_back_every_maximum_and_writes_nothing(hv_host, tmp_path):
    web_max_kib = hv_host.hv.domain(1).max_kib
    hv_host.hv.fail("max_mem", "EPERM", domid=2)
    before = hv_host.tree()
    path = settings(tmp_path, f"[web]\n{TARGET}=512M\n[db]\n{TARGET}=1G\n")
    outcome = hv_host.process("-f", path)
    assert_clean_failure(
        outcome,
        1,
        "xc_domain_setmaxmem(2, ",
        "EPERM",
        "nothing was written",
        f"the hypervisor's maximum for web was put back to {web_max_kib} KiB",
    )
    assert hv_host.hv.domain(1).max_kib == web_max_kib
    assert hv_host.tree() == before


@pytest.fixture
def hv_thousand(xs_tools, tmp_path):
    """A host of LAYOUT's domains and 1,000 PV guests (ids 10-1009) in a xenstored of this
    test's own (untraced: the shared one traces every request) and in the hypervisor rig."""
    from xen_fixtures import GUEST_ID, OTHER_DOMAINS, HypervisorHost, preload_client_libs
    from xenharness import Xenstored
    from xenharness.hypervisor import FakeHypervisor

    preload_client_libs(xs_tools)
    daemon = Xenstored(xs_tools, tmp_path / "xenstored", trace=False, extra_domains=(*OTHER_DOMAINS, GUEST_ID))
    with daemon:
        host = HypervisorHost(daemon, FakeHypervisor(xs_tools, tmp_path / "hypervisor"))
        host.env["XBCTL_RUNTIME_DIR"] = str(tmp_path / "run")
        with Client(unix_socket_path=str(daemon.socket_path)) as client:
            lay_out_many_hypervisor_domains(client, host.hv, list(range(10, 1010)))
        yield host


def test_a_thousand_domains_as_domain_0_apply_all_or_nothing(hv_thousand, tmp_path):
    hv_host = hv_thousand
    domids = list(range(10, 1010))
    target_kib = {domid: many_domain(domid)[2] - 4 * MIB for domid in domids}
    path = settings(tmp_path, "".join(f"[guest{domid}]\n{TARGET}={target_kib[domid]}\n" for domid in domids))
    # The last domain's hypercall fails: every maximum raised before it is put back, and
    # nothing reaches Xenstore.
    hv_host.hv.fail("max_mem", "EPERM", domid=domids[-1])
    before_tree, before_table = hv_host.tree(), hv_host.hv.domains()
    failed = hv_host.process("-f", path)
    assert_clean_failure(
        failed,
        1,
        f"xc_domain_setmaxmem({domids[-1]}, ",
        "EPERM",
        "nothing was written",
        "the hypervisor's maximum of all 999 domains changed (guest1008, guest1007, guest1006, ...) "
        "was put back to what it was",
    )
    assert len(hv_host.hv.writes()) == 1000 + 999  # each raised, the last refused; 999 put back
    assert hv_host.hv.domains() == before_table
    assert hv_host.tree() == before_tree
    # Then as xl mem-set would, domain by domain, in one run.
    hv_host.hv.clear_log()
    applied = hv_host.process("-q", "-f", path)
    assert (applied.status, applied.stdout) == (0, ""), applied
    assert hv_host.hv.writes() == [
        f"max_mem domid={domid} max_memkb={target_kib[domid] + XL_MAXMEM_CONSTANT_KIB}" for domid in domids
    ]
    table = hv_host.hv.domains()
    for domid in (domids[0], domids[500], domids[-1]):
        assert hv_host.dom(domid, "memory/target") == str(target_kib[domid])
        assert hv_host.read(f"/vm/{domain_uuid(domid)}/memory") == str(target_kib[domid] // 1024)
        assert table[domid].max_kib == target_kib[domid] + XL_MAXMEM_CONSTANT_KIB
