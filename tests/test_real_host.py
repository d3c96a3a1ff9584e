"""xbctl on a real Xen host: Xen 4.17 under QEMU, a Linux Domain-0, a Linux PV guest.

One boot per session (tests/realhost_fixtures.py, started in the background when the session
begins) runs tests/realhost/dom0_checks.py in Domain-0, which drives the installed xbctl,
Debian's xl and xenstore clients and a guest whose own balloon driver reports its figures;
each test here asserts on what that boot recorded. The witnesses are the host's own: `xl
list`, Xenstore read by the C clients, Xen's own domain dump (`xl debug-keys q`, `xl
dmesg`: nr_pages and max_pages of every domain) and the guest's own report of its driver
(/sys/devices/system/xen_memory/xen_memory0). Every figure is compared exactly.

The last test runs the same xl sequence on the fast rig (Debian's libxenctrl over the
replacement libxencall, tests/xenharness/hypervisor.py) and fails on any difference.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from conftest import Outcome
from xen_fixtures import domain_uuid
from xenharness.hypervisor import Domain

pytestmark = pytest.mark.realhost

MIB = 1024
PAGE_KIB = 4
XL_MAXMEM_SLACK_KIB = 1024  # libxl's LIBXL_MAXMEM_CONSTANT: Xen's maximum is the target + 1 MiB
GUEST = "guest"
GUEST_BOOT_MAX_PAGES = (256 * MIB + XL_MAXMEM_SLACK_KIB) // PAGE_KIB  # xl create memory=256
POLICY = {"xen-max": 448 * MIB, "target": 224 * MIB, "min": 160 * MIB}  # dom0_checks.POLICY_SETTINGS_MIB


def outcome(command: dict) -> Outcome:
    """A command Domain-0 ran, as the tests' Outcome (status, stdout, stderr)."""
    return Outcome(command["status"], command["stdout"], command["stderr"])


def xl_mem_mib(listing: dict) -> dict[int, int]:
    """Domain id -> `xl list` Mem (MiB)."""
    return {int(domid): entry["mem_mib"] for domid, entry in listing["domains"].items()}


def dump_kib(dump: dict) -> dict[int, int]:
    """Domain id -> the pages Xen's dump says it holds, in KiB."""
    return {int(domid): entry["nr_pages"] * PAGE_KIB for domid, entry in dump.items()}


def held(listing_domains: dict) -> dict[str, tuple[str, int]]:
    """`xl list` rows (as a snapshot holds them) without what changes by itself (state, CPU time)."""
    return {domid: (entry["name"], entry["mem_mib"]) for domid, entry in listing_domains.items()}


def stable_figures(step: dict) -> tuple[dict[int, int], dict[int, int]]:
    """`xl list` Mem and the dump's KiB per domain, the same before and after the step's commands."""
    assert xl_mem_mib(step["xl_before"]) == xl_mem_mib(step["xl_after"]), "memory moved during the step"
    assert step["dump_before"] == step["dump_after"], "memory moved during the step"
    return xl_mem_mib(step["xl_before"]), dump_kib(step["dump_before"])


def pipe_rows(text: str) -> dict[int, dict[str, str]]:
    """`xbctl list` in a pipe (a header line, then fixed columns), by domain id: the name may
    hold blanks, the figures are numbers or "-", the balloon state may be two words."""
    lines = text.splitlines()
    header = lines[0].split()
    figures = header[1:-1]  # between Name and balloon
    rows = {}
    for line in lines[1:]:
        fields = line.split()
        for start in range(1, len(fields) - len(figures) + 1):
            if all(re.fullmatch(r"\d+|-", f) for f in fields[start : start + len(figures)]):
                break
        else:
            raise AssertionError(f"not a list row: {line!r}")
        row = {
            "Name": " ".join(fields[:start]),
            **dict(zip(figures, fields[start : start + len(figures)])),
            header[-1]: " ".join(fields[start + len(figures) :]),
        }
        rows[int(row["ID"])] = row
    return rows


def metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text exposition: (name, labels) -> value."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        assert found, line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found.group(2) or ""))
        samples[(found.group(1), labels)] = float(found.group(3))
    return samples


