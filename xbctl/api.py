"""The Python API: what the Ansible modules, the exporter and scripts use instead of the CLI.

    from xbctl.api import Xbctl
    with Xbctl(transport="sim", sim_state="/tmp/host.json") as xb:
        print(xb.read("web").nodes["target"].value_kib)
        result = xb.apply("web", {"target": "512M"}, dry_run=True)

Results are dataclasses that mirror the --json documents (xbctl/schema.json); their
`to_dict()` is that document, built by the same code as the CLI's --json output. Errors are XbctlError, with the exit status the CLI would use.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .errors import ExitStatus, XbctlError, usage_error

__all__ = [
    "Xbctl", "XbctlError", "ExitStatus", "DomainRef", "NodeValue", "ReadResult",
    "ListEntry", "ListResult", "ChangeEntry", "WaitResult", "WriteResult",
]


@dataclass(frozen=True)
class DomainRef:
    """A domain: its id and name."""

    id: int
    name: str


@dataclass(frozen=True)
class NodeValue:
    """One node's value in KiB; `source` says who answered for current (None for the others)."""

    name: str
    value_kib: int
    source: str | None = None


class _Document:
    """A result whose `to_dict()` is its --json document (built by xbctl.json_output)."""

    document: dict

    def to_dict(self) -> dict:
        """The --json document of this result (a copy)."""
        return copy.deepcopy(self.document)


@dataclass(frozen=True)
class ReadResult(_Document):
    """A domain's nodes (the `read` document)."""

    transport: str
    domain: DomainRef
    nodes: dict[str, NodeValue]
    document: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ListEntry:
    """One domain of a list; `nodes` is None and `error` says why when it could not be read."""

    domain: DomainRef
    has_driver: bool
    diagnostic: str | None
    nodes: dict[str, NodeValue] | None
    error: str | None = None
    error_kind: str | None = None  # one of xbctl.errors.ERROR_KINDS: missing, malformed, permission...


@dataclass(frozen=True)
class ListResult(_Document):
    """Every visible domain (the `list` document), plus the host's free memory where known."""

    transport: str
    domains: list[ListEntry]
    host_free_kib: int | None = None
    document: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ChangeEntry:
    """One node's value before and after a write."""

    node: str
    name: str
    old_kib: int
    new_kib: int


@dataclass(frozen=True)
class WaitResult:
    """How a wait for the target ended."""

    reached: bool
    current_kib: int
    target_kib: int
    reason: str | None = None


@dataclass(frozen=True)
class WriteResult(_Document):
    """What a write did, or in a dry run would do (the `write` document)."""

    transport: str
    domain: DomainRef
    dry_run: bool
    changes: list[ChangeEntry]
    ignored: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    wait: WaitResult | None = None
    document: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def changed(self) -> bool:
        """True when the write changes (or in a dry run would change) a node's value.

        `changes` also lists nodes written with the value they already held, as sysctl
        prints `x -> x`; those change nothing.
        """
        return any(c.old_kib != c.new_kib for c in self.changes)


def _node_values(balloon) -> dict[str, NodeValue]:
    from .nodes import NODES

    return {
        node.key: NodeValue(
            node.sysctl_name,
            balloon.value_kib(node.key),
            balloon.current_source if node.key == "current" else None,
        )
        for node in NODES
    }


