"""Planning a write (xbctl/rules.py): every rule, on a snapshot, as both transports run it."""

from __future__ import annotations

import pytest

from xbctl.errors import ExitStatus, XbctlError
from xbctl.nodes import NODE_BY_KEY, Balloon
from xbctl.rules import DOM0_MIN_KIB, Change, WriteRequest, host_floor, plan_writes
from xbctl.transports import Domain
from xbctl.units import parse_size

MIB = 1024
WEB = Domain(1, "web")


def request(key: str, text: str, *, optional: bool = False, origin: str | None = None) -> WriteRequest:
    return WriteRequest(NODE_BY_KEY[key], parse_size(text, allow_relative=key == "target"), optional, origin)


def balloon(**fields) -> Balloon:
    values = dict(
        current_kib=768 * MIB,
        target_kib=768 * MIB,
        min_kib=128 * MIB,
        xen_max_kib=1024 * MIB,
        driver_max_kib=None,
        floor_kib=0,
    )
    values.update(fields)
    return Balloon(**values)


def plan(snapshot: Balloon, *requests: WriteRequest, host: bool = True, **rules):
    return plan_writes(snapshot, list(requests), domain=WEB, writer_is_host=host, **rules)


def refusal(snapshot: Balloon, *requests: WriteRequest, host: bool = True, **rules) -> XbctlError:
    with pytest.raises(XbctlError) as caught:
        plan(snapshot, *requests, host=host, **rules)
    return caught.value


def test_one_target():
    planned = plan(balloon(), request("target", "512M"))
    assert planned.values == {"target": 512 * MIB}
    assert planned.changes == [Change(NODE_BY_KEY["target"], 768 * MIB, 512 * MIB)]
    assert planned.skipped == []


def test_each_request_sees_the_ones_before_it():
    # raising xen-max first makes room for a target above the old one
    planned = plan(balloon(), request("xen-max", "2G"), request("target", "1536M"))
    assert planned.values == {"xen-max": 2048 * MIB, "target": 1536 * MIB}
    assert "above max" in refusal(balloon(), request("target", "1536M"), request("xen-max", "2G")).message
    planned = plan(balloon(), request("target", "+64M"), request("target", "+64M"))
    assert planned.values == {"target": 896 * MIB}
    assert [(c.old_kib, c.new_kib) for c in planned.changes] == [(768 * MIB, 832 * MIB), (832 * MIB, 896 * MIB)]


def test_rounding_videoram_and_whole_kib():
    assert plan(balloon(), request("target", "524287")).values == {"target": 524288}
    # target is the domain's size with its video memory, as xl mem-set takes it: the plan is in
    # those terms (the transport stores memory/target less the video memory)
    assert plan(balloon(videoram_kib=8 * MIB), request("target", "512M")).values == {"target": 512 * MIB}
    assert plan(balloon(videoram_kib=8 * MIB), request("target", "-8M")).values == {"target": 760 * MIB}
    assert "not a whole number of KiB" in refusal(balloon(), request("target", "1b")).message


def test_a_refusal_writes_nothing_and_an_optional_one_is_skipped():
    error = refusal(balloon(), request("target", "512M"), request("target", "64M", origin="f.conf:2"))
    assert (error.status, error.errno_name) == (ExitStatus.REFUSED, "EPERM")
    assert error.message.startswith("f.conf:2: machdep.xen.balloon.target: Operation not permitted")
    planned = plan(balloon(), request("target", "64M", optional=True), request("target", "512M"))
    assert planned.values == {"target": 512 * MIB}
    assert [name for name, _ in planned.skipped] == ["machdep.xen.balloon.target"]


def test_the_host_may_override_the_guest_floor():
    guest_floor = balloon(min_kib=256 * MIB, host_min_kib=64 * MIB, floor_kib=256 * MIB)
    assert "below min" in refusal(guest_floor, request("target", "128M")).message
    assert plan(guest_floor, request("target", "128M"), override_guest_floor=True).values == {"target": 128 * MIB}
    # a guest cannot override anything (and is refused the write anyway)
    assert "below min" in refusal(guest_floor, request("target", "128M"), host=False, override_guest_floor=True).message


# ---------------------------------------------------------------- the guest position


@pytest.mark.parametrize("key, text", [("target", "512M"), ("target", "-4")])
def test_a_guest_may_not_write_the_toolstacks_nodes(key, text):
    error = refusal(balloon(), request(key, text), host=False)
    assert (error.status, error.errno_name) == (ExitStatus.REFUSED, "EACCES")
    assert error.message == f"domain web: Permission denied: inside a guest, {key} can only be set from the host"


