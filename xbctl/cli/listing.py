"""`xbctl list`: every domain's balloon."""

from __future__ import annotations


def list_domains(invocation, options, output) -> None:
    """Show every domain's current, target, min, max and xen-max."""
    from ..operations import list_balloons

    transport = options.transport()
    rows = list_balloons(transport)
    output.domains(transport, rows, transport.host_free_kib())
