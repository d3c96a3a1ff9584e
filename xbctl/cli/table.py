"""The command spec: every command and every option, declared once, as plain data.

As Xen's xl declares its commands (tools/xl/xl_cmdtable.c, struct cmd_spec), each command is
one Command(...): its name, where its code lives, its help, its arguments, its own options,
the global options it takes and what it may modify; each global option is one Option(...).
Everything else is derived from here: the lean parser (parse.py), the check run before any
command (check_options), the Options object the commands read (main.py), the Typer app's help,
usage lines and errors (typer_app.py), completion's value kinds (xbctl/completion.py); the man
page's SYNOPSIS is checked against it (tests/test_man.py). The README's "Architecture at a
glance" shows how to add an option.

Plain data, no Typer or click: the lean path imports this on every run.
"""

from __future__ import annotations

from ..cells import LIST_COLUMNS
from ..transports import TRANSPORT_NAMES

# What a value is: what completion offers for it, and how the Options object reads it.
DOMAIN = "domain"  # a domain name or id: completion offers the transport's domains
NAME = "name"  # a sysctl name or NAME=VALUE: completion offers the node names
SIZE = "size"  # KiB unless a unit is given: completion offers unit suffixes
SIZE_MIB = "size-mib"  # MiB unless a unit is given, as xl
FILE = "file"  # a file: completion hands over to the shell's file names
SECONDS = "seconds"  # a number of seconds (a global option's is read as a number, in Options)
NUMBER = "number"  # a count or a rate
CHOICE = "choice"  # one of the option's choices: completion offers them
SHELL = "shell"  # bash, zsh or fish
ADDRESS = "address"  # HOST:PORT
KINDS = frozenset({DOMAIN, NAME, SIZE, SIZE_MIB, FILE, SECONDS, NUMBER, CHOICE, SHELL, ADDRESS})
SHELLS = ("bash", "zsh", "fish")
# A command's own option that takes no value (its entry in Command.local_options).
FLAG = "flag"
# -h is --human (as free -h, df -h and BSD's sysctl -h); alone, with nothing to show, it asks for help.
HELP_SPELLINGS = ("--help",)


class Option:
    """One option: its spellings (the first names it), its value (kind None: a flag) and its help."""

    __slots__ = (
        "spellings",
        "name",
        "help",
        "kind",
        "metavar",
        "attribute",
        "choices",
        "envvar",
        "repeat",
        "required",
        "requires",
        "unknown",
        "typer_only",
    )

    def __init__(
        self,
        spellings,
        help,
        kind=None,
        metavar=None,
        *,
        attribute=None,
        choices=None,
        envvar=None,
        repeat=False,
        required=False,
        requires=None,
        unknown=None,
        typer_only=False,
    ):
        self.spellings = tuple(spellings)
        self.name = self.spellings[0]  # canonical: how the parser, the table and messages name it
        self.help = help
        self.kind = kind  # None: a flag
        self.metavar = metavar
        # The Python name: Typer's parameter, the attribute of the Options object (global options).
        self.attribute = attribute or max(self.spellings, key=len).lstrip("-").replace("-", "_")
        self.choices = choices  # kind CHOICE: the values it takes
        self.envvar = envvar  # read when the option is not given
        self.repeat = repeat  # may be given several times: a list, in the order given
        self.required = required
        self.requires = requires  # another global option it needs (--timeout needs --wait)
        # A bad choice refused in xbctl's words ("--format 'x': unknown format") rather than Typer's.
        self.unknown = unknown
        self.typer_only = typer_only  # help, version, completion: Typer alone answers them

    @property
    def takes_value(self) -> bool:
        """The option is followed by a value (it is no flag)."""
        return self.kind is not None


