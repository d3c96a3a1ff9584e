"""The host's capacity at a glance (xbctl.capacity): under `list`'s table on a terminal and in
its --json document, from the simulator's model, the hypervisor rig (physinfo) and plain
xenstored (unknown); the warning for a target that grows a domain past the host's free
memory, and a --wait that stops short for that reason."""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import subprocess
import termios

from xen_fixtures import GIB, MIB

# The simulated host after `sim reset`: 2 GiB free, Domain-0 4 GiB, web 768 MiB, db 1.5 GiB,
# mail 512 MiB (current = target); xen-max 4 GiB, 1 GiB, 4 GiB, 512 MiB.
SIM_TOTAL_KIB = (2048 + 4096 + 768 + 1536 + 512) * MIB
SIM_TARGETS_KIB = (4096 + 768 + 1536 + 512) * MIB
SIM_MAXIMA_KIB = (4096 + 1024 + 4096 + 512) * MIB


def on_a_terminal(env: dict, *args: str) -> tuple[int, str, str]:
    """The installed xbctl ARGS with stdout on a terminal 120 columns wide: status, stdout, stderr."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        [shutil.which("xbctl"), *args],
        env={**env, "COLUMNS": "120"},
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    stderr = process.stderr.read()
    process.wait(timeout=60)
    return process.returncode, b"".join(chunks).decode().replace("\r\n", "\n"), stderr


def test_the_table_on_a_terminal_ends_with_the_hosts_capacity(xbctl):
    status, stdout, stderr = on_a_terminal(xbctl.process_env(), "list")
    assert (status, stderr) == (0, ""), stdout
    assert "│  3 │ mail " in stdout  # the table itself
    assert stdout.endswith(
        "host memory 8960 MiB, 2048 MiB free\n"
        "sum of targets 6912 MiB: 77.1% of the host, 2048 MiB to spare\n"
        "sum of maxima (xen-max) 9728 MiB: 108.6% of the host, overcommitted by 768 MiB\n"
    ), stdout


def test_the_capacity_under_h_is_in_human_sizes_as_the_table(xbctl):
    status, stdout, stderr = on_a_terminal(xbctl.process_env(), "-h", "list")
    assert (status, stderr) == (0, ""), stdout
    assert stdout.endswith(
        "host memory 8960M, 2G free\n"
        "sum of targets 6912M: 77.1% of the host, 2G to spare\n"
        "sum of maxima (xen-max) 9.5G: 108.6% of the host, overcommitted by 768M\n"
    ), stdout


def test_json_has_the_capacity_and_a_pipe_keeps_its_columns(xbctl):
    document = xbctl("--json", "list").json()
    assert document["capacity"] == {
        "total_kib": SIM_TOTAL_KIB,
        "free_kib": 2 * GIB,
        "targets": {"sum_kib": SIM_TARGETS_KIB, "overcommit_kib": -2 * GIB, "percent_of_total": 77.1},
        "maxima": {
            "sum_kib": SIM_MAXIMA_KIB,
            "overcommit_kib": SIM_MAXIMA_KIB - SIM_TOTAL_KIB,
            "percent_of_total": 108.6,
        },
        "domains_counted": 4,
        "domains_left_out": 0,
    }
    assert document["host_free_kib"] == 2 * GIB
    # Named domains are not the host: no sums of theirs to set against it.
    assert xbctl("--json", "list", "web").json()["capacity"] is None
    # Scripts parse the pipe's columns: a header and one line a domain, nothing else anywhere.
    piped = xbctl.process("list")
    assert piped.status == 0 and piped.stderr == "", piped
    assert len(piped.stdout.splitlines()) == 1 + 4
    assert "host memory" not in piped.stdout and "sum of" not in piped.stdout


def test_the_python_api_lists_the_capacity(xbctl):
    from xbctl.api import Xbctl

    with Xbctl("sim", str(xbctl.state_path)) as xb:
        listing = xb.list()
    assert (listing.capacity.total_kib, listing.capacity.free_kib) == (SIM_TOTAL_KIB, 2 * GIB)
    assert listing.to_dict()["capacity"]["maxima"]["sum_kib"] == SIM_MAXIMA_KIB


def test_the_simulated_hosts_total_holds_as_balloons_move(xbctl):
    xbctl("sim", "reset", "--clock", "manual", "--host-free", "100M")
    assert xbctl("-q", "mem-set", "web", "512").status == 0
    xbctl("sim", "advance", "60")
    capacity = xbctl("--json", "list").json()["capacity"]
    assert capacity["free_kib"] == 356 * MIB  # web gave back 256 MiB
    assert capacity["total_kib"] == SIM_TOTAL_KIB - 1948 * MIB  # what it was: only the free pool differs


def test_a_target_beyond_the_hosts_free_memory_warns_with_the_numbers(xbctl):
    xbctl("sim", "reset", "--clock", "manual", "--host-free", "100M")
    warning = (
        f"xbctl: warning: domain db would grow by {512 * MIB} KiB (current {1536 * MIB} KiB, target "
        f"{2048 * MIB} KiB), more than the host has free ({100 * MIB} KiB): it will not reach its target "
        "unless memory is freed elsewhere\n"
    )
    planned = xbctl("--dry-run", "mem-set", "db", "2048")
    assert (planned.status, planned.stderr) == (0, warning + "xbctl: dry run: nothing was written\n"), planned
    written = xbctl("mem-set", "db", "2048")
    assert (written.status, written.stdout, written.stderr) == (
        0,
        f"machdep.xen.balloon.target: {1536 * MIB} -> {2048 * MIB}\n",
        warning,
    )
    assert xbctl.value("target", "db") == 2048 * MIB
    # Within the free memory, or shrinking: nothing to say.
    assert xbctl("mem-set", "web", "868").stderr == ""
    assert xbctl("mem-set", "Domain-0", "3G").stderr == ""


def test_domains_growing_in_one_change_share_the_free_memory(xbctl, tmp_path):
    xbctl("sim", "reset", "--clock", "manual", "--host-free", "300M")
    settings = tmp_path / "grow.conf"
    settings.write_text("[web]\ntarget = 968M\n[db]\ntarget = 1736M\n")  # 200 MiB each: 400 of 300
    outcome = xbctl("-f", str(settings))
    assert outcome.status == 0, outcome
    assert "domain web" not in outcome.stderr
    assert (
        f"xbctl: warning: domain db would grow by {200 * MIB} KiB (current {1536 * MIB} KiB, target "
        f"{1736 * MIB} KiB), more than the host has free ({100 * MIB} KiB)"
    ) in outcome.stderr


def test_a_wait_that_stops_short_of_host_memory_says_so(xbctl):
    xbctl("sim", "reset", "--rate", "5000", "--host-free", "4M")
    outcome = xbctl("--wait", "--timeout", "60", "mem-set", "db", "1600")
    assert outcome.status == 5, outcome
    assert (
        "increase reservation incomplete: was 512, returned 0; the host has 0 KiB free, "
        f"short of the {60 * MIB} KiB the domain still needs\n"
    ) in outcome.stderr


# ---------------------------------------------------------------- Xenstore, with and without the hypervisor


def test_over_xenstore_alone_the_host_figures_are_unknown(xs):
    document = xs.process("--json", "list").json()
    capacity = document["capacity"]
    domains = document["domains"]
    assert capacity == {
        "total_kib": None,
        "free_kib": None,
        "targets": {
            "sum_kib": sum(d["nodes"]["target"]["value_kib"] for d in domains),
            "overcommit_kib": None,
            "percent_of_total": None,
        },
        "maxima": {
            "sum_kib": sum(d["nodes"]["xen-max"]["value_kib"] for d in domains),
            "overcommit_kib": None,
            "percent_of_total": None,
        },
        "domains_counted": len(domains),
        "domains_left_out": 0,
    }
    status, stdout, stderr = on_a_terminal(xs.process_env(), "list")
    assert status == 0 and "answering from Xenstore alone" in stderr, (stdout, stderr)
    assert "host memory unknown: only the hypervisor reports it (Domain-0 with libxenctrl)\n" in stdout
    assert f"sum of targets {capacity['targets']['sum_kib'] // MIB} MiB\n" in stdout
    # Nothing to warn about with the free memory unknown.
    grown = xs("mem-set", "db", "2048")
    assert grown.status == 0 and "warning" not in grown.stderr, grown


def test_with_the_hypervisor_the_figures_are_physinfos(hv_host):
    hv_host.hv.set_host(total_pages=8 * GIB // 4, free_pages=GIB // 4 + 64 * MIB // 4, outstanding_pages=64 * MIB // 4)
    document = hv_host.process("--json", "list").json()
    capacity = document["capacity"]
    targets_kib = sum(d["nodes"]["target"]["value_kib"] for d in document["domains"])
    assert (capacity["total_kib"], capacity["free_kib"]) == (8 * GIB, GIB)  # as xl info: free less outstanding
    assert capacity["targets"]["overcommit_kib"] == targets_kib - 8 * GIB
    assert capacity["targets"]["percent_of_total"] == round(100 * targets_kib / (8 * GIB), 1)


def test_with_the_hypervisor_growth_past_its_free_memory_warns_and_a_stalled_wait_says_why(hv_host):
    hv_host.hv.set_host(free_pages=100 * MIB // 4, outstanding_pages=0)
    outcome = hv_host.process("--wait", "--timeout", "60", "mem-set", "web", "1000", env={"XBCTL_STALL_TIMEOUT": "1"})
    assert outcome.status == 5, outcome
    assert (
        f"xbctl: warning: domain web would grow by {232 * MIB} KiB (current {768 * MIB} KiB, target "
        f"{1000 * MIB} KiB), more than the host has free ({100 * MIB} KiB)"
    ) in outcome.stderr
    assert (
        f"stopped moving: {768 * MIB} KiB for 1 s (the hypervisor's figure); the domain does not advertise "
        f"a balloon driver: it may have none; the host has {100 * MIB} KiB free, short of the "
        f"{232 * MIB} KiB the domain still needs"
    ) in outcome.stderr
