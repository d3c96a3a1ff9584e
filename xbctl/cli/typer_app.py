"""The Typer app: help, version, tab completion and the words of usage errors.

Only loaded when the lean parser (xbctl.cli.parse) hands a command line over; Typer's
runner (the tests) enters through XbctlGroup.main, which runs the same xbctl.cli.main.run.
A command line Typer parses runs through the same table check and commands (execute).
Every command and option is generated from the command spec (xbctl.cli.table): nothing
is declared here a second time.

Written for every Typer from Debian 12's 0.7 (on the system's click 8.1) to the pinned
0.28 (which carries its own click): parameters are declared as `param: T =
typer.Option(default, ...)` (Typer 0.7 has no Annotated), and help is click's plain
layout with both (Typer 0.7 draws rich panels whenever rich is importable).
"""

from __future__ import annotations

import enum
import inspect
import os
import sys
from typing import Any, Callable, Optional

import typer
from typer.core import TyperCommand, TyperGroup

try:  # Typer 0.2x and later carry their own click
    from typer import _click as click
except ImportError:  # earlier Typers (Debian 12's 0.7) run on the system's click
    import click  # type: ignore[no-redef]  # the same module, from where such Typers find it

from .. import __version__
from ..errors import ExitStatus, XbctlError, usage_error
from . import table
from .parse import Invocation, could_be_sysctl, hoist
from .table import GLOBALS, HELP_SPELLINGS, SYSCTL, command_of_context

SYSCTL_COMMAND = "sysctl"
# Every global option Typer knows -> whether it takes a value.
_ARITY = {spelling: option.takes_value for option in GLOBALS for spelling in option.spellings}
# Typer's parameter name -> the global option (the lean parser's and Typer's alike).
_PARAMS = {option.attribute: option for option in GLOBALS if not option.typer_only}


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


def global_option_records(ctx: Any) -> list[tuple[str, str]]:
    """Help lines of the global options CTX's command takes, from the table and the root's
    declarations (each option's help is written once, on the root)."""
    command = command_of_context(ctx)
    if command is None:
        return []
    root = ctx.find_root()
    records = []
    for param in root.command.get_params(root):
        option = _PARAMS.get(param.name or "")
        if option is not None and option.name in command.accepts:
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
        if ENTRY is None:
            raise RuntimeError("xbctl.cli.typer_app: load the app as xbctl.cli.app")
        sys.exit(ENTRY(list(sys.argv[1:] if args is None else args)))


# cli.main's run(), for Typer's runner: handed in by xbctl.cli when it loads the app, so the app
# never imports cli.main (which imports the app): commands run through STATE["execute"].
ENTRY: Callable[[list[str]], int] | None = None


def run_typer(argv: list[str], state: dict) -> int:
    """Let Typer parse ARGV (help, version, completion, usage errors) and run the command through
    STATE["execute"] (cli.main's execute); the exit status."""
    command = typer.main.get_command(app)
    command.state = state  # type: ignore[attr-defined]
    # An app with commands: get_command made a TyperGroup (typed as click's Command).
    result = TyperGroup.main(command, args=list(argv), prog_name="xbctl", standalone_mode=False)  # type: ignore[arg-type]
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
    root = ctx.find_root()
    values = root.obj
    given = [option.name for option in _PARAMS.values() if option.name in values]
    state = root.command.state  # type: ignore[attr-defined]  # set by run_typer
    state["execute"](Invocation(command, given, values, args, local or {}), state)


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


# Typer-only options: what each does when given.
_CALLBACKS = {
    "--version": _version_callback,
    "--install-completion": _install_completion_callback,
    "--show-completion": _show_completion_callback,
}


def _choice_type(option) -> type:
    """The Enum Typer turns into click's Choice for OPTION's choices (its usage error names them)."""
    # Enum's functional API makes a class, which typeshed's signature does not say.
    return enum.Enum(option.attribute.title().replace("_", ""), {value: value for value in option.choices}, type=str)  # type: ignore[return-value]


