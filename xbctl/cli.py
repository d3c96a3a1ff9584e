"""The command line: parses arguments, renders results, and turns errors into exit statuses.

Two forms share one set of options: the sysctl form (`xbctl -a`, `xbctl NAME`,
`xbctl [-w] NAME=VALUE`, `-f FILE`) and subcommands (`xbctl target [VALUE]`,
`mem-set`, `mem-max`, `list`, `sim ...`). Options may follow the command, as
administrators type them (`xbctl mem-set web 512 --wait`).
"""

from __future__ import annotations

import errno
import signal
import os
import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from . import __version__
from .errors import ExitStatus, XbctlError, printable, usage_error
from .nodes import NODES, SYSCTL_PREFIX, Node, select_nodes
from .transports import TRANSPORT_NAMES
from .units import parse_number

if TYPE_CHECKING:
    from .nodes import Balloon
    from .operations import WriteRequest, WriteResult
    from .transports import Domain, Transport

SYSCTL_COMMAND = "sysctl"
MAX_SECONDS = 10**7  # about four months: anything longer is a typo
PROGRESS_LINE_S = 1.0  # plain --wait progress: at most one line per second
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command that Ctrl-C ended
_HELP_OPTIONS = ("-h", "--help")


def _looks_negative(token: str) -> bool:
    """`-4`, `-256M`, `-0x10`: a relative size, never an option."""
    return len(token) > 1 and token[0] == "-" and (token[1].isdigit() or token[1] == ".")


def _could_be_sysctl(word: str) -> bool:
    """WORD is a sysctl name, a subtree or an assignment (a dotless word is a typo'd command)."""
    return "." in word or "=" in word or word == SYSCTL_PREFIX.split(".")[0]


