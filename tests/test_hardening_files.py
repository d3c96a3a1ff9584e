"""Files and input that are not what xbctl expects: foreign state files, killed writers,
oversized or odd settings files, absurd state, early Ctrl-C, lost output, hostile strings."""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Outcome, Xbctl, assert_clean_failure

from xbctl.assignments import MAX_SETTINGS_BYTES
from xbctl.units import MAX_KIB

MIB = 1024
FOREIGN = "is not an xbctl simulator state file; not touching it"


def installed_xbctl() -> str:
    exe = shutil.which("xbctl")
    assert exe, "the xbctl command must be installed"
    return exe


def process_env(xbctl: Xbctl, **extra: str) -> dict[str, str]:
    return {k: v for k, v in {**os.environ, **xbctl.env, **extra}.items() if v is not None}


def directory_listing(path: Path) -> list[tuple[str, bytes]]:
    return sorted((p.name, p.read_bytes()) for p in path.iterdir())


# ---------------------------------------------------------------- files that are not ours


@pytest.mark.parametrize(
    "content",
    [
        '{"name": "my-app", "version": "1.0.0", "dependencies": {}}\n',  # a package.json
        '{"schema": 1, "domains": []}\n',  # xbctl-like, but without the marker
        '{"schema": 1, "tor',  # torn, and nothing says it was ever ours
        "[1, 2, 3]\n",
        "export PATH=$PATH:/opt/bin\n",
    ],
    ids=["package.json", "schema-without-marker", "torn-unmarked", "json-array", "shell"],
)
def test_a_file_without_our_marker_is_never_moved_or_replaced(xbctl, tmp_path, content):
    home = tmp_path / "project"
    home.mkdir()
    foreign = home / "package.json"
    foreign.write_text(content)
    os.chmod(foreign, 0o644)
    before = directory_listing(home)
    for args in (
        ["-a"],
        ["list"],
        ["sim", "log"],  # reads
        ["-d", "web", "target", "512M"],
        ["-w", "machdep.xen.balloon.min=1G"],
        ["mem-max", "db", "3G"],
        ["sim", "advance", "1"],
        ["sim", "reset"],  # writes
    ):
        outcome = xbctl("--sim-state", str(foreign), *args)
        assert_clean_failure(outcome, 3, FOREIGN)
    assert directory_listing(home) == before  # no rename, no lock file, no temporary
    assert stat.S_IMODE(os.stat(foreign).st_mode) == 0o644


def test_a_read_never_moves_a_damaged_file_of_ours(xbctl):
    xbctl("-q", "mem-set", "web", "700")
    state = json.loads(xbctl.state_path.read_text())
    state["offset_s"] = "yesterday"
    damaged = json.dumps(state)
    xbctl.state_path.write_text(damaged)
    for args in (["-a"], ["list"], ["-d", "web", "-n", "target"], ["sim", "log"], ["--json", "-a"]):
        outcome = xbctl(*args)
        assert outcome.status == 3 and "is corrupt" in outcome.stderr, outcome
    assert xbctl.state_path.read_text() == damaged
    assert sorted(p.name for p in xbctl.state_path.parent.iterdir()) == ["sim.json", "sim.json.lock"]


def test_a_state_file_of_an_earlier_xbctl_without_the_marker_is_still_ours(xbctl):
    state = json.loads(xbctl.state_path.read_text())
    del state["format"], state["boot_id"]  # as xbctl wrote it before the marker (and the boot id)
    xbctl.state_path.write_text(json.dumps(state))
    assert xbctl.value("target", "web") == 768 * MIB
    assert xbctl("-q", "-d", "web", "target", "600M").status == 0
    assert json.loads(xbctl.state_path.read_text())["format"] == "xbctl-sim-state"


