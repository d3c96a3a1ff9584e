"""main: the one place that turns what happened into an exit status.

Results, XbctlError, usage errors (ours and Typer's), Ctrl-C (130), output failures
(exit 1, or 6 once written), a reader gone away (0, quietly) and internal errors all end here.
"""

from __future__ import annotations

import os
import sys

from ..errors import ExitStatus, XbctlError, usage_error
from .table import GLOBALS, SECONDS

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal  # typeshed has no stubs for _signal, whose functions these are

    from ..api import Xbctl
else:
    import _signal as signal  # the signal module's own import (an IntEnum of every signal) costs start-up time

SPEC_OPTIONS = tuple(option for option in GLOBALS if not option.typer_only)

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command that Ctrl-C ended
MAX_SECONDS = 10**7  # about four months: anything longer is a typo


class Interrupted(Exception):
    """Ctrl-C ended a command after it changed something: MESSAGE says what stays behind,
    DOCUMENT (with --json) prints what was done."""

    def __init__(self, message: str, document=None) -> None:
        super().__init__(message)
        self.message = message
        self.document = document


class Options:
    """The global options of one run, as the commands use them: one attribute per option of the
    command spec (table.GLOBALS), named by its .attribute; None, False or [] when not given."""

    __slots__ = (*(option.attribute for option in SPEC_OPTIONS), "stall_s", "output", "_api")
    # For type checkers, one line per option of table.GLOBALS (set from it in __init__): a new
    # global option adds its line here.
    show_all: bool
    all_domains: bool
    system: bool
    write: bool
    values_only: bool
    equals: bool
    quiet: bool
    verbose: bool
    settings_files: list[str]
    domain: str | None
    as_json: bool
    dry_run: bool
    wait: bool
    timeout_s: float | None
    transport_name: str | None
    sim_state: str | None
    override_guest_floor: bool
    stall_s: float | None
    _api: Xbctl | None

    def __init__(self, values: dict, output) -> None:
        for option in SPEC_OPTIONS:
            if option.name in values:
                value = values[option.name]  # as given, even empty (--sim-state '' is refused later)
            elif option.envvar:
                value = os.environ.get(option.envvar) or None
            else:
                value = None
            if not option.takes_value:
                value = bool(value)
            elif option.repeat:
                value = value or []
            elif value is not None and option.requires and option.requires not in values:
                raise usage_error(f"{option.name} needs {option.requires}")
            elif value is not None and option.kind == SECONDS:
                from ..units import parse_number

                value = parse_number(value, what=option.name, maximum=MAX_SECONDS)
            setattr(self, option.attribute, value)
        self.output = output
        self._api = None
        self.stall_s = stall_seconds() if self.wait else None  # checked before anything is written

    def api(self):
        """The API's engine (xbctl.api.Xbctl) on the chosen transport, opened on first use."""
        if self._api is None:
            from ..api import Xbctl

            self._api = Xbctl(self.transport_name, self.sim_state, on_note=self.output.note, via="command")
            self.output.simulated_host = self._api.simulated_by_default
        return self._api

    def transport(self):
        """The transport under the API, for what renders it (names, where nodes live)."""
        return self.api().transport

    def close(self) -> None:
        if self._api is not None:
            self._api.close()


def stall_seconds() -> float:
    """How long --wait lets the hypervisor's figure stand still ($XBCTL_STALL_TIMEOUT, default 10)."""
    from ..operations import DEFAULT_STALL_S

    text = os.environ.get("XBCTL_STALL_TIMEOUT", "")
    if text == "":
        return DEFAULT_STALL_S
    from ..units import parse_number

    return parse_number(text, what="XBCTL_STALL_TIMEOUT", maximum=MAX_SECONDS, positive=True)


def output_for(values: dict):
    """The Output of this run, chosen once from the options."""
    from ..output import Output

    # -h changes what people read only: -n, -e and --json are for scripts and files, exact KiB always.
    human = bool(values.get("-h")) and not any(values.get(option) for option in ("-n", "-e", "--json"))
    return Output(
        as_json=bool(values.get("--json")),
        human=human,
        quiet=bool(values.get("-q")),
        values_only=bool(values.get("-n")),
        equals=bool(values.get("-e")),
        verbose=bool(values.get("-v")),
    )


def execute(invocation, state: dict) -> None:
    """Check INVOCATION's options against the table, then run its command."""
    from .table import check_options

    check_options(invocation.command, invocation.given)
    output = state["output"] = output_for(invocation.values)
    options = Options(invocation.values, output)
    try:
        module = __import__(f"xbctl.cli.{invocation.command.module}", fromlist=["_"])
        getattr(module, invocation.command.function)(invocation, options, output)
    finally:
        options.close()


