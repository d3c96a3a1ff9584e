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
    from .node_commands import write_and_show

    domain, size = invocation.args
    xb = options.api()
    if options.domain is not None and options.domain != domain:
        if xb.find_domain(options.domain) != xb.find_domain(domain):
            raise usage_error(f"-d {options.domain} conflicts with domain {domain!r}")
    write_and_show(options, output, xb.requests_for({key: size}, default_unit="m"), domain)