def test_a_read_only_state_file_is_refused_for_writes_and_keeps_its_mode(xbctl):
    os.chmod(xbctl.state_path, 0o400)
    content = xbctl.state_path.read_bytes()
    assert xbctl.value("target", "web") == 768 * MIB  # reading is fine
    for args in (["-d", "web", "target", "512M"], ["sim", "advance", "1"], ["sim", "reset"]):
        assert_clean_failure(xbctl(*args), 3, "is read-only (mode 0400); not replacing it", "chmod u+w")
    assert stat.S_IMODE(os.stat(xbctl.state_path).st_mode) == 0o400
    assert xbctl.state_path.read_bytes() == content


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o660])
def test_a_write_keeps_the_mode_of_the_state_file(xbctl, mode):
    os.chmod(xbctl.state_path, mode)
    assert xbctl("-q", "-d", "web", "target", "512M").status == 0
    assert xbctl.value("target", "web") == 512 * MIB
    assert stat.S_IMODE(os.stat(xbctl.state_path).st_mode) == mode


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file another owner")
def test_a_write_keeps_the_owner_of_the_state_file(xbctl):
    os.chown(xbctl.state_path, 4321, 4322)
    assert xbctl("-q", "-d", "web", "target", "512M").status == 0
    status = os.stat(xbctl.state_path)
    assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (4321, 4322, 0o600)


# ---------------------------------------------------------------- killed writers


def _temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_writer_killed_before_its_rename_leaves_a_temporary_the_next_write_removes(xbctl, tmp_path):
    directory = xbctl.state_path.parent
    # Someone else's files with look-alike names stay.
    others = [".sim.json.tmp", ".sim.json.12.tmp", ".other.json.1.2.tmp", "sim.json.1.2.tmp"]
    for name in others:
        (directory / name).write_text("not xbctl's")
    # A writer that dies by SIGKILL between writing its temporary and renaming it.
    killer = (
        "import os, signal, sys\n"
        "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        "sys.argv = ['xbctl', '-d', 'web', 'target', '600M']\n"
        "from xbctl.cli import main\n"
        "main()\n"
    )
    left = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", killer], env=process_env(xbctl), capture_output=True, timeout=60)
        assert done.returncode == -signal.SIGKILL, done
        stale = [name for name in _temporaries(directory) if name not in others]
        assert len(stale) == 1, _temporaries(directory)  # its own; the one before it was removed
        left.extend(stale)
    assert left[0] != left[1]
    assert xbctl("-q", "-d", "web", "target", "512M").status == 0
    assert _temporaries(directory) == sorted(others)
    assert xbctl.value("target", "web") == 512 * MIB


def test_sigkill_loop_then_one_write_leaves_no_temporary_and_valid_state(xbctl):
    """200 installed xbctl writers, four at a time, killed at random moments; then one write."""
    exe = installed_xbctl()
    env = process_env(xbctl)
    directory = xbctl.state_path.parent
    rng = random.Random(8)
    kills = 0
    started = time.monotonic()
    while kills < 200:
        batch = [
            subprocess.Popen(
                [exe, "-q", "-d", "web", "target", rng.choice(["+4", "-4", "600M", "700M"])],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(4)
        ]
        time.sleep(rng.uniform(0.04, 0.25))
        for writer in batch:
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=60)
            kills += 1
        assert time.monotonic() - started < 240, "the kill loop is taking far too long"
    left_by_kills = _temporaries(directory)
    assert xbctl("-q", "-d", "web", "target", "512M").status == 0
    assert _temporaries(directory) == [], left_by_kills
    assert json.loads(xbctl.state_path.read_text())["format"] == "xbctl-sim-state"
    assert xbctl.value("target", "web") == 512 * MIB


# ---------------------------------------------------------------- settings files: size


def test_settings_file_at_the_limit_is_read_and_one_byte_more_is_refused(xbctl, tmp_path):
    line = "machdep.xen.balloon.target=600M\n"
    path = tmp_path / "big.conf"
    path.write_text(line + "#" * (MAX_SETTINGS_BYTES - len(line) - 1) + "\n")
    assert path.stat().st_size == MAX_SETTINGS_BYTES
    assert xbctl("-q", "-d", "web", "-f", str(path)).status == 0
    assert xbctl.value("target", "web") == 600 * MIB
    before = xbctl.snapshot()
    path.write_text(line.replace("600M", "500M") + "#" * (MAX_SETTINGS_BYTES - len(line)) + "\n")
    assert_clean_failure(xbctl("-d", "web", "-f", str(path)), 2, f"larger than {MAX_SETTINGS_BYTES} bytes")
    assert xbctl.snapshot() == before


