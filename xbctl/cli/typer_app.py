"""The Typer app: help, version, tab completion and the words of usage errors.

Only loaded when the lean parser (xbctl.cli.parse) hands a command line over; Typer's
runner (the tests) enters through XbctlGroup.main, which runs the same xbctl.cli.main.run.
A command line Typer parses runs through the same table check and commands (execute).

Written for every Typer from Debian 12's 0.7 (on the system's click 8.1) to the pinned
0.28 (which carries its own click): parameters are declared as `param: T =
typer.Option(default, ...)` (Typer 0.7 has no Annotated), and help is click's plain
layout with both (Typer 0.7 draws rich panels whenever rich is importable).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

try:  # Typer 0.2x and later carry their own click
    from typer import _click as click
except ImportError:  # earlier Typers (Debian 12's 0.7) run on the system's click
    import click

from .. import __version__
from ..errors import ExitStatus, XbctlError, usage_error
from ..nodes import NODES
from ..transports import TRANSPORT_NAMES
from .parse import Invocation, could_be_sysctl, hoist
from .table import COMMANDS, GLOBAL_OPTIONS, SIM_COMMANDS, SYSCTL

SYSCTL_COMMAND = "sysctl"
_HELP_OPTIONS = ("-h", "--help")
# Every global option Typer knows (the table's and its own) -> whether it takes a value.
_ARITY = {
    **{spelling: takes_value for spelling, (_, takes_value) in GLOBAL_OPTIONS.items()},
    "--version": False, "--install-completion": False, "--show-completion": True,
}
# Typer's parameter name -> the table's canonical option.
_PARAMS = {
    "show_all": "-a", "all_domains": "-A", "system": "--system", "write": "-w", "values_only": "-n", "equals": "-e", "quiet": "-q",
    "verbose": "-v",
    "settings_files": "-f", "domain": "-d", "as_json": "--json", "dry_run": "--dry-run", "wait": "--wait",
    "timeout_text": "--timeout", "transport_name": "--transport", "sim_state": "--sim-state",
    "override_guest_floor": "--override-guest-floor",
}


class PlainCommand(TyperCommand):
    """A command whose help is click's plain layout, whichever Typer draws it, and lists
    the global options the command table says it takes."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        click.Command.format_help(self, ctx, formatter)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        super().format_options(ctx, formatter)
        records = global_option_records(ctx)
        if records:
            with formatter.section("Global options (before or after the command)"):
                formatter.write_dl(records)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        # An argument's metavar as written (mem-set DOMAIN SIZE, as the man page and xl
        # say it), where Typer 0.2x would print {DOMAIN} {SIZE} and Typer 0.7 DOMAIN SIZE.
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument" and param.metavar:
                pieces.append(param.metavar)
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


def table_command(ctx: Any):
    """The command table's entry for the command CTX runs (None for a group such as sim)."""
    words = []
    while ctx.parent is not None:
        words.append(ctx.info_name)
        ctx = ctx.parent
    name = " ".join(reversed(words))
    if name == SYSCTL_COMMAND:
        return SYSCTL
    if name.startswith("sim "):
        return SIM_COMMANDS.get(name[4:])
    return COMMANDS.get(name)


def global_option_records(ctx: Any) -> list[tuple[str, str]]:
    """Help lines of the global options CTX's command takes, from the table and the root's
    declarations (each option's help is written once, on the root)."""
    command = table_command(ctx)
    if command is None:
        return []
    root = ctx.find_root()
    records = []
    for param in root.command.get_params(root):
        if _PARAMS.get(param.name or "") in command.accepts:
            record = param.get_help_record(root)
            if record is not None:
                records.append(record)
    return records