# ---------------------------------------------------------------- the boot itself


def test_real_host_booted_and_ran_every_step(real_host):
    run = real_host.run
    assert run.boot is not None and run.boot.ok, real_host.failure("the real host did not run its job to the end")
    results = real_host.results
    assert results.get("finished"), real_host.failure("the program in Domain-0 did not finish")
    assert results["errors"] == {}, real_host.failure(json.dumps(results["errors"], indent=1))
    assert results["facts"]["xl_info"].count("xen_version            : 4.17") == 1


# ---------------------------------------------------------------- reading


def test_current_equals_xl_list_and_xen_dump(real_host):
    step = real_host.step("list")
    mem_mib, held_kib = stable_figures(step)
    guest = real_host.results["guest_domid"]
    for domid, command in ((0, step["current_dom0"]), (guest, step["current_guest"])):
        done = outcome(command)
        assert done.status == 0 and done.stderr == "", done
        name, value = done.stdout.rstrip("\n").split(" = ")
        assert name == "machdep.xen.balloon.current"
        assert int(value) == held_kib[domid]
        assert int(value) // MIB == mem_mib[domid]


def test_list_in_a_pipe_equals_xl_list(real_host):
    step = real_host.step("list")
    mem_mib, held_kib = stable_figures(step)
    done = outcome(step["list_pipe"])
    assert done.status == 0 and done.stderr == "", done
    rows = pipe_rows(done.stdout)
    assert set(rows) == set(mem_mib)
    names = {int(domid): entry["name"] for domid, entry in step["xl_before"]["domains"].items()}
    for domid, row in rows.items():
        assert row["Name"] == names[domid]
        assert int(row["current"]) == mem_mib[domid] == held_kib[domid] // MIB, (domid, row)


def test_list_json_equals_xl_list(real_host):
    step = real_host.step("list")
    mem_mib, held_kib = stable_figures(step)
    document = json.loads(step["list_json"]["stdout"])
    assert step["list_json"]["status"] == 0, step["list_json"]
    assert document["hypervisor"]["used"] is True, document["hypervisor"]
    entries = {entry["id"]: entry for entry in document["domains"]}
    assert set(entries) == set(mem_mib)
    for domid, entry in entries.items():
        current = entry["nodes"]["current"]
        assert current["source"] == "hypervisor"
        assert current["value_kib"] == held_kib[domid]
        assert current["value_kib"] // MIB == mem_mib[domid]


def test_list_json_has_the_hosts_memory_as_xl_info_says(real_host):
    document = json.loads(real_host.step("list")["list_json"]["stdout"])
    info = {
        key.strip(): value.strip()
        for key, value in (
            line.split(":", 1) for line in real_host.results["facts"]["xl_info"].splitlines() if ":" in line
        )
    }
    capacity = document["capacity"]
    # xl info prints whole MiB, rounded down; xbctl has physinfo's exact total_pages * 4 KiB.
    assert capacity["total_kib"] // MIB == int(info["total_memory"]), (capacity, info["total_memory"])
    assert capacity["free_kib"] is not None and 0 < capacity["free_kib"] < capacity["total_kib"], capacity
    assert capacity["targets"]["sum_kib"] == sum(e["nodes"]["target"]["value_kib"] for e in document["domains"])


# ---------------------------------------------------------------- the guest's driver and --wait


