"""The JSON documents of --json: one envelope, versioned, the same for every command.

Every document has "schema_version" and "kind" (read, write, list, log, error).
Values are integers in KiB, in fields ending in _kib.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterable

from .nodes import NODES, Balloon, Node

if TYPE_CHECKING:
    from .errors import XbctlError
    from .operations import DomainRow, WriteResult, WritesResult
    from .transports import Domain, Transport

SCHEMA_VERSION = 1


def dump(document: dict) -> str:
    """DOCUMENT as one line of JSON."""
    # Our documents are trees built here: no cycle to look for (a list is thousands of dicts).
    return json.dumps(document, sort_keys=False, check_circular=False) + "\n"


def _envelope(kind: str, transport: "Transport | None") -> dict:
    document: dict = {"schema_version": SCHEMA_VERSION, "kind": kind}
    if transport is not None:
        document["transport"] = transport.name
        status = transport.hypervisor_status()
        if status is not None:  # Domain-0 over Xenstore: whether the hypervisor answered, and why not
            document["hypervisor"] = status
    return document


def _result_envelope(kind: str, result: "WriteResult | WritesResult") -> dict:
    document: dict = {"schema_version": SCHEMA_VERSION, "kind": kind, "transport": result.transport}
    status = result.hypervisor
    if status is not None:
        document["hypervisor"] = status
    return document


def _driver(balloon: Balloon) -> str:
    return {True: "yes", False: "no", None: "unknown"}[balloon.has_driver]


def _domain(domain: "Domain") -> dict:
    return {"id": domain.id, "name": domain.name}


def _nodes(balloon: Balloon, nodes: Iterable[Node]) -> dict:
    result = {}
    for node in nodes:
        key = node.key
        if key in _SYSCTL_NAMES:  # a list makes 5 of these per domain: names computed once
            entry: dict = {"name": _SYSCTL_NAMES[key], "value_kib": balloon.value_kib(key)}
        else:
            entry = {"name": node.sysctl_name, "value_kib": balloon.value_kib(key)}
        if key == "current":
            entry["source"] = balloon.current_source
        elif key == "target":
            entry["memory_target_kib"] = balloon.memory_target_kib
            entry["videoram_kib"] = balloon.videoram_kib
            if balloon.target_source is not None:  # inside a Linux guest: its own driver's target
                entry["source"] = balloon.target_source
        elif key == "xen-max" and balloon.hypervisor_max_kib is not None:
            entry["hypervisor_kib"] = balloon.hypervisor_max_kib
            entry["hypervisor_unlimited"] = balloon.hypervisor_max_unlimited
            entry["mismatch"] = balloon.max_mismatch
        result[key] = entry
    return result


_SYSCTL_NAMES = {node.key: node.sysctl_name for node in NODES}


def read_document(transport: "Transport", domain: "Domain", balloon: Balloon, nodes: Iterable[Node]) -> dict:
    """A read of NODES of DOMAIN."""
    return {
        **_envelope("read", transport),
        "domain": _domain(domain),
        "nodes": _nodes(balloon, nodes),
        "driver": _driver(balloon),
        "warnings": list(balloon.warnings),
    }


def list_document(
    transport: "Transport", rows: list["DomainRow"], host_free_kib: int | None = None, capacity=None
) -> dict:
    """Every domain with all its nodes (null, with an error, when they could not be read), and
    CAPACITY (xbctl.capacity.HostCapacity; null when the list names its domains)."""
    domains = []
    for row in rows:
        entry = {
            **_domain(row.domain),
            "has_driver": row.balloon.has_driver if row.balloon else None,
            "driver": _driver(row.balloon) if row.balloon else None,
            "diagnostic": row.balloon.diagnostic if row.balloon else None,
            "nodes": _nodes(row.balloon, NODES) if row.balloon else None,
            "warnings": list(row.balloon.warnings) if row.balloon else [],
        }
        if row.problem is not None:
            entry["error"] = row.problem
            entry["error_kind"] = row.problem_kind
        domains.append(entry)
    return {
        **_envelope("list", transport),
        "host_free_kib": host_free_kib,
        "capacity": capacity.to_dict() if capacity is not None else None,
        "domains": domains,
    }


def write_document(result: "WriteResult") -> dict:
    """A write: its changes, what it skipped, its warnings, and how --wait ended."""
    wait = result.wait
    return {
        **_result_envelope("write", result),
        "domain": _domain(result.domain),
        "dry_run": result.dry_run,
        "changes": [
            {
                "node": c.node,
                "name": c.name,
                "old_kib": c.old_kib,
                "new_kib": c.new_kib,
                **({"origin": c.origin} if c.origin else {}),
            }
            for c in result.changes
        ],
        "ignored": result.ignored,
        "warnings": list(result.warnings),
        "wait": None
        if wait is None
        else {
            "reached": wait.reached,
            "current_kib": wait.current_kib,
            "target_kib": wait.target_kib,
            "reason": wait.reason,
        },
    }


def reads_document(transport: "Transport", readings: "list[tuple[Domain, Balloon]]", nodes: list[Node]) -> dict:
    """A read of NODES of every domain (-A): one read entry per domain, by id."""
    domains = []
    for domain, balloon in readings:
        entry = read_document(transport, domain, balloon, nodes)
        domains.append({key: entry[key] for key in ("domain", "nodes", "driver", "warnings")})
    return {**_envelope("reads", transport), "domains": domains}


def writes_document(result: "WritesResult") -> dict:
    """A write to several domains as one change (a settings file with sections): one write
    entry per domain, and whether anything changed at all."""
    domains = []
    for write in result.writes:
        entry = write_document(write)
        domains.append({key: entry[key] for key in ("domain", "changes", "ignored", "warnings")})
    return {
        **_result_envelope("writes", result),
        "dry_run": result.dry_run,
        "changed": result.changed,
        "domains": domains,
    }


def log_document(entries: list[dict]) -> dict:
    """The simulated drivers' diagnostics."""
    return {**_envelope("log", None), "transport": "sim", "entries": entries}


def error_document(error: "XbctlError") -> dict:
    """An error, with the exit status the process ends with."""
    return {
        **_envelope("error", None),
        "error": {
            "message": error.message,
            "hint": error.hint,
            "errno": error.errno_name,
            "exit_status": int(error.status),
        },
    }