class Xbctl:
    """One connection to a balloon: the simulator or Xenstore (None: as the CLI chooses)."""

    def __init__(self, transport: str | None = None, sim_state: str | None = None) -> None:
        from .transports.choice import open_transport

        self._transport = open_transport(transport, sim_state)

    @property
    def transport_name(self) -> str:
        """The transport that answers: "sim" or "xenstore"."""
        return self._transport.name

    def __enter__(self) -> "Xbctl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection."""
        self._transport.close()

    def read(self, domain: str | int | None = None) -> ReadResult:
        """Every node of DOMAIN (a name or id; None: our own domain)."""
        from .operations import read_balloon

        from .json_output import read_document
        from .nodes import NODES

        found, balloon = read_balloon(self._transport, _spec(domain))
        document = read_document(self._transport, found, balloon, NODES)
        return ReadResult(self.transport_name, DomainRef(found.id, found.name), _node_values(balloon), document)

    def list(self) -> ListResult:
        """Every visible domain, in one walk; an unreadable domain is an entry with an error."""
        from .json_output import list_document
        from .operations import list_balloons

        rows = list_balloons(self._transport)
        host_free_kib = self.host_free_kib()
        entries = []
        for row in rows:
            b = row.balloon
            entries.append(
                ListEntry(
                    DomainRef(row.domain.id, row.domain.name),
                    bool(b and b.has_driver),
                    b.diagnostic if b else None,
                    _node_values(b) if b else None,
                    row.problem,
                    row.problem_kind,
                )
            )
        document = list_document(self._transport, rows, host_free_kib)
        return ListResult(self.transport_name, entries, host_free_kib, document)

    def host_free_kib(self) -> int | None:
        """The host's free memory in KiB as `xl info` computes it, where known, else None."""
        return self._transport.host_free_kib()

    def plan(self, domain: str | int | None, values: Mapping[str, str | int]) -> WriteResult:
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
    ) -> WriteResult:
        """Write VALUES ({"target": "512M", "min": 262144, ...}; bare numbers are KiB) to DOMAIN.

        All are checked before anything is written; a refusal raises XbctlError (exit 1)
        and writes nothing. With WAIT, waits (up to TIMEOUT_S) for current to reach a
        changed target; the result's `wait` says how that ended (never raises for it).
        """
        from .json_output import write_document
        from .nodes import find_node
        from .operations import request_for, write_nodes

        requests = []
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise usage_error(f"{key}: a size is text or an integer number of KiB, not {value!r}")
            requests.append(request_for(find_node(key), str(value)))
        result = write_nodes(self._transport, _spec(domain), requests, dry_run=dry_run)
        outcome = None
        target = next((c for c in result.changes if c.node.key == "target"), None)
        if wait and target is not None and not dry_run:
            outcome = self._wait(result.domain, target.new_kib, timeout_s, on_progress)
        document = write_document(self._transport, result, outcome)
        return WriteResult(
            self.transport_name,
            DomainRef(result.domain.id, result.domain.name),
            result.dry_run,
            [ChangeEntry(c.node.key, c.node.sysctl_name, c.old_kib, c.new_kib) for c in result.changes],
            [{"name": name, "reason": error.message} for name, error in result.skipped],
            list(result.warnings),
            None if outcome is None else _wait_result(outcome),
            document,
        )

    def wait(
        self,
        domain: str | int | None,
        target_kib: int | None = None,
        *,
        timeout_s: float | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> WaitResult:
        """Wait until DOMAIN's current reaches TARGET_KIB (None: its target now), or cannot."""
        found = self._transport.resolve_domain(_spec(domain))
        if target_kib is None:
            target_kib = self._transport.read_balloon(found).target_kib
        return _wait_result(self._wait(found, target_kib, timeout_s, on_progress))

    def _wait(self, found, target_kib: int, timeout_s: float | None, on_progress):
        from .operations import wait_for_target

        def progress(balloon) -> None:
            if on_progress is not None:
                on_progress(balloon.current_kib, balloon.target_kib)

        return wait_for_target(self._transport, found, target_kib, timeout_s, progress)

    def wait_for_any_change(self, timeout_s: float) -> bool:
        """Block until some domain's balloon may have changed (a Xenstore watch), or TIMEOUT_S."""
        from .operations import wait_for_any_change

        return wait_for_any_change(self._transport, timeout_s)


def _wait_result(outcome) -> WaitResult:
    return WaitResult(outcome.reached, outcome.balloon.current_kib, outcome.balloon.target_kib, outcome.reason)


def _spec(domain: str | int | None) -> str | None:
    if domain is None:
        return None
    if isinstance(domain, bool) or not isinstance(domain, (str, int)):
        raise usage_error(f"domain: a name or id, not {domain!r}")
    return str(domain)
