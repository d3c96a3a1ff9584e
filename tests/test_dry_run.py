"""--dry-run answers exactly what the write would: from a guest's position, on both transports.

Every write rule is policy's, run on the same snapshot for a dry run and a write, so each
request below gets the same exit status and the same message either way, and neither
changes anything.
"""

from __future__ import annotations

import pytest
from conftest import assert_clean_failure

# (arguments with OWN for the guest's own domain name, exit status, what the message says)
GUEST_REQUESTS = [
    (("target", "400M"), 1, "Permission denied"),  # the toolstack's node
    (("target", "-64M"), 1, "Permission denied"),
    (("target", "-4"), 1, "Permission denied"),
    (("min", "4G"), 1, "above max"),  # a guest's root sets its own min, within the driver's rules
    (("min", "1K"), 1, "safeguard floor"),
    (("-w", "target=400M", "min=256M"), 1, "Permission denied"),
    (("mem-set", "OWN", "400"), 1, "Permission denied"),
    (("xen-max", "1G"), 1, "only the host administrator sets xen-max"),
    (("mem-max", "OWN", "1024"), 1, "only the host administrator sets xen-max"),
    (("current", "400M"), 1, "read-only node"),
    (("max", "400M"), 1, "read-only node"),
    (("target", "4G"), 1, "above max"),  # the driver's rule speaks first
]


def _ids(requests):
    return [" ".join(args) for args, _, _ in requests]


def _as_guest(args: tuple[str, ...], own: str) -> list[str]:
    return [own if arg == "OWN" else arg for arg in args]


@pytest.mark.parametrize("args, status, says", GUEST_REQUESTS, ids=_ids(GUEST_REQUESTS))
def test_dry_run_from_a_simulated_guest_refuses_what_the_write_refuses(xbctl, args, status, says):
    assert xbctl("sim", "reset", "--clock", "manual", "--position", "web").status == 0
    before = xbctl.snapshot()
    written = xbctl(*_as_guest(args, "web"))
    dry = xbctl("--dry-run", *_as_guest(args, "web"))
    assert_clean_failure(written, status, says)
    assert (dry.status, dry.stdout, dry.stderr) == (written.status, written.stdout, written.stderr)
    assert xbctl.snapshot() == before


@pytest.mark.parametrize("args, status, says", GUEST_REQUESTS, ids=_ids(GUEST_REQUESTS))
def test_dry_run_from_a_xenstore_guest_refuses_what_the_write_refuses(xs, args, status, says):
    before = xs.listing()
    written = xs.guest(*_as_guest(args, "mail"))
    dry = xs.guest("--dry-run", *_as_guest(args, "mail"))
    assert_clean_failure(written, status, says)
    assert (dry.status, dry.stdout, dry.stderr) == (written.status, written.stdout, written.stderr)
    assert xs.listing() == before


def test_dry_run_over_a_malformed_target_answers_as_the_write(xs):
    """The plain rule: an absolute target replaces a malformed one, anything else is refused."""
    web = "/local/domain/1"
    xs.write(f"{web}/memory/target", "lots")
    try:
        before = xs.listing()
        for args in (("mem-set", "web", "+64"), ("-d", "web", "min", "64M")):
            assert_clean_failure(xs("--dry-run", *args), 3, "not a number of KiB", "set an absolute target")
        dry = xs("--dry-run", "mem-set", "web", "400")
        assert (dry.status, dry.stdout) == (0, "machdep.xen.balloon.target: 0 -> 409600\n"), dry
        assert xs.listing() == before
        # Once replaced, later requests of the same write see the new value.
        dry = xs("--dry-run", "-d", "web", "-w", "target=400M", "target=+64M", "min=128M")
        assert dry.status == 0, dry
        assert "machdep.xen.balloon.target: 409600 -> 475136" in dry.stdout
        written = xs("-d", "web", "-w", "target=400M", "target=+64M", "min=128M")
        assert (written.status, written.stdout) == (0, dry.stdout), written
        assert xs.read(f"{web}/memory/target") == "475136"
    finally:
        xs.write(f"{web}/memory/target", str(768 * 1024))
