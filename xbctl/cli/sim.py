"""`xbctl sim advance|reset|log`: control the simulated host."""

from __future__ import annotations

from ..errors import usage_error
from ..units import parse_number
from .main import MAX_SECONDS


def _sim(options):
    from ..operations import require_sim

    return require_sim(options.transport())


def advance(invocation, options, output) -> None:
    """Let SECONDS of simulated time pass (the balloon threads move meanwhile)."""
    seconds = parse_number(invocation.args[0], what="SECONDS", maximum=MAX_SECONDS)
    _sim(options).advance(seconds)


def reset(invocation, options, output) -> None:
    """Boot a fresh simulated host: Domain-0, web, db (a driver that publishes nothing), mail (no driver)."""
    from ..transports.sim import DEFAULT_STEPS_PER_SECOND, MAX_STEPS_PER_SECOND
    from ..units import parse_kib

    local = invocation.local
    clock = local.get("--clock")
    host_free_kib = parse_kib(local.get("--host-free", "2G"), what="--host-free")
    steps_per_second = parse_number(local.get("--rate", "50"), what="--rate", maximum=MAX_STEPS_PER_SECOND)
    if steps_per_second == 0:  # nothing moves by itself; `sim advance` steps at the default rate
        if clock == "wall":
            raise usage_error("--rate 0 stops the clock; it cannot go with --clock wall")
        clock, steps_per_second = "manual", DEFAULT_STEPS_PER_SECOND
    sim = _sim(options)
    sim.reset(
        clock=clock or "wall",
        steps_per_second=steps_per_second,
        host_free_kib=host_free_kib,
        position=local.get("--position"),
    )
    if sim.kept_aside is not None:
        output.note(f"the damaged simulator state was kept aside as {sim.kept_aside}")


def show_log(invocation, options, output) -> None:
    """Show the balloon drivers' diagnostics (like dmesg in each guest)."""
    sim = _sim(options)
    name = sim.resolve_domain(options.domain).name if options.domain is not None else None
    output.log([e for e in sim.load().log if name is None or e["domain"] == name])
