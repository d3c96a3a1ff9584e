"""`xbctl list`: every domain's balloon."""

from __future__ import annotations

from ..errors import XbctlError, usage_error


def list_domains(invocation, options, output) -> None:
    """Show every domain's (or each named DOMAIN's) current, target, min, max and xen-max."""
    long = bool(invocation.local.get("--long"))
    target = invocation.local.get("--output")
    if target is not None and invocation.local.get("--format") != "prometheus":
        raise usage_error("--output goes with --format prometheus", hint="xbctl list --format prometheus --output FILE")
    if invocation.local.get("--format") == "prometheus":
        if output.as_json:
            raise usage_error("--format prometheus and --json are two outputs; give one")
        if long or output.values_only:
            raise usage_error(f"--format prometheus and {'--long' if long else '-n'} are two formats; give one")
        if invocation.args:
            raise usage_error("--format prometheus shows every domain; it takes no DOMAIN")
        from ..exporter import exposition, write_textfile

        def page() -> str:
            return exposition(options.transport_name, options.sim_state, log=lambda m: output.warnings([m]))

        if target is None:
            options.api()  # a bad --transport or sim state fails here, not as a metric
            output.metrics(page())
            return
        try:
            options.api()
        except XbctlError:
            # The file must say the host is down (xen_balloon_up 0), not keep the last good values.
            write_textfile(target, page())
            raise
        write_textfile(target, page())
        return
    if long and output.as_json:
        raise usage_error("--long and --json are two outputs; give one", hint="--json has every node in KiB")
    xb = options.api()
    rows = xb.list_rows(invocation.args)
    # The host's capacity beside every domain's sums; named domains are not the host's.
    capacity = None if invocation.args else xb.capacity(rows)
    host_free_kib = capacity.free_kib if capacity is not None else xb.host_free_kib()
    output.domains(xb.transport, rows, host_free_kib, long=long, capacity=capacity)
