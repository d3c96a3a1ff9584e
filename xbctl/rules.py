"""Every write rule, checked by the same code whatever the transport, for writes and dry runs.

A transport hands over a snapshot of one domain's balloon (read inside its lock or
transaction); plan_writes turns the requests into the node values to write, or raises
the refusal. The rules, in the order they are checked:

- a target that is not a number (memory/target garbled): only an absolute target may
  replace it, as `xl mem-set` does; the first request must be one, later ones see the
  new value; anything else gets the malformed-value error;
- the node table's driver rules (nodes.py): read-only nodes, target within [min, max],
  min above the driver's safeguard floor, xen-max not below target and host-only;
- the host's own floor for a target: memory/dynamic-min, libxl's Domain-0 minimum
  (128 MiB), or a quarter of static-max for a guest that publishes no minimum
  (host_floor, which the Xenstore model uses to compute min);
- the guest position: inside a guest, target and xen-max are the toolstack's (Xenstore
  answers a guest's write with EACCES): refused before anything is written; min is the
  guest's own floor, which its root may set within the driver's rules; so is target when
  the guest's own driver takes one (Linux's sysfs target_kb: the transport says so).
"""

from __future__ import annotations

from .errors import ExitStatus, XbctlError, refused
from .units import round_up_to_page, size_in_unit

TYPE_CHECKING = False  # importing typing costs every start-up a few ms
if TYPE_CHECKING:
    from .nodes import Balloon, Node
    from .transports import Domain
    from .units import Size

# libxl refuses a Domain-0 target below LIBXL_MIN_DOM0_MEM (128 MiB): below it dom0 cannot run.
DOM0_MIN_KIB = 128 * 1024
# A guest that publishes no minimum and has no memory/dynamic-min: its floor is static-max
# divided by this (XAPI refuses dynamic-min below a quarter of static-max for the same reason:
# a Linux guest sizes its kernel tables for static-max at boot and thrashes or OOMs far below).
DEFAULT_FLOOR_DIVISOR = 4
# The nodes a guest's own root may write (the rest are the toolstack's, EACCES); a transport
# that reaches the guest's own driver adds target (Transport.guest_writable_nodes).
GUEST_WRITABLE = frozenset({"min"})


class WriteRequest:
    """Set NODE to SIZE; an OPTIONAL request that is refused is skipped, not fatal."""

    __slots__ = ("node", "size", "optional", "origin")

    def __init__(self, node: "Node", size: "Size", optional: bool = False, origin: str | None = None) -> None:
        self.node, self.size, self.optional, self.origin = node, size, optional, origin

    def __repr__(self) -> str:
        return f"WriteRequest({self.node.key}, {self.size.text!r}, optional={self.optional})"


class Change:
    """One node's value before and after a write: the node's key (`node`, as the --json document
    names it) and sysctl name (`name`), the old and new values in KiB, and the settings line
    that asked for it (`origin`, FILE:LINE) if any."""

    __slots__ = ("node", "name", "old_kib", "new_kib", "origin")

    def __init__(self, node: "Node", old_kib: int, new_kib: int, origin: str | None = None) -> None:
        self.node, self.name = node.key, node.sysctl_name
        self.old_kib, self.new_kib, self.origin = old_kib, new_kib, origin

    def since(self, old_kib: int) -> "Change":
        """This change, from OLD_KIB (what several changes to one node amount to)."""
        net = Change.__new__(Change)
        net.node, net.name, net.old_kib, net.new_kib, net.origin = (
            self.node,
            self.name,
            old_kib,
            self.new_kib,
            self.origin,
        )
        return net

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Change) and (self.node, self.old_kib, self.new_kib) == (
            other.node,
            other.old_kib,
            other.new_kib,
        )

    def __repr__(self) -> str:
        return f"Change({self.node}, {self.old_kib} -> {self.new_kib})"


def net_changes(changes: "list[Change]", *, keep_unchanged: bool = False) -> "list[Change]":
    """What CHANGES (in request order) amount to: per node, from its first old value to its last
    new one, credited to the last line that set it; nodes left as they were are dropped unless
    KEEP_UNCHANGED (then old == new)."""

    first: dict[str, Change] = {}
    last: dict[str, Change] = {}
    for change in changes:
        first.setdefault(change.node, change)
        last[change.node] = change
    net = [c.since(first[key].old_kib) for key, c in last.items()]
    return [c for c in net if keep_unchanged or c.old_kib != c.new_kib]


class WritePlan:
    """What a write does: the node values to write (in request order), the changes, what was skipped."""

    __slots__ = ("values", "changes", "skipped")

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.changes: list[Change] = []
        self.skipped: list[tuple[str, XbctlError]] = []


