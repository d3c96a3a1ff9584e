"""The simulated driver: steps over time, its three failure modes, --wait, and the state file."""

import json
import os
import shutil
import stat
import subprocess

import pytest
from conftest import assert_clean_failure

MIB = 1024
STEP_KIB = 512 * 4


def test_balloon_moves_in_512_page_steps_at_the_configured_rate(xbctl):
    xbctl("sim", "reset", "--clock", "manual", "--rate", "10")
    xbctl("-q", "-d", "web", "target", "512M")
    assert xbctl.value("current", "web") == 768 * MIB  # no simulated time has passed
    xbctl("sim", "advance", "1")
    assert xbctl.value("current", "web") == 768 * MIB - 10 * STEP_KIB
    xbctl("sim", "advance", "0.25")
    assert xbctl.value("current", "web") == 768 * MIB - 12 * STEP_KIB
    xbctl("sim", "advance", "100")
    assert xbctl.value("current", "web") == 512 * MIB
    assert xbctl("sim", "log").stdout == ""  # reaching the target is not news


def test_rate_0_stops_the_clock_and_advance_steps_at_the_default_rate(xbctl):
    assert xbctl("sim", "reset", "--rate", "0").status == 0
    xbctl("-q", "-d", "web", "target", "512M")
    assert xbctl.value("current", "web") == 768 * MIB
    xbctl("sim", "advance", "1")
    assert xbctl.value("current", "web") == 768 * MIB - 50 * STEP_KIB


def test_last_step_is_smaller_than_a_full_step(xbctl):
    xbctl("-q", "-d", "web", "target", "-4")
    xbctl("sim", "advance", "1")
    assert xbctl.value("current", "web") == 768 * MIB - 4


def test_shrink_stops_at_the_guests_in_use_floor_and_feeds_current_back(xbctl):
    xbctl("-q", "-d", "web", "target", "256M")
    xbctl("sim", "advance", "60")
    floor_kib = 384 * MIB + 1024 * 4  # in-use memory + free-page reserve
    assert xbctl.value("current", "web") == floor_kib
    assert xbctl.value("target", "web") == floor_kib
    log = xbctl("sim", "log").stdout
    assert f"web: WARNING: balloon could not reach target {256 * MIB} (current {floor_kib})" in log
    assert "driver: WARNING" in xbctl("list").stdout


def test_grow_is_clipped_at_boot_size(xbctl):
    xbctl("-q", "-d", "db", "target", "3G")
    xbctl("sim", "advance", "60")
    assert xbctl.value("current", "db") == 2048 * MIB
    assert xbctl.value("target", "db") == 3072 * MIB
    assert "db: memory 'hot-plug' unsupported - clipping reservation 786432 => 524288 pages." in (
        xbctl("sim", "log").stdout
    )


def test_grow_short_of_host_memory_is_incomplete(xbctl):
    xbctl("sim", "reset", "--clock", "manual", "--host-free", "5M")
    xbctl("-q", "-d", "db", "target", "1600M")
    xbctl("sim", "advance", "60")
    assert xbctl.value("current", "db") == 1536 * MIB + 5 * MIB  # two full steps of 2 MiB, then 1 MiB
    log = xbctl("--json", "sim", "log").json()["entries"]
    assert [e["message"] for e in log] == ["increase reservation incomplete: was 512, returned 256"]
    # shrinking another domain frees host memory, and the driver gets the rest
    xbctl("-q", "-d", "Domain-0", "target", "-64M")
    xbctl("sim", "advance", "60")
    assert xbctl.value("current", "db") == 1600 * MIB


def test_domain_without_driver_never_moves(xbctl):
    xbctl("-q", "-d", "mail", "target", "300M")
    xbctl("sim", "advance", "60")
    assert xbctl.value("current", "mail") == 512 * MIB


def test_wait_reaches_the_target(xbctl):
    xbctl("sim", "reset", "--rate", "5000")
    outcome = xbctl("--wait", "--timeout", "60", "-d", "web", "target", "512M")
    assert outcome.status == 0, outcome
    assert outcome.stdout == "machdep.xen.balloon.target: 786432 -> 524288\n"
    assert f"xbctl: web: current {512 * MIB} KiB, target {512 * MIB} KiB" in outcome.stderr
    assert xbctl.value("current", "web") == 512 * MIB


def test_wait_via_mem_set_with_options_after_the_command(xbctl):
    xbctl("sim", "reset", "--rate", "5000")
    outcome = xbctl("mem-set", "db", "2048", "--wait", "--timeout", "60")
    assert outcome.status == 0, outcome
    assert xbctl.value("current", "db") == 2048 * MIB