class Argument:
    """One positional argument: its name, its metavar (as help and the man page write it), its kind."""

    __slots__ = ("attribute", "metavar", "kind", "help", "required", "many", "signed")

    def __init__(self, attribute, metavar, kind, help=None, *, required=True, many=False, signed=False):
        self.attribute = attribute  # Typer's parameter name (shown where there is no metavar)
        self.metavar = metavar
        self.kind = kind
        self.help = help
        self.required = required
        self.many = many  # any number of them (then never required)
        self.signed = signed  # a size that may be a relative change (+256M, -4)

    @property
    def usage(self) -> str | None:
        """How a usage line writes it: DOMAIN, [VALUE], [DOMAIN]..."""
        if self.metavar is None:
            return None
        return self.metavar if self.required else f"[{self.metavar}]" + ("..." if self.many else "")


# ---------------------------------------------------------------- global options
# In the order --help lists them. Each goes before or after the command, with the commands
# whose `accepts` name it; the Options object has it as .attribute.
GLOBALS = (
    Option(("-a", "--all"), "Show every node of the domain.", attribute="show_all"),
    Option(
        ("-A", "--all-domains"),
        "Read every domain (each line names its domain; with -e, one [DOMAIN] section each).",
    ),
    Option(
        ("--system",),
        "Apply /etc/xbctl.conf, /etc/xbctl.d and /usr/lib/xbctl.d (sysctl's order) as one change.",
    ),
    Option(("-w", "--write"), "Write NAME=VALUE assignments (implied by '=')."),
    Option(("-n",), "Print values only, without names.", attribute="values_only"),
    Option(("-e",), "Print name=value, for reuse with -f.", attribute="equals"),
    Option(("-q", "--quiet"), "Print nothing but errors."),
    Option(
        ("-h", "--human"),
        "Sizes in the largest unit that keeps them exact (768M, 1.5G, 1000K), as free -h; not with -n, -e, --json.",
    ),
    Option(("-v", "--verbose"), "With -f or --system, list the settings that were unchanged too."),
    Option(
        ("-f", "--file"),
        "Apply a file of name=value lines (name?=value: optional); several apply in order, as one change.",
        FILE,
        "FILE",
        attribute="settings_files",
        repeat=True,
    ),
    Option(("-d", "--domain"), "Act on this domain (default: our own).", DOMAIN, "NAME|ID"),
    Option(("--json",), "Machine-readable JSON output.", attribute="as_json"),
    Option(
        ("--dry-run",),
        "Check and show a write without writing (with --system or policy: what they would change).",
    ),
    Option(("--wait",), "After a target change, wait until current reaches it."),
    Option(
        ("--timeout",), "Give up --wait after SECONDS.", SECONDS, "SECONDS", attribute="timeout_s", requires="--wait"
    ),
    Option(
        ("--transport",),
        "sim or xenstore (default: xenstore when reachable, else sim).",
        CHOICE,
        # click 8.1 would say [sim|xenstore], as if the value were optional
        f"<{'|'.join(TRANSPORT_NAMES)}>",
        attribute="transport_name",
        choices=TRANSPORT_NAMES,
        envvar="XBCTL_TRANSPORT",
    ),
    Option(("--sim-state",), "Simulator state file.", FILE, "PATH", envvar="XBCTL_SIM_STATE"),
    Option(
        ("--override-guest-floor",),
        "Let the host write target or min below the floor the guest publishes (data/balloon/min).",
    ),
    Option(("--version",), "Show the version.", typer_only=True),
    Option(
        ("--install-completion",),
        "Install tab completion for the current shell (bash, zsh or fish).",
        typer_only=True,
    ),
    Option(
        ("--show-completion",),
        "Print the completion script for SHELL (bash, zsh or fish).",
        SHELL,
        "SHELL",
        typer_only=True,
    ),
)
OPTION_BY_NAME = {option.name: option for option in GLOBALS}
# Every spelling of a global option the lean parser handles -> (canonical name, takes a value).
GLOBAL_OPTIONS = {
    spelling: (option.name, option.takes_value)
    for option in GLOBALS
    if not option.typer_only
    for spelling in option.spellings
}
# Options every command takes: where the balloon is (not what to do with it).
EVERYWHERE = frozenset({"--transport", "--sim-state"})
# Options only Typer handles (help, version, completion): the lean parser hands these over.
TYPER_ONLY = frozenset(
    {*HELP_SPELLINGS, *(spelling for option in GLOBALS if option.typer_only for spelling in option.spellings)}
)

