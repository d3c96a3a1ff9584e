"""How a balloon reads in the cells of a domain list: the hypervisor's maximum and the balloon's
state, the same words in the table for people (output_rich) and the lines for scripts (output)."""

from __future__ import annotations

# The domain list's columns, in order: top sorts by any of them (`s` cycles through them in
# this order, `--sort` takes their names).
LIST_COLUMNS = ("id", "name", "current", "target", "min", "max", "xen-max", "hv-max", "balloon")

UNLIMITED = "unlimited"  # the hypervisor sets no maximum (max_pages 2^32-1)


def hypervisor_max_text(balloon, shown, mark: str = "!") -> str:
    """The hypervisor's maximum in a list column: SHOWN(KiB), `unlimited`, or `-` when not
    read; MARK after it when it disagrees with xen-max and target."""
    if balloon.hypervisor_max_kib is None:
        return "-"
    if balloon.hypervisor_max_unlimited:
        return UNLIMITED
    return shown(balloon.hypervisor_max_kib) + (mark if balloon.max_mismatch else "")


def balloon_state(balloon) -> str:
    """What the balloon is doing, in the list's last column: steady, moving, no driver,
    unknown (no driver advertised: Linux never does) or the driver's complaint."""
    if balloon.has_driver is False:
        return "no driver"
    if balloon.diagnostic:
        return f"driver: {balloon.diagnostic}"
    if balloon.has_driver is None:
        return "unknown"
    if balloon.current_kib != balloon.target_kib:
        return "moving"
    return "steady"
