"""The installed command, as a shell runs it: separate processes, real terminals."""

import os
import re
import shutil
import signal
import subprocess
import sys

from conftest import Outcome, assert_clean_failure


def test_installed_command_prints_all_nodes(xbctl):
    outcome = xbctl.process("-a")
    assert outcome.status == 0, outcome
    assert outcome.stderr == ""
    assert [line.split(" = ")[0] for line in outcome.stdout.splitlines()] == [
        "machdep.xen.balloon.current",
        "machdep.xen.balloon.target",
        "machdep.xen.balloon.min",
        "machdep.xen.balloon.max",
        "machdep.xen.balloon.xen-max",
    ]


def test_python_dash_m_runs_the_same_tool(xbctl):
    env = {**os.environ, **{k: v for k, v in xbctl.env.items() if v is not None}}
    done = subprocess.run(
        [sys.executable, "-m", "xbctl", "-n", "-d", "web", "target"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "786432\n", "")


def test_installed_command_refusal_and_usage_errors(xbctl):
    assert_clean_failure(xbctl.process("-d", "web", "target", "1M"), 1, "Operation not permitted")
    assert_clean_failure(xbctl.process("-d", "web", "target", "\uff15\uff11\uff12"), 2, "invalid size")
    assert_clean_failure(xbctl.process("--bogus"), 2, "no such option")


def test_unusable_state_directory_is_a_clear_error(xbctl):
    outcome = xbctl.process("-d", "web", "target", "512M", env={"XBCTL_SIM_STATE": "/proc/xbctl/sim.json"})
    assert_clean_failure(outcome, 3, "/proc/xbctl")


def _on_terminal(xbctl, *args, extra_env=None):
    """Run xbctl ARGS on a pseudo-terminal (util-linux script); returns (status, screen)."""
    env = {
        **os.environ,
        **{k: v for k, v in xbctl.env.items() if v is not None},
        "TERM": "xterm-256color",
        "COLUMNS": "120",
    }
    env.pop("NO_COLOR")
    env.update(extra_env or {})
    command = " ".join([shutil.which("xbctl"), *args])
    done = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode, done.stdout


def test_colour_only_on_a_terminal_and_never_with_no_color(xbctl):
    green = "\x1b[32m"  # "steady" in the balloon column
    status, screen = _on_terminal(xbctl, "list")
    assert status == 0 and green in screen and "Domain-0" in screen
    status, screen = _on_terminal(xbctl, "list", extra_env={"NO_COLOR": "1"})
    assert status == 0 and "Domain-0" in screen and "steady" in screen
    assert not re.search(r"\x1b\[[0-9;]*(3[0-8]|9[0-7])", screen)  # no colour codes at all
    assert "\x1b[" not in xbctl.process("list").stdout


def test_list_is_a_table_on_a_terminal_and_fixed_columns_elsewhere(xbctl):
    status, screen = _on_terminal(xbctl, "list", extra_env={"NO_COLOR": "1"})
    assert status == 0 and "┏" in screen and "│  1 │ web      │" in screen, screen
    assert "host free memory 2048 MiB" in screen
    # -n (values only) and --long are for scripts: fixed columns even on a terminal.
    status, screen = _on_terminal(xbctl, "list", "-n", "web")
    assert status == 0 and screen.split()[:3] == ["web", "1", "768"], screen
    status, screen = _on_terminal(xbctl, "list", "--long", "web")
    assert status == 0 and screen.splitlines()[1].split()[:3] == ["web", "1", "786432"], screen
    piped = xbctl.process("list")
    assert piped.stdout.startswith("Name ") and "┃" not in piped.stdout and "host free" not in piped.stdout
    # A driver's long complaint wraps inside the balloon column; the table fits the terminal.
    xbctl("-q", "-d", "web", "target", "256M")
    xbctl("sim", "advance", "60")
    status, screen = _on_terminal(xbctl, "list", extra_env={"NO_COLOR": "1", "COLUMNS": "80"})
    lines = re.sub(r"\x1b\[[0-9;]*m", "", screen.replace("\r", "")).splitlines()
    assert status == 0 and max(len(line) for line in lines) <= 80, screen
    assert "│ driver: WARNING:" in screen and "│ reach target" in screen, screen


def test_wait_shows_a_progress_bar_on_a_terminal(xbctl):
    xbctl("sim", "reset", "--rate", "2000")
    status, screen = _on_terminal(xbctl, "--wait", "--timeout", "60", "-d", "web", "target", "512M")
    assert status == 0, screen
    assert "web: current" in screen and "100%" in screen
    assert "machdep.xen.balloon.target: 786432 -> 524288" in screen


def _env(xbctl):
    return {**os.environ, **{k: v for k, v in xbctl.env.items() if v is not None}}


def test_output_that_cannot_be_written_is_a_clear_error(xbctl):
    for args in (["-a"], ["--json", "-a"], ["list"], ["--help"]):
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [shutil.which("xbctl"), *args],
                env=_env(xbctl),
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
            )
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr.startswith("xbctl: cannot write to standard output: No space left on device"), done.stderr
        assert "Traceback" not in done.stderr


