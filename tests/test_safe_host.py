"""Safe on a production Domain-0: what a value read means when it is written back, what the
hypervisor's "no limit" reads as, what an unknown driver is, refusals a person can act on, and a
guest's own min. Through the installed xbctl, on Debian's xenstored and the hypervisor rig.
"""

from __future__ import annotations

import json

import pytest
from conftest import assert_clean_failure
from xen_fixtures import GIB, GUEST_ID, MIB

NODES = ("target", "min", "xen-max")
UNLIMITED_PAGES = 2**32 - 1


# ---------------------------------------------------------------- a value read writes back unchanged


@pytest.mark.parametrize("domain", ["Domain-0", "web", "db"], ids=["domain-0", "pv", "hvm-with-videoram"])
@pytest.mark.parametrize("node", NODES)
def test_a_value_read_writes_back_unchanged(hv_host, domain, node):
    """`xbctl -d D NODE $(xbctl -d D -n NODE)`: no Xenstore write, no hypercall, says unchanged."""
    read = hv_host.process("-d", domain, "-n", node)
    assert read.status == 0, read
    value = read.stdout.strip()
    before = hv_host.tree()
    hv_host.hv.clear_log()
    written = hv_host.process("-d", domain, node, value)
    assert written.status == 0, written
    assert written.stdout == f"machdep.xen.balloon.{node}: {value} -> {value} (unchanged)\n"
    assert hv_host.hv.writes() == []
    assert hv_host.tree() == before
    # mem-set and mem-max take MiB: the same value read, written the xl way, changes nothing either
    if node in ("target", "xen-max") and int(value) % 1024 == 0:
        command = "mem-set" if node == "target" else "mem-max"
        again = hv_host.process("-n", command, domain, str(int(value) // 1024))
        assert (again.status, again.stdout) == (0, f"{value} -> {value}\n"), again
        assert hv_host.hv.writes() == [] and hv_host.tree() == before


def test_target_counts_the_video_memory_everywhere(hv_host):
    """db is HVM with 8 MiB of video memory: target is what xl mem-set takes (memory/target + videoram)."""
    raw_kib = int(hv_host.read("/local/domain/2/memory/target"))
    videoram_kib = int(hv_host.read("/local/domain/2/memory/videoram"))
    assert videoram_kib == 8 * MIB
    target_kib = raw_kib + videoram_kib
    assert hv_host.process("-d", "db", "-n", "target").stdout == f"{target_kib}\n"
    exported = hv_host.process("-d", "db", "-e", "target").stdout
    assert exported == f"[db]\nmachdep.xen.balloon.target={target_kib}\n"  # -e prints what -n prints
    document = hv_host.process("--json", "-d", "db", "target").json()
    assert document["nodes"]["target"] == {
        "name": "machdep.xen.balloon.target",
        "value_kib": target_kib,
        "memory_target_kib": raw_kib,
        "videoram_kib": videoram_kib,
    }
    listed = {d["name"]: d for d in hv_host.process("--json", "list").json()["domains"]}
    assert listed["db"]["nodes"]["target"]["value_kib"] == target_kib
    pipe = hv_host.process("list", "db").stdout.splitlines()[1].split()
    assert pipe[3] == str(target_kib // 1024)
    # a write in those terms: memory/target gets the target less the video memory, as xl mem-set
    assert hv_host.process("-q", "-d", "db", "target", "1G").status == 0
    assert hv_host.read("/local/domain/2/memory/target") == str(GIB - videoram_kib)
    assert hv_host.process("-d", "db", "-n", "target").stdout == f"{GIB}\n"
    # relative changes move the same figure
    assert hv_host.process("-n", "-d", "db", "target", "+64M").stdout == f"{GIB} -> {GIB + 64 * MIB}\n"


def test_the_whole_host_exported_applies_back_as_a_no_op(hv_host, tmp_path):
    exported = hv_host.process("-A", "-e")
    assert exported.status == 0, exported
    assert f"[db]\nmachdep.xen.balloon.target={1536 * MIB + 8 * MIB}\n" in exported.stdout
    path = tmp_path / "host.conf"
    path.write_text(exported.stdout)
    before = hv_host.tree()
    hv_host.hv.clear_log()
    applied = hv_host.process("-f", str(path))
    assert applied.status == 0, applied
    assert "nothing changed" in applied.stderr
    assert hv_host.hv.writes() == [] and hv_host.tree() == before


# ---------------------------------------------------------------- no false alarms


def test_an_unlimited_hypervisor_maximum_reads_as_unlimited(hv_host):
    """Domain-0 booted without max: in dom0_mem: max_pages 2^32-1, Xen's no limit."""
    hv_host.hv.set_domain(0, max_pages=UNLIMITED_PAGES)
    document = hv_host.process("--json", "list").json()
    dom0 = document["domains"][0]["nodes"]["xen-max"]
    assert dom0["hypervisor_unlimited"] is True and dom0["mismatch"] is None
    assert dom0["hypervisor_kib"] == UNLIMITED_PAGES * 4
    web = document["domains"][1]["nodes"]["xen-max"]
    assert web["hypervisor_unlimited"] is False
    header, *rows = hv_host.process("list").stdout.splitlines()
    columns = header.split()
    assert columns[7] == "hv-max"
    assert rows[0].split()[:8] == ["Domain-0", "0", "4096", "4096", "128", "4096", "4096", "unlimited"]
    # the column fits it: every hv-max value ends where its header does
    end = header.index("hv-max") + len("hv-max")
    assert all(row[end - 1] != " " and row[end] == " " for row in rows), rows
    assert "!" not in hv_host.process("list").stdout
    table = hv_host.process("list", env={"COLUMNS": "200"})
    assert "16777216" not in table.stdout


def test_list_in_a_pipe_prints_whole_mib_as_xl_list(hv_host):
    """A reservation that is no whole MiB (789.1 MiB) prints as xl list prints it: 789."""
    hv_host.hv.set_domain(1, tot_pages=(789 * MIB + 100) // 4)
    rows = hv_host.process("list").stdout.splitlines()[1:]
    web = rows[1].split()
    assert web[:3] == ["web", "1", "789"]
    assert all(field.isdigit() for row in rows for field in row.split()[1:7]), rows
    xl_mem = next(line.split()[2] for line in hv_host.xl("list").stdout.splitlines() if line.startswith("web "))
    assert web[2] == xl_mem


# ---------------------------------------------------------------- the driver nobody advertises


def test_a_linux_guests_driver_is_unknown_everywhere(hv_host):
    """web publishes nothing and no control/feature-balloon, as every Linux guest."""
    document = hv_host.process("--json", "list").json()
    web = next(d for d in document["domains"] if d["name"] == "web")
    assert web["has_driver"] is None and web["driver"] == "unknown"
    long = hv_host.process("list", "--long", "web").stdout.splitlines()[1].split()
    assert long[8:10] == ["unknown", "unknown"]
    metrics = hv_host.process("list", "--format", "prometheus")
    assert metrics.status == 0, metrics
    assert 'xen_balloon_driver_state{domain="web",xen_balloon_driver_state="unknown"} 1.0' in metrics.stdout
    assert 'xen_balloon_driver_state{domain="web",xen_balloon_driver_state="no_driver"} 0.0' in metrics.stdout
    # the Python API says the same
    api = hv_host.process_env()
    script = (
        "import json; from xbctl.api import Xbctl\n"
        "with Xbctl() as xb: print(json.dumps({e.domain.name: e.has_driver for e in xb.list().domains}))"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], env=api, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["web"] is None
    # writing to it is the normal case: no warning
    written = hv_host.process("mem-set", "web", "700")
    assert written.status == 0 and "warning" not in written.stderr, written
    # a domain that says it has none still warns
    hv_host.write("/local/domain/1/control/feature-balloon", "0")
    warned = hv_host.process("mem-set", "web", "690")
    assert "warning: domain web says it has no balloon driver" in warned.stderr, warned
    assert (
        next(d for d in hv_host.process("--json", "list").json()["domains"] if d["name"] == "web")["has_driver"]
        is False
    )


# ---------------------------------------------------------------- errors a person can act on


def test_refusals_speak_the_unit_typed_and_name_the_way_past(hv_host):
    before = hv_host.tree()
    above = hv_host.process("mem-set", "web", "2g")
    assert_clean_failure(
        above,
        1,
        "2 GiB (2097152 KiB) is above max 1 GiB (1048576 KiB): xen-max 1 GiB (1048576 KiB)",
        "raise xen-max first (xbctl mem-max DOMAIN SIZE)",
    )
    # db's ceiling counts its video memory, as xl mem-set compares memory/target with static-max
    hvm = hv_host.process("mem-set", "db", "2057")
    assert_clean_failure(
        hvm, 1, "above max 2056 MiB (2105344 KiB): xen-max 2048 MiB (2097152 KiB) plus its 8192 KiB of video memory"
    )
    low_max = hv_host.process("mem-max", "db", "1000")
    assert_clean_failure(
        low_max,
        1,
        "1000 MiB (1024000 KiB) is below target 1544 MiB (1581056 KiB) less its 8192 KiB of video memory (1536 MiB (1572864 KiB))",
    )
    assert hv_host.hv.writes() == [] and hv_host.tree() == before


def test_growing_past_the_guests_boot_size_says_why(hv_host):
    """A NetBSD-style guest publishes data/balloon/max, its boot size: the driver cannot hot-plug above it."""
    hv_host.write("/local/domain/1/data/balloon/max", str(900 * MIB))
    before = hv_host.tree()
    refused = hv_host.process("-d", "web", "target", "950M")
    assert_clean_failure(
        refused,
        1,
        "950 MiB (972800 KiB) is above max 900 MiB (921600 KiB)",
        "boot-time size",
        "after it boots with more",
    )
    assert hv_host.hv.writes() == [] and hv_host.tree() == before


@pytest.mark.parametrize("node, value", [("min", "4096"), ("target", "512"), ("xen-max", "60000")])
def test_a_small_bare_number_in_a_node_command_is_kib_but_warns(xs, node, value):
    outcome = xs("--dry-run", "-d", "web", node, value)
    assert (
        f"xbctl: warning: machdep.xen.balloon.{node}: {value} is {value} KiB, as the driver counts; "
        f"write {value}M for {value} MiB" in outcome.stderr
    ), outcome


@pytest.mark.parametrize(
    "args",
    [
        ("-d", "web", "min", "65536"),
        ("-d", "web", "min", "64M"),
        ("mem-set", "web", "512"),
        ("-d", "web", "target", "-4"),
    ],
)
def test_no_unit_warning_where_none_is_due(xs, args):
    outcome = xs("--dry-run", *args)
    assert "M for" not in outcome.stderr, outcome


# ---------------------------------------------------------------- a domain's administrator sets its own min


def _own_floor_kib() -> int:
    with open("/proc/sys/vm/min_free_kbytes") as reserve:
        reserve_kib = int(reserve.read())
    return -(-reserve_kib // 4) * 4 + 256 * 4


def test_a_guests_root_publishes_its_own_min(xs):
    """Inside mail (its xenbus device), root's `xbctl min SIZE` writes data/balloon/min, the floor
    the host already reads as the guest's; target and xen-max stay the toolstack's."""
    base = f"/local/domain/{GUEST_ID}"
    assert not xs.exists(f"{base}/data/balloon/min")
    before_host = xs.read(f"{base}/memory/target"), xs.exists(f"{base}/memory/dynamic-min")
    set_min = xs.guest("-n", "min", "300M")
    assert set_min.status == 0, set_min
    assert xs.read(f"{base}/data/balloon/min") == str(300 * MIB)
    assert (xs.read(f"{base}/memory/target"), xs.exists(f"{base}/memory/dynamic-min")) == before_host
    # the host reads it as the guest's floor and refuses a target below it
    assert xs("-d", "mail", "-n", "min").stdout == f"{300 * MIB}\n"
    assert_clean_failure(xs("-d", "mail", "target", "256M"), 1, "below min", "the guest's data/balloon/min")
    # the driver's rules: not above the target, not below the kernel's reserve + 256 pages
    listing = xs.listing()
    assert_clean_failure(xs.guest("min", "600M"), 1, "above max")
    assert_clean_failure(xs.guest("min", "1K"), 1, f"below the driver's safeguard floor {_own_floor_kib()} KiB")
    # target and xen-max stay the toolstack's
    assert_clean_failure(xs.guest("target", "400M"), 1, "Permission denied (EACCES)")
    assert_clean_failure(xs.guest("xen-max", "1G"), 1, "only the host administrator sets xen-max")
    assert xs.listing() == listing
    # its root may lower its floor again
    assert xs.guest("-n", "min", str(_own_floor_kib())).status == 0
    assert xs.read(f"{base}/data/balloon/min") == str(_own_floor_kib())


def test_a_simulated_guests_root_sets_its_min(xbctl):
    assert xbctl("sim", "reset", "--clock", "manual", "--position", "web").status == 0
    assert xbctl("-n", "min", "256M").stdout == f"{128 * MIB} -> {256 * MIB}\n"
    assert xbctl.value("min", "web") == 256 * MIB
    before = xbctl.snapshot()
    assert_clean_failure(xbctl("target", "512M"), 1, "Permission denied")
    assert xbctl.snapshot() == before
