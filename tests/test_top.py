"""`xbctl top`: the domain table following a balloon, on a terminal (a pty) and in a pipe."""

from __future__ import annotations

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


def start_on_pty(tool: Xbctl) -> tuple[subprocess.Popen, int, int]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    process = subprocess.Popen(
        [shutil.which("xbctl"), "top"], stdin=slave, stdout=slave, stderr=slave,
        env={**env_for(tool), "TERM": "xterm"}, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    return process, master, slave


@pytest.mark.parametrize("quit_with", [b"q", b"\x03"], ids=["q", "ctrl-c"])
def test_top_on_a_terminal_follows_a_target_change_to_the_end(wall_host, quit_with):
    process, master, slave = start_on_pty(wall_host)
    try:
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
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
        os.close(slave)


def test_top_in_a_pipe_prints_one_table_per_change(wall_host):
    process = subprocess.Popen(
        [shutil.which("xbctl"), "top"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env_for(wall_host),
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
