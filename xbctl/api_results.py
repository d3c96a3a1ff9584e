"""The typed results of reads in the Python API (xbctl.api): dataclasses that mirror the --json documents.

A write's result is the engine's own (xbctl.operations.WriteResult), rendered by the same code.

Loaded only when a result is built, so the command line (which renders xbctl's own
results) never pays for dataclasses at start-up.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DomainRef:
    """A domain: its id and name."""

    id: int
    name: str


@dataclass(frozen=True)
class NodeValue:
    """One node's value in KiB; `source` says who answered for current (and for target when it
    was a guest's own driver: "sysfs"; None for the others)."""

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
    has_driver: bool | None  # None: unknown (Linux never says), never "no driver"
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
    # The host's total and free memory and the domains' sums (xbctl.capacity.HostCapacity).
    capacity: object = None


def _node_values(balloon) -> dict[str, NodeValue]:
    from .nodes import NODES

    return {
        node.key: NodeValue(
            node.sysctl_name,
            balloon.value_kib(node.key),
            balloon.current_source
            if node.key == "current"
            else balloon.target_source
            if node.key == "target"
            else None,
        )
        for node in NODES
    }


def read_result(transport, domain, balloon) -> ReadResult:
    """The ReadResult of DOMAIN's BALLOON, read through TRANSPORT."""
    from .json_output import read_document
    from .nodes import NODES

    document = read_document(transport, domain, balloon, NODES)
    return ReadResult(transport.name, DomainRef(domain.id, domain.name), _node_values(balloon), document)


def list_result(transport, rows, host_free_kib: int | None, capacity=None) -> ListResult:
    """The ListResult of ROWS (operations.DomainRow)."""
    from .json_output import list_document

    entries = []
    for row in rows:
        b = row.balloon
        entries.append(
            ListEntry(
                DomainRef(row.domain.id, row.domain.name),
                b.has_driver if b else None,
                b.diagnostic if b else None,
                _node_values(b) if b else None,
                row.problem,
                row.problem_kind,
            )
        )
    document = list_document(transport, rows, host_free_kib, capacity)
    return ListResult(transport.name, entries, host_free_kib, document, capacity)