_READ = frozenset({"-n", "-e", "-d", "--json", "-h"})
_WRITE = frozenset({"-q", "-n", "-d", "--json", "--dry-run", "--override-guest-floor", "-h"})
_WAIT = frozenset({"--wait", "--timeout"})


class Command:
    """One command, as xl's cmd_spec: its name, its code, its help, its arguments and own options,
    the global options it takes, and what it may modify."""

    __slots__ = (
        "name",
        "module",
        "function",
        "_help",
        "_summary",
        "arguments",
        "options",
        "accepts",
        "modifies",
        "node",
        "min_args",
        "max_args",
        "local_options",
    )

    def __init__(
        self,
        name,
        module,
        function,
        help=None,
        *,
        summary=None,
        arguments=(),
        options=(),
        accepts=(),
        modifies=(),
        node=None,
    ):
        self.name = name  # as typed: "target", "sim reset"
        self.module = module  # xbctl.cli.<module>
        self.function = function  # called with (invocation, options, output)
        self._help = help
        self._summary = summary  # the line in the program's command list (default: help's first sentence)
        self.arguments = tuple(arguments)
        self.options = tuple(options)  # its own options (Option), after the command only
        self.accepts = frozenset(accepts) | EVERYWHERE  # the global options it takes, by canonical name
        self.modifies = tuple(modifies)  # what it may change (empty: it only reads)
        self.node = node  # a node command's node key: help and summary come from the node table
        self.min_args = sum(1 for argument in self.arguments if argument.required)
        self.max_args = None if any(argument.many for argument in self.arguments) else len(self.arguments)
        # For the parser: its own options, canonical spelling -> FLAG, the choices, or None (any value).
        self.local_options = {
            option.name: FLAG if not option.takes_value else option.choices for option in self.options
        }

    def takes(self, option: str) -> bool:
        """COMMAND takes the global option named OPTION (--dry-run, --json, --wait...)."""
        return option in self.accepts

    @property
    def help(self) -> str:
        """The command's help text (a node command's, from the node table)."""
        if self.node is None:
            return self._help
        from ..nodes import NODE_BY_KEY

        node = NODE_BY_KEY[self.node]
        relative = " A signed value (+256M, -4) changes it relatively." if self.node == "target" else ""
        return f"Read or set {node.sysctl_name}: {node.summary} ({node.access}).{relative}"

    @property
    def summary(self) -> str | None:
        """Its line in the program's list of commands (None: the help's first sentence)."""
        if self.node is None:
            return self._summary
        from ..nodes import NODE_BY_KEY

        node = NODE_BY_KEY[self.node]
        return f"{node.summary} ({node.access})"


PROGRAM_HELP = (
    "Inspect and steer the Xen memory balloon of domains, sysctl-style.\n\n"
    "  xbctl -a | xbctl NAME... | xbctl [-w] NAME=VALUE... | xbctl -f FILE\n\n"
    "Names are machdep.xen.balloon.{current,target,min,max,xen-max}; values are KiB "
    "unless a unit is given (b k m g t, KiB MiB GiB TiB). mem-set and mem-max take MiB "
    "without a unit, as xl does. An option a command does not take is a usage error (exit 2)."
)
PROGRAM_EPILOG = (
    "Exit status: 0 success, 1 refused (EPERM/EACCES), 2 bad usage or value, "
    "3 transport unavailable, 4 unknown domain or node, 5 --wait did not reach the target, "
    "6 written, but the output could not be written."
)