def test_closed_stdout_is_a_clear_error(xbctl):
    done = subprocess.run(
        [shutil.which("xbctl"), "-a"],
        env=_env(xbctl),
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(1),
    )
    assert done.returncode == 1
    assert done.stderr == "xbctl: cannot write to standard output: it is closed\n"


def test_a_reader_that_goes_away_ends_xbctl_quietly_like_a_c_tool(xbctl):
    reader_gone = subprocess.Popen(
        [shutil.which("xbctl"), "-a"], env=_env(xbctl), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    reader_gone.stdout.close()
    assert reader_gone.wait(timeout=60) == -signal.SIGPIPE
    assert reader_gone.stderr.read() == b""


def _interrupt_wait(xbctl, *options):
    """Start `xbctl OPTIONS --wait mem-set web 600`, Ctrl-C it once it waits; returns its Outcome."""
    waiting = subprocess.Popen(
        [shutil.which("xbctl"), *options, "--wait", "mem-set", "web", "600"],
        env=_env(xbctl),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiting.stderr.readline() == "xbctl: web: current 786432 KiB, target 614400 KiB\n"
        waiting.send_signal(signal.SIGINT)
        stdout, stderr = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    return Outcome(waiting.returncode, stdout, stderr)


def test_ctrl_c_during_wait_says_what_stays_written(xbctl):
    interrupted = _interrupt_wait(xbctl)
    assert interrupted.status == 130
    assert interrupted.stdout == "machdep.xen.balloon.target: 786432 -> 614400\n"
    assert interrupted.stderr == (
        "xbctl: interrupted: web's target stays 614400 KiB; the balloon goes on moving toward it\n"
    )
    assert xbctl.value("target", "web") == 614400


def test_ctrl_c_during_wait_with_json_still_prints_the_write(xbctl):
    interrupted = _interrupt_wait(xbctl, "--json")
    assert interrupted.status == 130
    assert "interrupted" in interrupted.stderr
    document = interrupted.json()
    assert document["kind"] == "write" and document["changes"][0]["new_kib"] == 614400
    assert document["wait"] == {"reached": False, "current_kib": 786432, "target_kib": 614400, "reason": "interrupted"}


def test_a_source_tree_reads_and_writes_without_any_dependency(xbctl, tmp_path):
    """From a checkout with nothing installed (`python3 -S`: no site-packages, so no Typer
    and no rich), reads and writes work and help says what it needs instead of a traceback."""
    from pathlib import Path

    tree = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("XBCTL_")}
    env.update({"XBCTL_TRANSPORT": "sim", "XBCTL_SIM_STATE": str(tmp_path / "sim.json"), "PYTHONPATH": ""})

    def run(*args: str) -> Outcome:
        done = subprocess.run(
            [sys.executable, "-S", "-m", "xbctl", *args], cwd=tree, env=env, capture_output=True, text=True, timeout=60
        )
        return Outcome(done.returncode, done.stdout, done.stderr)

    read = run("-n", "target")
    assert (read.status, read.stdout, read.stderr) == (0, "4194304\n", ""), read
    written = run("-d", "web", "target", "600M")
    assert (written.status, written.stdout) == (0, "machdep.xen.balloon.target: 786432 -> 614400\n"), written
    helped = run("--help")
    assert_clean_failure(
        helped,
        3,
        "xbctl: this needs the Python package typer, which is not installed\n",
        "apt-get install python3-typer); reads and writes work without it",
    )


# What a read needs no part of: Typer and rich (help, the terminal's table), and the standard
# library's slow imports (typing, pathlib, enum and what it imports, re, json...). Not timed:
# tests/benchmark.py times it.
NOT_FOR_A_READ = {
    "enum",
    "functools",
    "collections",
    "re",
    "json",
    "typer",
    "click",
    "rich",
    "shellingham",
    "typing",
    "pathlib",
    "signal",
    "dataclasses",
    "fractions",
    "inspect",
    "tempfile",
    "subprocess",
    "threading",
    "ctypes",
    "socket",
    "fcntl",
    "math",
    "contextlib",
    "xbctl.cli.typer_app",
    "xbctl.completion",
    "xbctl.output_rich",
    "xbctl.json_output",
    "xbctl.api_results",
    "xbctl.rules",
    "xbctl.assignments",
    "xbctl.journal",
    "xbctl.capacity",
}


def test_a_read_on_the_simulator_imports_only_what_it_needs(tmp_path):
    """`xbctl -n target` from the source tree (python -S: nothing else on the path), its imports
    (-X importtime) against Python's own start-up."""
    from pathlib import Path

    tree = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("XBCTL_")}
    env.update({"XBCTL_TRANSPORT": "sim", "XBCTL_SIM_STATE": str(tmp_path / "sim.json"), "PYTHONPATH": ""})

    def imported(*args: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-S", "-X", "importtime", *args],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done
        return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}

    start = "from xbctl.__main__ import main; main()"
    assert subprocess.run([sys.executable, "-S", "-c", start, "sim", "reset"], cwd=tree, env=env).returncode == 0
    read = imported("-c", start, "-n", "target") - imported("-c", "pass")
    assert "xbctl.transports.sim" in read and "_json" in read  # what it reads, and with what
    assert not read & NOT_FOR_A_READ, sorted(read & NOT_FOR_A_READ)


