"""Inside a Linux guest, its own balloon driver (sysfs): current and target come from it, and
root's `xbctl target SIZE` sets its target_kb, within the node table's rules.

The guest is mail (domain 3) of Debian's xenstored, speaking over its own xenbus device
(tests/xen_fixtures.py); its driver is tests/linux_sysfs_model.py's tree, which behaves as
Linux's (tests/test_real_host.py checks the model against a real guest's sysfs). Every run
is the installed xbctl, as a separate process.
"""

from __future__ import annotations

import os
import subprocess
import threading

import pytest
from conftest import Outcome, assert_clean_failure
from linux_sysfs_model import MODES, LinuxBalloonSysfs
from xen_fixtures import GUEST_ID, MIB, xbctl_command

MAIL = f"/local/domain/{GUEST_ID}"
NOBODY = 65534


@pytest.fixture
def driver(tmp_path) -> LinuxBalloonSysfs:
    """Guest mail's driver: it holds 400 MiB and steers toward 448 MiB (the host's memory/target says 512 MiB)."""
    return LinuxBalloonSysfs(tmp_path / "sys", current_kb=400 * MIB, target_kb=448 * MIB)


def in_guest(xs, driver, *args: str, prefix: tuple[str, ...] = (), sysfs_root=None) -> Outcome:
    """The installed xbctl ARGS (after the command PREFIX) as root inside guest mail, whose
    driver is DRIVER (or whose /sys is SYSFS_ROOT)."""
    xs.guest_bus.flush()
    env = {**xs.guest_env(), "XBCTL_SYSFS_ROOT": str(sysfs_root or driver.root)}
    done = subprocess.run(
        [*prefix, xbctl_command(), *args],
        env=xs.process_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def test_a_guest_reads_current_and_target_from_its_own_driver(xs, driver):
    done = in_guest(xs, driver, "-a")
    assert done.status == 0, done
    assert done.stdout == (
        f"machdep.xen.balloon.current = {400 * MIB}\n"
        f"machdep.xen.balloon.target = {448 * MIB}\n"
        f"machdep.xen.balloon.min = {128 * MIB}\n"
        f"machdep.xen.balloon.max = {512 * MIB}\n"
        f"machdep.xen.balloon.xen-max = {512 * MIB}\n"
    )
    assert done.stderr == (
        f"xbctl: note: current and target from this guest's balloon driver ({driver.directory}); "
        "min, max, xen-max from Xenstore\n"
    )
    document = in_guest(xs, driver, "--json", "-a").json()
    assert document["nodes"]["current"] == {
        "name": "machdep.xen.balloon.current",
        "value_kib": 400 * MIB,
        "source": "sysfs",
    }
    assert document["nodes"]["target"]["source"] == "sysfs"
    assert document["nodes"]["target"]["value_kib"] == 448 * MIB
    assert document["driver"] == "yes"
    # -n stays bare for scripts; the host still sees its own memory/target.
    assert in_guest(xs, driver, "-n", "target") == Outcome(0, f"{448 * MIB}\n", "")
    host = xs("--json", "-d", "mail", "-a").json()["nodes"]
    assert host["target"]["value_kib"] == 512 * MIB and "source" not in host["target"]
    assert host["current"]["source"] == "target"


def test_root_in_the_guest_sets_its_drivers_target(xs, driver):
    before = xs.listing()
    done = in_guest(xs, driver, "target", "300M")
    assert done.status == 0, done
    assert done.stdout == f"mail: machdep.xen.balloon.target: {448 * MIB} -> {300 * MIB}\n"
    assert f"set through this guest's own balloon driver ({driver.directory}/target_kb)" in done.stderr
    assert f"memory/target still holds {512 * MIB} KiB" in done.stderr
    assert driver.read("target_kb") == f"{300 * MIB}\n"  # exactly `echo 307200 > target_kb`
    driver.settle()
    assert driver.read("target") == f"{300 * MIB * 1024}\n"
    assert xs.listing() == before  # the host's nodes are the host's
    # A relative change counts from the driver's target, and --json says where it went.
    written = in_guest(xs, driver, "--json", "target", "+4M")
    assert written.status == 0, written
    assert written.json()["changes"][0] == {
        "node": "target",
        "name": "machdep.xen.balloon.target",
        "old_kib": 300 * MIB,
        "new_kib": 304 * MIB,
    }
    driver.settle()
    assert driver.read("target_kb") == f"{304 * MIB}\n"


def test_a_target_the_guest_waits_for_is_followed_in_sysfs(xs, driver):
    asked = threading.Event()

    def balloon_thread():  # the driver moves once it is given a new target
        path = driver.directory / "target_kb"
        while not asked.is_set():
            text = path.read_text()
            if text != f"{448 * MIB}\n" and text.endswith("\n"):  # one whole write (a store is one)
                driver.settle()
                driver.reach()
                return
            asked.wait(0.02)

    mover = threading.Thread(target=balloon_thread, daemon=True)
    mover.start()
    try:
        done = in_guest(xs, driver, "target", "256M", "--wait", "--timeout", "60")
    finally:
        asked.set()
        mover.join()
    assert done.status == 0, done
    assert driver.read("info/current_kb") == f"{256 * MIB}\n"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("target", "100M"), 1, f"below min 128 MiB ({128 * MIB} KiB)"),
        (("target", "600M"), 1, f"above max 512 MiB ({512 * MIB} KiB)"),
        (("target", "+100M"), 1, "above max"),
        (("target", "12x"), 2, "12x"),
        (("target", ""), 2, "empty"),
        (("mem-max", "mail", "600"), 1, "only the host administrator sets xen-max"),
        (("-w", "machdep.xen.balloon.current=1000000"), 1, "read-only"),
    ],
)
def test_what_the_rules_refuse_reaches_neither_the_driver_nor_xenstore(xs, driver, args, status, message):
    before, files = xs.listing(), driver.snapshot()
    done = in_guest(xs, driver, *args)
    assert_clean_failure(done, status, message)
    assert driver.snapshot() == files
    assert xs.listing() == before