class PlainGroup(TyperGroup):
    """A group whose help is click's plain layout, whichever Typer draws it."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        click.Command.format_help(self, ctx, formatter)

    def list_commands(self, ctx: Any) -> list[str]:
        # In the order they are declared (click 8.1 under Typer 0.7 would sort them).
        return list(self.commands)


class XbctlGroup(PlainGroup):
    """Routes sysctl names to the sysctl form and lets options follow commands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist(list(args), _ARITY))

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[Any, Any, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            if not could_be_sysctl(args[0]) and not ctx.resilient_parsing:
                raise self._no_such_command(args[0])
            return SYSCTL_COMMAND, self.commands[SYSCTL_COMMAND], args
        return super().resolve_command(ctx, args)

    def _no_such_command(self, word: str) -> XbctlError:
        import difflib

        known = [name for name, command in self.commands.items() if not command.hidden]
        close = difflib.get_close_matches(word, known, n=2)
        return usage_error(
            f"no such command or node {word[:64]!r}",
            hint=f"did you mean {' or '.join(close)}?" if close else "see 'xbctl --help'",
        )

    def _main_shell_completion(self, ctx_args: Any, prog_name: str, complete_var: Any = None) -> None:
        # The shipped scripts call back with _XBCTL_COMPLETE set; xbctl.completion answers (not Typer).
        instruction = os.environ.get("_XBCTL_COMPLETE")
        if instruction:
            from ..completion import serve

            serve(self, instruction)

    def main(self, args: Any = None, prog_name: Any = None, **extra: Any) -> Any:  # type: ignore[override]
        """Typer's runner (the tests) enters here: the same run() as the xbctl command."""
        from .main import run

        sys.exit(run(list(sys.argv[1:] if args is None else args)))


def run_typer(argv: list[str], state: dict) -> int:
    """Let Typer parse ARGV (help, version, completion, usage errors); the exit status."""
    command = typer.main.get_command(app)
    command.state = state  # type: ignore[attr-defined]
    result = TyperGroup.main(command, args=list(argv), prog_name="xbctl", standalone_mode=False)
    return result if isinstance(result, int) else ExitStatus.OK


def typer_exception_status(exc: Exception, report) -> int | None:
    """The exit status of Typer's own outcomes (REPORT shows an error); None for others."""
    if isinstance(exc, typer.Exit):
        return exc.exit_code
    if isinstance(exc, typer.Abort):
        from ..output import say

        say("interrupted")
        return 130
    if isinstance(exc, click.ClickException):  # Typer's usage errors: exit 2
        message, hint = _usage_words(exc)
        return report(
            XbctlError(
                message[:1].lower() + message[1:],
                status=ExitStatus(getattr(exc, "exit_code", 2)),
                hint=hint,
            )
        )
    return None


def _usage_words(exc: Any) -> tuple[str, str]:
    """The message and hint of click's usage error EXC, in the same words with every Typer."""
    # click 8.1 (Typer 0.7) and Typer 0.28's click word these two differently: say them our way.
    errors = click.exceptions
    if isinstance(exc, errors.NoSuchOption) and exc.possibilities:
        return f"no such option: {exc.option_name}", f"did you mean {' or '.join(sorted(exc.possibilities))}?"
    if (
        isinstance(exc, errors.BadParameter)
        and not isinstance(exc, errors.MissingParameter)
        and exc.param_hint is None
        and exc.param is not None
    ):
        where = " / ".join(f"'{spelling}'" for spelling in exc.param.opts)
        if getattr(exc.param, "envvar", None) and getattr(exc.param, "show_envvar", False):
            where += f" (env var: '{exc.param.envvar}')"  # the bad value may have come from there
        return f"invalid value for {where}: {exc.message}", "see 'xbctl --help'"
    return exc.format_message(), "see 'xbctl --help'"


def _execute(ctx: typer.Context, command, args: list[str], local: dict | None = None) -> None:
    from .main import execute

    root = ctx.find_root()
    values = root.obj
    given = [option for option in values if option in _PARAMS.values()]
    execute(Invocation(command, given, values, args, local or {}), root.command.state)


def _version_callback(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:  # resilient: tab completion is parsing the line
        sys.stdout.write(f"xbctl {__version__}\n")
        raise typer.Exit()


def _show_completion_callback(ctx: typer.Context, shell: Optional[str]) -> None:
    if shell is not None and not ctx.resilient_parsing:
        from ..completion import completion_script

        sys.stdout.write(completion_script(shell))
        raise typer.Exit()


def _install_completion_callback(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from ..completion import install_completion

        sys.stdout.write(install_completion())
        raise typer.Exit()


app = typer.Typer(
    cls=XbctlGroup,
    name="xbctl",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": list(_HELP_OPTIONS)},
    help=(
        "Inspect and steer the Xen memory balloon of domains, sysctl-style.\n\n"
        "  xbctl -a | xbctl NAME... | xbctl [-w] NAME=VALUE... | xbctl -f FILE\n\n"
        "Names are machdep.xen.balloon.{current,target,min,max,xen-max}; values are KiB "
        "unless a unit is given (b k m g t, KiB MiB GiB TiB). mem-set and mem-max take MiB "
        "without a unit, as xl does. An option a command does not take is a usage error (exit 2)."
    ),
    epilog=(
        "Exit status: 0 success, 1 refused (EPERM/EACCES), 2 bad usage or value, "
        "3 transport unavailable, 4 unknown domain or node, 5 --wait did not reach the target, "
        "6 written, but the output could not be written."
    ),
)
TransportName = __import__("enum").Enum("TransportName", {name: name for name in TRANSPORT_NAMES}, type=str)


@app.callback()
def main_callback(
    ctx: typer.Context,
    show_all: bool = typer.Option(False, "-a", "--all", help="Show every node of the domain."),
    all_domains: bool = typer.Option(
        False, "-A", "--all-domains",
        help="Read every domain (each line names its domain; with -e, one [DOMAIN] section each).",
    ),
    system: bool = typer.Option(
        False, "--system",
        help="Apply /etc/xbctl.conf, /etc/xbctl.d and /usr/lib/xbctl.d (sysctl's order) as one change.",
    ),
    write: bool = typer.Option(False, "-w", "--write", help="Write NAME=VALUE assignments (implied by '=')."),
    values_only: bool = typer.Option(False, "-n", help="Print values only, without names."),
    equals: bool = typer.Option(False, "-e", help="Print name=value, for reuse with -f."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print nothing but errors."),
    verbose: bool = typer.Option(
        False, "-v", "--verbose", help="With -f or --system, list the settings that were unchanged too."
    ),
    settings_files: Optional[list[str]] = typer.Option(
        None, "-f", "--file", metavar="FILE",
        help="Apply a file of name=value lines (name?=value: optional); several apply in order, as one change.",
    ),
    domain: Optional[str] = typer.Option(
        None, "-d", "--domain", metavar="NAME|ID", help="Act on this domain (default: our own)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON output."),
    dry_run: bool = typer.Option(
        False, "--dry-run",
        help="Check and show a write without writing (with --system or policy: what they would change).",
    ),
    wait: bool = typer.Option(False, "--wait", help="After a target change, wait until current reaches it."),
    timeout_text: Optional[str] = typer.Option(
        None, "--timeout", metavar="SECONDS", help="Give up --wait after SECONDS."
    ),
    transport_name: Optional[TransportName] = typer.Option(
        None, "--transport",
        metavar=f"<{'|'.join(TRANSPORT_NAMES)}>",  # click 8.1 would say [sim|xenstore], as if optional
        envvar="XBCTL_TRANSPORT",
        help="sim or xenstore (default: xenstore when reachable, else sim).",
    ),
    sim_state: Optional[str] = typer.Option(
        None, "--sim-state", metavar="PATH", envvar="XBCTL_SIM_STATE", help="Simulator state file."
    ),
    override_guest_floor: bool = typer.Option(
        False, "--override-guest-floor",
        help="Let the host write target or min below the floor the guest publishes (data/balloon/min).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
    install_completion: bool = typer.Option(
        False, "--install-completion",
        callback=_install_completion_callback,
        is_eager=True,
        expose_value=False,
        help="Install tab completion for the current shell (bash, zsh or fish).",
    ),
    show_completion: Optional[str] = typer.Option(
        None, "--show-completion",
        metavar="SHELL",
        callback=_show_completion_callback,
        is_eager=True,
        expose_value=False,
        help="Print the completion script for SHELL (bash, zsh or fish).",
    ),
) -> None:
    """Inspect and steer the Xen memory balloon of domains, sysctl-style."""
    given = dict(locals())
    values: dict = {}
    for param, option in _PARAMS.items():
        value = given[param]
        if option in ("--transport",) and value is not None:
            value = value.value
            if ctx.get_parameter_source(param).name == "ENVIRONMENT":
                continue  # the environment's choice is not an option given
        if option == "--sim-state" and ctx.get_parameter_source(param).name == "ENVIRONMENT":
            continue
        if value not in (None, False, []):
            values[option] = value
    ctx.obj = values
    if ctx.invoked_subcommand is None:
        _execute(ctx, SYSCTL, [])


@app.command(SYSCTL_COMMAND, hidden=True, cls=PlainCommand)
def sysctl_command(ctx: typer.Context, names: Optional[list[str]] = typer.Argument(None)) -> None:
    """The sysctl form: NAME reads, NAME=VALUE writes."""
    _execute(ctx, SYSCTL, names or [])


def _node_command(node):
    def command(
        ctx: typer.Context,
        value: Optional[str] = typer.Argument(
            None, metavar="[VALUE]", help="New value in KiB unless a unit is given."
        ),
    ) -> None:
        _execute(ctx, COMMANDS[node.key], [] if value is None else [value])

    relative = " A signed value (+256M, -4) changes it relatively." if node.key == "target" else ""
    command.__doc__ = f"Read or set {node.sysctl_name}: {node.summary} ({node.access}).{relative}"
    return command


for _node in NODES:
    _command = _node_command(_node)
    app.command(_node.key, help=_command.__doc__, short_help=f"{_node.summary} ({_node.access})", cls=PlainCommand)(
        _command
    )


def _domain_argument() -> Any:
    return typer.Argument(..., metavar="DOMAIN", help="Domain name or id.")


def _size_argument() -> Any:
    return typer.Argument(..., metavar="SIZE", help="MiB unless a unit is given (as xl).")


@app.command("mem-set", cls=PlainCommand)
def mem_set(ctx: typer.Context, domain: str = _domain_argument(), size: str = _size_argument()) -> None:
    """Set DOMAIN's target, as xl mem-set (MiB without a unit)."""
    _execute(ctx, COMMANDS["mem-set"], [domain, size])


@app.command("mem-max", cls=PlainCommand)
def mem_max(ctx: typer.Context, domain: str = _domain_argument(), size: str = _size_argument()) -> None:
    """Set DOMAIN's xen-max, as xl mem-max (MiB without a unit)."""
    _execute(ctx, COMMANDS["mem-max"], [domain, size])


@app.command("list", cls=PlainCommand)
def list_command(
    ctx: typer.Context,
    domains: Optional[list[str]] = typer.Argument(
        None, metavar="[DOMAIN]...", help="Only these domains (names or ids), in this order."
    ),
    long: bool = typer.Option(
        False, "--long", "-l", help="Every node in KiB and the driver, in fixed columns (also on a terminal)."
    ),
    output_format: Optional[str] = typer.Option(
        None, "--format",
        metavar="FORMAT",
        help="prometheus: the exporter's metrics, for node_exporter's textfile collector.",
    ),
) -> None:
    """Show every domain's current, target, min, max and xen-max: a table on a terminal,
    fixed columns for scripts (xl list's layout; -n drops the header line)."""
    if output_format is not None and output_format != "prometheus":
        raise usage_error(f"--format {output_format!r}: unknown format", hint="formats: prometheus")
    local = {"--format": output_format} if output_format else {}
    if long:
        local["--long"] = True
    _execute(ctx, COMMANDS["list"], list(domains or []), local or None)


@app.command("exporter", cls=PlainCommand)
def exporter_command(
    ctx: typer.Context,
    listen: str = typer.Option(
        ..., "--listen", metavar="HOST:PORT", help="Serve Prometheus metrics at http://HOST:PORT/metrics."
    ),
    max_requests: Optional[str] = typer.Option(
        None, metavar="N", help="Requests answered at once (default 40); more wait their turn."
    ),
    max_connections: Optional[str] = typer.Option(
        None, metavar="N", help="Connections held open at once (default 256); more wait in the listen queue."
    ),
    client_timeout: Optional[str] = typer.Option(
        None, metavar="SECONDS",
        help="Time a client has to send its request, and again to take the answer (default 10).",
    ),
) -> None:
    """Serve every domain's balloon as Prometheus metrics until interrupted."""
    _execute(ctx, COMMANDS["exporter"], [], {"--listen": listen, **_local(
        max_requests=max_requests, max_connections=max_connections, client_timeout=client_timeout)})


@app.command("top", cls=PlainCommand)
def top_command(ctx: typer.Context) -> None:
    """Show the domain table, redrawn as balloons move (q or Ctrl-C quits)."""
    _execute(ctx, COMMANDS["top"], [])


sim_app = typer.Typer(cls=PlainGroup, help="Control the simulated host (the embedded default).")
app.add_typer(sim_app, name="sim")


class Clock(str, __import__("enum").Enum):
    wall = "wall"
    manual = "manual"


def _local(**options: Any) -> dict:
    """The command's own options given, by their spelling (--host-free)."""
    return {
        f"--{name.replace('_', '-')}": getattr(value, "value", value)
        for name, value in options.items()
        if value is not None
    }


@sim_app.command("advance", cls=PlainCommand)
def sim_advance(
    ctx: typer.Context,
    seconds: str = typer.Argument(..., metavar="SECONDS", help="Simulated seconds to let pass."),
) -> None:
    """Let SECONDS of simulated time pass (the balloon threads move meanwhile)."""
    _execute(ctx, SIM_COMMANDS["advance"], [seconds])


@sim_app.command("reset", cls=PlainCommand)
def sim_reset(
    ctx: typer.Context,
    clock: Optional[Clock] = typer.Option(
        None, metavar="<wall|manual>", help="wall (default): time passes by itself; manual: only `sim advance`."
    ),
    rate: Optional[str] = typer.Option(
        None,
        metavar="STEPS",
        help="Balloon steps (512 pages each) per simulated second (default 50); 0: the same as --clock manual.",
    ),
    host_free: Optional[str] = typer.Option(
        None, metavar="SIZE", help="Host free memory (KiB unless a unit; default 2G)."
    ),
    position: Optional[str] = typer.Option(
        None, metavar="DOMAIN", help="The domain xbctl runs in (default Domain-0, the host)."
    ),
    guests: Optional[str] = typer.Option(
        None,
        metavar="N",
        help="Boot N guests (0 to 2000; default 3): web, db, mail, then guest4... of varied sizes and drivers.",
    ),
) -> None:
    """Boot a fresh simulated host: Domain-0, web, db (a driver that publishes nothing), mail (no driver)."""
    _execute(
        ctx,
        SIM_COMMANDS["reset"],
        [],
        _local(clock=clock, rate=rate, host_free=host_free, position=position, guests=guests),
    )


@sim_app.command("log", cls=PlainCommand)
def sim_log(ctx: typer.Context) -> None:
    """Show the balloon drivers' diagnostics (like dmesg in each guest)."""
    _execute(ctx, SIM_COMMANDS["log"], [])


@app.command("agent", cls=PlainCommand)
def agent_command(
    ctx: typer.Context,
    rate: Optional[str] = typer.Option(
        None, metavar="STEPS", help="Balloon steps (512 pages each) per second (default 50)."
    ),
    boot_size: Optional[str] = typer.Option(
        None, metavar="SIZE", help="The guest's boot-time size (default: memory/static-max)."
    ),
    used: Optional[str] = typer.Option(
        None, metavar="SIZE", help="Memory the guest holds and never gives back (default: a quarter)."
    ),
    host_free: Optional[str] = typer.Option(
        None, metavar="SIZE", help="Free memory the hypervisor can hand out (default: plenty)."
    ),
) -> None:
    """Play the guest side of -d DOMAIN over Xenstore: a simulated balloon driver behind memory/target."""
    _execute(ctx, COMMANDS["agent"], [], _local(rate=rate, boot_size=boot_size, used=used, host_free=host_free))


@app.command("policy", cls=PlainCommand)
def policy_command(
    ctx: typer.Context,
    domains: Optional[list[str]] = typer.Argument(
        None, metavar="[DOMAIN]...", help="With --reapply: only these domains (names or ids)."
    ),
    follow: bool = typer.Option(
        False, "--follow",
        help="Run as the service: then configure each new domain as Xenstore introduces it "
        "(@introduceDomain), until SIGTERM; SIGHUP re-reads the configuration.",
    ),
    reapply: bool = typer.Option(
        False, "--reapply",
        help="Apply the settings again to every domain (or to the DOMAINs given), configured earlier or not.",
    ),
) -> None:
    """Apply the configuration files (/etc/xbctl.conf, /etc/xbctl.d/*.conf) to each domain once:
    those not configured since they were created, each on its own (xbctl-policy.service).
    A domain configured earlier is left alone, whatever was changed on it since.
    With --dry-run (a global option): show what would change (domain, node, old -> new,
    FILE:LINE) and change nothing."""
    local = {"--follow": True} if follow else {}
    if reapply:
        local["--reapply"] = True
    _execute(ctx, COMMANDS["policy"], list(domains or []), local)