@pytest.mark.parametrize(("step_name", "size_mib"), [("mem_set_shrink", 192), ("mem_set_grow", 384)])
def test_mem_set_wait_reaches_the_target_with_the_real_driver(real_host, step_name, size_mib):
    step = real_host.step(step_name)
    done = outcome(step["command"])
    assert done.status == 0, done
    assert done.stdout.startswith("machdep.xen.balloon.target: "), done
    assert done.stdout.rstrip("\n").endswith(f"-> {size_mib * MIB}"), done
    guest = str(real_host.results["guest_domid"])
    target_kib = size_mib * MIB
    # The guest's own driver says it got there (and was told the same target) ...
    assert step["reached"] is not None, step["reports"]
    assert step["reached"]["target_kb"] == target_kib
    # ... and --wait returned once it had: its last progress line says so, and xl list, right
    # after it, shows the target reached ...
    progress = re.findall(r"current (\d+) KiB, target (\d+) KiB", done.stderr)
    assert progress and progress[-1] == (str(target_kib), str(target_kib)), done.stderr
    assert step["xl_at_exit"]["domains"][guest]["mem_mib"] == size_mib
    # ... and so do Xenstore, xl list and Xen's dump.
    assert step["nodes"]["target"] == str(target_kib)
    assert step["xl"]["domains"][guest]["mem_mib"] == size_mib
    assert step["dump"][guest]["nr_pages"] * PAGE_KIB == target_kib
    # xl's enforce: Xen's maximum follows the target (+ 1 MiB), growing as well as shrinking.
    assert step["dump"][guest]["max_pages"] == (target_kib + XL_MAXMEM_SLACK_KIB) // PAGE_KIB


# Files of the guest's sysfs probe (guest-init.sh), in its order; those the balloon thread
# changes by itself as it moves (its figures, its retry state) are compared only as read first.
PROBED_FILES = (
    "target_kb",
    "target",
    "info/current_kb",
    "info/low_kb",
    "info/high_kb",
    "schedule_delay",
    "max_schedule_delay",
    "retry_count",
    "max_retry_count",
)
MOVING_FILES = ("info/current_kb", "info/low_kb", "info/high_kb", "schedule_delay", "retry_count")


def test_the_sysfs_model_does_what_the_real_guests_driver_did(real_host, tmp_path):
    """tests/linux_sysfs_model.py against the real guest's /sys/devices/system/xen_memory/xen_memory0:
    the same files, modes and text, and each write taken or refused as the real driver did it."""
    from linux_sysfs_model import MODES, LinuxBalloonSysfs

    probe = real_host.step("guest_create").get("sysfs_probe")
    assert probe, real_host.failure("the guest published no sysfs probe (data/realhost/sysfs)")
    lines = [line.split("|") for line in probe.splitlines()]
    assert lines[0][0] == "r" and lines[1][0] == "m", probe
    first = dict(zip(PROBED_FILES, lines[0][1:]))
    real_modes = dict(entry.split(":") for entry in lines[1][1].split())
    assert {name: int(mode, 8) for name, mode in real_modes.items()} == MODES
    model = LinuxBalloonSysfs(
        tmp_path / "sys",
        current_kb=int(first["info/current_kb"]),
        target_kb=int(first["target_kb"]),
        low_kb=int(first["info/low_kb"]),
        high_kb=int(first["info/high_kb"]),
        retry={
            name: int(first[name], 16)
            for name in ("schedule_delay", "max_schedule_delay", "retry_count", "max_retry_count")
        },  # shown in hex
    )
    assert model.shown() == {name: f"{text}\n" for name, text in first.items()}  # the show functions
    writes = lines[2:]
    assert len(writes) == 13, probe
    for kind, name, text, status, error, *after in writes:
        assert kind == "w", probe
        refused = model.write(name, f"{text}\n".encode())  # as `echo TEXT > FILE` writes it
        said = (status, error)
        assert said == (("0", "") if refused is None else ("1", os.strerror(refused))), (name, text, said)
        real = {file: value for file, value in zip(PROBED_FILES, after) if file not in MOVING_FILES}
        modelled = {file: value.rstrip("\n") for file, value in model.shown().items() if file not in MOVING_FILES}
        assert modelled == real, (name, text)
    # A writer that leaves its text in the tree's file meets the same store (what xbctl does).
    files = LinuxBalloonSysfs(
        tmp_path / "files", current_kb=int(first["info/current_kb"]), target_kb=int(first["target_kb"])
    )
    for _kind, name, text, _status, _error, *after in writes:
        if name == "target_kb":
            (files.directory / name).write_text(f"{text}\n")
            files.settle()
            assert files.read("target_kb") == f"{dict(zip(PROBED_FILES, after))['target_kb']}\n"


