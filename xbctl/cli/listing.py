"""`xbctl list`: every domain's balloon."""

from __future__ import annotations

from ..errors import usage_error


def list_domains(invocation, options, output) -> None:
    """Show every domain's current, target, min, max and xen-max."""
    from ..operations import list_balloons

    if invocation.local.get("--format") == "prometheus":
        if output.as_json:
            raise usage_error("--format prometheus and --json are two outputs; give one")
        from ..exporter import exposition

        options.transport()  # a bad --transport or sim state fails here, not as a metric
        output.metrics(exposition(options.transport_name, options.sim_state, log=lambda m: output.warnings([m])))
        return
    transport = options.transport()
    rows = list_balloons(transport)
    output.domains(transport, rows, transport.host_free_kib())
