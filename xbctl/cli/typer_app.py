"""The Typer app: help, version, tab completion and the words of usage errors.

Only loaded when the lean parser (xbctl.cli.parse) hands a command line over; Typer's
runner (the tests) enters through XbctlGroup.main, which runs the same xbctl.cli.main.run.
A command line Typer parses runs through the same table check and commands (execute).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

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
    "settings_files": "-f", "domain": "-d", "as_json": "--json", "dry_run": "--dry-run", "wait": "--wait",
    "timeout_text": "--timeout", "transport_name": "--transport", "sim_state": "--sim-state",
    "override_guest_floor": "--override-guest-floor",
}


class XbctlGroup(TyperGroup):
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
    if isinstance(exc, typer.TyperException):  # Typer's usage errors: exit 2
        message = exc.format_message()  # type: ignore[attr-defined]
        return report(
            XbctlError(
                message[:1].lower() + message[1:],
                status=ExitStatus(getattr(exc, "exit_code", 2)),
                hint="see 'xbctl --help'",
            )
        )
    return None


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
    show_all: Annotated[bool, typer.Option("-a", "--all", help="Show every node of the domain.")] = False,
    all_domains: Annotated[
        bool,
        typer.Option(
            "-A", "--all-domains",
            help="Read every domain (each line names its domain; with -e, one [DOMAIN] section each).",
        ),
    ] = False,
    system: Annotated[
        bool,
        typer.Option(
            "--system",
            help="Apply /etc/xbctl.conf, /etc/xbctl.d and /usr/lib/xbctl.d (sysctl's order) as one change.",
        ),
    ] = False,
    write: Annotated[
        bool, typer.Option("-w", "--write", help="Write NAME=VALUE assignments (implied by '=').")
    ] = False,
    values_only: Annotated[bool, typer.Option("-n", help="Print values only, without names.")] = False,
    equals: Annotated[bool, typer.Option("-e", help="Print name=value, for reuse with -f.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing but errors.")] = False,
    settings_files: Annotated[
        Optional[list[str]],
        typer.Option(
            "-f", "--file", metavar="FILE",
            help="Apply a file of name=value lines (name?=value: optional); several apply in order, as one change.",
        ),
    ] = None,
    domain: Annotated[
        Optional[str],
        typer.Option("-d", "--domain", metavar="NAME|ID", help="Act on this domain (default: our own)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and show a write without writing.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="After a target change, wait until current reaches it.")
    ] = False,
    timeout_text: Annotated[
        Optional[str],
        typer.Option("--timeout", metavar="SECONDS", help="Give up --wait after SECONDS."),
    ] = None,
    transport_name: Annotated[
        Optional[TransportName],
        typer.Option(
            "--transport",
            envvar="XBCTL_TRANSPORT",
            help="sim or xenstore (default: xenstore when reachable, else sim).",
        ),
    ] = None,
    sim_state: Annotated[
        Optional[str],
        typer.Option("--sim-state", metavar="PATH", envvar="XBCTL_SIM_STATE", help="Simulator state file."),
    ] = None,
    override_guest_floor: Annotated[
        bool,
        typer.Option(
            "--override-guest-floor",
            help="Let the host write target or min below the floor the guest publishes (data/balloon/min).",
        ),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version.")
    ] = False,
    install_completion: Annotated[
        bool,
        typer.Option(
            "--install-completion",
            callback=_install_completion_callback,
            is_eager=True,
            expose_value=False,
            help="Install tab completion for the current shell (bash, zsh or fish).",
        ),
    ] = False,
    show_completion: Annotated[
        Optional[str],
        typer.Option(
            "--show-completion",
            metavar="SHELL",
            callback=_show_completion_callback,
            is_eager=True,
            expose_value=False,
            help="Print the completion script for SHELL (bash, zsh or fish).",
        ),
    ] = None,
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


@app.command(SYSCTL_COMMAND, hidden=True)
def sysctl_command(ctx: typer.Context, names: Annotated[Optional[list[str]], typer.Argument()] = None) -> None:
    """The sysctl form: NAME reads, NAME=VALUE writes."""
    _execute(ctx, SYSCTL, names or [])


def _node_command(node):
    def command(
        ctx: typer.Context,
        value: Annotated[
            Optional[str],
            typer.Argument(metavar="[VALUE]", help="New value in KiB unless a unit is given."),
        ] = None,
    ) -> None:
        _execute(ctx, COMMANDS[node.key], [] if value is None else [value])

    relative = " A signed value (+256M, -4) changes it relatively." if node.key == "target" else ""
    command.__doc__ = f"Read or set {node.sysctl_name}: {node.summary} ({node.access}).{relative}"
    return command


for _node in NODES:
    _command = _node_command(_node)
    app.command(_node.key, help=_command.__doc__, short_help=f"{_node.summary} ({_node.access})")(_command)

DomainArgument = Annotated[str, typer.Argument(metavar="DOMAIN", help="Domain name or id.")]
SizeArgument = Annotated[str, typer.Argument(metavar="SIZE", help="MiB unless a unit is given (as xl).")]


@app.command("mem-set")
def mem_set(ctx: typer.Context, domain: DomainArgument, size: SizeArgument) -> None:
    """Set DOMAIN's target, as xl mem-set (MiB without a unit)."""
    _execute(ctx, COMMANDS["mem-set"], [domain, size])


