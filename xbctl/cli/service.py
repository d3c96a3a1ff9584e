"""`xbctl policy [--follow]`: the configuration files applied to every domain (xbctl.service)."""

from __future__ import annotations

from ..errors import usage_error


def run_policy(invocation, options, output) -> None:
    """Apply the configuration once; with --follow, to each new domain too, until SIGTERM."""
    from ..service import Follower, ServiceLog, apply_once, load_configuration

    log = ServiceLog(quiet=output.quiet)
    if invocation.local.get("--follow"):
        if options.transport_name == "sim":
            raise usage_error(
                "policy --follow watches Xenstore for new domains; the simulator has none that appear",
                hint="drop --transport sim, or run 'xbctl policy' once",
            )
        configuration = load_configuration()  # a malformed file is exit 2 before anything runs

        def open_transport():
            from ..transports.xenstore import XenstoreTransport

            return XenstoreTransport()

        Follower(configuration, log, open_transport, load_configuration).run()
        return
    configuration = load_configuration()
    transport = options.transport()
    if options.api().simulated_by_default:
        from ..output import SIMULATED_HOST
        from ..service import NOTICE

        log(NOTICE, f"note: {SIMULATED_HOST}")
    apply_once(transport, configuration, log)
