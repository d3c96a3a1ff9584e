"""xbctl as Domain-0 with the hypervisor: Debian's real libxenctrl over the test rig's
libxencall (tests/xenharness/hypervisor.py), the session's real xenstored, through the CLI.

What the parity suite (test_xl_parity.py) does not cover: reads beside xl's figures, the
hypervisor's maximum and host free memory in list, --wait following the hypervisor,
hypercalls inside retried transactions, the rig's table after mem-max (without xl or its
private /var/lib), and a target below the video memory."""

from __future__ import annotations

import time

import pytest
from conftest import assert_clean_failure
from xen_fixtures import GIB, MIB

WEB = "/local/domain/1"


def test_current_is_the_hypervisors_figure(hv_host):
    hv_host.hv.set_domain(1, tot_pages=700 * MIB // 4, outstanding_pages=MIB // 4)
    document = hv_host.process("--json", "-d", "web", "current").json()
    assert document["nodes"]["current"] == {
        "name": "machdep.xen.balloon.current",
        "value_kib": 701 * MIB,
        "source": "hypervisor",
    }
    assert document["hypervisor"] == {
        "used": True,
        "library": document["hypervisor"]["library"],
        "release": "4.17",
        "reason": None,
    }
    plain = hv_host.process("-d", "web", "-n", "current")
    assert (plain.status, plain.stdout, plain.stderr) == (0, f"{701 * MIB}\n", "")


def test_list_shows_the_hypervisors_maximum_a_mismatch_and_host_free_memory(hv_host):
    hv_host.hv.set_host(free_pages=3 * GIB // 4, outstanding_pages=GIB // 4)
    hv_host.hv.set_domain(2, max_pages=(GIB + 1024) // 4)  # below db's target (1.5 GiB): someone else did it
    document = hv_host.process("--json", "list").json()
    assert document["host_free_kib"] == 2 * GIB  # (free - outstanding) * 4, as xl info
    domains = {d["id"]: d for d in document["domains"]}
    web_max = domains[1]["nodes"]["xen-max"]
    assert (web_max["value_kib"], web_max["hypervisor_kib"], web_max["mismatch"]) == (GIB, GIB + 1024, None)
    db_max = domains[2]["nodes"]["xen-max"]
    assert db_max["hypervisor_kib"] == GIB + 1024
    assert "is below target (1581056 KiB, video memory included)" in db_max["mismatch"]
    # In a pipe, fixed columns: hv-max beside xen-max, a mismatch marked by `!` (no blank: one field).
    table = hv_host.process("list")
    assert table.status == 0, table
    header, *rows = table.stdout.splitlines()
    assert header.split()[6:8] == ["xen-max", "hv-max"]
    assert [row.split()[:8] for row in rows][1:3] == [
        ["web", "1", "768", "768", "256", "1024", "1024", "1025"],
        ["db", "2", "1536", "1544", "512", "2056", "2048", "1025!"],
    ]
    assert hv_host.process("list", "-l", "-n", "db").stdout.split()[7] == f"{GIB + 1024}!"


def test_xbctls_own_refusals_make_no_hypercall_that_changes_anything(hv_host):
    before = hv_host.tree()
    assert_clean_failure(hv_host.process("mem-set", "web", "0"), 1, "below min 256 MiB (262144 KiB)")
    assert_clean_failure(hv_host.process("mem-set", "web", "2048"), 1, "above max")
    assert hv_host.hv.writes() == []
    assert hv_host.tree() == before


def test_a_failed_setmaxmem_writes_nothing_and_says_why(hv_host):
    hv_host.hv.fail("max_mem", "EPERM", domid=1)
    before = hv_host.tree()
    outcome = hv_host.process("mem-set", "web", "512")
    assert_clean_failure(outcome, 1, "xc_domain_setmaxmem(1, ", "EPERM", "nothing was written")
    assert "put back" not in outcome.stderr  # nothing was changed, so nothing to undo
    assert hv_host.tree() == before


def test_retried_transaction_repeats_the_hypercalls_with_fresh_values(hv_host, monkeypatch):
    """As xl does: on EAGAIN the whole change is recomputed, hypercalls included."""
    calls = interfere(monkeypatch, hv_host, f"{WEB}/memory/videoram", ["4096"])
    outcome = hv_host("mem-set", "web", "512")
    assert outcome.status == 0, outcome
    assert len(calls) == 2
    new_kib = 512 * MIB - 4096  # the second attempt saw the other client's videoram
    assert hv_host.read(f"{WEB}/memory/target") == str(new_kib)
    assert hv_host.hv.writes()[-1] == f"max_mem domid=1 max_memkb={new_kib + 4096 + 1024}"


def test_a_retry_that_refuses_puts_the_maximum_back(hv_host, monkeypatch):
    original_max_kib = hv_host.hv.domain(1).max_kib
    interfere(monkeypatch, hv_host, f"{WEB}/memory/static-max", [str(256 * MIB)])
    outcome = hv_host("mem-set", "web", "512")
    assert_clean_failure(outcome, 1, "above max 256 MiB (262144 KiB)", f"put back to {original_max_kib} KiB")
    assert hv_host.hv.domain(1).max_kib == original_max_kib
    assert hv_host.hv.writes()[-1] == f"max_mem domid=1 max_memkb={original_max_kib}"
    assert hv_host.read(f"{WEB}/memory/target") == str(768 * MIB)


def interfere(monkeypatch, host, path, values):
    """Another client writes PATH after xbctl's first hypercalls, before its commit."""
    import xbctl.transports.xenstore.transport as xenstore

    original = xenstore.XenstoreTransport._apply_to_hypervisor
    calls = []

    def apply_and_interfere(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls.append(args)
        if len(calls) <= len(values):
            host.write(path, values[len(calls) - 1])
        return result

    monkeypatch.setattr(xenstore.XenstoreTransport, "_apply_to_hypervisor", apply_and_interfere)
    return calls


# ---------------------------------------------------------------- --wait follows the hypervisor


def _wait(hv_host, *args, env=None):
    return hv_host.popen("--wait", "--timeout", "60", *args, env=env)


def test_wait_follows_the_hypervisor_down_to_the_target(hv_host):
    waiting = _wait(hv_host, "mem-set", "web", "512")
    try:
        hv_host.wait_for(lambda: hv_host.read(f"{WEB}/memory/target") == str(512 * MIB), "the new target")
        for mib in (700, 600, 512):  # a Linux guest ballooning down: nothing in Xenstore changes
            time.sleep(0.3)
            hv_host.hv.set_domain(1, tot_pages=mib * MIB // 4)
        stdout, stderr = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, stderr
    assert stdout == "machdep.xen.balloon.target: 786432 -> 524288\n"


def test_wait_ends_with_5_when_the_size_moves_away(hv_host):
    waiting = _wait(hv_host, "mem-set", "web", "512")
    try:
        hv_host.wait_for(lambda: hv_host.read(f"{WEB}/memory/target") == str(512 * MIB), "the new target")
        time.sleep(0.3)
        hv_host.hv.set_domain(1, tot_pages=800 * MIB // 4)
        stdout, stderr = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == 5, stderr
    assert f"moving away from the target: {768 * MIB} -> {800 * MIB} KiB" in stderr


def test_wait_ends_with_5_when_the_size_stops_moving(hv_host):
    waiting = _wait(hv_host, "mem-set", "web", "1000", env={"XBCTL_STALL_TIMEOUT": "1"})
    try:
        stdout, stderr = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == 5, stderr
    assert f"stopped moving: {768 * MIB} KiB for 1 s" in stderr
    assert "does not advertise a balloon driver" in stderr


def test_wait_follows_the_hypervisor_up_to_the_target(hv_host):
    waiting = _wait(hv_host, "mem-set", "web", "900")
    try:
        hv_host.wait_for(lambda: hv_host.read(f"{WEB}/memory/target") == str(900 * MIB), "the new target")
        for mib in (800, 850, 900):
            time.sleep(0.3)
            hv_host.hv.set_domain(1, tot_pages=mib * MIB // 4)
        stdout, stderr = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, stderr
    assert stdout == "machdep.xen.balloon.target: 786432 -> 921600\n"


def test_a_malformed_stall_timeout_is_refused_before_anything_is_written(hv_host):
    before = hv_host.tree()
    outcome = hv_host.process("--wait", "mem-set", "web", "512", env={"XBCTL_STALL_TIMEOUT": "soon"})
    assert_clean_failure(outcome, 2, "XBCTL_STALL_TIMEOUT")
    assert hv_host.tree() == before and hv_host.hv.writes() == []


def test_a_domain_the_hypervisor_does_not_hold_reads_from_xenstore_with_a_warning(hv_host):
    hv_host.hv.remove_domain(5)  # Xenstore keeps a stale entry for domain "7"
    read = hv_host.process("--json", "-d", "5", "-a")
    assert read.status == 0, read
    document = read.json()
    assert document["nodes"]["current"]["source"] == "target"
    assert "the hypervisor has no domain 5" in read.stderr
    before = hv_host.tree()
    assert_clean_failure(hv_host.process("mem-set", "5", "200"), 4, "the hypervisor has no domain 5")
    # a dry run answers the same (xbctl's own check, not a write)
    assert_clean_failure(hv_host.process("--dry-run", "mem-set", "5", "200"), 4, "the hypervisor has no domain 5")
    assert hv_host.tree() == before and hv_host.hv.writes() == []


# ---------------------------------------------------------------- mem-max and the video memory, as the hypervisor sees them


@pytest.mark.parametrize(
    ("domain", "domid", "size", "max_kib"),
    [("web", 1, "2048", 2 * GIB), ("db", 2, "3g", 3 * GIB), ("Domain-0", 0, "6g", 6 * GIB)],
)
def test_mem_max_sets_the_hypervisors_maximum_with_libxls_slack(hv_host, domain, domid, size, max_kib):
    others = {d: info.max_pages for d, info in hv_host.hv.domains().items() if d != domid}
    outcome = hv_host.process("mem-max", domain, size)
    assert outcome.status == 0, outcome
    # The rig's own table: max_pages is what xl mem-max leaves, S + LIBXL_MAXMEM_CONSTANT.
    assert hv_host.hv.domain(domid).max_pages == (max_kib + 1024) // 4
    assert hv_host.hv.writes() == [f"max_mem domid={domid} max_memkb={max_kib + 1024}"]
    assert {d: info.max_pages for d, info in hv_host.hv.domains().items() if d != domid} == others
    assert hv_host.dom(domid, "memory/static-max") == str(max_kib)
    # What xbctl reads back: the new maximum beside xen-max, no mismatch.
    document = hv_host.process("--json", "-d", domain, "xen-max").json()
    xen_max = document["nodes"]["xen-max"]
    assert (xen_max["value_kib"], xen_max["hypervisor_kib"], xen_max["mismatch"]) == (max_kib, max_kib + 1024, None)


def test_a_target_below_the_video_memory_is_refused_and_changes_nothing(hv_host):
    """db is HVM with 8 MiB of video memory: memory/target would go below 0. With the host's
    floor lowered to 0, no min rule refuses first; the video memory does."""
    hv_host.write("/local/domain/2/memory/dynamic-min", "0")
    assert hv_host.process("-d", "db", "-n", "min").stdout == "0\n"
    hv_host.hv.clear_log()
    before = hv_host.tree()
    for args, shown in (
        (("-d", "db", "target", "4M"), "4 MiB (4096 KiB) is below the domain's 8 MiB (8192 KiB) of video memory"),
        (("-d", "db", "target", "0"), "0 KiB is below the domain's 8192 KiB of video memory"),
        (("mem-set", "db", "4"), "4 MiB (4096 KiB) is below the domain's 8 MiB (8192 KiB) of video memory"),
        (("--dry-run", "mem-set", "db", "7"), "7 MiB (7168 KiB) is below the domain's 8 MiB"),
        (("-d", "db", "target", "-1540M"), "is below the domain's 8 MiB (8192 KiB) of video memory"),
    ):
        assert_clean_failure(hv_host.process(*args), 1, "machdep.xen.balloon.target: Operation not permitted", shown)
    assert hv_host.hv.log() == []  # refused before any hypercall, reads included
    assert hv_host.tree() == before
    assert hv_host.process("-d", "db", "-n", "target").stdout == f"{1544 * MIB}\n"
    # Exactly the video memory is a memory/target of 0, as xl mem-set writes it.
    done = hv_host.process("-d", "db", "target", "8M")
    assert (done.status, done.stdout) == (0, f"machdep.xen.balloon.target: {1544 * MIB} -> {8 * MIB}\n"), done
    assert hv_host.dom(2, "memory/target") == "0"
    assert hv_host.process("-d", "db", "-n", "target").stdout == f"{8 * MIB}\n"
