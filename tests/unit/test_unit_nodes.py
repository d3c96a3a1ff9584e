"""The node table and the driver's rules (xbctl/nodes.py), on balloons built by hand."""

from __future__ import annotations

import pytest

from xbctl.errors import ExitStatus, XbctlError
from xbctl.nodes import NODE_BY_KEY, NODES, Balloon, find_node, select_nodes

MIB = 1024


def balloon(**fields) -> Balloon:
    """A guest at 768 MiB: min 128 MiB, floor 5 MiB, xen-max 1 GiB, boot size 1 GiB."""
    values = dict(
        current_kib=768 * MIB,
        target_kib=768 * MIB,
        min_kib=128 * MIB,
        xen_max_kib=1024 * MIB,
        driver_max_kib=1024 * MIB,
        floor_kib=5 * MIB,
    )
    values.update(fields)
    return Balloon(**values)


def test_names():
    assert [n.key for n in NODES] == ["current", "target", "min", "max", "xen-max"]
    assert find_node("machdep.xen.balloon.target") is find_node("target") is NODE_BY_KEY["target"]
    assert select_nodes("machdep") == select_nodes("machdep.xen.balloon") == NODES
    assert select_nodes("machdep.xen.balloon.min") == (NODE_BY_KEY["min"],)
    for name in ("kern.maxproc", "Target", "machdep.xen.balloon.target.x", "machdep.xen.balloon.xen_max"):
        with pytest.raises(XbctlError) as caught:
            find_node(name)
        assert caught.value.status == ExitStatus.UNKNOWN


def test_max_is_xen_max_clipped_by_the_driver():
    assert balloon(xen_max_kib=2048 * MIB).max_kib == 1024 * MIB
    assert balloon(driver_max_kib=None, xen_max_kib=2048 * MIB).max_kib == 2048 * MIB


def test_balloons_are_values():
    one = balloon()
    assert one.with_value("target", 512 * MIB) == balloon(target_kib=512 * MIB)
    assert one.target_kib == 768 * MIB  # unchanged: a copy was made
    with pytest.raises(AttributeError):
        one.target_kib = 1
    with pytest.raises(TypeError):
        Balloon(1, 2, 3)


RULES = [
    # node, new KiB, writer is host, None or what the refusal says
    ("target", 512 * MIB, True, None),
    ("target", 128 * MIB, True, None),  # min itself is allowed
    ("target", 64 * MIB, True, "below min 131072 KiB"),
    ("target", 1024 * MIB, True, None),
    ("target", 1025 * MIB, True, "above max 1048576 KiB"),
    ("min", 5 * MIB, True, None),
    ("min", 4 * MIB, True, "below the driver's safeguard floor 5120 KiB"),
    ("min", 769 * MIB, True, "above target"),
    ("xen-max", 768 * MIB, True, None),
    ("xen-max", 767 * MIB, True, "below target 786432 KiB"),
    ("xen-max", 2048 * MIB, False, "only the host administrator sets xen-max"),
    ("current", 512 * MIB, True, "read-only node"),
    ("max", 512 * MIB, True, "read-only node"),
]


@pytest.mark.parametrize("key, new_kib, host, says", RULES)
def test_driver_rules(key, new_kib, host, says):
    node = NODE_BY_KEY[key]
    if says is None:
        node.check_write(new_kib, balloon(), host)
        return
    with pytest.raises(XbctlError) as caught:
        node.check_write(new_kib, balloon(), host)
    error = caught.value
    assert (error.status, error.errno_name) == (ExitStatus.REFUSED, "EPERM")
    assert error.message.startswith(f"machdep.xen.balloon.{key}: Operation not permitted: ")
    assert says in error.message


def test_a_refusal_names_where_min_comes_from():
    with pytest.raises(XbctlError) as caught:
        NODE_BY_KEY["target"].check_write(64 * MIB, balloon(min_origin="memory/dynamic-min", min_hint="lower it"), True)
    assert "(memory/dynamic-min)" in caught.value.message and caught.value.hint == "lower it"
