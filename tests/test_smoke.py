"""The installed command, as a shell runs it: separate processes, real terminals."""

import os
import re
import shutil
import subprocess
import sys

from conftest import assert_clean_failure


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
    done = subprocess.run([sys.executable, "-m", "xbctl", "-n", "-d", "web", "target"],
                          env=env, capture_output=True, text=True, timeout=60)
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
    env = {**os.environ, **{k: v for k, v in xbctl.env.items() if v is not None}, "TERM": "xterm-256color",
           "COLUMNS": "120"}
    env.pop("NO_COLOR")
    env.update(extra_env or {})
    command = " ".join([shutil.which("xbctl"), *args])
    done = subprocess.run(["script", "-qec", command, "/dev/null"], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout


def test_colour_only_on_a_terminal_and_never_with_no_color(xbctl):
    green = "\x1b[32m"  # "steady" in the balloon column
    status, screen = _on_terminal(xbctl, "list")
    assert status == 0 and green in screen and "Domain-0" in screen
    status, screen = _on_terminal(xbctl, "list", extra_env={"NO_COLOR": "1"})
    assert status == 0 and "Domain-0" in screen and "steady" in screen
    assert not re.search(r"\x1b\[[0-9;]*(3[0-8]|9[0-7])", screen)  # no colour codes at all
    assert "\x1b[" not in xbctl.process("list").stdout


def test_wait_shows_a_progress_bar_on_a_terminal(xbctl):
    xbctl("sim", "reset", "--rate", "2000")
    status, screen = _on_terminal(xbctl, "--wait", "--timeout", "60", "-d", "web", "target", "512M")
    assert status == 0, screen
    assert "web: current" in screen and "100%" in screen
    assert "machdep.xen.balloon.target: 786432 -> 524288" in screen
