"""The Python API: the one engine under the command line, the Ansible modules and the exporter.

    from xbctl.api import Xbctl
    with Xbctl(transport="sim", sim_state="/tmp/host.json") as xb:
        print(xb.read("web").nodes["target"].value_kib)
        result = xb.apply("web", {"target": "512M"}, dry_run=True)

`read` and `list` return dataclasses (xbctl.api_results); `plan`, `apply` and `apply_file`
return the engine's own write results (xbctl.operations.WriteResult, WritesResult: the
same objects the command line renders), `wait` its WaitOutcome. Every result's
`to_dict()` is the document --json prints (xbctl/schema.json), rendered from the result by
the CLI's own code. Errors are XbctlError, with the exit status the CLI would use.

The command line calls the engine methods below them (`find_domain`, `read_balloon`,
`list_rows`, `write`, `wait_for_target`...); the typed methods are those same calls. So
the CLI is a thin layer over this class, and a read on the command line never pays for
dataclasses at start-up.
"""

from __future__ import annotations

from .errors import ExitStatus, XbctlError, usage_error

TYPE_CHECKING = False  # importing typing costs every start-up a few ms
if TYPE_CHECKING:
    from typing import Callable, Mapping

    from .api_results import DomainRef, ListEntry, ListResult, NodeValue, ReadResult
    from .capacity import HostCapacity
    from .conf import UnsafeFile
    from .nodes import Balloon
    from .operations import DomainRequests, DomainRow, WaitOutcome, WriteResult, WritesResult
    from .operations import WaitOutcome as WaitResult
    from .operations import WriteResult as Written
    from .rules import Change as ChangeEntry
    from .rules import WriteRequest
    from .transports import Domain, Transport

__all__ = [
    "Xbctl",
    "XbctlError",
    "ExitStatus",
    "DomainRef",
    "NodeValue",
    "ReadResult",
    "ListEntry",
    "ListResult",
    "ChangeEntry",
    "WaitResult",
    "WriteResult",
    "WritesResult",
]

_RESULT_TYPES = ("DomainRef", "NodeValue", "ReadResult", "ListEntry", "ListResult")
# A write's result is the engine's own (xbctl.operations), with the change (xbctl.rules) and the wait in it.
_WRITE_TYPES = {"WriteResult": "WriteResult", "WritesResult": "WritesResult", "WaitResult": "WaitOutcome"}


