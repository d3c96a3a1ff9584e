"""What xbctl does, independent of how it is shown: read, write, list, wait.

Functions here return results and raise XbctlError; they never print.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .errors import ExitStatus, XbctlError
from .nodes import find_node

if TYPE_CHECKING:
    from typing import Callable

    from .policy import Change, WriteRequest

    from .assignments import Assignment
    from .nodes import Balloon, Node
    from .transports import Domain, Transport



def __getattr__(name: str):
    # policy (and units) load only for writes; these names stay importable from here.
    if name in ("Change", "WriteRequest"):
        from . import policy

        return getattr(policy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Change", "DomainRow", "DEFAULT_STALL_S", "WaitOutcome", "WriteRequest", "WriteResult", "list_balloons",
    "read_balloon", "request_for", "requests_from_assignments", "require_sim", "wait_for_target", "write_nodes",
]


# --wait following the hypervisor ends when its figure has not changed for this long.
DEFAULT_STALL_S = 10.0


class WriteResult:
    """What a write did (or, in a dry run, would do)."""

    __slots__ = ("domain", "changes", "after", "dry_run", "skipped", "warnings")

    def __init__(
        self,
        domain: "Domain",
        changes: "list[Change]",
        after: "Balloon",
        dry_run: bool,
        skipped: "list[tuple[str, XbctlError]] | None" = None,
        warnings: "list[str] | None" = None,
    ) -> None:
        self.domain, self.changes, self.after, self.dry_run = domain, changes, after, dry_run
        self.skipped = skipped if skipped is not None else []
        self.warnings = warnings if warnings is not None else []


class WaitOutcome:
    """How a --wait ended."""

    __slots__ = ("reached", "balloon", "reason")

    def __init__(self, reached: bool, balloon: "Balloon", reason: str | None = None) -> None:
        self.reached, self.balloon, self.reason = reached, balloon, reason


def requests_from_assignments(
    assignments: list[Assignment],
) -> tuple[list[WriteRequest], list[tuple[str, XbctlError]]]:
    """The write requests ASSIGNMENTS ask for, and the unknown names `name?=value` ignores."""
    requests: list[WriteRequest] = []
    ignored: list[tuple[str, XbctlError]] = []
    for assignment in assignments:
        try:
            node = find_node(assignment.name)
        except XbctlError as exc:
            located = exc.with_prefix(assignment.origin) if assignment.origin else exc
            if not assignment.optional:
                raise located from None
            ignored.append((assignment.name, located))
            continue
        requests.append(
            request_for(node, assignment.value, optional=assignment.optional, origin=assignment.origin)
        )
    return requests, ignored


def request_for(
    node: Node, text: str, *, default_unit: str = "k", optional: bool = False, origin: str | None = None
) -> WriteRequest:
    """A request to set NODE to the size TEXT (malformed sizes exit 2)."""
    from .policy import WriteRequest
    from .units import parse_size

    try:
        size = parse_size(text, default_unit=default_unit, allow_relative=node.key == "target")
    except XbctlError as exc:
        prefixed = exc.with_prefix(node.sysctl_name)
        raise prefixed.with_prefix(origin) if origin else prefixed
    return WriteRequest(node, size, optional, origin)


def read_balloon(transport: Transport, domain_spec: str | None) -> tuple[Domain, Balloon]:
    """The domain named by DOMAIN_SPEC (or our own) and its balloon."""
    domain = transport.resolve_domain(domain_spec)
    return domain, transport.read_balloon(domain)


class DomainRow:
    """One line of `xbctl list`: a domain and its balloon, or why it could not be read."""

    __slots__ = ("domain", "balloon", "problem")

    def __init__(self, domain: "Domain", balloon: "Balloon | None", problem: str | None = None) -> None:
        self.domain, self.balloon, self.problem = domain, balloon, problem

    def __eq__(self, other: object) -> bool:
        # top redraws only when a row changed: a watch event is a hint, not a change.
        return isinstance(other, DomainRow) and (self.domain, self.balloon, self.problem) == (
            other.domain, other.balloon, other.problem
        )

    __hash__ = None  # mutable: not a key


def list_balloons(transport: Transport, domain_specs: "list[str] | None" = None) -> list[DomainRow]:
    """Every visible domain with its balloon, by id; or the domains DOMAIN_SPECS name, in that
    order (each once). Every spec is resolved before anything is read: one unknown name fails
    the whole list.

    A domain being built or destroyed (no balloon nodes yet or any more), or one whose
    nodes hold nonsense, gets a row that says so: one odd domain must not hide the rest.
    """
    visible = sorted(transport.list_domains(), key=lambda d: d.id)
    if domain_specs:
        domains = list(dict.fromkeys(_resolve_listed(transport, spec, visible) for spec in domain_specs))
    else:
        domains = visible
    rows = []
    # All at once: the simulator loads its state once, Xenstore answers pipelined requests.
    for domain, balloon in zip(domains, transport.read_balloons(domains)):
        if isinstance(balloon, XbctlError):
            if balloon.status != ExitStatus.UNKNOWN and balloon.errno_name not in ("EINVAL", "EACCES"):
                raise balloon  # the transport itself failed: no list is better than a wrong one
            rows.append(DomainRow(domain, None, balloon.message))
        else:
            rows.append(DomainRow(domain, balloon))
    return rows


def _resolve_listed(transport: Transport, spec: str, visible: "list[Domain]") -> "Domain":
    """The domain SPEC names among VISIBLE (one lookup for many specs); the transport's own
    answer for anything else (a guest asking for another domain is refused as by any read)."""
    from .transports import match_domain

    try:
        return match_domain(spec, visible)
    except XbctlError as exc:
        if exc.status != ExitStatus.UNKNOWN:
            raise  # ambiguous, empty: the same answer the transport would give
    return transport.resolve_domain(spec)


def write_nodes(
    transport: Transport,
    domain_spec: str | None,
    requests: list[WriteRequest],
    *,
    dry_run: bool,
    ignored: list[tuple[str, XbctlError]] | None = None,
    override_guest_floor: bool = False,
) -> WriteResult:
    """Apply REQUESTS to one domain atomically: all are checked before anything is written.

    IGNORED lists requests dropped earlier (unknown names in `name?=value`), for the result.
    OVERRIDE_GUEST_FLOOR: the host goes below the floor the guest publishes.
    """
    from .policy import plan_writes

    domain = transport.resolve_domain(domain_spec)
    writer_is_host = transport.writer_is_host()
    planned = []

    def plan(balloon: "Balloon") -> dict[str, int]:
        # Every rule lives in policy: a dry run and a write (on either transport) run this same plan.
        write_plan = plan_writes(
            balloon,
            requests,
            domain=domain,
            writer_is_host=writer_is_host,
            override_guest_floor=override_guest_floor,
            locate=lambda key: transport.node_location(domain, key),
        )
        planned[:] = [write_plan]  # the transport may retry: keep the last plan only
        return write_plan.values

    if not requests:
        before = after = transport.read_balloon(domain)
        plan(before)
    elif dry_run:
        before = transport.snapshot(domain)
        values = plan(before)
        transport.check_write(domain, values)
        after = before
        for key, kib in values.items():
            after = after.with_value(key, kib)
    else:
        before, after = transport.update_balloon(domain, plan)
    changes, skipped = planned[0].changes, planned[0].skipped
    result = WriteResult(domain, changes, after, dry_run, skipped=[*(ignored or []), *skipped])
    result.warnings.extend(before.warnings)
    if before.has_driver is not True and any(c.node.key == "target" for c in changes):
        consequence = (
            "nothing in it will act on target"
            if before.has_driver is False
            else "whether anything in it acts on target is unknown (Linux and NetBSD never advertise one)"
        )
        result.warnings.append(
            f"domain {domain.name} does not advertise a balloon driver (control/feature-balloon): {consequence}"
        )
    return result


def wait_for_target(
    transport: Transport,
    domain: Domain,
    target_kib: int,
    timeout_s: float | None,
    on_progress: Callable[[Balloon], None],
    stall_s: float = DEFAULT_STALL_S,
) -> WaitOutcome:
    """Block until DOMAIN's current reservation reaches TARGET_KIB, or it cannot.

    Following the hypervisor's figure (as libxl_wait_for_memory_target does, in both
    directions): reached once it gets to target + videoram from the side it started on; a
    step away from the target, or no change for STALL_S seconds, ends the wait.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    poll_s = transport.hypervisor_poll_s()
    started_kib: int | None = None
    previous_kib: int | None = None
    last_move = time.monotonic()
    while True:
        balloon = transport.read_balloon(domain)
        on_progress(balloon)
        current_kib = balloon.current_kib
        follows_hypervisor = poll_s is not None and balloon.current_source == "hypervisor"
        if follows_hypervisor:
            goal_kib = target_kib + balloon.videoram_kib
            started_kib = current_kib if started_kib is None else started_kib
            reached = current_kib <= goal_kib if started_kib >= goal_kib else current_kib >= goal_kib
        else:
            reached = current_kib == target_kib
        if balloon.has_driver is False:
            return WaitOutcome(False, balloon, "the domain has no balloon driver; nothing will move")
        if balloon.current_source == "target":  # current is only a stand-in: no progress to see
            return WaitOutcome(
                False, balloon, "the domain does not publish its current reservation; nothing to wait on"
            )
        if reached and balloon.target_kib == target_kib:
            return WaitOutcome(True, balloon)
        if balloon.diagnostic:
            return WaitOutcome(False, balloon, f"the driver reports: {balloon.diagnostic}")
        if balloon.target_kib != target_kib:
            return WaitOutcome(
                False, balloon, f"target was changed to {balloon.target_kib} KiB meanwhile"
            )
        now = time.monotonic()
        if follows_hypervisor:
            if previous_kib is not None and abs(goal_kib - current_kib) > abs(goal_kib - previous_kib):
                return WaitOutcome(
                    False,
                    balloon,
                    f"moving away from the target: {previous_kib} -> {current_kib} KiB (the hypervisor's figure)",
                )
            if current_kib != previous_kib:
                previous_kib, last_move = current_kib, now
            elif now - last_move >= stall_s:
                unknown_driver = (
                    "; the domain does not advertise a balloon driver: it may have none"
                    if balloon.has_driver is None
                    else ""
                )
                return WaitOutcome(
                    False,
                    balloon,
                    f"stopped moving: {current_kib} KiB for {stall_s:g} s (the hypervisor's figure){unknown_driver}",
                )
        remaining = None if deadline is None else deadline - now
        if remaining is not None and remaining <= 0:
            return WaitOutcome(False, balloon, f"timed out after {timeout_s:g} s")
        pause_s = 1.0 if remaining is None else remaining
        if follows_hypervisor:  # its figure changes without a Xenstore event: look again soon
            pause_s = min(pause_s, poll_s, max(stall_s - (now - last_move), 0.0))
        transport.wait_for_change(domain, pause_s)


def require_sim(transport: Transport):
    """TRANSPORT as the simulator, or a usage error for the `sim` commands."""
    from .transports.sim import SimTransport

    if not isinstance(transport, SimTransport):
        raise XbctlError(
            "the sim commands act on the simulator only",
            status=ExitStatus.USAGE,
            hint="use --transport sim",
        )
    return transport



def wait_for_any_change(transport: Transport, timeout_s: float) -> bool:
    """Block until some domain's balloon may have changed, or TIMEOUT_S passed; True if it may have.

    Over Xenstore one watch on /local/domain covers every domain (and new ones); the
    simulator moves with its clock, so every tick may be a change.
    """
    if hasattr(transport, "watch") and hasattr(transport, "next_events"):
        transport.watch("/local/domain")
        return bool(transport.next_events(timeout_s))
    domains = transport.list_domains()
    if domains:
        transport.wait_for_change(domains[0], timeout_s)
    return True
