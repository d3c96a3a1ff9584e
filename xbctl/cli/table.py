"""The command table: every command, the global options it takes, and its arguments.

Declared once; the parser (xbctl.cli.parse) and the check run before any command
(check_options) both read it. Adding a command is one Command(...) line here, its
function in a family module, and its help in typer_app. No import cost: plain data.
"""

from __future__ import annotations

# Global options: every spelling -> (canonical name, takes a value).
GLOBAL_OPTIONS = {
    "-a": ("-a", False), "--all": ("-a", False),
    "-A": ("-A", False), "--all-domains": ("-A", False),
    "--system": ("--system", False),
    "-w": ("-w", False), "--write": ("-w", False),
    "-n": ("-n", False),
    "-e": ("-e", False),
    "-q": ("-q", False), "--quiet": ("-q", False),
    "-v": ("-v", False), "--verbose": ("-v", False),
    "-f": ("-f", True), "--file": ("-f", True),
    "-d": ("-d", True), "--domain": ("-d", True),
    "--json": ("--json", False),
    "--dry-run": ("--dry-run", False),
    "--wait": ("--wait", False),
    "--timeout": ("--timeout", True),
    "--override-guest-floor": ("--override-guest-floor", False),
    "--transport": ("--transport", True),
    "--sim-state": ("--sim-state", True),
}
# A command's own option that takes no value (local_options spelling -> FLAG).
FLAG = "flag"
# Every such flag of any command, by spelling: the parser must not take the word after one
# as its value (or `policy --follow -q` would read -q as --follow's value).
LOCAL_FLAGS = {"--long": "--long", "-l": "--long", "--follow": "--follow", "--reapply": "--reapply"}
# Options every command takes: where the balloon is (not what to do with it).
EVERYWHERE = frozenset({"--transport", "--sim-state"})
# Options only Typer handles (help, version, completion): the lean parser hands these over.
TYPER_ONLY = frozenset({"-h", "--help", "--version", "--install-completion", "--show-completion"})

_READ = frozenset({"-n", "-e", "-d", "--json"})
_WRITE = frozenset({"-q", "-n", "-d", "--json", "--dry-run", "--override-guest-floor"})
_WAIT = frozenset({"--wait", "--timeout"})


class Command:
    """One command: its name, where it lives, the global options it takes, its arguments."""

    __slots__ = ("name", "module", "function", "accepts", "min_args", "max_args", "local_options", "names")

    def __init__(self, name, module, function, accepts, min_args=0, max_args=0, local_options=None, names=False):
        self.name = name  # as typed: "target", "sim reset"
        self.module = module  # xbctl.cli.<module>
        self.function = function  # called with (invocation, output)
        self.accepts = frozenset(accepts) | EVERYWHERE
        self.min_args = min_args
        self.max_args = max_args  # None: any number
        # Options of this command alone: spelling -> (canonical, allowed values or None).
        self.local_options = local_options or {}
        self.names = names  # takes sysctl names and assignments


# -v lists the settings -f and --system leave as they were: the sysctl form alone has them.
SYSCTL = Command(
    "sysctl form", "nodes", "run_sysctl", _READ | _WRITE | _WAIT | {"-a", "-A", "-w", "-f", "--system", "-v"},
    max_args=None, names=True
)
_NODE_KEYS = ("current", "target", "min", "max", "xen-max")
COMMANDS = {
    # --wait after a change that is not a target change says there is nothing to wait for.
    **{key: Command(key, "nodes", "run_node", _READ | _WRITE | _WAIT | {"-w"}, max_args=1) for key in _NODE_KEYS},
    "mem-set": Command("mem-set", "host", "mem_set", _WRITE | _WAIT, min_args=2, max_args=2),
    "mem-max": Command("mem-max", "host", "mem_max", _WRITE | _WAIT, min_args=2, max_args=2),
    "list": Command(
        "list", "listing", "list_domains", {"--json", "-n"}, max_args=None,
        local_options={"--format": ("prometheus",), "--long": FLAG},
    ),
    "exporter": Command(
        "exporter", "fleet", "run_exporter", {"-q"},
        local_options={"--listen": None, "--max-requests": None, "--max-connections": None, "--client-timeout": None},
    ),
    "top": Command("top", "fleet", "run_top", set()),
    "policy": Command(
        "policy", "service", "run_policy", {"-q", "--dry-run"}, max_args=None,
        local_options={"--follow": FLAG, "--reapply": FLAG},
    ),
    "agent": Command(
        "agent", "agent", "run_agent_command", {"-d", "-q"},
        local_options={"--rate": None, "--boot-size": None, "--used": None, "--host-free": None},
    ),
}
SIM_COMMANDS = {
    "advance": Command("sim advance", "sim", "advance", {"-q"}, min_args=1, max_args=1),
    "reset": Command(
        "sim reset", "sim", "reset", {"-q"},
        local_options={
            "--clock": ("wall", "manual"), "--rate": None, "--host-free": None, "--position": None, "--guests": None,
        },
    ),
    "log": Command("sim log", "sim", "show_log", {"-d", "--json"}),
}
ALL_COMMANDS = (SYSCTL, *COMMANDS.values(), *SIM_COMMANDS.values())


def check_options(command: Command, given: list[str]) -> None:
    """Refuse (exit 2) the first global option in GIVEN that COMMAND does not take."""
    from ..errors import usage_error

    for option in given:
        if option in command.accepts:
            continue
        if option in ("-a", "-f") and command.name in _NODE_KEYS:
            raise usage_error(f"-a and -f go with the sysctl form, not with the {command.name} command")
        where = "the sysctl form" if command is SYSCTL else f"the {command.name} command"
        raise usage_error(
            f"{option} does not go with {where}",
            hint="see 'xbctl --help'" if command is SYSCTL else f"see 'xbctl {command.name} --help'",
        )