def __getattr__(name: str):
    # The result types load on first use (`from xbctl.api import ReadResult` works).
    if name in _RESULT_TYPES:
        from . import api_results

        return getattr(api_results, name)
    if name in _WRITE_TYPES:
        from . import operations

        return getattr(operations, _WRITE_TYPES[name])
    if name == "ChangeEntry":
        from .rules import Change

        return Change
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Xbctl:
    """One connection to a balloon: the simulator or Xenstore (None: as the CLI chooses).

    ON_NOTE(message) hears what the user should be told once (why the hypervisor is not
    used); without it, notes are dropped. `simulated_by_default` is True when no transport
    was named and the simulator answers (no Xenstore, and no Xen, here). VIA names the front
    end in the system log's record of every change (xbctl.journal): "api" unless told.
    """

    def __init__(
        self,
        transport: str | None = None,
        sim_state: str | None = None,
        *,
        on_note: Callable[[str], None] | None = None,
        via: str = "api",
    ) -> None:
        from .transports.choice import open_transport

        self.transport: Transport = open_transport(transport, sim_state)
        self.via = via  # the front end, as the record of changes in the system log names it
        self.simulated_by_default = transport is None and self.transport.name == "sim"
        self.transport.on_note = on_note if on_note is not None else (lambda message: None)

    @property
    def transport_name(self) -> str:
        """The transport that answers: "sim" or "xenstore"."""
        return self.transport.name

    def __enter__(self) -> "Xbctl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection."""
        self.transport.close()

    # ------------------------------------------------------------------ the engine

    def find_domain(self, domain: str | int | None) -> "Domain":
        """The domain named or numbered DOMAIN (looked up, never put in a path), or our own."""
        return self.transport.resolve_domain(_spec(domain))

    def read_balloon(self, domain: str | int | None) -> "tuple[Domain, Balloon]":
        """DOMAIN (None: our own) and its balloon now."""
        from .operations import read_balloon

        return read_balloon(self.transport, _spec(domain))

    def read_all(self) -> "list[tuple[Domain, Balloon | XbctlError]]":
        """Every visible domain by id with its balloon, or the error reading it raised."""
        from .operations import read_all_balloons

        return read_all_balloons(self.transport)

    def list_rows(self, domains: "list[str] | None" = None) -> "list[DomainRow]":
        """Every visible domain (or those DOMAINS name, in that order) with its balloon, or why
        it could not be read."""
        from .operations import list_balloons

        return list_balloons(self.transport, domains)

    def requests_for(self, values: Mapping[str, str | int], *, default_unit: str = "k") -> "list[WriteRequest]":
        """Write requests for VALUES ({node: size text or KiB}); a malformed size exits 2."""
        from .nodes import find_node
        from .operations import request_for

        requests = []
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise usage_error(f"{key}: a size is text or an integer number of KiB, not {value!r}")
            requests.append(request_for(find_node(key), str(value), default_unit=default_unit))
        return requests

    def write(
        self,
        domain: str | int | None,
        requests: "list[WriteRequest]",
        *,
        dry_run: bool = False,
        ignored: list | None = None,
        override_guest_floor: bool = False,
    ) -> "Written":
        """Apply REQUESTS to DOMAIN atomically (all checked before anything is written)."""
        from .operations import write_nodes

        return write_nodes(
            self.transport,
            _spec(domain),
            requests,
            dry_run=dry_run,
            ignored=ignored,
            override_guest_floor=override_guest_floor,
            via=self.via,
        )

    def write_settings(
        self,
        assignments: list,
        *,
        domain: str | int | None = None,
        dry_run: bool = False,
        override_guest_floor: bool = False,
        rewrite_unchanged: bool = False,
        skip_unknown: bool = False,
    ) -> "tuple[list[Written], list[str]]":
        """Apply settings ASSIGNMENTS (xbctl.assignments: `[DOMAIN]` sections) as one change.

        Lines outside a section are DOMAIN's (None: our own); with DOMAIN given, a section
        naming another domain is a usage error. Every domain is planned before anything is
        written. SKIP_UNKNOWN: a section naming no domain is a note, not an error. Without
        REWRITE_UNCHANGED a node already holding its value is not written. Returns one result
        per domain, in the order the settings name them, and the notes.
        """
        groups, notes = self.resolve_settings(assignments, domain=domain, skip_unknown=skip_unknown)
        results = self.write_groups(
            groups, dry_run=dry_run, override_guest_floor=override_guest_floor, rewrite_unchanged=rewrite_unchanged
        )
        return results, notes

    def resolve_settings(
        self, assignments: list, *, domain: str | int | None = None, skip_unknown: bool = False
    ) -> "tuple[list[DomainRequests], list[str]]":
        """ASSIGNMENTS as write requests grouped by resolved domain (see write_settings), and notes.
        Malformed values and unknown names or domains raise here, before anything is read."""
        from .operations import requests_by_domain, resolve_groups

        return resolve_groups(
            self.transport,
            requests_by_domain(assignments),
            default_spec=_spec(domain),
            pinned=domain is not None,
            skip_unknown=skip_unknown,
        )

    def write_groups(
        self,
        groups: "list[DomainRequests]",
        *,
        dry_run: bool = False,
        override_guest_floor: bool = False,
        rewrite_unchanged: bool = False,
    ) -> "list[Written]":
        """Write resolved GROUPS (from resolve_settings), every domain planned first, as one change."""
        from .operations import write_domains

        return write_domains(
            self.transport,
            groups,
            dry_run=dry_run,
            override_guest_floor=override_guest_floor,
            rewrite_unchanged=rewrite_unchanged,
            via=self.via,
        )

    def configuration(self) -> "tuple[list[str], list[UnsafeFile]]":
        """The configuration files that apply, in order, and those left out because someone
        other than root may change them (xbctl.conf.checked_configuration_files)."""
        from .conf import checked_configuration_files

        return checked_configuration_files()

    def apply_configuration(
        self, *, dry_run: bool = False, override_guest_floor: bool = False, files: "list[str] | None" = None
    ) -> "tuple[list[str], list[Written], list[str], list[tuple[str, XbctlError]]]":
        """`xbctl --system`: the configuration FILES (default: configuration()'s, files others
        than root may change left out), unknown domains skipped, file by file as sysctl.d's: a
        file that does not parse, or whose line is refused, is left out and the others apply
        (as one change). Returns the files applied in order, per domain what its settings amount
        to (net, each credited to the line that set it last; old == new for a node that already
        held its value), the notes, and each file left out with its error, in file order."""
        from .assignments import cited_file, origin_file
        from .operations import checked_configuration
        from .rules import net_changes

        if files is None:
            files, _unsafe = self.configuration()
        order = {path: index for index, path in enumerate(files)}
        applied, assignments, failed = checked_configuration(files)  # no domain is read before this
        while True:
            chosen = [a for a in assignments if origin_file(a.origin) in applied]
            try:
                results, notes = self.write_settings(
                    chosen, dry_run=dry_run, override_guest_floor=override_guest_floor, skip_unknown=True
                )
                break
            except XbctlError as exc:
                # Nothing was written: without the file of the line refused, the others are tried again.
                culprit = None if exc.status == ExitStatus.UNAVAILABLE else cited_file(exc, applied)
                if culprit is None:
                    raise
                failed.append((culprit, exc))
                applied.remove(culprit)
        settled = [r.replace(changes=net_changes(r.changes, keep_unchanged=True)) for r in results]
        return applied, settled, notes, sorted(failed, key=lambda failure: order[failure[0]])

    def simulator(self):
        """The simulated host itself (for `sim advance|reset|log`); a usage error elsewhere."""
        from .operations import require_sim

        return require_sim(self.transport)

    def wait_for_target(
        self,
        domain: "Domain",
        target_kib: int,
        timeout_s: float | None = None,
        on_progress: "Callable[[Balloon], None] | None" = None,
        stall_s: float | None = None,
    ) -> "WaitOutcome":
        """Block until DOMAIN's current reaches TARGET_KIB, or it cannot (see operations)."""
        from .operations import DEFAULT_STALL_S, wait_for_target

        return wait_for_target(
            self.transport,
            domain,
            target_kib,
            timeout_s,
            on_progress or (lambda balloon: None),
            DEFAULT_STALL_S if stall_s is None else stall_s,
        )

    @staticmethod
    def changed_only(result: "Written") -> "Written":
        """RESULT without the nodes that already held their values."""
        from .operations import changed_only

        return changed_only(result)

    @staticmethod
    def unfinished_wait(result: "Written", reason: str) -> "WaitOutcome":
        """How a wait after RESULT ended without reaching its target, for REASON (e.g. interrupted)."""
        from .operations import WaitOutcome

        return WaitOutcome(False, result.after, reason)

    def wait_for_any_change(self, timeout_s: float) -> bool:
        """Block until some domain's balloon may have changed (a Xenstore watch), or TIMEOUT_S."""
        from .operations import wait_for_any_change

        return wait_for_any_change(self.transport, timeout_s)

    def host_free_kib(self) -> int | None:
        """The host's free memory in KiB as `xl info` computes it, where known, else None."""
        return self.transport.host_free_kib()

    def capacity(self, rows: "list[DomainRow] | None" = None) -> "HostCapacity":
        """The host's total and free memory (where known) and the sums of the targets and maxima
        of ROWS (default: every domain), with how far they overcommit it (xbctl.capacity)."""
        from .capacity import host_capacity

        return host_capacity(self.transport, self.list_rows() if rows is None else rows)

    # ------------------------------------------------------------- typed results

    def read(self, domain: str | int | None = None) -> "ReadResult":
        """Every node of DOMAIN (a name or id; None: our own domain)."""
        from .api_results import read_result

        found, balloon = self.read_balloon(domain)
        return read_result(self.transport, found, balloon)

    def list(self) -> "ListResult":
        """Every visible domain, in one walk; an unreadable domain is an entry with an error."""
        from .api_results import list_result

        rows = self.list_rows()
        capacity = self.capacity(rows)
        return list_result(self.transport, rows, capacity.free_kib, capacity)

    def plan(self, domain: str | int | None, values: Mapping[str, str | int]) -> "Written":
        """What writing VALUES ({node: size text or KiB}) would change; raises if refused."""
        return self.apply(domain, values, dry_run=True)

    def apply(
        self,
        domain: str | int | None,
        values: Mapping[str, str | int],
        *,
        dry_run: bool = False,
        wait: bool = False,
        timeout_s: float | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> "Written":
        """Write VALUES ({"target": "512M", "min": 262144, ...}; bare numbers are KiB) to DOMAIN.

        All are checked before anything is written; a refusal raises XbctlError (exit 1)
        and writes nothing. With WAIT, waits (up to TIMEOUT_S) for current to reach a
        changed target; the result's `wait` says how that ended (never raises for it).
        """
        result = self.write(domain, self.requests_for(values), dry_run=dry_run)
        target = next((c for c in result.changes if c.node == "target"), None)
        if wait and target is not None and not dry_run:
            result.wait = self.wait_for_target(result.domain, target.new_kib, timeout_s, _progress(on_progress))
        result.ask_transport()  # now, while the connection is open: to_dict() may come after close()
        return result

    def apply_file(self, *paths: str, dry_run: bool = False) -> "WritesResult":
        """Apply settings files PATHS (with `[DOMAIN]` sections; lines outside one are our own
        domain's) as `xbctl -f` does: every line checked, then every domain in one change.
        A node already holding its value is not written."""
        from .assignments import read_settings_file
        from .operations import WritesResult

        assignments = [assignment for path in paths for assignment in read_settings_file(path)]
        results, _notes = self.write_settings(assignments, dry_run=dry_run)
        for result in results:
            result.ask_transport()  # now, while the connection is open
        return WritesResult(results, self.transport)

    def wait(
        self,
        domain: str | int | None,
        target_kib: int | None = None,
        *,
        timeout_s: float | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> "WaitOutcome":
        """Wait until DOMAIN's current reaches TARGET_KIB (None: its target now), or cannot."""
        found = self.find_domain(domain)
        if target_kib is None:
            target_kib = self.transport.read_balloon(found).target_kib
        return self.wait_for_target(found, target_kib, timeout_s, _progress(on_progress))


def _progress(on_progress: Callable[[int, int], None] | None):
    """A balloon callback that hands ON_PROGRESS (current KiB, target KiB)."""
    if on_progress is None:
        return None
    return lambda balloon: on_progress(balloon.current_kib, balloon.target_kib)


def _spec(domain: str | int | None) -> str | None:
    if domain is None:
        return None
    if isinstance(domain, bool) or not isinstance(domain, (str, int)):
        raise usage_error(f"domain: a name or id, not {domain!r}")
    return str(domain)