def test_wait_ends_with_5_when_shrink_hits_the_floor(xbctl):
    xbctl("sim", "reset", "--rate", "5000")
    outcome = xbctl("--wait", "--timeout", "60", "-d", "web", "target", "256M")
    assert outcome.status == 5, outcome
    assert "xbctl: web: target 262144 KiB not reached" in outcome.stderr
    assert "the driver reports: WARNING: balloon could not reach target 262144 (current 397312)" in outcome.stderr


def test_wait_ends_with_5_when_grow_is_clipped_at_boot_size(xbctl):
    xbctl("sim", "reset", "--rate", "5000")
    outcome = xbctl("--wait", "--timeout", "60", "mem-set", "db", "3G")
    assert outcome.status == 5, outcome
    assert "memory 'hot-plug' unsupported - clipping reservation 786432 => 524288 pages." in outcome.stderr


def test_wait_without_a_target_change_says_there_is_nothing_to_wait_for(xbctl):
    read = xbctl("--wait", "-d", "web", "-n", "target")
    assert (read.status, read.stdout) == (0, "786432\n")
    assert read.stderr == "xbctl: note: --wait waits after a target change; nothing to wait for\n"
    write = xbctl("--wait", "-d", "web", "min", "256M")
    assert write.status == 0 and "nothing to wait for" in write.stderr


def test_repeating_a_target_the_driver_cannot_reach_ends_at_once(xbctl):
    xbctl("sim", "reset", "--clock", "manual", "--host-free", "4M")
    xbctl("-q", "mem-set", "db", "1600")
    xbctl("sim", "advance", "10")
    again = xbctl("--wait", "--timeout", "30", "mem-set", "db", "1600")
    assert again.status == 5, again
    assert "increase reservation incomplete" in again.stderr


def test_wait_times_out_with_5(xbctl):
    outcome = xbctl("--wait", "--timeout", "0.2", "-d", "web", "target", "512M")  # manual clock: no progress
    assert outcome.status == 5, outcome
    assert "timed out after 0.2 s" in outcome.stderr


def test_wait_on_a_domain_without_driver_ends_with_5(xbctl):
    outcome = xbctl("--wait", "--timeout", "5", "-d", "mail", "target", "300M")
    assert outcome.status == 5
    assert "no balloon driver" in outcome.stderr


def test_wait_json_reports_how_it_ended(xbctl):
    xbctl("sim", "reset", "--rate", "5000")
    outcome = xbctl("--json", "--wait", "--timeout", "60", "-d", "web", "target", "256M")
    assert outcome.status == 5
    wait = outcome.json()["wait"]
    assert wait["reached"] is False and wait["current_kib"] == 397312
    assert "could not reach target" in wait["reason"]


def test_state_file_is_private_and_written_atomically(xbctl):
    xbctl("-q", "-d", "web", "target", "512M")
    mode = stat.S_IMODE(os.stat(xbctl.state_path).st_mode)
    assert mode == 0o600
    leftovers = [p.name for p in xbctl.state_path.parent.iterdir()]
    assert sorted(leftovers) == ["sim.json", "sim.json.lock"]  # no temporary files left behind
    assert json.loads(xbctl.state_path.read_text())["schema"] == 1


def _torn(xbctl) -> str:
    """The state file cut short, as a failing disk might leave it: still marked as ours."""
    torn = xbctl.state_path.read_text()[:200]
    xbctl.state_path.write_text(torn)
    return torn


