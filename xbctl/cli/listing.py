"""`xbctl list`: every domain's balloon."""

from __future__ import annotations

from ..errors import usage_error


def list_domains(invocation, options, output) -> None:
    """Show every domain's (or each named DOMAIN's) current, target, min, max and xen-max."""
    long = bool(invocation.local.get("--long"))
    if invocation.local.get("--format") == "prometheus":
        if output.as_json:
            raise usage_error("--format prometheus and --json are two outputs; give one")
        if long or output.values_only:
            raise usage_error(f"--format prometheus and {'--long' if long else '-n'} are two formats; give one")
        if invocation.args:
            raise usage_error("--format prometheus shows every domain; it takes no DOMAIN")
        from ..exporter import exposition

        options.api()  # a bad --transport or sim state fails here, not as a metric
        output.metrics(exposition(options.transport_name, options.sim_state, log=lambda m: output.warnings([m])))
        return
    if long and output.as_json:
        raise usage_error("--long and --json are two outputs; give one", hint="--json has every node in KiB")
    xb = options.api()
    rows = xb.list_rows(invocation.args)
    # The host's capacity beside every domain's sums; named domains are not the host's.
    capacity = None if invocation.args else xb.capacity(rows)
    host_free_kib = capacity.free_kib if capacity is not None else xb.host_free_kib()
    output.domains(xb.transport, rows, host_free_kib, long=long, capacity=capacity)