def run(argv: list[str], *, console: bool = False) -> int:
    """Run xbctl with ARGV; the exit status (nothing leaves this function but the status)."""
    from ..output import DataStream, MessageStream

    real_stdout, real_stderr = sys.stdout, sys.stderr
    if sys.stderr is None:  # started with 2>&-: messages have nowhere to go
        real_stderr = open(os.devnull, "w")
    # Everything printed passes these: no control character reaches the terminal raw.
    sys.stdout = DataStream(real_stdout)
    sys.stderr = MessageStream(real_stderr)
    state: dict = {}
    try:
        if console:
            # Only now, inside the try that reports it, may Ctrl-C become a KeyboardInterrupt
            # (after a write, --wait says what stays behind); until here it ends xbctl quietly.
            sys.unraisablehook = _interrupt_later
            signal.signal(signal.SIGINT, signal.default_int_handler)
        status = _dispatch(argv, state)
        sys.stdout.flush()  # a full disk shows up here, not at exit
        if _unraisable_interrupts:
            raise _unraisable_interrupts[0]
    except Interrupted as exc:
        _say(exc.message)
        if exc.document is not None:
            try:
                exc.document()
                sys.stdout.flush()
            except (XbctlError, OSError):
                pass  # the message above went to stderr; Ctrl-C decides the status
        status = INTERRUPTED
    except XbctlError as exc:
        status = _report(exc, argv, state)
    except KeyboardInterrupt:
        _say("interrupted")
        status = INTERRUPTED
    except BrokenPipeError:
        # The reader went away (xbctl -a | head): not an error worth a message.
        sys.stderr.close()
        status = ExitStatus.OK
    except Exception as exc:  # never a traceback for users
        typer_status = _typer_outcome(exc, argv, state)
        if typer_status is not None:
            status = typer_status
        elif _caused_by_interrupt(exc):  # Python wraps it, e.g. in an interrupted import
            _say("interrupted")
            status = INTERRUPTED
        elif os.environ.get("XBCTL_DEBUG"):
            raise
        elif isinstance(exc, ModuleNotFoundError) and exc.name in OPTIONAL_AT_START:
            # Reads and writes need neither; help, completion, usage messages and the terminal's
            # table do (run from a source tree with no dependency installed, say).
            error = XbctlError(
                f"this needs the Python package {exc.name}, which is not installed",
                status=ExitStatus.UNAVAILABLE,
                hint=f"pip install {exc.name} (Debian: apt-get install python3-{exc.name}); "
                "reads and writes work without it",
            )
            status = _report(error, argv, state)
        else:
            error = XbctlError(
                f"internal error: {type(exc).__name__}: {exc}",
                status=ExitStatus.UNAVAILABLE,
                hint="set XBCTL_DEBUG=1 to see where",
            )
            status = _report(error, argv, state)
    finally:
        if console:  # done: a Ctrl-C now could only turn the outcome into a traceback
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stdout, sys.stderr = real_stdout, real_stderr
    return int(status)


# The dependencies only some paths import (Typer for help and usage messages, rich for a terminal).
OPTIONAL_AT_START = ("typer", "click", "rich")


def _dispatch(argv: list[str], state: dict) -> int:
    from .parse import HandToTyper, parse

    try:
        invocation = parse(argv)
    except HandToTyper:
        from .typer_app import run_typer

        state["execute"] = execute
        return run_typer(argv, state)
    if asks_help(invocation):
        from .typer_app import run_typer

        return run_typer(["--help"], state)
    execute(invocation, state)
    return ExitStatus.OK


def asks_help(invocation) -> bool:
    """`xbctl -h` with nothing to show: help, as -h has always given (elsewhere -h is --human)."""
    from .table import SYSCTL

    return (
        invocation.command is SYSCTL
        and not invocation.args
        and "-h" in invocation.given
        and not {"-a", "-A", "-f", "--system"} & set(invocation.given)
    )


def _typer_outcome(exc: Exception, argv: list[str], state: dict) -> int | None:
    """The exit status of a Typer (click) exception; None for anything else."""
    if "typer" not in sys.modules:
        return None
    from .typer_app import typer_exception_status

    return typer_exception_status(exc, lambda error: _report(error, argv, state))


def _report(error: XbctlError, argv: list[str], state: dict) -> int:
    output = state.get("output")
    if output is None:
        from ..output import Output

        output = Output(as_json=json_requested(argv))
    return output.error(error, document=not getattr(error, "document_shown", False))


def _say(message: str) -> None:
    from ..output import say

    say(message)


def json_requested(argv: list[str]) -> bool:
    """True when --json was given (errors then also go to stdout as JSON)."""
    return "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv


# Ctrl-Cs that landed where Python can only report an exception, never raise it.
_unraisable_interrupts: list[KeyboardInterrupt] = []


def _interrupt_later(unraisable) -> None:
    """sys.unraisablehook: a Ctrl-C that landed in a callback of the garbage collector or of a
    weak reference (importlib's module locks have them) or in a __del__ cannot stop the command
    there: it is remembered, quietly, and the run ends as interrupted once the command returns
    (its work then whole, as when Ctrl-C comes during the output)."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        _unraisable_interrupts.append(unraisable.exc_value)
        return
    sys.__unraisablehook__(unraisable)


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


def main() -> None:
    """Console entry point (xbctl.__main__ has already made an early Ctrl-C quiet)."""
    # As C tools do: a reader that goes away (xbctl -a | head -1) ends xbctl quietly.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        status = run(sys.argv[1:], console=True)
    except KeyboardInterrupt:  # landed in run()'s last lines, as Ctrl-C was being ignored again
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            os.write(2, b"xbctl: interrupted\n")
        except OSError:
            pass  # started with 2>&-
        status = INTERRUPTED
    # Skip the interpreter's shutdown (~15 ms): everything is flushed; the status is final.
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a stdout that fails now was reported by run()
        pass
    try:
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass
    os._exit(status)
