"""What xbctl does, independent of how it is shown: read, write, list, wait.

Functions here return results and raise XbctlError; they never print.
"""

from __future__ import annotations

import time

from .errors import ExitStatus, XbctlError
from .nodes import find_node

TYPE_CHECKING = False  # importing typing costs every start-up a few ms
if TYPE_CHECKING:
    from typing import Callable

    from .assignments import Assignment
    from .nodes import Balloon, Node
    from .rules import Change, WriteRequest
    from .transports import Domain, Transport


def __getattr__(name: str):
    # the write rules (and units) load only for writes; these names stay importable from here.
    if name in ("Change", "WriteRequest"):
        from . import rules

        return getattr(rules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Change",
    "DomainRequests",
    "DomainRow",
    "DEFAULT_STALL_S",
    "WaitOutcome",
    "WriteRequest",
    "WriteResult",
    "WritesResult",
    "list_balloons",
    "read_balloon",
    "request_for",
    "requests_by_domain",
    "requests_from_assignments",
    "require_sim",
    "resolve_groups",
    "wait_for_target",
    "write_domains",
    "write_nodes",
]


# --wait following the hypervisor ends when its figure has not changed for this long.
DEFAULT_STALL_S = 10.0


_UNASKED = object()  # a result's hypervisor status, not asked of its transport yet


class WriteResult:
    """What a write did (or, in a dry run, would do): the one result of a write, from the engine
    to the API (xbctl.api returns it as is) and the --json document (`to_dict()`, rendered from it).

    `changes` lists every node asked for (old == new for one that already held its value, as
    sysctl prints `x -> x`); `skipped` the names ignored and why; `wait` how a wait ended (None:
    no wait); `transport` names the transport, `hypervisor` is what the document's envelope says
    of the hypervisor (asked of SOURCE, the transport, on first use: a text write never asks).
    """

    __slots__ = (
        "domain",
        "changes",
        "after",
        "dry_run",
        "skipped",
        "warnings",
        "wait",
        "transport",
        "_source",
        "_hypervisor",
    )

    def __init__(
        self,
        domain: "Domain",
        changes: "list[Change]",
        after: "Balloon",
        dry_run: bool,
        skipped: "list[tuple[str, XbctlError]] | None" = None,
        warnings: "list[str] | None" = None,
        wait: "WaitOutcome | None" = None,
        source: "Transport | None" = None,
    ) -> None:
        self.domain, self.changes, self.after, self.dry_run = domain, changes, after, dry_run
        self.skipped = skipped if skipped is not None else []
        self.warnings = warnings if warnings is not None else []
        self.wait, self._source, self._hypervisor = wait, source, _UNASKED
        self.transport = source.name if source is not None else ""

    @property
    def hypervisor(self) -> "dict | None":
        """Whether the hypervisor answered the transport, and why not (None: not ours to ask)."""
        if self._hypervisor is _UNASKED:
            self._hypervisor = self._source.hypervisor_status() if self._source is not None else None
        return self._hypervisor  # type: ignore[return-value]  # never _UNASKED here: asked just above

    @property
    def changed(self) -> bool:
        """True when the write changes (or in a dry run would change) a node's value."""
        return any(c.old_kib != c.new_kib for c in self.changes)

    @property
    def ignored(self) -> "list[dict]":
        """The names `name?=value` ignored, and why: [{"name": ..., "reason": ...}]."""
        return [{"name": name, "reason": error.message} for name, error in self.skipped]

    def ask_transport(self) -> None:
        """Ask the transport now what the document's envelope says of it (before it closes)."""
        _ = self.hypervisor

    def replace(self, **fields) -> "WriteResult":
        """A copy with FIELDS (e.g. changes=..., wait=...) replaced."""
        names = ("domain", "changes", "after", "dry_run", "skipped", "warnings", "wait")
        values = {name: getattr(self, name) for name in names}
        values.update(fields)
        copy = WriteResult(**values)
        copy._source, copy.transport, copy._hypervisor = self._source, self.transport, self._hypervisor
        return copy

    def to_dict(self) -> dict:
        """The --json `write` document of this result."""
        from .json_output import write_document

        return write_document(self)

    def __repr__(self) -> str:
        return f"WriteResult({self.domain.name}, {self.changes!r}, dry_run={self.dry_run}, wait={self.wait!r})"