def test_mem_set_grows_past_the_size_the_guest_booted_with(real_host):
    before = real_host.step("mem_set_grow")["before"]
    assert before["current_kb"] == 192 * MIB
    assert real_host.step("mem_set_grow")["reached"]["current_kb"] > 256 * MIB  # xl create memory=256


# ---------------------------------------------------------------- mem-max


def test_mem_max_sets_xens_own_limit_as_xl_does(real_host):
    step = real_host.step("mem_max")
    guest = str(real_host.results["guest_domid"])
    assert step["xl_mem_max"]["status"] == 0, step["xl_mem_max"]
    done = outcome(step["xbctl_mem_max"])
    assert done.status == 0, done
    assert done.stdout == f"machdep.xen.balloon.xen-max: {464 * MIB} -> {480 * MIB}\n"
    for size_mib, after in ((464, step["after_xl"]), (480, step["after_xbctl"])):
        assert after["nodes"]["static-max"] == str(size_mib * MIB)
        assert after["dump"][guest]["max_pages"] == (size_mib * MIB + XL_MAXMEM_SLACK_KIB) // PAGE_KIB


# ---------------------------------------------------------------- refusals change nothing


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("target_below_min", "below min"),
        ("target_above_max", "above max"),
        ("xen_max_below_target", "below"),
    ],
)
def test_refusal_changes_nothing(real_host, case, message):
    step = real_host.step("refusals")
    refused = step["cases"][case]
    done = outcome(refused["command"])
    assert done.status == 1, done
    assert done.stdout == ""
    assert "Operation not permitted" in done.stderr and message in done.stderr, done
    assert refused["after"]["xenstore"] == step["before"]["xenstore"]
    assert held(refused["after"]["xl_list"]) == held(step["before"]["xl_list"])
    assert refused["after"]["dump"] == step["before"]["dump"]


# ---------------------------------------------------------------- the driver is unknown, never "no driver"
# (Linux never writes control/feature-balloon: its absence says nothing.)


def test_linux_driver_reads_unknown_in_the_table(real_host):
    rows = pipe_rows(real_host.step("list")["list_pipe"]["stdout"])
    for domid in (0, real_host.results["guest_domid"]):
        assert rows[domid]["balloon"] == "unknown", rows[domid]


def test_linux_driver_reads_unknown_in_json(real_host):
    document = json.loads(real_host.step("list")["list_json"]["stdout"])
    for entry in document["domains"]:
        assert entry["has_driver"] is None, entry
        assert entry["driver"] in (None, "unknown"), entry


def test_linux_driver_reads_unknown_in_the_exporter(real_host):
    samples = metrics(real_host.step("exporter")["scrape"]["text"])
    guest = str(real_host.results["guest_domid"])
    assert samples[("xen_balloon_domain_info", frozenset({("domain", GUEST), ("domid", guest)}))] == 1.0
    states = {
        value: number
        for (name, labels), number in samples.items()
        if name == "xen_balloon_driver_state" and ("domain", GUEST) in labels
        for key, value in labels
        if key != "domain"
    }
    assert states.get("unknown") == 1.0, states
    assert states.get("no_driver", 0.0) == 0.0, states


# ---------------------------------------------------------------- the exporter, export and apply


def test_exporter_serves_every_domains_figures(real_host):
    step = real_host.step("exporter")
    assert step["scrape"]["status"] == 200, step["scrape"]
    samples = metrics(step["scrape"]["text"])
    held_kib = dump_kib(step["dump"])
    mem_mib = xl_mem_mib(step["xl"])
    # Values are keyed by name; the info series maps each name to its id.
    domids = {
        dict(labels)["domain"]: int(dict(labels)["domid"])
        for (name, labels) in samples
        if name == "xen_balloon_domain_info"
    }
    current = {
        domids[dict(labels)["domain"]]: value
        for (name, labels), value in samples.items()
        if name == "xen_balloon_current_bytes"
    }
    assert set(current) == set(mem_mib)
    for domid, value in current.items():
        assert value == held_kib[domid] * 1024
        assert value // (1024 * MIB) == mem_mib[domid]
    assert domids[GUEST] == real_host.results["guest_domid"]
    labels = frozenset({("domain", GUEST)})
    assert samples[("xen_balloon_target_bytes", labels)] == POLICY["target"] * 1024
    assert samples[("xen_balloon_xen_max_bytes", labels)] == POLICY["xen-max"] * 1024


