"""The xl-compatible host operations: mem-set (target) and mem-max (xen-max), MiB without a unit."""

from __future__ import annotations

from ..errors import usage_error


def mem_set(invocation, options, output) -> None:
    """Set DOMAIN's target, as xl mem-set."""
    _host_operation(invocation, options, output, "target")


def mem_max(invocation, options, output) -> None:
    """Set DOMAIN's xen-max, as xl mem-max."""
    _host_operation(invocation, options, output, "xen-max")


def _host_operation(invocation, options, output, key: str) -> None:
    from ..nodes import NODE_BY_KEY
    from ..operations import request_for
    from .nodes import write_and_show

    domain, size = invocation.args
    if options.domain is not None and options.domain != domain:
        transport = options.transport()
        if transport.resolve_domain(options.domain) != transport.resolve_domain(domain):
            raise usage_error(f"-d {options.domain} conflicts with domain {domain!r}")
    write_and_show(options, output, [request_for(NODE_BY_KEY[key], size, default_unit="m")], domain)