class WritesResult:
    """A change to several domains at once (a settings file with sections): one WriteResult each."""

    __slots__ = ("writes", "transport", "_source")

    def __init__(self, writes: "list[WriteResult]", source: "Transport | None" = None) -> None:
        self.writes, self._source = writes, source
        self.transport = source.name if source is not None else ""

    @property
    def hypervisor(self) -> "dict | None":
        """Whether the hypervisor answered the transport, and why not (None: not ours to ask)."""
        return self._source.hypervisor_status() if self._source is not None else None

    @property
    def dry_run(self) -> bool:
        """True when this was a dry run."""
        return any(write.dry_run for write in self.writes)

    @property
    def changed(self) -> bool:
        """True when any node of any domain changes (or in a dry run would change)."""
        return any(write.changed for write in self.writes)

    def to_dict(self) -> dict:
        """The --json `writes` document of this result."""
        from .json_output import writes_document

        return writes_document(self)


class WaitOutcome:
    """How a wait for the target ended: reached or not (and why), with the balloon it last saw."""

    __slots__ = ("reached", "balloon", "reason")

    def __init__(self, reached: bool, balloon: "Balloon", reason: str | None = None) -> None:
        self.reached, self.balloon, self.reason = reached, balloon, reason

    @property
    def current_kib(self) -> int:
        """The current the wait last saw."""
        return self.balloon.current_kib

    @property
    def target_kib(self) -> int:
        """The target it waited for."""
        return self.balloon.target_kib

    def __repr__(self) -> str:
        return f"WaitOutcome(reached={self.reached}, current_kib={self.current_kib}, target_kib={self.target_kib})"


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
            located = exc.at(assignment.origin)
            if not assignment.optional:
                raise located from None
            ignored.append((assignment.name, located))
            continue
        requests.append(request_for(node, assignment.value, optional=assignment.optional, origin=assignment.origin))
    return requests, ignored


def checked_configuration(paths: list[str]) -> tuple[list[str], list[Assignment], list[tuple[str, XbctlError]]]:
    """Configuration files PATHS read and checked one by one (their syntax, node names and
    sizes: all that needs no domain), as sysctl.d's files apply: the files that pass, their
    assignments in file order, and each other file with its first error (left out whole)."""
    import os

    from .assignments import read_settings_file

    passed: list[str] = []
    assignments: list[Assignment] = []
    failed: list[tuple[str, XbctlError]] = []
    for path in paths:
        if os.path.realpath(path) == os.devnull:
            passed.append(path)  # a masked vendor file: nothing to read
            continue
        try:
            lines = read_settings_file(path)
            requests_from_assignments(lines)  # unknown names and malformed values, with FILE:LINE
        except XbctlError as exc:
            failed.append((path, exc))
            continue
        passed.append(path)
        assignments.extend(lines)
    return passed, assignments, failed


def request_for(
    node: Node, text: str, *, default_unit: str = "k", optional: bool = False, origin: str | None = None
) -> WriteRequest:
    """A request to set NODE to the size TEXT (malformed sizes exit 2)."""
    from .rules import WriteRequest
    from .units import parse_size

    try:
        size = parse_size(text, default_unit=default_unit, allow_relative=node.key == "target")
    except XbctlError as exc:
        prefixed = exc.with_prefix(node.sysctl_name)
        raise prefixed.at(origin) from None
    return WriteRequest(node, size, optional, origin)


def read_balloon(transport: Transport, domain_spec: str | None) -> tuple[Domain, Balloon]:
    """The domain named by DOMAIN_SPEC (or our own) and its balloon."""
    domain = transport.resolve_domain(domain_spec)
    return domain, transport.read_balloon(domain)


def read_all_balloons(transport: Transport) -> "list[tuple[Domain, Balloon | XbctlError]]":
    """Every visible domain, by id, with its balloon or the error reading it raised (one
    domain being built or destroyed must not hide the rest)."""
    domains = sorted(transport.list_domains(), key=lambda d: d.id)
    return list(zip(domains, transport.read_balloons(domains)))