# The columns top sorts by, in the order its s key cycles through them.
TOP_COLUMNS = LIST_COLUMNS  # top --sort
_DOMAIN = Argument("domain", "DOMAIN", DOMAIN, "Domain name or id.")
_STEPS = "Balloon steps (512 pages each) per"

# -v lists the settings -f and --system leave as they were: the sysctl form alone has them.
SYSCTL = Command(
    "sysctl form",
    "node_commands",
    "run_sysctl",
    "The sysctl form: NAME reads, NAME=VALUE writes.",
    arguments=[Argument("names", None, NAME, required=False, many=True)],
    accepts=_READ | _WRITE | _WAIT | {"-a", "-A", "-w", "-f", "--system", "-v"},
    modifies=("target", "min", "xen-max"),
)
NODE_KEYS = ("current", "target", "min", "max", "xen-max")
_READ_ONLY = ("current", "max")
COMMANDS = {
    # --wait after a change that is not a target change says there is nothing to wait for.
    **{
        key: Command(
            key,
            "node_commands",
            "run_node",
            node=key,
            arguments=[
                Argument(
                    "value",
                    "VALUE",
                    SIZE,
                    "New value in KiB unless a unit is given.",
                    required=False,
                    signed=key == "target",
                )
            ],
            accepts=_READ | _WRITE | _WAIT | {"-w"},
            modifies=() if key in _READ_ONLY else (key,),
        )
        for key in NODE_KEYS
    },
    "mem-set": Command(
        "mem-set",
        "host",
        "mem_set",
        "Set DOMAIN's target, as xl mem-set (MiB without a unit).",
        arguments=[_DOMAIN, Argument("size", "SIZE", SIZE_MIB, "MiB unless a unit is given (as xl).", signed=True)],
        accepts=_WRITE | _WAIT,
        modifies=("target",),
    ),
    "mem-max": Command(
        "mem-max",
        "host",
        "mem_max",
        "Set DOMAIN's xen-max, as xl mem-max (MiB without a unit).",
        arguments=[_DOMAIN, Argument("size", "SIZE", SIZE_MIB, "MiB unless a unit is given (as xl).")],
        accepts=_WRITE | _WAIT,
        modifies=("xen-max",),
    ),
    "list": Command(
        "list",
        "listing",
        "list_domains",
        "Show every domain's current, target, min, max and xen-max: a table on a terminal,\n"
        "fixed columns for scripts (xl list's layout; -n drops the header line).",
        arguments=[
            Argument(
                "domains",
                "DOMAIN",
                DOMAIN,
                "Only these domains (names or ids), in this order.",
                required=False,
                many=True,
            )
        ],
        options=[
            Option(("--long", "-l"), "Every node in KiB and the driver, in fixed columns (also on a terminal)."),
            Option(
                ("--format",),
                "prometheus: the exporter's metrics, for node_exporter's textfile collector.",
                CHOICE,
                "FORMAT",
                attribute="output_format",
                choices=("prometheus",),
                unknown="format",
            ),
            Option(
                ("--output",),
                "With --format prometheus: write FILE whole (a temporary file, renamed).",
                FILE,
                "FILE",
                attribute="output_file",
            ),
        ],
        accepts={"--json", "-n", "-h"},
    ),
    "exporter": Command(
        "exporter",
        "fleet",
        "run_exporter",
        "Serve every domain's balloon as Prometheus metrics until interrupted.",
        options=[
            Option(
                ("--listen",),
                "Serve Prometheus metrics at http://HOST:PORT/metrics.",
                ADDRESS,
                "HOST:PORT",
                required=True,
            ),
            Option(("--max-requests",), "Requests answered at once (default 40); more wait their turn.", NUMBER, "N"),
            Option(
                ("--max-connections",),
                "Connections held open at once (default 256); more wait in the listen queue.",
                NUMBER,
                "N",
            ),
            Option(
                ("--client-timeout",),
                "Time a client has to send its request, and again to take the answer (default 10).",
                SECONDS,
                "SECONDS",
            ),
        ],
        accepts={"-q"},
    ),
    "top": Command(
        "top",
        "fleet",
        "run_top",
        "Show the domain table, redrawn as balloons move (q or Ctrl-C quits; s changes the sort column,\n"
        "r reverses it). With -b, print the list's plain lines every SECONDS for scripts, each frame\n"
        "after a line `# TIME` (UTC, ISO 8601), as xentop -b does.",
        options=[
            Option(("--batch", "-b"), "Batch mode: plain frames every --delay seconds, no keys read (as xentop -b)."),
            Option(
                ("--iterations", "-n", "-i"),
                "Stop after COUNT frames (default: until interrupted).",
                NUMBER,
                "COUNT",
            ),
            Option(("--delay", "-d"), "Seconds between batch frames (default 3, as xentop).", SECONDS, "SECONDS"),
            Option(
                ("--sort",),
                "Sort by COLUMN (default id; sizes largest first).",
                CHOICE,
                "COLUMN",
                choices=TOP_COLUMNS,
                unknown="column",
            ),
            Option(("--reverse", "-r"), "Reverse the sort order."),
            Option(("--filter",), "Only domains whose name matches GLOB (shell-style: web*, db?).", DOMAIN, "GLOB"),
        ],
        accepts={"-h"},
    ),
    "agent": Command(
        "agent",
        "agent",
        "run_agent_command",
        "Play the guest side of -d DOMAIN over Xenstore: a simulated balloon driver behind memory/target.",
        options=[
            Option(("--rate",), f"{_STEPS} second (default 50).", NUMBER, "STEPS"),
            Option(("--boot-size",), "The guest's boot-time size (default: memory/static-max).", SIZE, "SIZE"),
            Option(("--used",), "Memory the guest holds and never gives back (default: a quarter).", SIZE, "SIZE"),
            Option(("--host-free",), "Free memory the hypervisor can hand out (default: plenty).", SIZE, "SIZE"),
        ],
        accepts={"-d", "-q"},
        modifies=("the guest's balloon driver nodes (memory/, data/balloon/)",),
    ),
    "policy": Command(
        "policy",
        "policy",
        "run_policy",
        "Apply the configuration files (/etc/xbctl.conf, /etc/xbctl.d/*.conf) to each domain once:\n"
        "those not configured since they were created, each on its own (xbctl-policy.service).\n"
        "A domain configured earlier is left alone, whatever was changed on it since.\n"
        "With --dry-run (a global option): show what would change (domain, node, old -> new,\n"
        "FILE:LINE) and change nothing.",
        arguments=[
            Argument(
                "domains",
                "DOMAIN",
                DOMAIN,
                "With --reapply: only these domains (names or ids).",
                required=False,
                many=True,
            )
        ],
        options=[
            Option(
                ("--follow",),
                "Run as the service: then configure each new domain as Xenstore introduces it "
                "(@introduceDomain), until SIGTERM; SIGHUP re-reads the configuration.",
            ),
            Option(
                ("--reapply",),
                "Apply the settings again to every domain (or to the DOMAINs given), configured earlier or not.",
            ),
        ],
        accepts={"-q", "--dry-run"},
        modifies=("target", "min", "xen-max", "the record of configured domains"),
    ),
}
SIM_COMMANDS = {
    "advance": Command(
        "sim advance",
        "sim",
        "advance",
        "Let SECONDS of simulated time pass (the balloon threads move meanwhile).",
        arguments=[Argument("seconds", "SECONDS", SECONDS, "Simulated seconds to let pass.")],
        accepts={"-q"},
        modifies=("the simulated clock",),
    ),
    "reset": Command(
        "sim reset",
        "sim",
        "reset",
        "Boot a fresh simulated host: Domain-0, web, db (a driver that publishes nothing), mail (no driver).",
        options=[
            Option(
                ("--clock",),
                "wall (default): time passes by itself; manual: only `sim advance`.",
                CHOICE,
                "<wall|manual>",
                choices=("wall", "manual"),
            ),
            Option(
                ("--rate",),
                f"{_STEPS} simulated second (default 50); 0: the same as --clock manual.",
                NUMBER,
                "STEPS",
            ),
            Option(("--host-free",), "Host free memory (KiB unless a unit; default 2G).", SIZE, "SIZE"),
            Option(("--position",), "The domain xbctl runs in (default Domain-0, the host).", DOMAIN, "DOMAIN"),
            Option(
                ("--guests",),
                "Boot N guests (0 to 2000; default 3): web, db, mail, then guest4... of varied sizes and drivers.",
                NUMBER,
                "N",
            ),
        ],
        accepts={"-q"},
        modifies=("the simulated host",),
    ),
    "log": Command(
        "sim log",
        "sim",
        "show_log",
        "Show the balloon drivers' diagnostics (like dmesg in each guest).",
        accepts={"-d", "--json"},
    ),
}
# Groups of commands: name -> (help, commands by their word after the group's).
GROUPS = {"sim": ("Control the simulated host (the embedded default).", SIM_COMMANDS)}
ALL_COMMANDS = (SYSCTL, *COMMANDS.values(), *SIM_COMMANDS.values())
# Every own flag of any command, by spelling -> its canonical spelling: the parser must not take
# the word after one as its value (or `policy --follow -q` would read -q as --follow's value).
LOCAL_FLAGS = {
    spelling: option.name
    for command in ALL_COMMANDS
    for option in command.options
    if not option.takes_value
    for spelling in option.spellings
}