def test_export_all_then_apply_is_a_no_op(real_host):
    step = real_host.step("export_apply")
    exported, applied = outcome(step["export"]), outcome(step["apply"])
    assert exported.status == 0 and applied.status == 0, (exported, applied)
    assert exported.stdout.startswith("[Domain-0]\n") and f"\n[{GUEST}]\n" in exported.stdout
    assert step["after"]["xenstore"] == step["before"]["xenstore"]
    assert held(step["after"]["xl_list"]) == held(step["before"]["xl_list"])
    assert step["after"]["dump"] == step["before"]["dump"]


# ---------------------------------------------------------------- the policy service


def assert_policy_settings(nodes: dict, dump: dict, domid: int) -> None:
    assert nodes["static-max"] == str(POLICY["xen-max"])
    assert nodes["target"] == str(POLICY["target"])
    assert nodes["dynamic-min"] == str(POLICY["min"])
    # The hypercall: Xen's maximum went from what xl create set to the target's (xl's enforce).
    assert dump[str(domid)]["max_pages"] == (POLICY["target"] + XL_MAXMEM_SLACK_KIB) // PAGE_KIB
    assert dump[str(domid)]["max_pages"] != GUEST_BOOT_MAX_PAGES


def test_policy_follow_sets_a_guest_created_after_it_started(real_host):
    started = real_host.step("policy_start")
    assert started["running"], started["log"]
    assert "following @introduceDomain" in started["log"]
    step = real_host.step("policy_first")
    assert_policy_settings(step["nodes"], step["dump"], step["domid"])
    assert f"{GUEST} ({step['domid']}): machdep.xen.balloon.target" in step["log"]
    # The guest's own driver followed the target the service set.
    assert step["report"] is not None and step["report"]["current_kb"] == POLICY["target"]


def test_policy_follow_sets_the_guest_again_once_destroyed_and_created_anew(real_host):
    """Xen hands out ids in turn (xl.conf's default domid_policy "xen") and xl 4.17 reads no
    domid= from a domain's configuration: the re-created guest has a new id, as it would on
    any such host, and that is what this checks (the old one's release is seen first)."""
    step = real_host.step("policy_again")
    assert step["gone"], step
    assert_policy_settings(step["nodes"], step["dump"], step["new_domid"])
    assert f"domain {step['old_domid']} is gone" in step["log"]
    assert f"{GUEST} ({step['new_domid']}): machdep.xen.balloon.target" in step["log"]


def test_policy_service_runs_without_any_capability(real_host):
    """The unit's CapabilityBoundingSet= and AmbientCapabilities= (empty), NoNewPrivileges=,
    ProtectSystem=strict, PrivateTmp=, ProtectHome=, PrivateNetwork= (tests/realhost/as-unit.sh):
    the service still reads Xenstore and makes its hypercalls (the settings above)."""
    step = real_host.step("policy_first")
    caps = step["capabilities"]
    assert caps is not None, "the policy service was not running"
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(caps[name], 16) == 0, caps
    assert caps["NoNewPrivs"].strip() == "1"
    assert caps["Uid"].split()[1] == "0"  # root's uid (the socket's and devices' owner), no capability
    mounts = [line.split() for line in real_host.step("policy_start")["mounts"].splitlines()]
    by_point = {fields[4]: fields for fields in mounts}
    assert "ro" in by_point["/"][5].split(","), by_point["/"]
    assert by_point["/tmp"][fields_type(by_point["/tmp"])] == "tmpfs"
    assert_policy_settings(step["nodes"], step["dump"], step["domid"])
    assert real_host.step("policy_stop")["status"] == 0


def fields_type(fields: list[str]) -> int:
    """Index of the file-system type in a mountinfo line (after the "-" separator)."""
    return fields.index("-") + 1


# ---------------------------------------------------------------- no xenstored, not root