@app.command("mem-max")
def mem_max(ctx: typer.Context, domain: DomainArgument, size: SizeArgument) -> None:
    """Set DOMAIN's xen-max, as xl mem-max (MiB without a unit)."""
    _execute(ctx, COMMANDS["mem-max"], [domain, size])


@app.command("list")
def list_command(
    ctx: typer.Context,
    domains: Annotated[
        Optional[list[str]],
        typer.Argument(metavar="[DOMAIN]...", help="Only these domains (names or ids), in this order."),
    ] = None,
    long: Annotated[
        bool,
        typer.Option("--long", "-l", help="Every node in KiB and the driver, in fixed columns (also on a terminal)."),
    ] = False,
    output_format: Annotated[
        Optional[str],
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="prometheus: the exporter's metrics, for node_exporter's textfile collector.",
        ),
    ] = None,
) -> None:
    """Show every domain's current, target, min, max and xen-max: a table on a terminal,
    fixed columns for scripts (xl list's layout; -n drops the header line)."""
    if output_format is not None and output_format != "prometheus":
        raise usage_error(f"--format {output_format!r}: unknown format", hint="formats: prometheus")
    local = {"--format": output_format} if output_format else {}
    if long:
        local["--long"] = True
    _execute(ctx, COMMANDS["list"], list(domains or []), local or None)


@app.command("exporter")
def exporter_command(
    ctx: typer.Context,
    listen: Annotated[
        str,
        typer.Option("--listen", metavar="HOST:PORT", help="Serve Prometheus metrics at http://HOST:PORT/metrics."),
    ],
) -> None:
    """Serve every domain's balloon as Prometheus metrics until interrupted."""
    _execute(ctx, COMMANDS["exporter"], [], {"--listen": listen})


@app.command("top")
def top_command(ctx: typer.Context) -> None:
    """Show the domain table, redrawn as balloons move (q or Ctrl-C quits)."""
    _execute(ctx, COMMANDS["top"], [])


sim_app = typer.Typer(help="Control the simulated host (the embedded default).")
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


@sim_app.command("advance")
def sim_advance(
    ctx: typer.Context,
    seconds: Annotated[str, typer.Argument(metavar="SECONDS", help="Simulated seconds to let pass.")],
) -> None:
    """Let SECONDS of simulated time pass (the balloon threads move meanwhile)."""
    _execute(ctx, SIM_COMMANDS["advance"], [seconds])


@sim_app.command("reset")
def sim_reset(
    ctx: typer.Context,
    clock: Annotated[
        Optional[Clock], typer.Option(help="wall (default): time passes by itself; manual: only `sim advance`.")
    ] = None,
    rate: Annotated[
        Optional[str],
        typer.Option(
            metavar="STEPS",
            help="Balloon steps (512 pages each) per simulated second (default 50); 0: the same as --clock manual.",
        ),
    ] = None,
    host_free: Annotated[
        Optional[str], typer.Option(metavar="SIZE", help="Host free memory (KiB unless a unit; default 2G).")
    ] = None,
    position: Annotated[
        Optional[str],
        typer.Option(metavar="DOMAIN", help="The domain xbctl runs in (default Domain-0, the host)."),
    ] = None,
    guests: Annotated[
        Optional[str],
        typer.Option(
            metavar="N",
            help="Boot N guests (0 to 2000; default 3): web, db, mail, then guest4... of varied sizes and drivers.",
        ),
    ] = None,
) -> None:
    """Boot a fresh simulated host: Domain-0, web, db (a driver that publishes nothing), mail (no driver)."""
    _execute(
        ctx,
        SIM_COMMANDS["reset"],
        [],
        _local(clock=clock, rate=rate, host_free=host_free, position=position, guests=guests),
    )


@sim_app.command("log")
def sim_log(ctx: typer.Context) -> None:
    """Show the balloon drivers' diagnostics (like dmesg in each guest)."""
    _execute(ctx, SIM_COMMANDS["log"], [])


@app.command("agent")
def agent_command(
    ctx: typer.Context,
    rate: Annotated[
        Optional[str], typer.Option(metavar="STEPS", help="Balloon steps (512 pages each) per second (default 50).")
    ] = None,
    boot_size: Annotated[
        Optional[str],
        typer.Option(metavar="SIZE", help="The guest's boot-time size (default: memory/static-max)."),
    ] = None,
    used: Annotated[
        Optional[str],
        typer.Option(metavar="SIZE", help="Memory the guest holds and never gives back (default: a quarter)."),
    ] = None,
    host_free: Annotated[
        Optional[str],
        typer.Option(metavar="SIZE", help="Free memory the hypervisor can hand out (default: plenty)."),
    ] = None,
) -> None:
    """Play the guest side of -d DOMAIN over Xenstore: a simulated balloon driver behind memory/target."""
    _execute(ctx, COMMANDS["agent"], [], _local(rate=rate, boot_size=boot_size, used=used, host_free=host_free))


@app.command("policy")
def policy_command(
    ctx: typer.Context,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Then watch Xenstore (@introduceDomain) and apply each new domain's settings as it appears, "
            "until SIGTERM; SIGHUP re-reads the configuration.",
        ),
    ] = False,
) -> None:
    """Apply the configuration files (/etc/xbctl.conf, /etc/xbctl.d/*.conf) to every domain, each on its own."""
    _execute(ctx, COMMANDS["policy"], [], {"--follow": True} if follow else {})
