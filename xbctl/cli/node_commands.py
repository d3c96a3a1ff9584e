"""The sysctl form (`xbctl -a`, `xbctl NAME`, `xbctl [-w] NAME=VALUE`, `-f FILE`) and the node
commands (`xbctl target [VALUE]`), and the write (with --wait) that host operations share."""

from __future__ import annotations

from ..errors import ExitStatus, XbctlError, usage_error
from ..nodes import NODE_BY_KEY, NODES


def run_sysctl(invocation, options, output) -> None:
    """Carry out the sysctl form for the names and assignments given."""
    from ..assignments import parse_assignment, read_settings_file
    from ..nodes import select_nodes

    args = invocation.args
    if "-v" in invocation.given and not (options.system or options.settings_files):
        raise usage_error(
            "-v goes with -f and --system", hint="it lists the settings that already hold their values too"
        )
    if options.system:
        conflicting = [
            option
            for option, given in (
                ("names or assignments", bool(args)),
                ("-f", bool(options.settings_files)),
                ("-d", options.domain),
                ("-a", options.show_all),
                ("-A", options.all_domains),
                ("-w", options.write),
                ("--wait", options.wait),
            )
            if given
        ]
        if conflicting:
            raise usage_error(
                f"--system applies the configuration files; it takes no {conflicting[0]}",
                hint="xbctl -f FILE applies one file",
            )
        apply_system(options, output)
        return
    assignments = []
    for path in options.settings_files:  # several files apply in order, as one change
        assignments.extend(read_settings_file(path))
    assignments.extend(parse_assignment(arg) for arg in args if "=" in arg)
    names = [arg for arg in args if "=" not in arg]
    if options.write and names:
        raise usage_error(f"-w needs name=value, got {names[0]!r}")
    if assignments and (names or options.show_all or options.all_domains):
        raise usage_error("reads and writes cannot be mixed in one command")
    if assignments:
        apply_assignments(options, output, assignments)
        return
    if options.all_domains and options.domain is not None:
        raise usage_error("-A reads every domain; -d names one", hint="give one of them")
    if options.show_all or (options.all_domains and not names):
        if names:
            raise usage_error("-a lists every node; give no names with it")
        # What -e prints, -f reads back: with -e, every node means every node -f can set.
        nodes = [node for node in NODES if node.writable] if output.equals else list(NODES)
        show_nodes(options, output, nodes)
        return
    if not names:
        if options.settings_files:
            return  # an empty settings file: nothing to do
        raise usage_error("nothing to do", hint="xbctl -a shows every node; xbctl --help")
    nodes = []
    for name in names:
        nodes.extend(n for n in select_nodes(name) if n not in nodes)
    show_nodes(options, output, nodes)


def apply_assignments(options, output, assignments) -> None:
    """Apply ASSIGNMENTS (settings files and NAME=VALUE arguments), every domain as one change.

    Lines outside any section are the -d domain's (our own without -d); with -d, a section
    may name only that domain. The output names the domain on every line unless -d named
    the only domain involved.
    """
    xb = options.api()
    transport = xb.transport
    groups, notes = xb.resolve_settings(assignments, domain=options.domain)
    for note in notes:
        output.note(note)
    if len(groups) > 1 and options.wait:
        raise usage_error(
            f"--wait follows one domain; these settings change {len(groups)}",
            hint="apply the file without --wait, then xbctl -d DOMAIN --wait target",
        )
    results = xb.write_groups(
        groups,
        dry_run=options.dry_run,
        override_guest_floor=options.override_guest_floor,
    )
    from_file = bool(options.settings_files)  # a file describes a state: what holds already is counted, not shown
    name_domains = len(results) > 1 or options.domain is None
    if len(results) == 1:
        show_write(options, output, transport, results[0], name_domains, settings=from_file)
        return
    from ..output import note_written

    if not options.dry_run and any(result.changes for result in results):
        note_written()
    output.changes(results, name_domains=True, settings=from_file)
    from ..api import WritesResult

    output.written_many(WritesResult(results, transport))


def apply_system(options, output) -> None:
    """`xbctl --system`: every configuration file in sysctl's order, as one validated change.

    A section naming a domain that does not exist now is skipped with a note; lines outside
    any section are our own domain's. As with sysctl.d, a file that does not parse or whose
    line is refused is named with its FILE:LINE and left out, the others still apply, and the
    run ends with that file's exit status. Like `sysctl --system`, each file is announced
    (`* Applying FILE ...`) with what it set under it; only nodes whose value changes are
    written and shown (the others counted, or shown too with -v), so a second run prints
    the announcements alone (nothing with -q).
    """
    from ..conf import configuration_root

    xb = options.api()
    files, unsafe = xb.configuration()
    if unsafe:
        from ..output import say

        for problem in unsafe:  # said first (even with -q): a malformed file among the others ends the run
            say(problem.message)
    files, settled, notes, failed = xb.apply_configuration(
        dry_run=options.dry_run, override_guest_floor=options.override_guest_floor, files=files
    )
    if failed:
        from ..conf import failed_file_message
        from ..output import say

        for path, error in failed:  # said even with -q: the exit status alone does not say which
            say(failed_file_message(path, error))
    changed = [xb.changed_only(result) for result in settled]
    if not files and not unsafe and not failed:
        output.note(
            f"no configuration files under {configuration_root()} (etc/xbctl.conf, etc/xbctl.d, usr/lib/xbctl.d)"
        )
    for note in notes:
        output.note(note)
    if not options.dry_run and any(r.changes for r in changed):
        from ..output import note_written

        note_written()
    output.changes(settled, files=files, settings=True)
    from ..api import WritesResult

    output.written_many(WritesResult(changed, xb.transport))  # --system's document lists what changed
    if failed:
        from ..conf import failed_configuration_error

        error = failed_configuration_error(failed, unsafe, len(files), options.dry_run)
        error.document_shown = output.as_json
        raise error
    if unsafe:
        from ..conf import unsafe_configuration_error

        error = unsafe_configuration_error(unsafe, len(files), options.dry_run)
        error.document_shown = output.as_json  # the writes document above says what was applied
        raise error