@pytest.mark.parametrize("case", ["stale_socket", "no_socket", "no_xenstore"])
def test_write_with_xenstored_stopped_exits_3_and_never_simulates(real_host, case):
    step = real_host.step("xenstored_stopped")
    assert step["dead"] and step["hypervisor_type"] == "xen"
    if case == "stale_socket" and not step["socket_left"]:
        pytest.fail("xenstored left no socket behind to be stale")
    done = outcome(step[case])
    assert done.status == 3, done
    assert done.stdout == ""
    assert done.stderr.startswith("xbctl: ") and "Traceback" not in done.stderr, done
    # The simulator does not answer on a Xen machine (it would have printed the change, exit 0).
    assert "simulated host" not in done.stderr and "answering from" not in done.stderr, done
    assert step["dump_after"] == step["dump_before"]


def test_non_root_is_told_to_run_as_root(real_host):
    step = real_host.step("non_root")
    done = outcome(step["command"])
    assert done.status != 0 and done.stdout == "", done
    assert done.stderr.startswith("xbctl: ") and "Traceback" not in done.stderr, done
    assert "root" in done.stderr, done
    assert step["nodes_after"]["target"] == str(POLICY["target"])  # unchanged (the re-created guest's)


# ---------------------------------------------------------------- the fast rig against the real one


def test_the_rig_leaves_what_the_real_hypervisor_leaves(real_host, hv_host):
    """The same xl mem-max/mem-set sequence (tests/realhost/dom0_checks.py PARITY_STEPS) ran on
    the real hypervisor, on the guest paused (its driver cannot move: only xl and Xen change
    anything); here it runs on the rig from the same figures. After each step: xl's success,
    `xl list` Mem, Xen's max_pages and nr_pages, memory/target and static-max must agree."""
    real = real_host.step("parity")
    start = real["start"]
    assert real["pause"]["status"] == 0 and real["unpause"]["status"] == 0
    domid = 1  # the rig's PV guest "web" plays the real guest
    hv_host.hv.set_domain(domid, tot_pages=start["dump"]["nr_pages"], max_pages=start["dump"]["max_pages"])
    for node in ("target", "static-max", "videoram"):
        hv_host.write(f"/local/domain/{domid}/memory/{node}", start["nodes"][node])
    hv_host.hv.write_userdata(
        domid,
        "web",
        hvm=False,
        uuid=domain_uuid(domid),
        max_memkb=int(start["nodes"]["static-max"]),
        target_memkb=int(start["nodes"]["target"]),
    )
    assert xl_list_mem(hv_host, domid) == start["xl"]["mem_mib"]
    compared = []
    for real_step in real["steps"]:
        done = hv_host.xl(real_step["command"], str(domid), real_step["size"])
        rig: Domain = hv_host.hv.domain(domid)
        rig_figures = {
            "succeeded": done.status == 0,
            "mem_mib": xl_list_mem(hv_host, domid),
            "max_pages": rig.max_pages,
            "nr_pages": rig.tot_pages,
            "target": hv_host.dom(domid, "memory/target"),
            "static-max": hv_host.dom(domid, "memory/static-max"),
        }
        real_figures = {
            "succeeded": real_step["status"] == 0,
            "mem_mib": real_step["xl"]["mem_mib"],
            "max_pages": real_step["dump"]["max_pages"],
            "nr_pages": real_step["dump"]["nr_pages"],
            "target": real_step["nodes"]["target"],
            "static-max": real_step["nodes"]["static-max"],
        }
        compared.append((real_step["command"], real_step["size"]))
        assert rig_figures == real_figures, (compared, done)
    # The sequence is what we think: a refusal of each kind, and a maximum below the holding.
    assert [s["status"] == 0 for s in real["steps"]].count(False) == 2
    assert any(s["dump"]["max_pages"] < s["dump"]["nr_pages"] for s in real["steps"])


def xl_list_mem(host, domid: int) -> int:
    """`xl list` Mem of DOMID on the rig."""
    done = host.xl("list")
    assert done.status == 0, done
    for line in done.stdout.splitlines()[1:]:
        fields = line.split()
        if int(fields[-5]) == domid:
            return int(fields[-4])
    raise AssertionError(f"domain {domid} not in xl list:\n{done.stdout}")