def _option_parameter(option) -> inspect.Parameter:
    """OPTION as a Typer parameter (`name: T = typer.Option(default, *spellings, ...)`)."""
    settings: dict = {"help": option.help}
    if option.metavar is not None:
        settings["metavar"] = option.metavar
    if option.envvar is not None:
        settings["envvar"] = option.envvar
    if option.name in _CALLBACKS:
        settings.update(callback=_CALLBACKS[option.name], is_eager=True, expose_value=False)
    annotation: Any  # a type, or a typing form such as Optional[str]
    default: Any
    if not option.takes_value:
        annotation, default = bool, False
    elif option.repeat:
        annotation, default = Optional[list[str]], None
    elif option.choices and option.unknown is None:
        annotation, default = Optional[_choice_type(option)], None
    elif option.required:
        annotation, default = str, ...
    else:
        annotation, default = Optional[str], None
    return inspect.Parameter(
        option.attribute,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=annotation,
        default=typer.Option(default, *option.spellings, **settings),
    )


def _argument_parameter(argument) -> inspect.Parameter:
    """ARGUMENT as a Typer parameter (`name: T = typer.Argument(default, metavar=..., help=...)`)."""
    settings = {key: value for key, value in (("metavar", argument.usage), ("help", argument.help)) if value}
    annotation: Any  # a type, or a typing form such as Optional[str]
    default: Any
    if argument.many:
        annotation, default = Optional[list[str]], None
    elif argument.required:
        annotation, default = str, ...
    else:
        annotation, default = Optional[str], None
    return inspect.Parameter(
        argument.attribute,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=annotation,
        default=typer.Argument(default, **settings),
    )


def _typer_function(name: str, parameters: list[inspect.Parameter], body) -> Any:
    """A function Typer can read (signature, annotations) that hands its context and values to BODY."""

    def function(ctx: typer.Context, **given: Any) -> None:
        body(ctx, given)

    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    function.__signature__ = inspect.Signature([context, *parameters])  # type: ignore[attr-defined]
    function.__annotations__ = {"ctx": typer.Context, **{p.name: p.annotation for p in parameters}}
    function.__name__ = function.__qualname__ = name.replace(" ", "_").replace("-", "_")
    return function


def _run_command(command):
    """The body of COMMAND's Typer function: its arguments and own options, to execute()."""

    def body(ctx: typer.Context, given: dict) -> None:
        args: list[str] = []
        for argument in command.arguments:
            value = given[argument.attribute]
            if argument.many:
                args.extend(value or [])
            elif value is not None:
                args.append(value)
        local: dict = {}
        for option in command.options:
            value = getattr(given[option.attribute], "value", given[option.attribute])  # an Enum's
            if option.unknown is not None and value is not None and value not in option.choices:
                raise usage_error(
                    f"{option.name} {value!r}: unknown {option.unknown}",
                    hint=f"{option.unknown}s: {', '.join(option.choices)}",
                )
            if value not in (None, False):
                local[option.name] = value
        _execute(ctx, command, args, local)

    return body


def _main_callback(ctx: typer.Context, given: dict) -> None:
    values: dict = {}
    for param, option in _PARAMS.items():
        value = getattr(given[param], "value", given[param])  # an Enum's
        if option.envvar and value is not None and ctx.get_parameter_source(param).name == "ENVIRONMENT":  # type: ignore[union-attr]  # a parameter's: always set
            continue  # the environment's choice is not an option given
        if value not in (None, False, []):
            values[option.name] = value
    ctx.obj = values
    if ctx.invoked_subcommand is None:
        _execute(ctx, SYSCTL, [])


def _add_command(group: typer.Typer, name: str, command, **settings: Any) -> None:
    parameters = [_argument_parameter(a) for a in command.arguments] + [_option_parameter(o) for o in command.options]
    function = _typer_function(command.name, parameters, _run_command(command))
    group.command(name, help=command.help, short_help=command.summary, cls=PlainCommand, **settings)(function)


app = typer.Typer(
    cls=XbctlGroup,
    name="xbctl",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": list(HELP_SPELLINGS)},
    help=table.PROGRAM_HELP,
    epilog=table.PROGRAM_EPILOG,
)
app.callback()(_typer_function("main_callback", [_option_parameter(option) for option in GLOBALS], _main_callback))
_add_command(app, SYSCTL_COMMAND, SYSCTL, hidden=True)
for _name, _command in table.COMMANDS.items():
    _add_command(app, _name, _command)
for _group_name, (_group_help, _commands) in table.GROUPS.items():
    _group = typer.Typer(cls=PlainGroup, help=_group_help)
    app.add_typer(_group, name=_group_name)
    for _name, _command in _commands.items():
        _add_command(_group, _name, _command)