class XbctlGroup(TyperGroup):
    """Routes sysctl names to the sysctl form, lets options follow commands, owns exit statuses."""

    def _option_arity(self) -> dict[str, bool]:
        """Each global option string -> whether it takes a value."""
        arity = {}
        for param in self.params:
            if getattr(param, "param_type_name", "") != "option":
                continue
            for opt in [*param.opts, *param.secondary_opts]:
                if opt not in _HELP_OPTIONS:
                    arity[opt] = not param.is_flag
        return arity

    def _hoist_options(self, args: list[str]) -> list[str]:
        """Move global options found after the command in front of it."""
        arity = self._option_arity()
        front: list[str] = []
        rest: list[str] = []
        index = 0
        while index < len(args):
            token = args[index]
            index += 1
            if token == "--":
                rest.extend(args[index - 1 :])
                break
            if _looks_negative(token):
                rest.append(token)
                continue
            name = token.split("=", 1)[0] if token.startswith("--") else token[:2]
            if token.startswith("-") and name in arity:
                front.append(token)
                inline_value = ("=" in token) if token.startswith("--") else len(token) > 2
                if arity[name] and not inline_value and index < len(args):
                    front.append(args[index])
                    index += 1
                continue
            if token.startswith("-") and not token.startswith("--") and len(token) > 2 and all(
                f"-{flag}" in arity and not arity[f"-{flag}"] for flag in token[1:]
            ):
                front.append(token)  # a cluster of flags such as -ne
                continue
            rest.append(token)
        # A relative size such as -256M must reach the command as a value, not an option.
        for position, token in enumerate(rest):
            if token == "--":
                break
            if _looks_negative(token) and position > 0:
                rest.insert(position, "--")
                break
        return front + rest

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self._hoist_options(list(args)))

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[Any, Any, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            if not _could_be_sysctl(args[0]) and not ctx.resilient_parsing:
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
            from .completion import serve

            serve(self, instruction)

    def main(self, args: Any = None, prog_name: Any = None, **extra: Any) -> Any:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        extra.pop("standalone_mode", None)
        console = extra.pop("console", False)  # the xbctl command itself, not a test's runner
        real_stdout, real_stderr = sys.stdout, sys.stderr
        if sys.stderr is None:  # started with 2>&-: messages have nowhere to go
            real_stderr = open(os.devnull, "w")
        # Everything printed passes these: no control character reaches the terminal raw.
        sys.stdout = _Output(real_stdout)  # type: ignore[assignment]
        sys.stderr = _Messages(real_stderr)  # type: ignore[assignment]
        try:
            if console:
                # Only now, inside the try that reports it, may Ctrl-C become a KeyboardInterrupt
                # (after a write, --wait says what stays behind); until here it ends xbctl quietly.
                signal.signal(signal.SIGINT, signal.default_int_handler)
            result = super().main(args=argv, prog_name="xbctl", standalone_mode=False, **extra)
            status = result if isinstance(result, int) else ExitStatus.OK
            if status == INTERRUPTED:  # Typer turns Ctrl-C into a silent exit 130
                say("interrupted")
            sys.stdout.flush()  # a full disk shows up here, not at exit
        except _Reported as exc:
            status = exc.status
        except XbctlError as exc:
            status = report_error(exc, json_requested(argv))
        except typer.TyperException as exc:  # Typer's usage errors: exit 2
            error = XbctlError(
                _lower_first(exc.format_message()),
                status=ExitStatus(getattr(exc, "exit_code", 2)),
                hint="see 'xbctl --help'",
            )
            status = report_error(error, json_requested(argv))
        except (typer.Abort, KeyboardInterrupt):
            say("interrupted")
            status = INTERRUPTED
        except BrokenPipeError:
            # The reader went away (xbctl -a | head): not an error worth a message.
            sys.stderr.close()
            status = ExitStatus.OK
        except Exception as exc:  # never a traceback for users
            if _caused_by_interrupt(exc):  # Python wraps it, e.g. in an interrupted import
                say("interrupted")
                status = INTERRUPTED
            elif os.environ.get("XBCTL_DEBUG"):
                raise
            else:
                status = report_error(
                    XbctlError(
                        f"internal error: {type(exc).__name__}: {exc}",
                        status=ExitStatus.UNAVAILABLE,
                        hint="set XBCTL_DEBUG=1 to see where",
                    ),
                    json_requested(argv),
                )
        finally:
            if console:  # done: a Ctrl-C now could only turn the outcome into a traceback
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            sys.stdout, sys.stderr = real_stdout, real_stderr
        sys.exit(int(status))


def _caused_by_interrupt(exc: BaseException) -> bool:
    """True when a Ctrl-C (KeyboardInterrupt) is somewhere in EXC's chain of causes."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class _Reported(Exception):
    """Ends the command with STATUS; what happened has already been said."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Messages:
    """Standard error for xbctl: control characters escaped, newlines and tabs kept."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text, keep_layout=True))
        return len(text)

    def unescaped(self) -> Any:
        """The stream itself, for rich's progress bar (which escapes what it shows)."""
        return self._stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Output:
    """Standard output for xbctl: control characters escaped (newlines and tabs kept), and a write
    that fails (full disk, closed descriptor) an XbctlError with a plain message, never a
    traceback; after a write to a balloon, its own exit status ("written, output lost")."""

    def __init__(self, stream: Any, *, escape: bool = True) -> None:
        self._stream = stream
        self._escape = escape
        self.written = False  # a balloon write has happened: a failure now is not "not written"

    def _failed(self, exc: OSError) -> XbctlError:
        if exc.errno == errno.EPIPE:
            raise BrokenPipeError(exc.errno, exc.strerror) from None  # the quiet path
        if self.written:
            return XbctlError(
                f"the write was made, but its output could not be written: {exc.strerror or exc}",
                status=ExitStatus.WRITTEN_OUTPUT_FAILED,
                errno_name=errno.errorcode.get(exc.errno or 0),
            )
        return XbctlError(
            f"cannot write to standard output: {exc.strerror or exc}",
            status=ExitStatus.REFUSED,
            errno_name=errno.errorcode.get(exc.errno or 0),
        )

    def write(self, text: str) -> int:
        if self._stream is None:  # started with >&-
            raise self._failed(OSError(errno.EBADF, "it is closed"))
        try:
            self._stream.write(printable(text, keep_layout=True) if self._escape else text)
        except OSError as exc:
            raise self._failed(exc) from None
        return len(text)

    def unescaped(self) -> "_Output":
        """This output without escaping, for rich's table (which escapes what it shows)."""
        raw = _Output(self._stream, escape=False)
        raw.written = self.written
        return raw

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            raise self._failed(exc) from None

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def json_requested(argv: list[str]) -> bool:
    """True when --json was given (errors then also go to stdout as JSON)."""
    return "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv


def say(message: str, prefix: str = "xbctl") -> None:
    """Print MESSAGE to stderr as one line `xbctl: MESSAGE`, every control character escaped
    (newlines too: a name or diagnostic from a guest cannot start a line of its own)."""
    sys.stderr.write(f"{prefix}: {printable(message)}\n")


def note_written() -> None:
    """Record that a balloon write happened, for the exit status if output fails later."""
    if isinstance(sys.stdout, _Output):
        sys.stdout.written = True


def report_error(error: XbctlError, as_json: bool) -> int:
    """Print ERROR to stderr (and as JSON on stdout with --json); return its exit status."""
    say(error.message)
    if error.hint:
        say(f"hint: {error.hint}")
    if as_json:
        from .json_output import error_document, dump

        try:
            sys.stdout.write(dump(error_document(error)))
            sys.stdout.flush()
        except (XbctlError, OSError):
            pass  # stdout is what failed; the message above went to stderr
    return int(error.status)


# The --transport choices, from the one list of transports.
TransportName = Enum("TransportName", {name: name for name in TRANSPORT_NAMES}, type=str)


@dataclass
class Options:
    """The global options, shared by every command."""

    show_all: bool = False
    write: bool = False
    values_only: bool = False
    equals: bool = False
    quiet: bool = False
    settings_file: str | None = None
    domain: str | None = None
    as_json: bool = False
    dry_run: bool = False
    wait: bool = False
    timeout_s: float | None = None
    transport_name: str | None = None
    sim_state: str | None = None
    override_guest_floor: bool = False
    stall_s: float | None = None
    _transport: "Transport | None" = field(default=None, repr=False)

    def transport(self) -> "Transport":
        """The transport, opened on first use."""
        if self._transport is None:
            from .transports.choice import fallback_note, open_transport

            self._transport = open_transport(self.transport_name, self.sim_state)
            note = fallback_note(self.transport_name, self._transport)
            if note:
                _say_note(note)
            self._transport.on_note = _say_note
        return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _say_note(message: str) -> None:
    say(f"note: {message}")


def say_warnings(warnings: "list[str] | tuple[str, ...]") -> None:
    """Print WARNINGS on stderr (each once)."""
    for warning in dict.fromkeys(warnings):
        say(f"warning: {warning}")


def stall_seconds() -> float:
    """How long --wait lets the hypervisor's figure stand still ($XBCTL_STALL_TIMEOUT, default 10)."""
    from .operations import DEFAULT_STALL_S

    text = os.environ.get("XBCTL_STALL_TIMEOUT", "")
    if text == "":
        return DEFAULT_STALL_S
    return parse_number(text, what="XBCTL_STALL_TIMEOUT", maximum=MAX_SECONDS, positive=True)


def _version_callback(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:  # resilient: tab completion is parsing the line
        sys.stdout.write(f"xbctl {__version__}\n")
        raise typer.Exit()


def _show_completion_callback(ctx: typer.Context, shell: Optional[str]) -> None:
    if shell is not None and not ctx.resilient_parsing:
        from .completion import completion_script

        sys.stdout.write(completion_script(shell))
        raise typer.Exit()


def _install_completion_callback(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from .completion import install_completion

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
        "without a unit, as xl does."
    ),
    epilog=(
        "Exit status: 0 success, 1 refused (EPERM/EACCES), 2 bad usage or value, "
        "3 transport unavailable, 4 unknown domain or node, 5 --wait did not reach the target, "
        "6 written, but the output could not be written."
    ),
)


def options_of(ctx: typer.Context) -> Options:
    """The global options of the invocation CTX belongs to."""
    return ctx.find_root().obj


@app.callback()
def main_callback(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option("-a", "--all", help="Show every node of the domain.")] = False,
    write: Annotated[
        bool, typer.Option("-w", "--write", help="Write NAME=VALUE assignments (implied by '=').")
    ] = False,
    values_only: Annotated[bool, typer.Option("-n", help="Print values only, without names.")] = False,
    equals: Annotated[bool, typer.Option("-e", help="Print name=value, for reuse with -f.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing for writes.")] = False,
    settings_file: Annotated[
        Optional[str],
        typer.Option(
            "-f", "--file", metavar="FILE", help="Apply a file of name=value lines (name?=value: optional)."
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
    timeout_s = None
    if timeout_text is not None:
        if not wait:
            raise usage_error("--timeout needs --wait")
        timeout_s = parse_number(timeout_text, what="--timeout", maximum=MAX_SECONDS)
    options = Options(
        show_all=show_all,
        write=write,
        values_only=values_only,
        equals=equals,
        quiet=quiet,
        settings_file=settings_file,
        domain=domain,
        as_json=as_json,
        dry_run=dry_run,
        wait=wait,
        timeout_s=timeout_s,
        transport_name=transport_name.value if transport_name else None,
        sim_state=sim_state,
        override_guest_floor=override_guest_floor,
        stall_s=stall_seconds() if wait else None,  # checked before anything is written
    )
    ctx.obj = options
    ctx.call_on_close(options.close)
    if ctx.invoked_subcommand is None:
        run_sysctl(options, [])


# ---------------------------------------------------------------- sysctl form


@app.command(SYSCTL_COMMAND, hidden=True)
def sysctl_command(
    ctx: typer.Context, names: Annotated[Optional[list[str]], typer.Argument()] = None
) -> None:
    """The sysctl form: NAME reads, NAME=VALUE writes."""
    run_sysctl(options_of(ctx), names or [])


def run_sysctl(options: Options, args: list[str]) -> None:
    """Carry out the sysctl form for ARGS (names and assignments)."""
    from .assignments import parse_assignment, read_settings_file
    from .operations import requests_from_assignments

    assignments = [parse_assignment(arg) for arg in args if "=" in arg]
    if options.settings_file is not None:
        assignments = read_settings_file(options.settings_file) + assignments
    names = [arg for arg in args if "=" not in arg]
    if options.write and names:
        raise usage_error(f"-w needs name=value, got {names[0]!r}")
    if assignments and (names or options.show_all):
        raise usage_error("reads and writes cannot be mixed in one command")
    if assignments:
        requests, ignored = requests_from_assignments(assignments)
        write_and_show(options, requests, ignored=ignored)
        return
    if options.show_all:
        if names:
            raise usage_error("-a lists every node; give no names with it")
        show_nodes(options, NODES)
        return
    if not names:
        if options.settings_file is not None:
            return  # an empty settings file: nothing to do
        raise usage_error("nothing to do", hint="xbctl -a shows every node; xbctl --help")
    nodes: list[Node] = []
    for name in names:
        nodes.extend(n for n in select_nodes(name) if n not in nodes)
    show_nodes(options, nodes)


# ---------------------------------------------------------------- reads


def show_nodes(options: Options, nodes: tuple[Node, ...] | list[Node]) -> None:
    """Read NODES of the selected domain and print them."""
    from .operations import read_balloon

    if options.wait:
        say("note: --wait waits after a target change; nothing to wait for")
    transport = options.transport()
    domain, balloon = read_balloon(transport, options.domain)
    say_warnings(balloon.warnings)
    if options.as_json:
        from .json_output import dump, read_document

        sys.stdout.write(dump(read_document(transport, domain, balloon, nodes)))
        return
    lines = []
    for node in nodes:
        value = balloon.value_kib(node.key)
        if options.values_only:
            lines.append(f"{value}")
        elif options.equals:
            lines.append(f"{node.sysctl_name}={value}")
        else:
            lines.append(f"{node.sysctl_name} = {value}")
    sys.stdout.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- writes


def write_and_show(
    options: Options,
    requests: list["WriteRequest"],
    domain_spec: str | None = None,
    ignored: list[tuple[str, XbctlError]] | None = None,
) -> None:
    """Apply REQUESTS, print the changes sysctl-style, then --wait if asked."""
    from .operations import write_nodes

    transport = options.transport()
    result = write_nodes(
        transport,
        options.domain if domain_spec is None else domain_spec,
        requests,
        dry_run=options.dry_run,
        ignored=ignored,
        override_guest_floor=options.override_guest_floor,
    )
    if not options.dry_run and result.changes:
        note_written()
    say_warnings(result.warnings)
    if not options.quiet:
        for _name, error in result.skipped:
            say(f"ignored: {error.message}")
    if not options.as_json and not options.quiet:
        # The write has happened: say so before any wait, which may end in an error.
        lines = []
        for change in result.changes:
            prefix = "" if options.values_only else f"{change.node.sysctl_name}: "
            lines.append(f"{prefix}{change.old_kib} -> {change.new_kib}")
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
        if options.dry_run:
            say("dry run: nothing was written")
    target_change = next((c for c in result.changes if c.node.key == "target"), None)
    if options.wait and target_change is None and not options.quiet:
        say("note: --wait waits after a target change; nothing to wait for")
    outcome = None
    if options.wait and target_change is not None and not options.dry_run:
        try:
            outcome = wait_with_progress(options, transport, result.domain, target_change.new_kib)
        except KeyboardInterrupt:
            say(
                f"interrupted: {result.domain.name}'s target stays {target_change.new_kib} KiB; "
                "the balloon goes on moving toward it"
            )
            if options.as_json:  # the write happened: a script still gets its document
                from .json_output import dump, write_document
                from .operations import WaitOutcome

                interrupted = WaitOutcome(False, result.after, "interrupted")
                sys.stdout.write(dump(write_document(transport, result, interrupted)))
            raise _Reported(INTERRUPTED) from None
    if options.as_json:
        from .json_output import dump, write_document

        sys.stdout.write(dump(write_document(transport, result, outcome)))
    if outcome is not None and not outcome.reached:
        error = XbctlError(
            f"{result.domain.name}: target {target_change.new_kib} KiB not reached "  # type: ignore[union-attr]
            f"(current {outcome.balloon.current_kib} KiB): {outcome.reason}",
            status=ExitStatus.NOT_REACHED,
        )
        if options.as_json:  # the write document above already says how the wait ended
            raise typer.Exit(report_error(error, as_json=False))
        raise error


def wait_with_progress(options: Options, transport: "Transport", domain: "Domain", target_kib: int):
    """Wait for TARGET_KIB, showing progress on stderr: a bar on a terminal, lines otherwise."""
    from .operations import wait_for_target

    stall_s = options.stall_s if options.stall_s is not None else stall_seconds()
    if sys.stderr.isatty() and not options.as_json:
        from .render import progress_bar

        with progress_bar(domain.name, target_kib) as update:
            return wait_for_target(transport, domain, target_kib, options.timeout_s, update, stall_s)
    import time

    shown: dict[str, float] = {}  # the last line's current KiB and when it was printed

    def report(balloon: "Balloon") -> None:
        current_kib = balloon.current_kib
        if options.quiet or shown.get("kib") == current_kib:
            return
        # A line a second at most (logs stay short), but always the first and the last.
        if shown and current_kib != target_kib and time.monotonic() - shown["at"] < PROGRESS_LINE_S:
            return
        shown.update(kib=current_kib, at=time.monotonic())
        say(f"{domain.name}: current {balloon.current_kib} KiB, target {target_kib} KiB")
        sys.stderr.flush()

    return wait_for_target(transport, domain, target_kib, options.timeout_s, report, stall_s)


# ---------------------------------------------------------------- node subcommands


def _node_command(node: Node):
    def command(
        ctx: typer.Context,
        value: Annotated[
            Optional[str],
            typer.Argument(metavar="[VALUE]", help="New value in KiB unless a unit is given."),
        ] = None,
    ) -> None:
        options = options_of(ctx)
        if options.show_all or options.settings_file is not None:
            raise usage_error(f"-a and -f go with the sysctl form, not with the {node.key} command")
        if value is None:
            if options.write:
                raise usage_error(f"-w needs a value for {node.key}")
            show_nodes(options, [node])
            return
        from .operations import request_for

        write_and_show(options, [request_for(node, value)])

    relative = " A signed value (+256M, -4) changes it relatively." if node.key == "target" else ""
    command.__doc__ = f"Read or set {node.sysctl_name}: {node.summary} ({node.access}).{relative}"
    return command


for _node in NODES:
    _command = _node_command(_node)
    app.command(_node.key, help=_command.__doc__, short_help=f"{_node.summary} ({_node.access})")(_command)


# ---------------------------------------------------------------- xl-compatible host operations


def _host_operation(ctx: typer.Context, domain: str, size: str, key: str) -> None:
    from .nodes import NODE_BY_KEY
    from .operations import request_for

    options = options_of(ctx)
    if options.domain is not None and options.domain != domain:
        transport = options.transport()
        if transport.resolve_domain(options.domain) != transport.resolve_domain(domain):
            raise usage_error(f"-d {options.domain} conflicts with domain {domain!r}")
    write_and_show(options, [request_for(NODE_BY_KEY[key], size, default_unit="m")], domain)


DomainArgument = Annotated[str, typer.Argument(metavar="DOMAIN", help="Domain name or id.")]
SizeArgument = Annotated[str, typer.Argument(metavar="SIZE", help="MiB unless a unit is given (as xl).")]


@app.command("mem-set")
def mem_set(ctx: typer.Context, domain: DomainArgument, size: SizeArgument) -> None:
    """Set DOMAIN's target, as xl mem-set (MiB without a unit)."""
    _host_operation(ctx, domain, size, "target")


@app.command("mem-max")
def mem_max(ctx: typer.Context, domain: DomainArgument, size: SizeArgument) -> None:
    """Set DOMAIN's xen-max, as xl mem-max (MiB without a unit)."""
    _host_operation(ctx, domain, size, "xen-max")


@app.command("list")
def list_command(
    ctx: typer.Context,
    output_format: Annotated[
        Optional[str],
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="prometheus: the exporter's metrics, for node_exporter's textfile collector.",
        ),
    ] = None,
) -> None:
    """Show every domain's current, target, min, max and xen-max."""
    from .operations import list_balloons

    options = options_of(ctx)
    if output_format is not None:
        if output_format != "prometheus":
            raise usage_error(f"--format {output_format!r}: unknown format", hint="formats: prometheus")
        if options.as_json:
            raise usage_error("--format prometheus and --json are two outputs; give one")
        from .exporter import exposition

        options.transport()  # a bad --transport or sim state fails here, not as a metric
        sys.stdout.write(exposition(options.transport_name, options.sim_state))
        return
    transport = options.transport()
    rows = list_balloons(transport)
    host_free_kib = transport.host_free_kib()
    say_warnings([w for row in rows if row.balloon for w in row.balloon.warnings])
    if options.as_json:
        from .json_output import dump, list_document

        sys.stdout.write(dump(list_document(transport, rows, host_free_kib)))
        return
    from .render import print_domain_table

    print_domain_table(rows, host_free_kib)


@app.command("exporter")
def exporter_command(
    ctx: typer.Context,
    listen: Annotated[
        str,
        typer.Option("--listen", metavar="HOST:PORT", help="Serve Prometheus metrics at http://HOST:PORT/metrics."),
    ],
) -> None:
    """Serve every domain's balloon as Prometheus metrics until interrupted."""
    from .exporter import serve

    options = options_of(ctx)
    options.transport()  # a bad --transport or sim state fails at start, not at each scrape

    def ready(host: str, port: int) -> None:
        say(f"serving metrics at http://{host}:{port}/metrics")
        sys.stderr.flush()

    try:
        serve(listen, options.transport_name, options.sim_state, ready)
    except KeyboardInterrupt:
        return  # Ctrl-C or SIGINT is how an exporter stops: not an error


@app.command("top")
def top_command(ctx: typer.Context) -> None:
    """Show the domain table, redrawn as balloons move (q or Ctrl-C quits)."""
    from .top import run_top

    run_top(options_of(ctx).transport())


# ---------------------------------------------------------------- simulator controls

sim_app = typer.Typer(help="Control the simulated host (the embedded default).")
app.add_typer(sim_app, name="sim")


class Clock(str, Enum):
    wall = "wall"
    manual = "manual"


def _sim(ctx: typer.Context):
    from .operations import require_sim

    return require_sim(options_of(ctx).transport())


@sim_app.command("advance")
def sim_advance(
    ctx: typer.Context,
    seconds: Annotated[str, typer.Argument(metavar="SECONDS", help="Simulated seconds to let pass.")],
) -> None:
    """Let SECONDS of simulated time pass (the balloon threads move meanwhile)."""
    _sim(ctx).advance(parse_number(seconds, what="SECONDS", maximum=MAX_SECONDS))


@sim_app.command("reset")
def sim_reset(
    ctx: typer.Context,
    clock: Annotated[
        Optional[Clock], typer.Option(help="wall (default): time passes by itself; manual: only `sim advance`.")
    ] = None,
    rate: Annotated[
        str,
        typer.Option(
            metavar="STEPS",
            help="Balloon steps (512 pages each) per simulated second; 0: the same as --clock manual.",
        ),
    ] = "50",
    host_free: Annotated[str, typer.Option(metavar="SIZE", help="Host free memory (KiB unless a unit).")] = "2G",
    position: Annotated[
        Optional[str],
        typer.Option(metavar="DOMAIN", help="The domain xbctl runs in (default Domain-0, the host)."),
    ] = None,
) -> None:
    """Boot a fresh simulated host: Domain-0, web, db (a driver that publishes nothing), mail (no driver)."""
    from .transports.sim import DEFAULT_STEPS_PER_SECOND, MAX_STEPS_PER_SECOND
    from .units import parse_kib

    host_free_kib = parse_kib(host_free, what="--host-free")
    steps_per_second = parse_number(rate, what="--rate", maximum=MAX_STEPS_PER_SECOND)
    if steps_per_second == 0:  # nothing moves by itself; `sim advance` steps at the default rate
        if clock is Clock.wall:
            raise usage_error("--rate 0 stops the clock; it cannot go with --clock wall")
        clock, steps_per_second = Clock.manual, DEFAULT_STEPS_PER_SECOND
    sim = _sim(ctx)
    sim.reset(
        clock=(clock or Clock.wall).value,
        steps_per_second=steps_per_second,
        host_free_kib=host_free_kib,
        position=position,
    )
    if sim.kept_aside is not None:
        say(f"note: the damaged simulator state was kept aside as {sim.kept_aside}")


@sim_app.command("log")
def sim_log(ctx: typer.Context) -> None:
    """Show the balloon drivers' diagnostics (like dmesg in each guest)."""
    options = options_of(ctx)
    sim = _sim(ctx)
    name = sim.resolve_domain(options.domain).name if options.domain is not None else None
    entries = [e for e in sim.load().log if name is None or e["domain"] == name]
    if options.as_json:
        from .json_output import dump, log_document

        sys.stdout.write(dump(log_document(entries)))
        return
    for entry in entries:
        sys.stdout.write(f"[{entry['t']:12.3f}] {printable(entry['domain'])}: {printable(entry['message'])}\n")


# ---------------------------------------------------------------- guest agent


@app.command("agent")
def agent_command(
    ctx: typer.Context,
    rate: Annotated[
        str, typer.Option(metavar="STEPS", help="Balloon steps (512 pages each) per second.")
    ] = "50",
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
    from .agent import run_agent
    from .transports.sim import MAX_STEPS_PER_SECOND
    from .units import parse_kib

    options = options_of(ctx)
    if options.transport_name == "sim":
        raise usage_error("the agent plays a guest over Xenstore, not in the simulator", hint="drop --transport sim")
    options.transport_name = "xenstore"
    sizes = {
        key: None if text is None else parse_kib(text, what=f"--{key.replace('_', '-')}")
        for key, text in (("boot_size", boot_size), ("used", used), ("host_free", host_free))
    }

    def tell(message: str) -> None:
        if not options.quiet:
            say(message, prefix="xbctl agent")
            sys.stderr.flush()

    run_agent(
        options.transport(),
        options.domain,
        steps_per_second=parse_number(rate, what="--rate", maximum=MAX_STEPS_PER_SECOND, positive=True),
        say=tell,
        boot_kib=sizes["boot_size"],
        used_kib=sizes["used"],
        host_free_kib=sizes["host_free"],
    )


def main() -> None:
    """Console entry point (xbctl.__main__ has already made an early Ctrl-C quiet)."""

    # As C tools do: a reader that goes away (xbctl -a | head -1) ends xbctl quietly.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # Not app(): Typer's own wrapper would print a traceback for anything main() lets out.
    command = typer.main.get_command(app)
    command.main(console=True)
