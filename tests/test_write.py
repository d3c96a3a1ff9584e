"""Writing nodes: every form, page rounding, relative changes, dry runs, and every refusal."""

import pytest
from conftest import assert_clean_failure

MIB = 1024


def test_subcommand_write_prints_old_and_new(xbctl):
    outcome = xbctl("-d", "web", "target", "524288")
    assert outcome.status == 0, outcome
    assert outcome.stdout == "machdep.xen.balloon.target: 786432 -> 524288\n"
    assert outcome.stderr == ""
    assert xbctl.value("target", "web") == 524288


def test_sysctl_form_with_and_without_w(xbctl):
    assert xbctl("-d", "web", "-w", "machdep.xen.balloon.target=600M").stdout == (
        "machdep.xen.balloon.target: 786432 -> 614400\n"
    )
    assert xbctl("-d", "web", "machdep.xen.balloon.target=512M").stdout == (
        "machdep.xen.balloon.target: 614400 -> 524288\n"
    )
    assert xbctl("-d", "web", "-n", "target=0x90000").stdout == "524288 -> 589824\n"


def test_quiet_write_prints_nothing_but_writes(xbctl):
    outcome = xbctl("-q", "-d", "web", "-w", "machdep.xen.balloon.min=256M")
    assert (outcome.status, outcome.stdout, outcome.stderr) == (0, "", "")
    assert xbctl.value("min", "web") == 256 * MIB


@pytest.mark.parametrize(
    "value, expected",
    [("1048577", 1048580), ("1048580", 1048580), ("0x100001", 1048580), ("1048577KiB", 1048580), ("1.5G", 1572864)],
)
def test_values_are_rounded_up_to_a_page_and_shown_rounded(xbctl, value, expected):
    outcome = xbctl("-n", "-d", "db", "target", value)
    assert outcome.stdout == f"1572864 -> {expected}\n"
    assert xbctl.value("target", "db") == expected


def test_relative_target_changes(xbctl):
    assert xbctl("-n", "-d", "web", "target", "+256M").stdout == "786432 -> 1048576\n"
    assert xbctl("-n", "-d", "web", "target", "-256M").stdout == "1048576 -> 786432\n"
    assert xbctl("-n", "-d", "web", "target", "-4").stdout == "786432 -> 786428\n"
    assert xbctl("-n", "-d", "web", "-w", "target=+4").stdout == "786428 -> 786432\n"
    assert xbctl("-n", "mem-set", "web", "-128").stdout == "786432 -> 655360\n"  # MiB, as xl


def test_mem_set_and_mem_max_take_mib(xbctl):
    assert xbctl("mem-set", "web", "512").stdout == "machdep.xen.balloon.target: 786432 -> 524288\n"
    assert xbctl("mem-max", "db", "3072").stdout == "machdep.xen.balloon.xen-max: 4194304 -> 3145728\n"
    assert xbctl("mem-set", "1", "600m").stdout == "machdep.xen.balloon.target: 524288 -> 614400\n"
    assert xbctl("mem-set", "web", "614400k", "--dry-run").status == 0


def test_mem_set_domain_conflicting_with_d_is_usage_error(xbctl):
    before = xbctl.snapshot()
    assert_clean_failure(xbctl("-d", "db", "mem-set", "web", "512"), 2, "conflicts")
    assert xbctl.snapshot() == before


def test_dry_run_writes_nothing(xbctl):
    before = xbctl.snapshot()
    outcome = xbctl("--dry-run", "-d", "web", "target", "512M")
    assert outcome.stdout == "machdep.xen.balloon.target: 786432 -> 524288\n"
    assert "dry run" in outcome.stderr
    assert xbctl.snapshot() == before


def test_write_json(xbctl):
    document = xbctl("--json", "-d", "web", "target", "512M").json()
    assert document["kind"] == "write"
    assert document["changes"] == [
        {"node": "target", "name": "machdep.xen.balloon.target", "old_kib": 786432, "new_kib": 524288}
    ]
    assert document["dry_run"] is False and document["wait"] is None


def test_target_for_domain_without_driver_warns(xbctl):
    outcome = xbctl("-d", "mail", "target", "400M")
    assert outcome.status == 0
    assert outcome.stderr == (
        "xbctl: warning: domain mail says it has no balloon driver (control/feature-balloon = 0): "
        "nothing in it will act on target\n"
    )
    assert xbctl.value("target", "mail") == 400 * MIB


