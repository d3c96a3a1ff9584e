"""The host's capacity at a glance: its memory beside what its domains ask for.

`xbctl list` shows the host's total and free memory as the hypervisor reports them
(physinfo, as `xl info`: total_pages * 4, (free_pages - outstanding_pages) * 4 KiB; the
simulator's from its model), the sum of the domains' targets (video memory included, as
mem-set counts them) and of their maxima (xen-max: memory/static-max, what the toolstack
lets a domain grow to), and how far each sum overcommits the host's total. Without the
hypervisor (Xenstore alone, or inside a guest) the host's figures are unknown, never guessed.
Returns results; never prints.
"""

from __future__ import annotations

TYPE_CHECKING = False  # importing typing costs every start-up a few ms
if TYPE_CHECKING:
    from .nodes import Balloon
    from .operations import DomainRow
    from .transports import Domain, Transport


class HostCapacity:
    """The host's memory (None: unknown) and the sums of the targets and maxima of COUNTED
    domains (those whose balloon could be read), all in KiB."""

    __slots__ = ("total_kib", "free_kib", "targets_kib", "maxima_kib", "counted", "left_out")

    def __init__(
        self,
        total_kib: int | None,
        free_kib: int | None,
        targets_kib: int,
        maxima_kib: int,
        counted: int,
        left_out: int,
    ) -> None:
        self.total_kib, self.free_kib = total_kib, free_kib
        self.targets_kib, self.maxima_kib = targets_kib, maxima_kib
        self.counted, self.left_out = counted, left_out

    def overcommit_kib(self, sum_kib: int) -> int | None:
        """SUM_KIB less the host's total: positive overcommits it, negative is room left (None: unknown)."""
        return None if self.total_kib is None else sum_kib - self.total_kib

    def percent_of_total(self, sum_kib: int) -> float | None:
        """SUM_KIB as a percentage of the host's total, to one decimal (None: unknown)."""
        if not self.total_kib:
            return None
        return round(100 * sum_kib / self.total_kib, 1)

    def to_dict(self) -> dict:
        """The `capacity` object of the list document (xbctl/schema.json)."""

        def summed(sum_kib: int) -> dict:
            return {
                "sum_kib": sum_kib,
                "overcommit_kib": self.overcommit_kib(sum_kib),
                "percent_of_total": self.percent_of_total(sum_kib),
            }

        return {
            "total_kib": self.total_kib,
            "free_kib": self.free_kib,
            "targets": summed(self.targets_kib),
            "maxima": summed(self.maxima_kib),
            "domains_counted": self.counted,
            "domains_left_out": self.left_out,
        }


def host_capacity(transport: "Transport", rows: "list[DomainRow]") -> HostCapacity:
    """The host's memory and what ROWS (every domain of a list) ask of it."""
    balloons = [row.balloon for row in rows if row.balloon is not None]
    memory = transport.host_memory_kib()
    total_kib, free_kib = memory if memory is not None else (None, None)
    return HostCapacity(
        total_kib,
        free_kib,
        sum(balloon.target_kib for balloon in balloons),
        sum(balloon.value_kib("xen-max") for balloon in balloons),
        len(balloons),
        len(rows) - len(balloons),
    )


def growth_beyond_free(domain: "Domain", before: "Balloon", target_kib: int, free_kib: int | None) -> str | None:
    """The warning for a target that asks DOMAIN to grow (from its current reservation in
    BEFORE) by more than the host's FREE_KIB: the guest will not reach it. None otherwise."""
    growth_kib = target_kib - before.current_kib
    if free_kib is None or growth_kib <= free_kib:
        return None
    return (
        f"domain {domain.name} would grow by {growth_kib} KiB (current {before.current_kib} KiB, "
        f"target {target_kib} KiB), more than the host has free ({free_kib} KiB): "
        "it will not reach its target unless memory is freed elsewhere"
    )


def short_of_memory(transport: "Transport", balloon: "Balloon", target_kib: int) -> str | None:
    """Why a wait for TARGET_KIB that stopped short may have: the host has less free memory
    than the rest of the growth (None when it has enough, the domain shrinks, or it is unknown)."""
    missing_kib = target_kib - balloon.current_kib
    if missing_kib <= 0:
        return None
    free_kib = transport.host_free_kib()
    if free_kib is None or free_kib >= missing_kib:
        return None
    return f"the host has {free_kib} KiB free, short of the {missing_kib} KiB the domain still needs"
