"""`xbctl top`: the domain table following a balloon, on a terminal (a pty) and in a pipe."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator

import pytest
from conftest import Xbctl

SETTLED_WEB = re.compile(r"1 │ web\s+│\s+600 │\s+600 │.*steady")
MOVING_WEB = re.compile(r"1 │ web\s+│\s+(\d+) │\s+600 │.*moving")


@pytest.fixture
def wall_host(tmp_path) -> Xbctl:
    """A simulated host whose clock runs by itself, 20 balloon steps (40 MiB) a second."""
    tool = Xbctl(tmp_path / "wall.json")
    assert tool("sim", "reset", "--clock", "wall", "--rate", "20").status == 0
    return tool


def env_for(tool: Xbctl) -> dict:
    env = {k: v for k, v in {**os.environ, **tool.env}.items() if v is not None}
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    return env


def read_until(fd: int, pattern: re.Pattern, seen: list[str], timeout_s: float = 30) -> re.Match:
    """Read FD into SEEN until PATTERN matches a line of it (bounded), returning the match."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = "".join(seen)
        for line in re.split(r"[\r\n]|\x1b\[[0-9;]*[A-Za-z]", text):
            found = pattern.search(line)
            if found:
                return found
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{pattern.pattern!r} never showed; output:\n{text[-3000:]}"
        if select.select([fd], [], [], min(remaining, 0.5))[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the pty closed: the process is gone
                chunk = b""
            assert chunk, f"output ended before {pattern.pattern!r}:\n{text[-3000:]}"
            seen.append(chunk.decode("utf-8", "replace"))


@contextlib.contextmanager
def on_a_pty(tool: Xbctl, *args: str) -> Iterator[tuple[subprocess.Popen, int, int]]:
    """`xbctl top ARGS` on a terminal of its own: (the process, the pty's master and slave);
    afterwards the process is gone (killed if it is still running) and the pty closed."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    process = subprocess.Popen(
        [shutil.which("xbctl"), "top", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env_for(tool), "TERM": "xterm"},
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    try:
        yield process, master, slave
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("quit_with", [b"q", b"\x03"], ids=["q", "ctrl-c"])
def test_top_on_a_terminal_follows_a_target_change_to_the_end(wall_host, quit_with):
    with on_a_pty(wall_host) as (process, master, slave):
        seen: list[str] = []
        read_until(master, re.compile(r"1 │ web\s+│\s+768 │\s+768 │.*steady"), seen)
        terminal_while_running = termios.tcgetattr(slave)
        assert not terminal_while_running[3] & termios.ICANON  # keys arrive one by one for q
        assert wall_host("-d", "web", "target", "600M").status == 0
        moving = read_until(master, MOVING_WEB, seen)
        assert 600 < int(moving.group(1)) <= 768
        read_until(master, SETTLED_WEB, seen)
        os.write(master, quit_with)
        assert process.wait(timeout=20) == 0
        attributes = termios.tcgetattr(slave)
        assert attributes[3] & termios.ICANON and attributes[3] & termios.ECHO  # the terminal is restored
        tail = "".join(seen)
        assert "Traceback" not in tail


def test_top_in_a_pipe_prints_one_table_per_change(wall_host):
    process = subprocess.Popen(
        [shutil.which("xbctl"), "top"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(wall_host),
    )
    try:
        fd = process.stdout.fileno()
        seen: list[str] = []
        read_until(fd, re.compile(r"1 │ web\s+│\s+768 │\s+768 │.*steady"), seen)
        assert wall_host("-d", "web", "target", "600M").status == 0
        read_until(fd, SETTLED_WEB, seen)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0 and err == b"", err
        text = "".join(seen) + out.decode()
        assert "\x1b[" not in text  # plain tables, no cursor movement
        tables = text.count("memory in MiB")
        # one table at the start, then one per step of web's balloon (84 steps of 2 MiB), no repeats
        assert 2 < tables <= 1 + 84 + 1, tables
        assert len(MOVING_WEB.findall(text)) == tables - 2
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_top_over_xenstore_redraws_on_a_watch(xs):
    process = xs.popen("top")
    try:
        fd = process.stdout.fileno()
        seen: list[str] = []
        read_until(fd, re.compile(r"1 │ web\s+│\s+\S+ │\s+768 │"), seen)
        xs.write("/local/domain/1/memory/target", str(700 * 1024))
        read_until(fd, re.compile(r"1 │ web\s+│\s+\S+ │\s+700 │"), seen)
        xs.write("/local/domain/2/memory/target", "garbage")
        read_until(fd, re.compile(r"2 │ db\s+│.*unreadable"), seen)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
        # Without libxenctrl (a test machine), the hypervisor layer's one note is all it says.
        messages = [line for line in err.splitlines() if not line.startswith("xbctl: note: hypervisor not used")]
        assert process.returncode == 0 and messages == [], err
        assert "".join(seen).count("memory in MiB") + out.count("memory in MiB") == 3  # no redraw without a change
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- batch mode, sorting, filtering, keys

FRAME_TIME = re.compile(r"# \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def frames(stdout: str) -> list[list[str]]:
    """Batch output as frames: each the lines after its `# TIME` line (which must be one)."""
    found: list[list[str]] = []
    for line in stdout.splitlines():
        if line.startswith("#"):
            assert FRAME_TIME.fullmatch(line), line
            found.append([])
        else:
            assert found, f"a line before the first frame's time: {line!r}"
            found[-1].append(line)
    return found


def names(frame: list[str]) -> list[str]:
    return [line.split()[0] for line in frame[1:]]


def test_batch_prints_count_frames_of_the_list_lines_and_ends(xbctl):
    outcome = xbctl.process("top", "-b", "-n", "2", "-d", "0.1")
    assert (outcome.status, outcome.stderr) == (0, ""), outcome
    listing = xbctl("list").stdout.splitlines()  # the runner's stdout is no terminal: the plain lines
    assert frames(outcome.stdout) == [listing, listing]
    # xentop's spellings, clustered and attached, and -h: sizes as `list -h` shows them.
    outcome = xbctl.process("top", "-bi1", "-d0.1", "-h")
    assert frames(outcome.stdout) == [xbctl("list", "-h").stdout.splitlines()], outcome


@pytest.mark.parametrize(
    "args, order",
    [
        ([], ["Domain-0", "web", "db", "mail"]),
        (["--sort", "name"], ["Domain-0", "db", "mail", "web"]),
        (["--sort", "current"], ["Domain-0", "db", "web", "mail"]),
        (["--sort", "min", "-r"], ["web", "mail", "db", "Domain-0"]),
        (["--sort=balloon"], ["mail", "Domain-0", "web", "db"]),
        (["--sort", "target", "--filter", "[dm]*"], ["db", "mail"]),
        (["--filter", "nothing*"], []),
    ],
)
def test_batch_sorts_and_filters(xbctl, args, order):
    outcome = xbctl.process("top", "--batch", "--iterations", "1", *args)
    assert (outcome.status, outcome.stderr) == (0, ""), outcome
    [frame] = frames(outcome.stdout)
    assert frame[0].startswith("Name ") and names(frame) == order


@pytest.mark.parametrize(
    "args, says",
    [
        (["-b", "-n", "1", "--sort", "size"], "--sort 'size': unknown column"),
        (["-b", "-n", "0"], "--iterations: 0 is out of range"),
        (["-b", "-n", "1.5"], "--iterations: 1.5 is not a whole number"),
        (["-b", "--iterations=x"], "--iterations: invalid number 'x'"),
        (["-b", "-n", "1", "-d", "0"], "--delay: 0 is out of range"),
        (["-b", "-n", "1", "-d", "-1"], "--delay: invalid number '-1'"),
        (["-n", "1", "-d", "1"], "--delay goes with --batch (-b)"),
        (["-b", "-n", "1", "--filter", ""], "--filter: empty pattern"),
        (["-b", "-n"], "-n"),
        (["-b", "-n", "1", "-e"], "-e does not go with the top command"),
    ],
)
def test_bad_top_options_fail_clearly_and_change_nothing(xbctl, args, says):
    before = xbctl.snapshot()
    outcome = xbctl.process("top", *args)
    assert outcome.status == 2 and outcome.stdout == "", outcome
    assert outcome.stderr.startswith("xbctl: ") and says in outcome.stderr and "Traceback" not in outcome.stderr
    assert xbctl("top", *args).status == 2  # Typer's path (the runner) says the same
    assert xbctl.snapshot() == before


def test_global_d_and_n_before_top_are_still_refused(xbctl):
    for args in (["-d", "web", "top"], ["-n", "top"]):
        outcome = xbctl(*args)
        assert outcome.status == 2 and "does not go with the top command" in outcome.stderr, outcome


def test_batch_over_xenstore_samples_each_delay(xs):
    process = xs.popen("top", "-b", "-n", "2", "-d", "0.1", "--sort", "target")
    out, err = process.communicate(timeout=60)
    messages = [line for line in err.splitlines() if not line.startswith("xbctl: note: hypervisor not used")]
    assert process.returncode == 0 and messages == [], err
    found = frames(out)
    assert len(found) == 2 and found[0] == found[1]
    assert "web" in names(found[0])


def test_keys_change_the_sort_and_count_ends_top(wall_host):
    with on_a_pty(wall_host) as (process, master, slave):
        seen: list[str] = []
        read_until(master, re.compile(r"sorted by id, ascending; s: sort column, r: reverse, q: quit"), seen)
        os.write(master, b"s")
        read_until(master, re.compile(r"sorted by name, ascending"), seen)
        os.write(master, b"r")
        read_until(master, re.compile(r"sorted by name, descending"), seen)
        os.write(master, b"ss")
        read_until(master, re.compile(r"sorted by target, smallest first"), seen)
        os.write(master, b"q")
        assert process.wait(timeout=20) == 0
    # -n 1 on a terminal: one table, then top ends by itself.
    with on_a_pty(wall_host, "-n", "1", "-h") as (process, master, slave):
        seen = []
        read_until(master, re.compile(r"1 │ web\s+│\s+768M │\s+768M │"), seen)
        assert process.wait(timeout=20) == 0


def test_batch_needs_neither_typer_nor_rich(tmp_path):
    """From a checkout with nothing installed (`python3 -S`), the lean parser alone reads top's
    own -n and -d (no Typer to fall back on) and a batch frame is plain text (no rich)."""
    import sys
    from pathlib import Path

    tree = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("XBCTL_")}
    env.update({"XBCTL_TRANSPORT": "sim", "XBCTL_SIM_STATE": str(tmp_path / "sim.json"), "PYTHONPATH": ""})

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-S", "-m", "xbctl", *args], cwd=tree, env=env, capture_output=True, text=True, timeout=60
        )

    assert run("sim", "reset", "--clock", "manual").returncode == 0
    done = run("top", "-b", "-n", "2", "-d", "0.1", "-h", "--sort", "name", "-r")
    assert (done.returncode, done.stderr) == (0, ""), done
    found = frames(done.stdout)
    assert len(found) == 2 and names(found[0]) == ["web", "mail", "db", "Domain-0"]
    assert found[0][1].split()[2:5] == ["768M", "768M", "128M"]


def test_the_sort_columns_are_declared_once_for_both_layers():
    """The command spec (completion, --sort's choices) and top's s key cycle the same columns."""
    from xbctl import top
    from xbctl.cli import table

    assert table.TOP_COLUMNS == top.COLUMNS
