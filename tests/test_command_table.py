"""Every command x every global option: it works as documented, or exits 2 naming both.

The table (xbctl/cli/table.py) says which global options each command takes; a pair it
refuses must fail before anything runs (the simulated host unchanged, nothing on stdout).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import assert_clean_failure

from xbctl.cli.table import ALL_COMMANDS, EVERYWHERE, GLOBAL_OPTIONS, SYSCTL

OPTIONS = sorted({canonical for canonical, _ in GLOBAL_OPTIONS.values()})
# A valid use of each command on the fresh simulated host (web: target 768M, xen-max 1024M).
SAMPLES = {
    "sysctl form": ["machdep.xen.balloon.target=700M"],
    "current": [],
    "target": ["700M"],
    "min": ["200M"],
    "max": [],
    "xen-max": ["1G"],
    "mem-set": ["web", "700"],
    "mem-max": ["web", "1024"],
    "list": [],
    "agent": [],
    "policy": [],  # applies CONF_ROOT/etc/xbctl.conf (below)
    "exporter": ["--listen", "LISTEN"],  # a free loopback port, chosen when it runs
    "top": [],
    "sim advance": ["1"],
    "sim reset": ["--clock", "manual"],
    "sim log": [],
}
# Pairs the table accepts whose documented answer is still a usage error (exit 2).
DOCUMENTED_USAGE_ERRORS = {
    ("current", "-w"): "-w needs a value for current",
    ("max", "-w"): "-w needs a value for max",
}
PAIRS = [(command, option) for command in ALL_COMMANDS for option in OPTIONS]


def _argv(command, option: str, state_path) -> tuple[list[str], list[str]]:
    """The options and the command words for COMMAND with OPTION."""
    args = list(SAMPLES[command.name])
    words = [] if command is SYSCTL else command.name.split()
    transport = "xenstore" if command.name == "agent" else "sim"
    values = {
        "-d": "web",
        "--transport": transport,
        "--sim-state": str(state_path),
        "--timeout": "0.2",
        "-f": "SETTINGS",
    }  # a settings file, written when the test runs
    options = [option] + ([values.get(option, "")] if GLOBAL_OPTIONS[option][1] else [])
    if option == "--timeout" and option in command.accepts:
        options = ["--wait", *options]
    if option == "--wait":
        options += ["--timeout", "0.2"]
    if command is SYSCTL and option in ("-a", "-A", "-f", "--system", "-v"):
        args = []  # -a reads every node, -A every domain; -f and --system's files carry the assignment
    if command is SYSCTL and option == "-v":
        options += ["-f", "SETTINGS"]  # -v goes with -f (and --system)
    if "-d" in command.accepts and option not in ("-d", "-A", "--system"):  # -A and --system: every domain
        options += ["-d", "web"]  # the guest the samples fit
    return options, words + args


# Commands that run until interrupted: each must start with the option, then stop on Ctrl-C.
LONG_RUNNING = {"exporter": "serving metrics at", "top": "exact KiB with --json"}  # top: its caption


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_until_interrupted(xbctl, argv: list[str]) -> int:
    """Run the installed xbctl with ARGV until it shows it is running, then SIGINT it; its status.

    The exporter shows it by accepting a connection (-q silences its line), top by its table.
    """
    port = free_port()
    argv = [f"127.0.0.1:{port}" if arg == "LISTEN" else arg for arg in argv]
    env = xbctl.process_env()
    command = os.path.join(os.path.dirname(sys.executable), "xbctl")
    with subprocess.Popen(
        [command, *argv], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        if "--listen" in argv:
            deadline = time.monotonic() + 20
            while True:
                assert process.poll() is None and time.monotonic() < deadline, (argv, process.stdout.read())
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
        else:
            shown = ""
            while LONG_RUNNING["top"] not in shown:  # bounded by the pipe closing if it ends
                line = process.stdout.readline()
                assert line, (argv, shown)
                shown += line
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
        return process.returncode


def test_every_command_is_sampled():
    assert {command.name for command in ALL_COMMANDS} == set(SAMPLES)


@pytest.mark.parametrize("command, option", PAIRS, ids=[f"{c.name}|{o}" for c, o in PAIRS])
def test_option_works_or_is_refused_naming_both(xbctl, tmp_path, command, option):
    options, words = _argv(command, option, xbctl.state_path)
    settings = tmp_path / "balloon.conf"
    settings.write_text("machdep.xen.balloon.target=700M\n")
    options = [str(settings) if word == "SETTINGS" else word for word in options]
    if option not in command.accepts:
        before = xbctl.snapshot()
        outcome = xbctl(*options, *words)
        if option == "--json":  # asked for JSON: the error comes as a document too
            assert outcome.json()["error"]["exit_status"] == 2
            outcome.stdout = ""
        assert_clean_failure(outcome, 2, option)
        where = "sysctl form" if command is SYSCTL else f"the {command.name} command"
        assert where in outcome.stderr, outcome
        assert xbctl.snapshot() == before  # refused before anything ran
        return
    before = xbctl.snapshot()
    if command.name in LONG_RUNNING:
        assert run_until_interrupted(xbctl, [*options, *words]) == 0
        assert command.modifies or xbctl.snapshot() == before
        return
    # The agent plays a guest over Xenstore: here one that is not there (exit 3).
    env = {"XBCTL_TRANSPORT": None, "XENSTORED_PATH": str(tmp_path / "no-socket")} if command.name == "agent" else {}
    if command.name == "policy" or option == "--system":  # a configuration of the test's own, never /etc
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc" / "xbctl.conf").write_text("[web]\nmachdep.xen.balloon.target = 700M\n")
        env = {"XBCTL_CONF_ROOT": str(tmp_path)}
    outcome = xbctl(*options, *words, env=env)
    assert "does not go with" not in outcome.stderr and "Traceback" not in outcome.stderr, outcome
    if not command.modifies or option == "--dry-run":  # the spec says it only reads; or a dry run
        assert xbctl.snapshot() == before, (command.name, option)
    if (command.name, option) in DOCUMENTED_USAGE_ERRORS:
        assert_clean_failure(outcome, 2, DOCUMENTED_USAGE_ERRORS[command.name, option])
    elif command.name == "agent":
        assert outcome.status == 3 and "no-socket" in outcome.stderr, outcome
    elif option == "--system":
        assert outcome.status == 0 and xbctl.value("target", "web") == 700 * 1024, outcome
        assert (
            f"* Applying {tmp_path}/etc/xbctl.conf ...\nweb: machdep.xen.balloon.target: 786432 -> 716800\n"
            == outcome.stdout
        )
    elif command.name == "policy" and option == "--dry-run":
        assert outcome.status == 0 and xbctl.value("target", "web") == 768 * 1024, outcome
        assert outcome.stdout.startswith("web (1): machdep.xen.balloon.target: 786432 -> 716800 ("), outcome
    elif command.name == "policy":
        assert outcome.status == 0 and xbctl.value("target", "web") == 700 * 1024, outcome
        assert ("" if option == "-q" else "web (1): machdep.xen.balloon.target: 786432 -> 716800") in outcome.stderr
        assert option != "-q" or outcome.stderr == "", outcome
    else:
        # --wait on the manual clock: the target is not reached within --timeout (exit 5).
        waits = option in ("--wait", "--timeout") and command.name in ("sysctl form", "target", "mem-set")
        assert outcome.status == (5 if waits else 0), outcome


def test_transport_and_sim_state_go_with_every_command():
    assert all(EVERYWHERE <= command.accepts for command in ALL_COMMANDS)


def test_the_spec_is_whole():
    """Every entry of the command spec says what the parser, Typer and completion need."""
    from xbctl.cli import table

    entries = [*table.GLOBALS, *(entry for c in ALL_COMMANDS for entry in (*c.options, *c.arguments))]
    for entry in entries:
        assert entry.kind is None or entry.kind in table.KINDS, entry.attribute
        assert (entry.kind == table.CHOICE) == bool(getattr(entry, "choices", None)), entry.attribute
        if entry is not table.SYSCTL.arguments[0]:  # the sysctl form's names: its help is the program's
            assert entry.help, entry.attribute
        assert entry.attribute.isidentifier(), entry.attribute
    for option in table.GLOBALS:
        assert option.takes_value == (option.metavar is not None), option.name
        assert option.requires is None or option.requires in table.OPTION_BY_NAME, option.name
    for command in ALL_COMMANDS:
        names = [entry.attribute for entry in (*command.options, *command.arguments)]
        assert len(names) == len(set(names)), command.name  # Typer's parameters, by name
        spellings = [s for option in command.options for s in option.spellings]
        # A global option's spelling only for a global option the command does not take (top's -n
        # and -d, as top(1) and xentop): after the command it is the command's, and never ambiguous.
        shadowed = {GLOBAL_OPTIONS[spelling][0] for spelling in set(spellings) & set(GLOBAL_OPTIONS)}
        assert not shadowed & command.accepts, command.name
        if command.takes("--dry-run"):
            assert command.modifies or command.node in ("current", "max"), command.name
        assert all(a.required for a in command.arguments[: command.min_args]), command.name  # required first
    # A dry run of a command that changes something: never the simulator's own commands.
    assert not any(c.takes("--dry-run") for c in table.SIM_COMMANDS.values())


def test_dry_run_does_not_reset_the_simulator(xbctl):
    xbctl("-q", "-d", "web", "target", "600M")
    assert_clean_failure(xbctl("--dry-run", "sim", "reset"), 2, "--dry-run", "sim reset")
    assert xbctl.value("target", "web") == 600 * 1024


def test_settings_files_apply_in_order_as_one_change(xbctl, tmp_path):
    first, second = tmp_path / "a.conf", tmp_path / "b.conf"
    first.write_text("machdep.xen.balloon.target=600M\nmachdep.xen.balloon.min=200M\n")
    second.write_text("machdep.xen.balloon.target=650M\n")
    outcome = xbctl("-d", "web", "-f", str(first), "-f", str(second))
    assert outcome.status == 0, outcome
    assert xbctl.value("target", "web") == 650 * 1024  # the later file wins
    assert xbctl.value("min", "web") == 200 * 1024  # the earlier file was not dropped
    document = xbctl("--json", "-d", "web", "-f", str(first), "-f", str(second)).json()
    assert document["kind"] == "write"


def test_a_bad_line_in_the_second_file_writes_nothing(xbctl, tmp_path):
    first, second = tmp_path / "a.conf", tmp_path / "b.conf"
    first.write_text("machdep.xen.balloon.target=600M\n")
    second.write_text("machdep.xen.balloon.target=lots\n")
    before = xbctl.snapshot()
    assert_clean_failure(xbctl("-d", "web", "-f", str(first), "-f", str(second)), 2, f"{second}:1:")
    assert xbctl.snapshot() == before


def test_a_value_option_given_twice_is_refused(xbctl):
    before = xbctl.snapshot()
    assert_clean_failure(xbctl("-d", "web", "-d", "db", "target", "600M"), 2, "-d given twice")
    assert xbctl.snapshot() == before


def test_quiet_silences_the_wait_progress(xbctl):
    xbctl("sim", "reset", "--clock", "wall", "--rate", "5000")
    outcome = xbctl("-q", "--wait", "--timeout", "30", "-d", "web", "target", "600M")
    assert (outcome.status, outcome.stdout, outcome.stderr) == (0, "", "")
    loud = xbctl("--wait", "--timeout", "30", "-d", "web", "target", "700M")
    assert loud.status == 0 and "current" in loud.stderr, loud


TYPER_LINES = [
    ["-d", "web", "-n", "target"],
    ["-d", "web", "target", "-4"],
    ["-e", "-d", "db", "machdep.xen.balloon"],
    ["--json", "mem-set", "web", "600", "--dry-run"],
    ["list"],
    ["--json", "sim", "log", "-d", "web"],
    ["sim", "reset", "--clock", "manual", "--host-free", "1G"],
    ["list", "-d", "web"],
    ["list", "-l", "db", "web"],
    ["-n", "list", "--long", "mail", "0"],
    ["list", "web", "nosuch"],
    ["sim", "reset", "--clock", "manual", "--guests", "7"],
    ["--dry-run", "sim", "reset"],
    ["-d", "web", "target", "nope"],
    ["policy", "--reapply", "web"],
    ["--dry-run", "policy", "--reapply", "db", "web"],
    ["policy", "web"],
]


@pytest.mark.parametrize("args", TYPER_LINES, ids=" ".join)
def test_typer_parses_to_the_same_outcome(tmp_path, monkeypatch, args):
    """Typer (help, completion, usage errors) runs the same table check and commands."""
    from conftest import Xbctl

    from xbctl.cli import parse

    # policy's configuration: the test's own, never /etc.
    (tmp_path / "conf" / "etc").mkdir(parents=True)
    (tmp_path / "conf" / "etc" / "xbctl.conf").write_text("[web]\ntarget = 700M\n[db]\nmin = 600M\n")
    monkeypatch.setenv("XBCTL_CONF_ROOT", str(tmp_path / "conf"))
    outcomes = []
    for name in ("lean", "typer"):
        tool = Xbctl(tmp_path / name / "sim.json")
        assert tool("sim", "reset", "--clock", "manual").status == 0
        if name == "typer":

            def hand_over(argv):
                raise parse.HandToTyper()

            monkeypatch.setattr(parse, "parse", hand_over)
        outcome = tool(*args)
        outcomes.append((outcome.status, outcome.stdout, outcome.stderr, tool.snapshot()))
    assert outcomes[0] == outcomes[1]