def test_the_guest_refusal_names_the_store_path_when_there_is_one():
    error = refusal(
        balloon(),
        request("target", "512M"),
        request("min", "256M"),
        host=False,
        locate=lambda key: f"/local/domain/1/memory/{key}",
    )
    assert error.message == (
        "/local/domain/1/memory/target: Permission denied (EACCES): inside a guest, target can only be set "
        "from the host"
    )


def test_a_guests_root_sets_its_own_min_within_the_drivers_rules():
    assert plan(balloon(), request("min", "256M"), host=False).values == {"min": 256 * MIB}
    assert "above target" in refusal(balloon(), request("min", "800M"), host=False).message
    assert "safeguard floor" in refusal(balloon(floor_kib=64 * MIB), request("min", "32M"), host=False).message


def test_the_drivers_rules_speak_before_the_guest_position():
    assert refusal(balloon(), request("target", "64M"), host=False).errno_name == "EPERM"
    assert "only the host administrator" in refusal(balloon(), request("xen-max", "2G"), host=False).message
    # nothing to write (every request optional and refused): nothing refused for the position
    assert plan(balloon(), request("target", "64M", optional=True), host=False).values == {}


# ---------------------------------------------------------------- a malformed target


def malformed() -> Balloon:
    error = XbctlError(
        "/local/domain/1/memory/target: holds 'lots', not a number of KiB",
        status=ExitStatus.UNAVAILABLE,
        errno_name="EINVAL",
    )
    return balloon(target_kib=0, target_malformed=error)


def test_an_absolute_target_replaces_a_malformed_one():
    planned = plan(malformed(), request("target", "400M"))
    assert planned.values == {"target": 400 * MIB}
    assert [(c.old_kib, c.new_kib) for c in planned.changes] == [(0, 400 * MIB)]


def test_later_requests_see_the_new_target():
    planned = plan(malformed(), request("target", "400M"), request("target", "+64M"), request("min", "256M"))
    assert planned.values == {"target": 464 * MIB, "min": 256 * MIB}
    assert "above target" in refusal(malformed(), request("target", "200M"), request("min", "256M")).message


@pytest.mark.parametrize(
    "requests",
    [
        [("target", "+64M")],
        [("target", "-64M")],
        [("min", "64M")],
        [("xen-max", "900M")],
        [("current", "1G")],
        [("min", "64M"), ("target", "400M")],  # the first request must be the absolute target
    ],
)
def test_anything_else_over_a_malformed_target_gets_the_malformed_error(requests):
    error = refusal(malformed(), *(request(key, text) for key, text in requests))
    assert (error.status, error.errno_name) == (ExitStatus.UNAVAILABLE, "EINVAL")
    assert error.message == "/local/domain/1/memory/target: holds 'lots', not a number of KiB"
    assert error.hint == "set an absolute target to replace it (xbctl mem-set 1 SIZE)"


def test_optional_requests_do_not_excuse_a_malformed_target():
    error = refusal(malformed(), request("target", "+64M", optional=True))
    assert error.errno_name == "EINVAL"
    # an absolute target that is refused is skipped, and the next request meets the malformed one
    error = refusal(malformed(), request("target", "2G", optional=True), request("target", "+64M"))
    assert error.errno_name == "EINVAL"


def test_a_malformed_target_still_checks_min_and_max():
    assert "below min" in refusal(malformed(), request("target", "16M")).message
    assert "above max" in refusal(malformed(), request("target", "2G")).message


# ---------------------------------------------------------------- the host's floor


def test_host_floor():
    # memory/dynamic-min when the host set one
    assert host_floor(1, 300 * MIB, None, 768 * MIB, 1024 * MIB)[:2] == (300 * MIB, "memory/dynamic-min")
    # a guest that publishes its own floor: the host adds none
    assert host_floor(1, None, 64 * MIB, 768 * MIB, 1024 * MIB)[0] == 0
    # a guest that publishes nothing: a quarter of static-max, never above its target
    assert host_floor(1, None, None, 768 * MIB, 1024 * MIB)[0] == 256 * MIB
    assert host_floor(1, None, None, 200 * MIB, 1024 * MIB)[0] == 200 * MIB
    assert host_floor(1, None, None, None, 1024 * MIB)[0] == 256 * MIB  # target unknown (malformed)
    # Domain-0: libxl's 128 MiB at least
    assert host_floor(0, None, None, 4096 * MIB, 4096 * MIB) == (DOM0_MIN_KIB, "libxl's Domain-0 minimum", None)
    assert host_floor(0, 64 * MIB, None, 4096 * MIB, 4096 * MIB)[0] == DOM0_MIN_KIB
    assert host_floor(0, 512 * MIB, None, 4096 * MIB, 4096 * MIB)[0] == 512 * MIB
