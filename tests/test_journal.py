"""The record of every change in the system log (xbctl.journal): what arrives at a syslog
socket this test owns (XBCTL_SYSLOG_SOCKET), from the command line, -f, the policy service
and the Python API; nothing for a dry run or a node that held its value already."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import tempfile

import pytest
from conftest import assert_clean_failure

from xbctl.api import Xbctl

MIB = 1024
USER = pwd.getpwuid(os.geteuid()).pw_name
# syslog(3) on the local socket (RFC 3164, no host name): <PRI>Mmm dd hh:mm:ss xbctl[PID]: MESSAGE
RECORD = re.compile(r"<(\d+)>([A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d) xbctl\[(\d+)\]: (.*)")
NOTICE_USER, INFO_USER = 1 * 8 + 5, 1 * 8 + 6


class SyslogSocket:
    """A unix datagram socket standing where /dev/log would, and what arrived at it."""

    def __init__(self) -> None:
        # A short directory of its own: a socket's path has room for 107 bytes only.
        self.directory = tempfile.mkdtemp(prefix="xbctl-log-")
        self.path = os.path.join(self.directory, "log")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        # The record is on (the suite switches it off elsewhere), towards this socket.
        self.env = {"XBCTL_SYSLOG": None, "XBCTL_SYSLOG_SOCKET": self.path}
        self.pids: list[int] = []  # the sender's pid, of each record in turn

    def records(self) -> list[tuple[int, str]]:
        """(priority, message) of every line sent so far (a datagram is queued once send returns)."""
        found = []
        while True:
            try:
                datagram = self.sock.recv(65536).decode()
            except BlockingIOError:
                return found
            match = RECORD.fullmatch(datagram)
            assert match, datagram
            found.append((int(match.group(1)), match.group(4)))
            self.pids.append(int(match.group(3)))

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.directory)


@pytest.fixture
def syslog():
    log = SyslogSocket()
    yield log
    log.close()


def who(via: str, origin: str | None = None, transport: str = "sim", sudo_user: str | None = None) -> str:
    return (
        f"user={USER}"
        + (f" sudo_user={sudo_user}" if sudo_user else "")
        + f" via={via}"
        + (f" origin={origin}" if origin else "")
        + f" transport={transport}"
    )


def test_a_command_line_write_records_each_changed_node(xbctl, syslog):
    outcome = xbctl("-d", "web", "target=512M", "min=200M", env={**syslog.env, "SUDO_USER": "alice"})
    assert outcome.status == 0, outcome
    assert outcome.stderr == ""
    assert syslog.records() == [
        (
            NOTICE_USER,
            f"change domain=web domid=1 node=machdep.xen.balloon.target old_kib={768 * MIB} "
            f"new_kib={512 * MIB} " + who("command", sudo_user="alice"),
        ),
        (
            NOTICE_USER,
            f"change domain=web domid=1 node=machdep.xen.balloon.min old_kib={128 * MIB} "
            f"new_kib={200 * MIB} " + who("command", sudo_user="alice"),
        ),
    ]


def test_the_installed_command_records_with_its_own_pid(xbctl, syslog):
    outcome = xbctl.process("mem-set", "db", "1G", env=syslog.env)
    assert outcome.status == 0, outcome
    [(priority, message)] = syslog.records()
    assert (priority, message) == (
        NOTICE_USER,
        f"change domain=db domid=2 node=machdep.xen.balloon.target old_kib={1536 * MIB} new_kib={1024 * MIB} "
        + who("command"),
    )
    assert syslog.pids[0] not in (os.getpid(), 0)


def test_a_dry_run_and_an_unchanged_value_record_nothing(xbctl, syslog):
    assert xbctl("-d", "web", "--dry-run", "target=512M", env=syslog.env).status == 0
    unchanged = xbctl("-d", "web", "target=768M", env=syslog.env)
    assert unchanged.status == 0 and "(unchanged)" in unchanged.stdout, unchanged
    assert syslog.records() == []


def test_a_refusal_is_recorded_at_a_lower_priority_and_changes_nothing(xbctl, syslog):
    before = xbctl.snapshot()
    outcome = xbctl("mem-set", "web", "0", env=syslog.env)
    assert_clean_failure(outcome, 1, "below min")
    [(priority, message)] = syslog.records()
    assert priority == INFO_USER
    assert message.startswith(f'refused domain=web domid=1 {who("command")} reason="')
    assert "below min 128 MiB" in message
    assert xbctl.snapshot() == before
    # A dry run that would be refused records nothing either.
    assert xbctl("mem-set", "web", "0", "--dry-run", env=syslog.env).status == 1
    assert syslog.records() == []


def test_a_settings_file_records_the_line_that_set_each_node(xbctl, syslog, tmp_path):
    settings = tmp_path / "host.conf"
    settings.write_text("[web]\ntarget = 600M\ntarget = 640M\n[db]\nmin = 600M\ntarget ?= 100G\n")
    outcome = xbctl("-f", str(settings), env=syslog.env)
    assert outcome.status == 0, outcome
    records = syslog.records()
    assert records[:2] == [
        # What was written: the first value to the last, credited to the line that set it last.
        (
            NOTICE_USER,
            f"change domain=web domid=1 node=machdep.xen.balloon.target old_kib={768 * MIB} "
            f"new_kib={640 * MIB} " + who("command", f"{settings}:3"),
        ),
        (
            NOTICE_USER,
            f"change domain=db domid=2 node=machdep.xen.balloon.min old_kib={512 * MIB} "
            f"new_kib={600 * MIB} " + who("command", f"{settings}:5"),
        ),
    ]
    # `name?=value` refused is skipped, and recorded as such.
    [(priority, message)] = records[2:]
    assert priority == INFO_USER
    assert message.startswith(f'skipped domain=db domid=2 {who("command")} reason="{settings}:6: ')


def test_the_policy_service_records_its_changes(xbctl, syslog, tmp_path):
    conf = tmp_path / "root" / "etc" / "xbctl.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("[web]\nmin = 200M\n")
    env = {**syslog.env, "XBCTL_CONF_ROOT": str(tmp_path / "root"), "XBCTL_RUNTIME_DIR": str(tmp_path / "run")}
    outcome = xbctl("policy", env=env)
    assert outcome.status == 0, outcome
    assert syslog.records() == [
        (
            NOTICE_USER,
            f"change domain=web domid=1 node=machdep.xen.balloon.min old_kib={128 * MIB} "
            f"new_kib={200 * MIB} " + who("policy", f"{conf}:2"),
        ),
    ]
    # Configured once: a second pass rewrites nothing, and records nothing.
    assert xbctl("policy", "--reapply", env=env).status == 0
    assert syslog.records() == []


def test_the_python_api_records_its_writes(xbctl, syslog, monkeypatch):
    monkeypatch.delenv("XBCTL_SYSLOG")
    monkeypatch.setenv("XBCTL_SYSLOG_SOCKET", syslog.path)
    with Xbctl("sim", str(xbctl.state_path)) as xb:
        assert xb.apply("mail", {"target": "400M"}).changed
        xb.apply("mail", {"target": "300M"}, dry_run=True)
    assert syslog.records() == [
        (
            NOTICE_USER,
            f"change domain=mail domid=3 node=machdep.xen.balloon.target old_kib={512 * MIB} "
            f"new_kib={400 * MIB} " + who("api"),
        ),
    ]


def test_a_missing_log_socket_is_a_note_and_the_write_stands(xbctl, tmp_path):
    outcome = xbctl(
        "-d", "web", "target=512M", env={"XBCTL_SYSLOG": None, "XBCTL_SYSLOG_SOCKET": str(tmp_path / "no-such-log")}
    )
    assert outcome.status == 0, outcome
    assert outcome.stdout.startswith("machdep.xen.balloon.target: 786432 -> 524288")
    assert outcome.stderr == (
        f"xbctl: note: not recorded in the system log ({tmp_path}/no-such-log: No such file or directory); "
        "XBCTL_SYSLOG=off goes without the record\n"
    )
    assert xbctl.value("target", "web") == 512 * MIB


def test_switched_off_nothing_is_sent(xbctl, syslog):
    outcome = xbctl("-d", "web", "target=512M", env={**syslog.env, "XBCTL_SYSLOG": "off"})
    assert (outcome.status, outcome.stderr) == (0, "")
    assert syslog.records() == []


def test_a_bad_switch_fails_before_anything_is_written(xbctl, syslog):
    before = xbctl.snapshot()
    outcome = xbctl("-d", "web", "target=512M", env={**syslog.env, "XBCTL_SYSLOG": "of"})
    assert_clean_failure(outcome, 2, "XBCTL_SYSLOG=of: neither on nor off")
    assert xbctl.snapshot() == before
    assert syslog.records() == []