def host_floor(
    domid: int,
    dynamic_min_kib: int | None,
    guest_min_kib: int | None,
    target_kib: int | None,
    xen_max_kib: int,
) -> tuple[int, str | None, str | None]:
    """The host's own floor for a domain's target: its KiB, where it comes from, how to lower it.

    TARGET_KIB is None when the domain's target is unknown (malformed).
    """
    lower = f"xbctl -d {domid} min SIZE sets memory/dynamic-min"
    if dynamic_min_kib is not None:
        floor_kib, origin, hint = dynamic_min_kib, "memory/dynamic-min", lower
    elif domid == 0 or guest_min_kib is not None:
        floor_kib, origin, hint = 0, None, None
    else:
        # Never above the target the domain has now: re-setting it must stay possible.
        floor_kib = round_up_to_page(xen_max_kib // DEFAULT_FLOOR_DIVISOR)
        if target_kib is not None:
            floor_kib = min(floor_kib, target_kib)
        origin = "the default floor for a guest that publishes no minimum: a quarter of static-max"
        hint = f"to go lower, {lower}"
    if domid == 0 and floor_kib < DOM0_MIN_KIB:
        floor_kib, origin, hint = DOM0_MIN_KIB, "libxl's Domain-0 minimum", None
    return floor_kib, origin, hint


def resolve_kib(request: WriteRequest, balloon: "Balloon") -> int:
    """The absolute, page-rounded KiB value REQUEST asks for, given BALLOON.

    Every value is the domain's, video memory included (target is what xl mem-set takes);
    the transport stores memory/target less memory/videoram.
    """
    amount = request.size.kib
    if request.size.relative:
        amount += balloon.value_kib(request.node.key)
    if amount.denominator != 1:
        raise refused(request.node.sysctl_name, f"{request.size.text} is not a whole number of KiB")
    return round_up_to_page(int(amount))


def without_guest_floor(balloon: "Balloon") -> "Balloon":
    """BALLOON as the host sees it when it overrides the guest's published floor."""
    if balloon.host_min_kib is None:
        return balloon  # no guest floor involved (or a simulated driver's own rule)
    return balloon.with_fields(min_kib=balloon.host_min_kib, floor_kib=0, min_origin=None, min_hint=None)


def replaces_malformed_target(request: WriteRequest) -> bool:
    """True for the one request that may overwrite a malformed target: an absolute target."""
    return request.node.key == "target" and not request.size.relative


def malformed_target_error(balloon: "Balloon", domain: "Domain") -> XbctlError:
    """The malformed-value error for BALLOON's target, with how to repair it."""
    malformed = balloon.target_malformed
    assert malformed is not None  # asked only of a balloon whose target is malformed
    return XbctlError(
        malformed.message,
        status=malformed.status,
        errno_name=malformed.errno_name,
        hint=f"set an absolute target to replace it (xbctl mem-set {domain.id} SIZE)",
    )


def guest_position_refusal(domain: "Domain", keys: list[str], location: str | None) -> XbctlError:
    """The refusal of a write from inside a guest: these nodes are the toolstack's.

    LOCATION is where the first node lives in the transport's store, when it has one
    (Xenstore's path); the message then reads as Xenstore's own EACCES would.
    """
    what = ", ".join(keys)
    if location is not None:
        message = f"{location}: Permission denied (EACCES): inside a guest, {what} can only be set from the host"
    else:
        message = f"domain {domain.name}: Permission denied: inside a guest, {what} can only be set from the host"
    return XbctlError(message, status=ExitStatus.REFUSED, errno_name="EACCES")


def plan_writes(
    balloon: "Balloon",
    requests: list[WriteRequest],
    *,
    domain: "Domain",
    writer_is_host: bool,
    override_guest_floor: bool = False,
    locate=None,
    guest_writable: "frozenset[str] | None" = None,
) -> WritePlan:
    """Check REQUESTS in order against every rule, each seeing the ones before it.

    A refused request that is not optional raises, so nothing is written; an optional one
    is skipped. LOCATE(key) names where a node is stored, for the guest-position refusal;
    GUEST_WRITABLE the nodes a guest's root may set (default GUEST_WRITABLE).
    """
    if override_guest_floor and writer_is_host:
        balloon = without_guest_floor(balloon)
    plan = WritePlan()
    for request in requests:
        if balloon.target_malformed is not None and not replaces_malformed_target(request):
            # Not a refusal: no `name?=value` excuses it; nothing else can be judged against it.
            raise malformed_target_error(balloon, domain)
        try:
            new_kib = resolve_kib(request, balloon)
            unit = request.size.unit
            request.node.check_write(new_kib, balloon, writer_is_host, lambda kib, unit=unit: size_in_unit(kib, unit))
        except XbctlError as exc:
            located = exc.at(request.origin)
            if request.optional:
                plan.skipped.append((request.node.sysctl_name, located))
                continue
            raise located from None
        plan.changes.append(Change(request.node, balloon.value_kib(request.node.key), new_kib, request.origin))
        balloon = balloon.with_value(request.node.key, new_kib)
        plan.values[request.node.key] = new_kib
    # A domain's administrator sets its own min (NetBSD's sysctl lets the domain's root do
    # it): the transport publishes it as the guest's floor. The rest is the toolstack's.
    writable = GUEST_WRITABLE if guest_writable is None else guest_writable
    keys = [key for key in plan.values if key not in writable]
    if keys and not writer_is_host:
        raise guest_position_refusal(domain, keys, locate(keys[0]) if locate else None)
    return plan