def test_long_lines_are_refused_and_quoted_short(xbctl, tmp_path):
    path = tmp_path / "long.conf"
    before = xbctl.snapshot()
    for line in (
        "machdep.xen.balloon.target=" + "9" * 2000,
        "x" * 5000,
        "# " + "x" * 5000 + "\nno equals " + "y" * 900,
    ):
        path.write_text(line + "\n")
        outcome = xbctl("-d", "web", "-f", str(path))
        assert outcome.status == 2 and len(outcome.stderr) < 400, outcome
        assert outcome.stderr.startswith(f"xbctl: {path}:"), outcome
    assert xbctl.snapshot() == before


def _limit_memory() -> None:
    limit = 1 << 30  # 1 GiB of address space: reading /dev/zero whole would run into it
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_dev_zero_fails_at_once_with_exit_2(xbctl):
    done = subprocess.run(
        [installed_xbctl(), "-f", "/dev/zero"],
        env=process_env(xbctl),
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=_limit_memory,
    )
    outcome = Outcome(done.returncode, done.stdout, done.stderr)
    assert_clean_failure(outcome, 2, f"/dev/zero: larger than {MAX_SETTINGS_BYTES} bytes")


def test_standard_input_is_read_no_further_than_the_limit(xbctl):
    """-f /dev/stdin fed from an endless writer: xbctl stops reading after limit + 1 bytes."""
    reader = subprocess.Popen(
        [installed_xbctl(), "-f", "/dev/stdin"],
        env=process_env(xbctl),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    chunk = b"# " + b"x" * 4093 + b"\n"
    sent = 0
    pipe, reader.stdin = reader.stdin, None
    try:
        while sent < 64 * MAX_SETTINGS_BYTES:
            pipe.write(chunk)
            pipe.flush()
            sent += len(chunk)
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            pipe.close()
    stdout, stderr = reader.communicate(timeout=60)
    assert reader.returncode == 2 and b"larger than" in stderr, (reader.returncode, stderr)
    # What the pipe and the reader's buffer hold beyond the limit, at most: far from all of it.
    assert sent < 2 * MAX_SETTINGS_BYTES, sent


# ---------------------------------------------------------------- settings files: lines


@pytest.mark.parametrize(
    "separator",
    ["\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r", "\x00"],
    ids=["VT", "FF", "FS", "GS", "RS", "NEL", "LS", "PS", "CR", "NUL"],
)
def test_only_newline_ends_a_line(xbctl, tmp_path, separator):
    path = tmp_path / "balloon.conf"
    path.write_text(
        f"# one physical line, two settings?\nmachdep.xen.balloon.target=600M{separator}machdep.xen.balloon.min=200M\n",
        newline="",
    )
    before = xbctl.snapshot()
    outcome = xbctl("-d", "web", "-f", str(path))
    assert_clean_failure(outcome, 2, f"{path}:2: unexpected character U+{ord(separator):04X}")
    assert xbctl.snapshot() == before


@pytest.mark.parametrize("separator", ["\v", "\f", "\x85", "\u2028", "\u2029"])
def test_odd_characters_in_comments_do_not_shift_line_numbers(xbctl, tmp_path, separator):
    path = tmp_path / "balloon.conf"
    path.write_text(f"# note{separator}more note\nmachdep.xen.balloon.colour=blue\n", newline="")
    assert_clean_failure(xbctl("-f", str(path)), 4, f"{path}:2: machdep.xen.balloon.colour: unknown node")


@pytest.mark.parametrize(
    "line",
    [
        "machdep.xen.balloon.target\u00a0=600M",  # no-break space
        "machdep.xen.balloon.target=\u2003600M",  # em space
        "\u3000machdep.xen.balloon.target=600M",  # ideographic space
        "machdep.xen.balloon.target=600M\u200b",  # zero-width space
        "machdep.xen.balloon.target=６００M",  # full-width digits
        "machdep.xen.balloon.target?=600M\x1b[2J",
    ],
    ids=["nbsp", "em-space", "ideographic-space", "zero-width", "full-width", "escape"],
)
def test_only_ascii_blanks_are_stripped_and_other_characters_are_errors(xbctl, tmp_path, line):
    path = tmp_path / "balloon.conf"
    path.write_text(f"# web\n{line}\n")
    before = xbctl.snapshot()
    assert_clean_failure(xbctl("-d", "web", "-f", str(path)), 2, f"{path}:2: unexpected character U+")
    assert xbctl.snapshot() == before


def test_crlf_lines_tabs_and_spaces_are_accepted(xbctl, tmp_path):
    path = tmp_path / "balloon.conf"
    path.write_bytes(b"# saved on another system\r\n \tmachdep.xen.balloon.target\t= 600M \t# a comment\r\n\r\n")
    outcome = xbctl("-d", "web", "-f", str(path))
    assert (outcome.status, outcome.stdout) == (0, f"machdep.xen.balloon.target: 786432 -> {600 * MIB}\n")


def test_a_carriage_return_inside_a_line_is_an_error(xbctl, tmp_path):
    path = tmp_path / "balloon.conf"
    path.write_bytes(b"machdep.xen.balloon.target=600M\r \n")
    assert_clean_failure(xbctl("-d", "web", "-f", str(path)), 2, f"{path}:1: unexpected character U+000D")


# ---------------------------------------------------------------- values read back


def test_a_node_value_beyond_the_size_limit_reads_as_malformed_and_the_limit_round_trips(xs, tmp_path):
    web = "/local/domain/1"
    xs.write(f"{web}/memory/static-max", "9" * 20)  # what xbctl cannot write back
    for args in (("-e", "-d", "web", "xen-max"), ("-d", "web", "-a")):
        assert_clean_failure(xs(*args), 3, f"{web}/memory/static-max", "not a number of KiB")
    xs.write(f"{web}/memory/static-max", str(MAX_KIB + 4))
    assert_clean_failure(xs("-e", "-d", "web", "xen-max"), 3, "not a number of KiB")
    xs.write(f"{web}/memory/static-max", str(MAX_KIB))  # the largest value: read, and accepted back
    saved = xs("-e", "-d", "web", "machdep.xen.balloon.xen-max", "machdep.xen.balloon.target")
    assert saved.stdout == f"[web]\nmachdep.xen.balloon.xen-max={MAX_KIB}\nmachdep.xen.balloon.target=786432\n", saved
    path = tmp_path / "web.conf"
    path.write_text(saved.stdout)
    restored = xs("-d", "web", "-f", str(path))
    assert restored.status == 0, restored
    assert xs.dom(1, "memory/static-max") == str(MAX_KIB)


# ---------------------------------------------------------------- absurd state


def test_absurd_numbers_in_the_state_fail_cleanly_and_sim_reset_recovers(xbctl):
    state = json.loads(xbctl.state_path.read_text())
    state["offset_s"] = 1e308
    xbctl.state_path.write_text(json.dumps(state))
    for args in (["-a"], ["mem-set", "web", "512"], ["sim", "advance", "1"]):
        outcome = xbctl.process(*args)
        assert_clean_failure(outcome, 3, "is corrupt", "bad offset_s", "xbctl sim reset")
    reset = xbctl.process("sim", "reset", "--clock", "manual")
    assert reset.status == 0 and "Traceback" not in reset.stderr, reset
    assert xbctl.value("target", "web") == 768 * MIB


# ---------------------------------------------------------------- Ctrl-C at start-up


INTERRUPT_HOOK = Path(__file__).resolve().parent / "interrupt"  # its sitecustomize.py interrupts a run


def _interrupted_run(xbctl: Xbctl, args: list[str], at: str, report: Path | None = None) -> subprocess.CompletedProcess:
    """The installed xbctl ARGS, sent SIGINT at profiler event AT of its run (see interrupt/sitecustomize.py)."""
    env = process_env(
        xbctl,
        PYTHONPATH=str(INTERRUPT_HOOK),
        PYTHONHASHSEED="0",
        XBCTL_TEST_INTERRUPT=at,
        XBCTL_TEST_INTERRUPT_REPORT=str(report or ""),
    )
    return subprocess.run([installed_xbctl(), *args], env=env, capture_output=True, text=True, timeout=60)


def test_ctrl_c_at_any_moment_of_start_up_is_quiet(xbctl, tmp_path):
    """The installed xbctl, interrupted at chosen moments of its run, each one exactly.

    A run with a profiler counts the events of an uninterrupted run (every Python or C function
    called or returning, from the moment xbctl's own handler is in place: before that it is
    Python's start-up, not xbctl's) and where its landmarks fall: the start of each of xbctl's
    modules, each change of SIGINT's handler, the first output, the end. SIGINT is then sent
    at the moments where something changes: on either side of and at each change of SIGINT's
    handler (xbctl's quiet early exit, then KeyboardInterrupt, then ignored once the work is
    done), the first and the last module started under each handler, a callback Python runs
    from the garbage collector (where an exception can only be reported), the first output,
    the end; and at moments spread evenly between. Each run either ends at once, quietly (status
    130, one line `xbctl: interrupted`), or, once Ctrl-C is ignored again, finishes as if
    nothing happened; never a traceback, never a Ctrl-C lost while xbctl works.
    """
    args = ["-d", "web", "-a"]
    whole = subprocess.run(
        [installed_xbctl(), *args], env=process_env(xbctl), capture_output=True, text=True, timeout=60
    )
    assert whole.returncode == 0 and whole.stderr == "", whole
    report = tmp_path / "events"
    counted = _interrupted_run(xbctl, args, "count", report)
    assert (counted.returncode, counted.stdout, counted.stderr) == (0, whole.stdout, ""), counted
    assert report.exists(), "xbctl/__main__.py did not put its Ctrl-C handler in place before anything else"
    total_line, *landmark_lines = report.read_text().splitlines()
    total = int(total_line.split()[1])
    landmarks = [(int(index), what) for index, what in (line.split(" ", 1) for line in landmark_lines)]
    changes = [index for index, what in landmarks if what == "c_call signal.signal"]
    # SIGPIPE's default; SIGINT as KeyboardInterrupt for the run; SIGINT ignored once it is done.
    assert len(changes) == 3 and landmarks[-1] == (total, "os._exit"), landmarks
    ignored_from = changes[-1] + 1  # the return of signal.signal(SIGINT, SIG_IGN) in run()'s finally
    moments = {1, total - 1, total}
    for change in changes[1:]:
        moments.update((change - 1, change, change + 1))
    bounds = [0, *changes, total + 1]
    for low, high in zip(bounds, bounds[1:]):
        started = [index for index, what in landmarks if what.startswith("import ") and low < index < high]
        moments.update(started[:1] + started[-1:])
    moments.update(index for index, what in landmarks if what in ("write", "callback"))
    moments.update(range(total // 7, total, total // 7))
    quiet = []
    for at in sorted(moments):
        done = _interrupted_run(xbctl, args, str(at))
        assert "Traceback" not in done.stderr, (at, done.stderr)
        if done.returncode == 130:
            assert done.stderr == "xbctl: interrupted\n", (at, done.stderr)
            assert at < ignored_from, (at, "interrupted after Ctrl-C was ignored again")
            quiet.append(at)
        else:
            assert (done.returncode, done.stdout, done.stderr) == (0, whole.stdout, ""), (at, done)
            assert at >= ignored_from - 1, (at, "Ctrl-C went unnoticed while xbctl worked")
    assert 0 < len(quiet) < len(moments), (sorted(moments), quiet)  # both outcomes were met
    assert xbctl.process(*args).stdout == whole.stdout  # the simulated host as it was


# ---------------------------------------------------------------- output that fails after a write


def test_a_write_whose_output_fails_has_its_own_exit_status(xbctl):
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [installed_xbctl(), "-d", "web", "target", "600M"],
            env=process_env(xbctl),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
        assert done.returncode == 6, done
        assert done.stderr.startswith("xbctl: the write was made, but its output could not be written"), done
        assert xbctl.value("target", "web") == 600 * MIB
        for args in (["-d", "web", "-a"], ["--dry-run", "-d", "web", "target", "500M"]):
            done = subprocess.run(
                [installed_xbctl(), *args],
                env=process_env(xbctl),
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
            )
            assert done.returncode == 1 and "cannot write to standard output" in done.stderr, done
    assert xbctl.value("target", "web") == 600 * MIB  # the dry run wrote nothing


def test_a_write_to_a_closed_standard_output_exits_6(xbctl):
    done = subprocess.run(
        [installed_xbctl(), "--json", "-d", "web", "min", "200M"],
        env=process_env(xbctl),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(1),
    )
    assert done.returncode == 6, done
    assert xbctl.value("min", "web") == 200 * MIB


# ---------------------------------------------------------------- hostile strings


HOSTILE = "w\x1b]0;pwned\x07\x1b[2J\rOK\nxbctl: all good\x9b31m\u2028\u202e\x08"


def _hostile_host(xbctl: Xbctl) -> None:
    """Domain web (id 1) renamed to HOSTILE, its driver's diagnostic and log hostile too."""
    state = json.loads(xbctl.state_path.read_text())
    web = state["domains"][1]
    web["name"] = HOSTILE
    web["target_kib"] = web["current_kib"] - 4096  # not reached, and the driver has said why
    web["diagnostic"] = "stuck\x1b[1A\x1b[2K\rxbctl: done, target reached\x07"
    state["log"].append({"t": 1.0, "domain": HOSTILE, "message": web["diagnostic"]})
    xbctl.state_path.write_text(json.dumps(state))


def _run_raw(xbctl: Xbctl, *args: str) -> Outcome:
    """The installed xbctl ARGS, its output decoded as is (no newline translation hides a CR)."""
    done = subprocess.run([installed_xbctl(), *args], env=process_env(xbctl), capture_output=True, timeout=60)
    return Outcome(done.returncode, done.stdout.decode(), done.stderr.decode())


def _assert_terminal_safe(text: str) -> None:
    assert all(c.isprintable() or c == "\n" for c in text), ascii(text)


def test_strings_from_the_state_reach_the_terminal_escaped(xbctl):
    _hostile_host(xbctl)
    target_kib = xbctl.value("target", "1")
    runs = [
        _run_raw(xbctl, "list"),
        _run_raw(xbctl, "sim", "log"),
        _run_raw(xbctl, "-d", "1", "--wait", "target", str(target_kib)),  # the driver's word ends the wait
        _run_raw(xbctl, "-d", "1", "--wait", "--timeout", "0.2", "-w", "machdep.xen.balloon.min=300M"),
        _run_raw(xbctl, "-d", HOSTILE + "x", "-a"),  # an unknown name, quoted back
        _run_raw(xbctl, "--wait", "--timeout", "0", "mem-set", "1", str(target_kib // 1024 - 1)),
    ]
    for outcome in runs:
        assert "Traceback" not in outcome.stderr, outcome
        _assert_terminal_safe(outcome.stdout)
        _assert_terminal_safe(outcome.stderr)
        for line in outcome.stderr.splitlines():
            assert line.startswith("xbctl: "), outcome  # no line of the guest's making
        assert "\nxbctl: all good" not in outcome.stderr and "\nOK" not in outcome.stdout
    wait = runs[2]
    assert wait.status == 5, wait
    assert "\\x1b[1A\\x1b[2K\\rxbctl: done, target reached\\x07" in wait.stderr, wait
    assert "w\\x1b]0;pwned\\x07\\x1b[2J\\rOK\\nxbctl: all good\\x9b31m\\u2028\\u202e\\x08" in wait.stderr, wait
    assert "\\x1b]0;pwned" in runs[1].stdout  # sim log
    # JSON keeps the exact strings, JSON-escaped.
    document = xbctl("--json", "list").json()
    assert document["domains"][1]["name"] == HOSTILE
    raw = xbctl("--json", "list").stdout
    assert "\x1b" not in raw and "\x9b" not in raw