def test_several_assignments_are_one_change(xbctl):
    outcome = xbctl("-d", "db", "machdep.xen.balloon.target=3G", "machdep.xen.balloon.min=1G")
    assert outcome.status == 0, outcome
    assert xbctl.value("target", "db") == 3 * 1024 * MIB
    assert xbctl.value("min", "db") == 1024 * MIB


# Every refusal of SPEC section 1: exit 1, the rule and the numbers on stderr, nothing changed.
REFUSALS = [
    (["-d", "web", "current", "512M"], "machdep.xen.balloon.current: Operation not permitted: read-only node"),
    (["-d", "web", "max", "512M"], "machdep.xen.balloon.max: Operation not permitted: read-only node"),
    (["-d", "web", "-w", "machdep.xen.balloon.current=1"], "read-only node"),
    (["-d", "web", "target", "65536"], "65536 KiB is below min 131072 KiB"),
    (["-d", "web", "target", "1025M"], "1025 MiB (1049600 KiB) is above max 1024 MiB (1048576 KiB): xen-max 1024 MiB"),
    (["-d", "web", "target", "+1G"], "1.75 GiB (1835008 KiB) is above max 1 GiB (1048576 KiB)"),
    (["-d", "web", "target", "-700M"], "68 MiB (69632 KiB) is below min 128 MiB (131072 KiB)"),
    (["mem-set", "web", "2048"], "2048 MiB (2097152 KiB) is above max 1024 MiB (1048576 KiB)"),
    (["-d", "web", "min", "4"], "4 KiB is below the driver's safeguard floor 5120 KiB"),
    (["-d", "web", "min", "2G"], "2 GiB (2097152 KiB) is above max 1 GiB (1048576 KiB)"),
    (["-d", "web", "min", "800M"], "800 MiB (819200 KiB) is above target 768 MiB (786432 KiB)"),
    (["-d", "web", "xen-max", "512M"], "512 MiB (524288 KiB) is below target 768 MiB (786432 KiB)"),
    (["mem-max", "web", "700"], "700 MiB (716800 KiB) is below target 768 MiB (786432 KiB)"),
    (["-d", "web", "target", "1000b"], "1000b is not a whole number of KiB"),
    (["-d", "web", "target", "1.5k"], "1.5k is not a whole number of KiB"),
    (["mem-set", "web", "0.0001G"], "0.0001G is not a whole number of KiB"),
    (
        ["-d", "web", "machdep.xen.balloon.target=600M", "machdep.xen.balloon.min=700M"],
        "700 MiB (716800 KiB) is above target 600 MiB (614400 KiB)",
    ),
]


@pytest.mark.parametrize("args, message", REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_refusals_exit_1_and_change_nothing(xbctl, args, message):
    before = xbctl.snapshot()
    outcome = xbctl(*args)
    assert_clean_failure(outcome, 1, "Operation not permitted", message)
    assert xbctl.snapshot() == before


def test_refusal_json_carries_errno_and_status(xbctl):
    outcome = xbctl("--json", "-d", "web", "target", "64M")
    assert outcome.status == 1
    error = outcome.json()["error"]
    assert error["errno"] == "EPERM" and error["exit_status"] == 1
    assert "below min" in error["message"]


def test_xen_max_from_a_guest_is_refused(xbctl):
    assert xbctl("sim", "reset", "--clock", "manual", "--position", "web").status == 0
    before = xbctl.snapshot()
    assert_clean_failure(xbctl("xen-max", "1G"), 1, "xen-max: Operation not permitted: only the host administrator")
    assert xbctl.snapshot() == before
    # as over Xenstore, memory/target is the toolstack's: a guest reads it, cannot write it
    assert_clean_failure(xbctl("target", "512M"), 1, "Permission denied: inside a guest, target")
    assert_clean_failure(xbctl("min", "4G"), 1, "above max")
    assert xbctl.snapshot() == before
    # --dry-run answers what the write would do: the same refusal, nothing written
    assert_clean_failure(xbctl("--dry-run", "-n", "target", "512M"), 1, "Permission denied: inside a guest, target")
    assert xbctl.snapshot() == before
    assert_clean_failure(xbctl("-d", "2", "target"), 1, "domain 2: Permission denied")
    assert_clean_failure(xbctl("-d", "db", "target"), 4, "unknown domain")  # a guest cannot look names up
    assert xbctl("-n", "-d", "web", "target").stdout == "786432\n"
    assert "db" not in xbctl("list").stdout
