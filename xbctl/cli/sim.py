"""`xbctl sim advance|reset|log`: control the simulated host."""

from __future__ import annotations

from ..errors import usage_error
from ..units import parse_number
from .main import MAX_SECONDS


def _sim(options):
    return options.api().simulator()


def advance(invocation, options, output) -> None:
    """Let SECONDS of simulated time pass (the balloon threads move meanwhile)."""
    seconds = parse_number(invocation.args[0], what="SECONDS", maximum=MAX_SECONDS)
    _sim(options).advance(seconds)


def reset(invocation, options, output) -> None:
    """Boot a fresh simulated host: Domain-0, web, db (a driver that publishes nothing), mail (no driver),
    or Domain-0 and --guests N guests."""
    from ..transports.sim import DEFAULT_GUESTS, DEFAULT_STEPS_PER_SECOND, MAX_STEPS_PER_SECOND
    from ..units import parse_kib

    local = invocation.local
    clock = local.get("--clock")
    host_free_kib = parse_kib(local.get("--host-free", "2G"), what="--host-free")
    steps_per_second = parse_number(local.get("--rate", "50"), what="--rate", maximum=MAX_STEPS_PER_SECOND)
    if steps_per_second == 0:  # nothing moves by itself; `sim advance` steps at the default rate
        if clock == "wall":
            raise usage_error("--rate 0 stops the clock; it cannot go with --clock wall")
        clock, steps_per_second = "manual", DEFAULT_STEPS_PER_SECOND
    guests = guest_count(local.get("--guests"), DEFAULT_GUESTS)
    sim = _sim(options)
    sim.reset(
        clock=clock or "wall",
        steps_per_second=steps_per_second,
        host_free_kib=host_free_kib,
        position=local.get("--position"),
        guests=guests,
    )
    if sim.kept_aside is not None:
        output.note(f"the damaged simulator state was kept aside as {sim.kept_aside}")


def guest_count(text: str | None, default: int) -> int:
    """--guests TEXT as a number of guests: a whole decimal number up to MAX_GUESTS."""
    from ..transports.sim import MAX_GUESTS

    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise usage_error(f"--guests {shown!r}: not a whole number of guests", hint=f"0 to {MAX_GUESTS}")
    guests = int(text)
    if guests > MAX_GUESTS:
        raise usage_error(
            f"--guests {guests}: the simulated host holds at most {MAX_GUESTS} guests",
            hint="its whole state lives in one state file of at most 1 MiB",
        )
    return guests


def show_log(invocation, options, output) -> None:
    """Show the balloon drivers' diagnostics (like dmesg in each guest)."""
    sim = _sim(options)
    name = sim.resolve_domain(options.domain).name if options.domain is not None else None
    output.log([e for e in sim.load().log if name is None or e["domain"] == name])
