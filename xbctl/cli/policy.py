"""`xbctl policy [--follow | --dry-run | --reapply [DOMAIN...]]`: the configuration files applied to
each domain once (xbctl-policy.service)."""

from __future__ import annotations

import sys

from ..errors import ExitStatus, XbctlError, usage_error


def run_policy(invocation, options, output) -> None:
    """Configure the domains not configured yet; with --follow, each new domain too, until SIGTERM."""
    from ..policy_service import ServiceLog, apply_once, load_configuration

    follow, reapply = bool(invocation.local.get("--follow")), bool(invocation.local.get("--reapply"))
    if invocation.args and not reapply:
        raise usage_error(
            f"policy takes domains only with --reapply, got {invocation.args[0]!r}",
            hint="xbctl policy --reapply DOMAIN... applies their settings again",
        )
    if follow and (reapply or options.dry_run):
        raise usage_error(
            f"policy --follow is the service; it takes no {'--reapply' if reapply else '--dry-run'}",
            hint="xbctl policy --dry-run shows what the service would change now",
        )
    log = ServiceLog(quiet=output.quiet)
    if follow:
        if options.transport_name == "sim":
            raise usage_error(
                "policy --follow watches Xenstore for new domains; the simulator has none that appear",
                hint="drop --transport sim, or run 'xbctl policy' once",
            )
        run_service(log, lambda: load_configuration(log=log))
        return
    # Files others than root may change, and files that do not parse, are logged and left out;
    # the others apply, and the exit status says that something was left out.
    configuration = load_configuration(log=log)
    transport = options.transport()
    if options.api().simulated_by_default:
        from ..output import SIMULATED_HOST
        from ..policy_service import NOTICE

        log(NOTICE, f"note: {SIMULATED_HOST}")
    status, planned = apply_once(
        transport,
        configuration,
        log,
        reapply=list(invocation.args) if reapply else None,
        dry_run=options.dry_run,
    )
    for change in planned:
        sys.stdout.write(f"{change}\n")
    if options.dry_run:
        output.say("dry run: nothing was written")
    if status:
        raise XbctlError(
            f"some domains' settings {'would be refused' if options.dry_run else 'were not applied'} (see above)",
            status=ExitStatus(status),
        )
    if configuration.failed:
        from ..conf import failed_configuration_error

        raise failed_configuration_error(
            configuration.failed, configuration.unsafe, len(configuration.files), options.dry_run
        )
    if configuration.unsafe:
        from ..conf import unsafe_configuration_error

        raise unsafe_configuration_error(configuration.unsafe, len(configuration.files), options.dry_run)


def run_service(log, load_configuration) -> None:
    """`policy --follow` over Xenstore, until SIGTERM or SIGINT."""
    from ..policy_service import Follower, service_record

    configuration = load_configuration()  # a file that does not parse is logged and left out
    record = service_record()
    record.prepare()  # an unwritable record (exit 3) before anything runs
    record.load()  # so is a damaged one

    def open_transport():
        from ..transports.xenstore.transport import XenstoreTransport

        return XenstoreTransport()

    Follower(configuration, log, open_transport, load_configuration, record).run()