def run_node(invocation, options, output) -> None:
    """`xbctl NODE` reads it; `xbctl NODE VALUE` sets it."""
    node = NODE_BY_KEY[invocation.command.name]
    if not invocation.args:
        if options.write:
            raise usage_error(f"-w needs a value for {node.key}")
        show_nodes(options, output, [node])
        return
    requests = options.api().requests_for({node.key: invocation.args[0]})
    output.warnings(filter(None, map(small_bare_kib, requests)))
    write_and_show(options, output, requests)


# A bare number below this many KiB (64 MiB) is more likely meant in MiB, as mem-set counts.
SMALL_BARE_KIB = 64 * 1024


def small_bare_kib(request) -> str | None:
    """The warning for a bare number below 64 MiB: KiB, as sysctl counts, but `M` means MiB."""
    size = request.size
    if not request.node.writable or not size.bare or size.relative or size.kib >= SMALL_BARE_KIB:
        return None
    return (
        f"{request.node.sysctl_name}: {size.text} is {size.text} KiB, as the driver counts; "
        f"write {size.text}M for {size.text} MiB"
    )


def show_nodes(options, output, nodes) -> None:
    """Read NODES of the selected domain (of every domain with -A) and show them."""
    if options.wait:
        output.note("--wait waits after a target change; nothing to wait for")
    xb = options.api()
    transport = xb.transport
    if options.show_all or options.all_domains:
        output.simulated_note()
    if options.all_domains:
        output.read_many(transport, xb.read_all(), nodes)
        return
    domain, balloon = xb.read_balloon(options.domain)
    # -e with -d records the domain: the file then restores that domain and no other.
    output.read(transport, domain, balloon, nodes, header=options.domain is not None)


def write_and_show(options, output, requests, domain_spec=None, ignored=None) -> None:
    """Apply REQUESTS, show the changes sysctl-style, then --wait if asked."""
    xb = options.api()
    transport = xb.transport
    result = xb.write(
        options.domain if domain_spec is None else domain_spec,
        requests,
        dry_run=options.dry_run,
        ignored=ignored,
        override_guest_floor=options.override_guest_floor,
    )
    # A domain named on the command line (-d, or mem-set's argument) need not be repeated.
    show_write(options, output, transport, result, options.domain is None and domain_spec is None)


def show_write(options, output, transport, result, name_domains: bool, settings: bool = False) -> None:
    """Show one domain's write RESULT (its domain on each line when NAME_DOMAINS), then --wait.
    SETTINGS: from a settings file (see Output.changes)."""
    from ..output import note_written

    if not options.dry_run and result.changes:
        note_written()
    output.changes(
        [result], name_domains=name_domains, settings=settings
    )  # the write has happened: say so before any wait
    target_change = next((c for c in result.changes if c.node == "target"), None)
    if options.wait and target_change is None:
        output.note("--wait waits after a target change; nothing to wait for")
    outcome = None
    if options.wait and target_change is not None and not options.dry_run:
        outcome = _wait(options, output, transport, result, target_change.new_kib)
    document_shown = output.written(result.replace(wait=outcome))
    if outcome is not None and not outcome.reached:
        assert target_change is not None  # an outcome: a target change was waited for
        error = XbctlError(
            f"{result.domain.name}: target {target_change.new_kib} KiB not reached "
            f"(current {outcome.current_kib} KiB): {outcome.reason}",
            status=ExitStatus.NOT_REACHED,
        )
        error.document_shown = document_shown  # the write document says how the wait ended
        raise error


def _wait(options, output, transport, result, target_kib: int):
    """Wait for TARGET_KIB with progress; a Ctrl-C becomes Interrupted, saying what stays behind."""
    xb = options.api()
    domain = result.domain
    try:
        with output.progress(domain.name, target_kib) as update:
            return xb.wait_for_target(domain, target_kib, options.timeout_s, update, options.stall_s)
    except KeyboardInterrupt:
        from .main import Interrupted

        def document() -> None:  # the write happened: with --json, a script still gets its document
            output.written(result.replace(wait=xb.unfinished_wait(result, "interrupted")))

        raise Interrupted(
            f"interrupted: {domain.name}'s target stays {target_kib} KiB; the balloon goes on moving toward it",
            document,
        ) from None
