"""What a guest publishes about itself is advice: against Debian's xenstored, with the guest
(mail, domain 3) writing through its own xenbus connection, never a veto over the host.

Also: drivers that do not advertise themselves (Linux), the default floor, and xbctl without
libxenctrl (every command works over Xenstore and says once why the hypervisor is not used)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_clean_failure
from pyxs import Client
from xen_fixtures import GUEST_ID, MIB

MAIL = f"/local/domain/{GUEST_ID}"
WEB = "/local/domain/1"
NO_LIBRARY = {"XBCTL_LIBXENCTRL": "/nonexistent/libxenctrl.so.4.17"}


def guest_writes(xs, values: dict[str, str]) -> None:
    """Guest mail writes VALUES (relative paths) as itself, over its own xenbus device."""
    xs.guest_bus.flush()
    with Client(xen_bus_path=xs.guest_bus.path) as guest:
        for rel, value in values.items():
            guest.write(f"{MAIL}/{rel}".encode(), value.encode())
    for rel, value in values.items():
        assert xs.read(f"{MAIL}/{rel}") == value  # it really is there, written by the guest


def test_guest_floor_above_target_is_ignored_with_a_warning(xs):
    guest_writes(xs, {"data/balloon/min": "99999999999"})
    outcome = xs("mem-set", "mail", "400", env=NO_LIBRARY)
    assert outcome.status == 0, outcome
    assert outcome.stdout == "machdep.xen.balloon.target: 524288 -> 409600\n"
    assert f"warning: domain mail: ignoring {MAIL}/data/balloon/min = 99999999999 KiB" in outcome.stderr
    assert xs.read(f"{MAIL}/memory/target") == "409600"
    # Re-setting the target the domain has is never refused either.
    assert xs("mem-set", "mail", "400", env=NO_LIBRARY).status == 0


def test_guest_floor_within_sense_is_honoured_and_the_host_can_override_it(xs):
    guest_writes(xs, {"data/balloon/min": str(300 * MIB)})
    before = xs.listing()
    refused = xs("mem-set", "mail", "200", env=NO_LIBRARY)
    assert_clean_failure(
        refused, 1, "below min 300 MiB (307200 KiB) (the guest's data/balloon/min)", "--override-guest-floor"
    )
    assert xs.listing() == before
    # min below the guest's floor: refused with the same way out, which then works.
    assert_clean_failure(xs("-d", "mail", "min", "64M", env=NO_LIBRARY), 1, "safeguard floor", "--override-guest-floor")
    assert xs.listing() == before
    assert xs("-d", "mail", "--override-guest-floor", "min", "64M", env=NO_LIBRARY).status == 0
    assert xs.read(f"{MAIL}/memory/dynamic-min") == str(64 * MIB)
    forced = xs("--override-guest-floor", "mem-set", "mail", "200", env=NO_LIBRARY)
    assert forced.status == 0, forced
    assert xs.read(f"{MAIL}/memory/target") == str(200 * MIB)
    # Now below the guest's floor, that floor is nonsense (above the target) and ignored.
    again = xs("mem-set", "mail", "150", env=NO_LIBRARY)
    assert again.status == 0 and "floor above its target is not honoured" in again.stderr, again


@pytest.mark.parametrize(
    "rel", ["data/balloon/current", "data/balloon/min", "data/balloon/max", "control/feature-balloon"]
)
def test_garbage_from_the_guest_reads_as_unknown_and_never_blocks_the_host(xs, rel):
    guest_writes(xs, {rel: "garbage"})
    written = xs("mem-set", "mail", "400", env=NO_LIBRARY)
    assert written.status == 0, written
    assert xs.read(f"{MAIL}/memory/target") == "409600"
    assert f"{MAIL}/{rel} = 'garbage'" in written.stderr and "warning: " in written.stderr
    assert xs("mem-max", "mail", "600", env=NO_LIBRARY).status == 0
    assert xs.read(f"{MAIL}/memory/static-max") == str(600 * MIB)
    read = xs("--json", "-d", "mail", "-a", env=NO_LIBRARY)
    assert read.status == 0, read
    document = read.json()
    assert any(rel in warning for warning in document["warnings"])
    assert document["driver"] == "unknown"
    assert document["nodes"]["current"]["source"] == "target"
    assert xs("--json", "list", env=NO_LIBRARY).json()["domains"][GUEST_ID]["driver"] == "unknown"


def test_linux_style_guest_is_not_called_driverless_and_cannot_be_emptied(xs):
    """No control/feature-balloon, no data/balloon: Linux. Unknown, with a default floor."""
    listing = xs("--json", "list", env=NO_LIBRARY).json()
    web = listing["domains"][1]
    assert (web["name"], web["driver"]) == ("web", "unknown")
    assert web["nodes"]["min"]["value_kib"] == 256 * MIB  # a quarter of static-max (1 GiB)
    table = xs("list", env=NO_LIBRARY)
    assert "no driver" not in table.stdout and "unknown" in table.stdout
    before = xs.listing()
    for args in (("mem-set", "web", "0"), ("-d", "web", "target", "0"), ("mem-set", "web", "255")):
        outcome = xs(*args, env=NO_LIBRARY)
        assert_clean_failure(outcome, 1, "below min", "262144 KiB", "a quarter of static-max", "min SIZE")
    assert xs.listing() == before
    # The host lowers the floor by writing min (memory/dynamic-min); then the target may follow.
    assert xs("-d", "web", "min", "64M", env=NO_LIBRARY).status == 0
    lowered = xs("-n", "mem-set", "web", "64", env=NO_LIBRARY)
    assert (lowered.status, lowered.stdout) == (0, "786432 -> 65536\n")
    # Linux never advertises its driver: the normal case earns no warning
    assert "warning" not in lowered.stderr and "balloon driver" not in lowered.stderr


def test_publishing_balloon_values_is_evidence_of_a_driver(xs):
    guest_writes(xs, {"data/balloon/current": str(512 * MIB)})
    assert xs("--json", "-d", "mail", "-a", env=NO_LIBRARY).json()["driver"] == "yes"
    guest_writes(xs, {"control/feature-balloon": "0"})  # the guest says it has none: believed
    assert xs("--json", "-d", "mail", "-a", env=NO_LIBRARY).json()["driver"] == "no"


LIBC_PATHS = (Path("/lib/x86_64-linux-gnu/libc.so.6"), Path("/usr/lib/x86_64-linux-gnu/libc.so.6"))
LIBC = next((str(p) for p in LIBC_PATHS if p.exists()), "libc.so.6")  # a library, but no libxenctrl


@pytest.mark.parametrize(
    "library, reason",
    [
        ("/nonexistent/libxenctrl.so.4.17", "cannot load XBCTL_LIBXENCTRL=/nonexistent/libxenctrl.so.4.17"),
        (LIBC, "is not a libxenctrl of a Xen release xbctl has checked"),
        ("", "XBCTL_LIBXENCTRL is empty"),
    ],
)
def test_without_a_usable_libxenctrl_every_command_works_and_says_once_why(xs, library, reason):
    env = {"XBCTL_LIBXENCTRL": library}
    commands = [
        ("-d", "web", "-a"),
        ("-d", "web", "current"),
        ("list",),
        ("--json", "list"),
        ("mem-set", "web", "700"),
        ("mem-max", "web", "1100"),
        ("-d", "web", "min", "300M"),
        ("-w", "-d", "web", "machdep.xen.balloon.target=600M"),
    ]
    for args in commands:
        outcome = xs.process(*args, env=env)
        assert outcome.status == 0, (args, outcome)
        assert outcome.stderr.count("xbctl: note: hypervisor not used: ") == 1, (args, outcome.stderr)
        assert reason in outcome.stderr and "answering from Xenstore alone" in outcome.stderr
    assert xs.read(f"{WEB}/memory/target") == str(600 * MIB)
    assert xs.read(f"{WEB}/memory/static-max") == str(1100 * MIB)
    document = xs("--json", "-d", "web", "current", env=env).json()
    assert document["nodes"]["current"]["source"] == "target"
    assert document["hypervisor"]["used"] is False and reason in document["hypervisor"]["reason"]
    # A guest never asks the hypervisor: no note there.
    inside = xs.guest("-a")
    assert inside.status == 0 and "hypervisor" not in inside.stderr, inside


def test_a_data_balloon_the_reader_may_not_list_is_read_node_by_node(xs):
    """data/balloon is listed in one request instead of reading its four nodes; one the
    reader may not list (here the host's, inside guest mail) is read node by node, so each
    node answers for itself as before: xenstored refuses the absent ones (EACCES, not
    ENOENT, under a parent the reader may not read) and that refusal is what the guest is told."""
    with Client(unix_socket_path=str(xs.daemon.socket_path)) as host:
        host.write(f"{MAIL}/data/balloon/min".encode(), str(300 * MIB).encode())
        host.set_perms(f"{MAIL}/data/balloon".encode(), [b"n0"])
        host.set_perms(f"{MAIL}/data/balloon/min".encode(), [b"n0", f"r{GUEST_ID}".encode()])
    before = xs.listing()
    inside = xs.guest("-n", "min")
    assert_clean_failure(inside, 1, f"{MAIL}/data/balloon/current: Permission denied (EACCES)")
    assert xs.listing() == before
    # The host lists it: the guest's floor counts.
    assert xs("-n", "-d", "mail", "min", env=NO_LIBRARY).stdout == f"{300 * MIB}\n"