def test_a_writer_the_driver_does_not_take_gets_eacces_and_nothing_changes(xs, driver):
    # As a user who may not open the root-only file for writing meets it (root without
    # CAP_DAC_OVERRIDE here: the files belong to someone else, as /sys's belong to root).
    for name in MODES:
        os.chown(driver.directory / name, NOBODY, NOBODY)
    before, files = xs.listing(), driver.snapshot()
    done = in_guest(xs, driver, "target", "300M", prefix=("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"))
    assert_clean_failure(done, 1, f"{driver.directory}/target_kb: Permission denied (EACCES)", "CAP_SYS_ADMIN")
    assert driver.snapshot() == files
    assert xs.listing() == before


def test_a_driver_file_holding_no_number_leaves_xenstores_figures_with_a_warning(xs, driver):
    (driver.directory / "info/current_kb").write_text("lots\n")
    done = in_guest(xs, driver, "--json", "-a")
    assert done.status == 0, done
    document = done.json()
    assert document["nodes"]["target"]["value_kib"] == 512 * MIB and "source" not in document["nodes"]["target"]
    assert any("info/current_kb: holds 'lots'" in warning for warning in document["warnings"])
    assert "warning: " in done.stderr and "\n" not in done.stderr.rstrip("\n")


def test_without_a_driver_in_sysfs_the_guest_may_not_set_target(xs, tmp_path):
    """A guest whose kernel has no such driver (NetBSD, or Linux without it): as before."""
    before = xs.listing()
    no_driver = tmp_path / "no-sys"
    done = in_guest(xs, None, "target", "300M", sysfs_root=no_driver)
    assert_clean_failure(done, 1, "Permission denied (EACCES): inside a guest, target can only be set from the host")
    assert xs.listing() == before
    assert not no_driver.exists()  # nothing created where the driver would be
    read = in_guest(xs, None, "--json", "-a", sysfs_root=no_driver)
    assert read.status == 0 and read.stderr == "", read
    nodes = read.json()["nodes"]
    assert nodes["current"]["source"] == "target" and "source" not in nodes["target"]
