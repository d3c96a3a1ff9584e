"""`xbctl agent`: play the guest side of -d DOMAIN over Xenstore."""

from __future__ import annotations

from ..errors import usage_error


def run_agent_command(invocation, options, output) -> None:
    """A simulated balloon driver behind DOMAIN's memory/target, until Ctrl-C."""
    from ..agent import run_agent
    from ..transports.sim import MAX_STEPS_PER_SECOND
    from ..units import parse_kib, parse_number

    if options.transport_name == "sim":
        raise usage_error("the agent plays a guest over Xenstore, not in the simulator", hint="drop --transport sim")
    options.transport_name = "xenstore"
    local = invocation.local
    sizes = {
        key: None if local.get(f"--{key}") is None else parse_kib(local[f"--{key}"], what=f"--{key}")
        for key in ("boot-size", "used", "host-free")
    }

    def say(message: str) -> None:
        output.say(message, prefix="xbctl agent")
        _flush()

    run_agent(
        options.transport(),
        options.domain,
        steps_per_second=parse_number(
            local.get("--rate", "50"), what="--rate", maximum=MAX_STEPS_PER_SECOND, positive=True
        ),
        say=say,
        boot_kib=sizes["boot-size"],
        used_kib=sizes["used"],
        host_free_kib=sizes["host-free"],
    )


def _flush() -> None:
    import sys

    sys.stderr.flush()