def test_corrupt_state_is_reported_left_alone_and_kept_aside_by_reset(xbctl):
    torn = _torn(xbctl)
    for args in (["-a"], ["-d", "web", "target", "512M"], ["list"], ["sim", "log"]):
        assert_clean_failure(xbctl(*args), 3, "is corrupt", "nothing was changed", "sim reset")
    assert xbctl.state_path.read_text() == torn  # reads and writes report it; none moves it
    assert sorted(p.name for p in xbctl.state_path.parent.iterdir()) == ["sim.json", "sim.json.lock"]
    reset = xbctl("sim", "reset")
    assert reset.status == 0 and "kept aside as" in reset.stderr, reset
    aside = [p for p in xbctl.state_path.parent.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_text() == torn
    assert xbctl("-a").status == 0  # then a fresh host


def test_state_with_wrong_content_is_corrupt(xbctl):
    xbctl.state_path.write_text('{"format": "xbctl-sim-state", "schema": 1, "domains": "none"}')
    assert_clean_failure(xbctl("-d", "web", "target", "512M"), 3, "is corrupt")


def test_state_from_a_newer_xbctl_is_left_alone(xbctl):
    newer = '{"format": "xbctl-sim-state", "schema": 99}'
    xbctl.state_path.write_text(newer)
    for args in (["-a"], ["mem-set", "web", "512"], ["sim", "reset"]):
        assert_clean_failure(xbctl(*args), 3, "schema 99, newer than")
    assert xbctl.state_path.read_text() == newer


def test_concurrent_relative_changes_lose_no_update(xbctl):
    """Real processes race on one domain; every +4 and -8 lands and the file always parses."""
    exe = shutil.which("xbctl")
    assert exe, "the xbctl command must be installed"
    env = {**os.environ, **{k: v for k, v in xbctl.env.items() if v is not None}}
    start_kib = xbctl.value("target", "web")
    writers = [
        subprocess.Popen(
            [exe, "-q", "-d", "web", "target", "+4" if i % 2 else "-8"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(24)
    ]
    reads = 0
    while any(w.poll() is None for w in writers):
        json.loads(xbctl.state_path.read_text())  # never torn
        reads += 1
    results = [(w.wait(timeout=60), w.stderr.read()) for w in writers]
    assert all(status == 0 for status, _ in results), results
    assert xbctl.value("target", "web") == start_kib + 12 * 4 - 12 * 8
    assert reads > 0


def test_a_file_that_is_not_state_is_never_moved(xbctl, tmp_path):
    foreign = tmp_path / "bashrc"
    foreign.write_text("export PATH=$PATH:/opt/bin\n")
    for args in (["-a"], ["-d", "web", "target", "512M"], ["sim", "reset"]):
        outcome = xbctl("--sim-state", str(foreign), *args)
        assert_clean_failure(outcome, 3, "is not an xbctl simulator state file; not touching it")
    assert foreign.read_text() == "export PATH=$PATH:/opt/bin\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("bashrc")) == ["bashrc"]


def test_a_state_path_that_is_not_a_regular_file_is_refused(xbctl, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (["-a"], ["sim", "reset"], ["mem-set", "web", "512"]):
        assert_clean_failure(xbctl("--sim-state", str(fifo), *args), 3, "is not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert_clean_failure(xbctl("--sim-state", str(tmp_path), "-a"), 3, "is not a regular file")


def test_corrupt_files_kept_aside_never_overwrite_each_other(xbctl):
    torn = []
    for length in (100, 150):
        text = xbctl.state_path.read_text()[:length]
        xbctl.state_path.write_text(text)
        assert_clean_failure(xbctl("-a"), 3, "is corrupt")
        assert xbctl("sim", "reset", "--clock", "manual").status == 0
        torn.append(text)
    kept = sorted(p.read_text() for p in xbctl.state_path.parent.iterdir() if ".corrupt-" in p.name)
    assert kept == sorted(torn)


def test_a_symlinked_state_path_updates_the_file_it_points_to(xbctl, tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(xbctl.state_path)
    assert xbctl("--sim-state", str(link), "-q", "mem-set", "web", "512").status == 0
    assert link.is_symlink()
    assert xbctl.value("target", "web") == 512 * MIB  # read through the real path


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.update(position=99),
        lambda s: s.update(domains=[]),
        lambda s: s.update(offset_s=float("nan")),
        lambda s: s.update(log=[{"x": 1}]),
        lambda s: s["domains"][1].update(target_kib="512"),
        lambda s: s["domains"][1].update(target_kib=1e300),
        lambda s: s["domains"][1].update(current_kib=10**30),
        lambda s: s.update(host_free_kib=-5),
        lambda s: s.update(schema=True),
        lambda s: s.update(steps_per_second=0),
        lambda s: s["domains"][1].update(colour="blue"),
        lambda s: s.update(offset_s=1e308),
        lambda s: s.update(last_tick_s=-1e308),
        lambda s: s.update(steps_per_second=1e308),
        lambda s: s["domains"][1].update(boot_kib=2**54, target_kib=2**54),
        lambda s: s["log"].append({"t": 1e308, "domain": "web", "message": "x"}),
    ],
    ids=[
        "position",
        "no-domains",
        "nan-offset",
        "log-entry",
        "string-kib",
        "float-kib",
        "huge-kib",
        "negative-free",
        "bool-schema",
        "zero-rate",
        "unknown-field",
        "huge-offset",
        "huge-negative-tick",
        "huge-rate",
        "huge-boot",
        "huge-log-time",
    ],
)
def test_damaged_fields_are_reported_as_corrupt(xbctl, damage):
    xbctl("-q", "mem-set", "web", "700")  # make sure a state file exists
    state = json.loads(xbctl.state_path.read_text())
    damage(state)
    damaged = json.dumps(state)
    xbctl.state_path.write_text(damaged)
    for args in (["list"], ["-d", "web", "target", "600M"], ["sim", "log"], ["sim", "advance", "1"]):
        assert_clean_failure(xbctl(*args), 3, "is corrupt", "sim reset")
    assert xbctl.state_path.read_text() == damaged
    reset = xbctl("sim", "reset")  # never needs the old state: it always recovers
    assert reset.status == 0 and "kept aside as" in reset.stderr, reset
    assert any(".corrupt-" in p.name for p in xbctl.state_path.parent.iterdir())
    assert xbctl.value("target", "web") == 768 * MIB