def test_the_installed_command_starts_xbctl_with_nothing_before_it(tmp_path):
    """The installed `xbctl` (bin/xbctl, not a generated console-script wrapper, which imports re
    before xbctl runs) loads nothing a read does not need, beyond what `python -m xbctl` loads."""
    from pathlib import Path

    command = shutil.which("xbctl")
    assert command is not None
    with open(command, encoding="utf-8") as script:
        assert script.readline() == f"#!{sys.executable}\n"  # the installer pointed it at this Python
    # Run with python -S and the tree on PYTHONPATH: the editable install's import hook (site's
    # work) imports re itself, which would hide the script's.
    tree = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("XBCTL_")}
    env.update({"XBCTL_TRANSPORT": "sim", "XBCTL_SIM_STATE": str(tmp_path / "sim.json"), "PYTHONPATH": str(tree)})
    assert subprocess.run([command, "sim", "reset"], env=env).returncode == 0

    def imported(*args: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-S", "-X", "importtime", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done
        return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}

    by_the_command = imported(command, "-n", "target")
    assert "xbctl.transports.sim" in by_the_command
    # -m runs xbctl/__main__.py as the module __main__, which the command imports by its name.
    assert by_the_command - imported("-m", "xbctl", "-n", "target") == {"xbctl.__main__"}
    assert not (by_the_command - imported("-c", "pass")) & NOT_FOR_A_READ