def command_of(words: list[str]) -> Command | None:
    """The command the positional WORDS seen so far name (None: the sysctl form, or not yet known)."""
    if not words:
        return None
    if words[0] == "sim":
        return SIM_COMMANDS.get(words[1]) if len(words) > 1 else None
    return COMMANDS.get(words[0])


def own_spellings(command: Command | None) -> dict[str, tuple[str, bool]]:
    """COMMAND's own options, spelling -> (canonical name, takes a value): after the command
    they come before the global options (top's -n COUNT and -d SECONDS, as xentop and top)."""
    if command is None:
        return {}
    return {spelling: (option.name, option.takes_value) for option in command.options for spelling in option.spellings}


def command_named(name: str) -> Command | None:
    """The command called NAME as typed ("target", "sim reset"; "sysctl" is the sysctl form)."""
    if name == "sysctl":
        return SYSCTL
    if name.startswith("sim "):
        return SIM_COMMANDS.get(name[4:])
    return COMMANDS.get(name)


def check_options(command: Command, given: list[str]) -> None:
    """Refuse (exit 2) the first global option in GIVEN that COMMAND does not take."""
    from ..errors import usage_error

    for option in given:
        if option in command.accepts:
            continue
        if option in ("-a", "-f") and command.name in NODE_KEYS:
            raise usage_error(f"-a and -f go with the sysctl form, not with the {command.name} command")
        where = "the sysctl form" if command is SYSCTL else f"the {command.name} command"
        raise usage_error(
            f"{option} does not go with {where}",
            hint="see 'xbctl --help'" if command is SYSCTL else f"see 'xbctl {command.name} --help'",
        )


def command_of_context(ctx) -> "Command | None":
    """The entry for the command a click context CTX runs (None for the program or a group such as sim)."""
    words = []
    while ctx.parent is not None:
        words.append(ctx.info_name)
        ctx = ctx.parent
    return command_named(" ".join(reversed(words)))


def spec_of_parameter(ctx, name: str) -> "Option | Argument | None":
    """The spec's Option or Argument behind CTX's parameter NAME (None for Typer's own, such as --help)."""
    if ctx.parent is None:
        return next((option for option in GLOBALS if option.attribute == name), None)
    command = command_of_context(ctx)
    entries = (*command.arguments, *command.options) if command is not None else ()
    return next((entry for entry in entries if entry.attribute == name), None)