class DomainRow:
    """One line of `xbctl list`: a domain and its balloon, or why it could not be read."""

    __slots__ = ("domain", "balloon", "problem", "problem_kind")

    def __init__(
        self,
        domain: "Domain",
        balloon: "Balloon | None",
        problem: str | None = None,
        problem_kind: str | None = None,
    ) -> None:
        self.domain, self.balloon, self.problem, self.problem_kind = domain, balloon, problem, problem_kind

    def __eq__(self, other: object) -> bool:
        # By value: `top` redraws only when a row really changed, not at every watch event.
        return isinstance(other, DomainRow) and (self.domain, self.balloon, self.problem, self.problem_kind) == (
            other.domain,
            other.balloon,
            other.problem,
            other.problem_kind,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable: not a key (Python's own spelling of it)


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
            from .errors import error_kind

            rows.append(DomainRow(domain, None, balloon.message, error_kind(balloon)))
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
    rewrite_unchanged: bool = False,
    via: str = "api",
) -> WriteResult:
    """Apply REQUESTS to one domain atomically: all are checked before anything is written.

    IGNORED lists requests dropped earlier (unknown names in `name?=value`), for the result.
    OVERRIDE_GUEST_FLOOR: the host goes below the floor the guest publishes. REWRITE_UNCHANGED:
    write a node even when it reads the value already (the policy service records its
    settings in the domain's own nodes: a min that equals today's default floor still lands).
    VIA names the front end in the record of changes (xbctl.journal).
    """
    domain = transport.resolve_domain(domain_spec)
    return write_domains(
        transport,
        [DomainRequests(None, None, requests, ignored or [], domain)],
        dry_run=dry_run,
        override_guest_floor=override_guest_floor,
        rewrite_unchanged=rewrite_unchanged,
        via=via,
    )[0]


class DomainRequests:
    """The requests of one domain: SPEC as the file or -d names it (None: -d's or our own),
    ORIGIN the FILE:LINE that named it, DOMAIN once resolved."""

    __slots__ = ("spec", "origin", "requests", "ignored", "domain")

    def __init__(self, spec, origin, requests, ignored, domain=None) -> None:
        self.spec, self.origin, self.requests, self.ignored, self.domain = spec, origin, requests, ignored, domain


def requests_by_domain(assignments: list[Assignment]) -> list[DomainRequests]:
    """ASSIGNMENTS as write requests grouped by the domain their section names (None outside any
    section), [*] first, then glob sections, then the others, each kind in the order the sections
    first appear (the most specific applies last, so it wins); malformed lines raise in file order."""
    from .assignments import section_rank

    groups: dict[str | None, DomainRequests] = {}
    for assignment in assignments:
        requests, ignored = requests_from_assignments([assignment])
        group = groups.get(assignment.domain)
        if group is None:
            origin = assignment.section_origin or assignment.origin
            group = groups[assignment.domain] = DomainRequests(assignment.domain, origin, [], [])
        group.requests.extend(requests)
        group.ignored.extend(ignored)
    return sorted(groups.values(), key=lambda group: section_rank(group.spec))


def resolve_groups(
    transport: Transport,
    groups: list[DomainRequests],
    *,
    default_spec: str | None = None,
    pinned: bool = False,
    skip_unknown: bool = False,
) -> tuple[list[DomainRequests], list[str]]:
    """GROUPS with their domains resolved, those naming one domain merged (in order), and notes.

    A group without a spec is DEFAULT_SPEC's (the -d domain, or our own). PINNED (-d given):
    a section naming another domain is a usage error, never a silent redirection. An unknown
    domain in a section is an error citing its FILE:LINE, or with SKIP_UNKNOWN a note (the
    group is left out). Names are matched like -d, against one listing of the domains. A glob
    section ([*], [web-*]) is every domain whose name it matches (with PINNED, the -d domain
    if it matches), none being a note.
    """
    from .assignments import is_glob_section
    from .errors import usage_error

    needs_default = pinned or any(g.spec is None and g.domain is None for g in groups)
    default = transport.resolve_domain(default_spec) if needs_default else None
    listing = None
    merged: dict[Domain, DomainRequests] = {}
    notes: list[str] = []
    for group in groups:
        domain = group.domain
        if domain is None and is_glob_section(group.spec):
            if listing is None:
                listing = _DomainIndex(transport.list_domains())
            matched = [d for d in listing.glob(group.spec) if not pinned or d == default]
            if not matched:
                what = f"does not match {default.name}, which -d names" if pinned and default else "matches no domain"
                notes.append(f"{group.origin}: [{group.spec}] {what}; its lines are skipped")
            for domain in matched:
                _merge(merged, group, domain)
            continue
        if domain is None and group.spec is None:
            domain = default
        elif domain is None:
            try:
                if listing is None and len({g.spec for g in groups if g.spec is not None}) > 1:
                    listing = _DomainIndex(transport.list_domains())  # one listing for many names
                domain = listing.match(group.spec) if listing is not None else transport.resolve_domain(group.spec)
            except XbctlError as exc:
                if skip_unknown and exc.status == ExitStatus.UNKNOWN:
                    notes.append(f"{group.origin}: {exc.message}; its lines are skipped")
                    continue
                raise exc.at(group.origin) from None
            if pinned and domain != default:
                assert default is not None  # PINNED: resolved above
                raise usage_error(
                    f"section [{group.spec}] names domain {domain.name} (id {domain.id}), "
                    f"but -d names {default.name} (id {default.id})",
                    hint="a file with sections for other domains applies without -d",
                ).at(group.origin)
        _merge(merged, group, domain)
    return list(merged.values()), notes


def _merge(merged: "dict[Domain, DomainRequests]", group: DomainRequests, domain: "Domain") -> None:
    """Add GROUP's requests to DOMAIN's in MERGED (after those already there)."""
    target = merged.get(domain)
    if target is None:
        merged[domain] = DomainRequests(group.spec, group.origin, list(group.requests), list(group.ignored), domain)
    else:
        target.requests.extend(group.requests)
        target.ignored.extend(group.ignored)


class _DomainIndex:
    """A listing of domains by id and by name: a thousand sections resolve in linear time,
    each exactly as -d would (transports.match_domain: the same errors, namesakes refused)."""

    def __init__(self, domains: "list[Domain]") -> None:
        self.domains = domains
        self.by_id: dict[int, list[Domain]] = {}
        self.by_name: dict[str, list[Domain]] = {}
        for domain in domains:
            self.by_id.setdefault(domain.id, []).append(domain)
            self.by_name.setdefault(domain.name, []).append(domain)

    def match(self, spec: str) -> "Domain":
        from .transports import match_domain, parse_domain_id

        domid = parse_domain_id(spec) if spec else None
        candidates = self.by_id.get(domid, []) if domid is not None else self.by_name.get(spec, [])
        return match_domain(spec, candidates)

    def glob(self, spec: str) -> "list[Domain]":
        """The domains whose names glob section SPEC matches, by id."""
        from .assignments import ALL_DOMAINS, glob_matches

        return sorted(
            (d for d in self.domains if spec == ALL_DOMAINS or glob_matches(spec, d.name)), key=lambda d: d.id
        )


def write_domains(
    transport: Transport,
    groups: list[DomainRequests],
    *,
    dry_run: bool,
    override_guest_floor: bool = False,
    rewrite_unchanged: bool = False,
    via: str = "api",
) -> list[WriteResult]:
    """Apply each resolved group's requests to its domain, all domains as one change.

    Every domain's requests are planned (each seeing the ones before it in its domain) before
    anything is written; one refusal writes nothing anywhere. Without REWRITE_UNCHANGED (a
    settings file describes a state, and a value read written back changes nothing), a node
    that already holds its value is not written: no Xenstore write, no hypercall.

    Every node a write changes, and a refusal, goes on record in the system log with VIA
    (the front end: command, policy, ansible, api); a dry run records nothing.
    """
    from .rules import plan_writes

    journal = None
    if not dry_run:
        from .journal import journal_for

        journal = journal_for(transport, via)  # a bad XBCTL_SYSLOG fails before anything is written

    writer_is_host = transport.writer_is_host()
    planned: dict[Domain, object] = {}

    def plan_for(group: DomainRequests):
        domain = group.domain

        def plan(balloon: "Balloon") -> dict[str, int]:
            # Every rule lives in rules.py: a dry run and a write (on either transport) run this same plan.
            write_plan = plan_writes(
                balloon,
                group.requests,
                domain=domain,
                writer_is_host=writer_is_host,
                override_guest_floor=override_guest_floor,
                locate=lambda key: transport.node_location(domain, key),
                guest_writable=None if writer_is_host else transport.guest_writable_nodes(domain),
            )
            planned[domain] = write_plan  # the transport may retry: keep the last plan only
            if rewrite_unchanged:
                return write_plan.values
            return {key: kib for key, kib in write_plan.values.items() if kib != balloon.value_kib(key)}

        return plan

    written = [g for g in groups if g.requests]
    outcomes: dict[Domain, tuple[Balloon, Balloon]] = {}
    for group in groups:
        if not group.requests:
            balloon = transport.read_balloon(group.domain)
            plan_for(group)(balloon)
            outcomes[group.domain] = (balloon, balloon)
    if dry_run:
        staged = []
        snapshots = transport.snapshots([group.domain for group in written]) if len(written) > 1 else None
        for index, group in enumerate(written):  # every domain planned before any hypervisor question
            before = snapshots[index] if snapshots is not None else transport.snapshot(group.domain)
            staged.append((group, before, plan_for(group)(before)))
        for group, before, values in staged:
            transport.check_write(group.domain, values)
            after = before
            for key, kib in values.items():
                after = after.with_value(key, kib)
            outcomes[group.domain] = (before, after)
    else:
        try:
            if len(written) == 1:
                outcomes[written[0].domain] = transport.update_balloon(written[0].domain, plan_for(written[0]))
            elif written:
                pairs = transport.update_balloons([(g.domain, plan_for(g)) for g in written])
                for group, pair in zip(written, pairs):
                    outcomes[group.domain] = pair
        except XbctlError as exc:
            if journal is not None and exc.status == ExitStatus.REFUSED:
                journal.refusal(written, exc)
            raise
    results = [
        _write_result(group, *outcomes[group.domain], planned[group.domain], dry_run, rewrite_unchanged, transport)
        for group in groups
    ]
    _warn_growth_beyond_free(transport, results, [outcomes[group.domain][0] for group in groups])
    if journal is not None:
        journal.changes(results)
    return results


def changed_only(result: WriteResult) -> WriteResult:
    """RESULT without the nodes that already held their values."""
    return result.replace(changes=[c for c in result.changes if c.old_kib != c.new_kib])


def _write_result(
    group: DomainRequests,
    before: "Balloon",
    after: "Balloon",
    plan,
    dry_run: bool,
    rewrite_unchanged: bool,
    transport: Transport,
) -> WriteResult:
    domain = group.domain
    result = WriteResult(domain, plan.changes, after, dry_run, [*group.ignored, *plan.skipped], source=transport)
    result.warnings.extend(before.warnings)
    target_written = any(c.node == "target" and (rewrite_unchanged or c.old_kib != c.new_kib) for c in plan.changes)
    # Only a domain that says it has no driver (feature-balloon = 0) is worth a warning:
    # Linux and NetBSD never advertise theirs, and a warning about the normal case teaches
    # people to ignore warnings.
    if before.has_driver is False and target_written:
        result.warnings.append(
            f"domain {domain.name} says it has no balloon driver (control/feature-balloon = 0): "
            "nothing in it will act on target"
        )
    return result


def _warn_growth_beyond_free(transport: Transport, results: list[WriteResult], befores: "list[Balloon]") -> None:
    """Warn on each result whose new target asks its domain to grow by more than the host has
    free (less what the domains before it in the same change take): it will not get there."""
    from .rules import net_changes

    free_kib: int | None = None
    asked = False
    for result, before in zip(results, befores):
        target = next((c for c in net_changes(result.changes) if c.node == "target"), None)
        if target is None or target.new_kib <= before.current_kib:
            continue
        if not asked:  # one hypercall, and only for a write that grows a domain
            asked, free_kib = True, transport.host_free_kib()
        if free_kib is None:
            return  # unknown (Xenstore alone, a guest): nothing to warn about
        from .capacity import growth_beyond_free

        warning = growth_beyond_free(result.domain, before, target.new_kib, free_kib)
        if warning:
            result.warnings.append(warning)
        free_kib = max(free_kib - (target.new_kib - before.current_kib), 0)


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
    directions): reached once it gets to target (video memory included) from the side it started on; a
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
            goal_kib = target_kib
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
            return WaitOutcome(
                False,
                balloon,
                _short_of_memory(transport, balloon, target_kib, f"the driver reports: {balloon.diagnostic}"),
            )
        if balloon.target_kib != target_kib:
            return WaitOutcome(False, balloon, f"target was changed to {balloon.target_kib} KiB meanwhile")
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
                reason = (
                    f"stopped moving: {current_kib} KiB for {stall_s:g} s (the hypervisor's figure){unknown_driver}"
                )
                return WaitOutcome(False, balloon, _short_of_memory(transport, balloon, target_kib, reason))
        remaining = None if deadline is None else deadline - now
        if remaining is not None and remaining <= 0:
            return WaitOutcome(
                False, balloon, _short_of_memory(transport, balloon, target_kib, f"timed out after {timeout_s:g} s")
            )
        pause_s = 1.0 if remaining is None else remaining
        if follows_hypervisor:  # its figure changes without a Xenstore event: look again soon
            assert poll_s is not None  # following the hypervisor: a figure to poll
            pause_s = min(pause_s, poll_s, max(stall_s - (now - last_move), 0.0))
        transport.wait_for_change(domain, pause_s)


def _short_of_memory(transport: Transport, balloon: "Balloon", target_kib: int, reason: str) -> str:
    """REASON, and that the host lacks the free memory the rest of the growth needs where it does."""
    from .capacity import short_of_memory

    short = short_of_memory(transport, balloon, target_kib)
    return f"{reason}; {short}" if short else reason


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
