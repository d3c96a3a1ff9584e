"""When Xenstore is missing, stuck, killed or says no: named errors, exit statuses, no hangs."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
from conftest import assert_clean_failure
from xen_fixtures import XenHost

WEB = "/local/domain/1"


def test_no_daemon_at_the_socket_path(xs, tmp_path):
    missing = tmp_path / "nothing" / "socket"
    for env in ({"XENSTORED_PATH": str(missing)}, {"XENSTORED_PATH": None, "XENSTORED_RUNDIR": str(missing.parent)}):
        outcome = xs.process("-d", "web", "-a", env=env, timeout=30)
        assert_clean_failure(outcome, 3, f"Xenstore at {missing}", "is xenstored running?")
        assert xs("-d", "web", "target", "600M", env=env).status == 3


def test_socket_nobody_listens_on(xs, tmp_path):
    stale = tmp_path / "socket"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(stale))
    listener.close()  # the file stays, as after a crash
    outcome = xs.process("mem-set", "web", "600", env={"XENSTORED_PATH": str(stale)}, timeout=30)
    assert_clean_failure(outcome, 3, f"Xenstore at {stale}", "Connection refused")


def test_auto_transport_picks_xenstore_when_its_socket_is_there(xs, tmp_path):
    env = {"XBCTL_TRANSPORT": None, "XBCTL_SIM_STATE": str(tmp_path / "sim.json")}
    assert xs.process("--json", "-d", "web", "target", env=env).json()["transport"] == "xenstore"
    # A Xenstore named but not there (a typo, a dead daemon) fails; it never falls back to the simulator.
    for name, value in (("XENSTORED_PATH", tmp_path / "absent"), ("XENSTORED_RUNDIR", tmp_path / "absent-dir")):
        typo = {**env, "XENSTORED_PATH": None, name: str(value)}
        assert_clean_failure(xs.process("-d", "web", "mem-set", "web", "512", env=typo), 3, str(value))
    # Nothing named and nothing there: the simulator.
    nothing = {**env, "XENSTORED_PATH": None, "XENSTORED_RUNDIR": None}
    assert xs.process("--json", "-d", "web", "target", env=nothing).json()["transport"] == "sim"


def test_stopped_daemon_times_out_instead_of_hanging(private_xs: XenHost):
    os.kill(private_xs.daemon.pid, signal.SIGSTOP)
    try:
        outcome = private_xs.process("-d", "web", "target", "600M", env={"XBCTL_XENSTORE_TIMEOUT": "0.5"}, timeout=30)
    finally:
        os.kill(private_xs.daemon.pid, signal.SIGCONT)
    assert_clean_failure(outcome, 3, str(private_xs.socket_path), "no reply within 0.5 s")
    assert private_xs.read(f"{WEB}/memory/target") == "786432"


def test_daemon_killed_during_wait_ends_with_exit_3(private_xs: XenHost):
    # A driver that published its state once and never moves.
    private_xs.write(f"{WEB}/control/feature-balloon", "1")
    private_xs.write(f"{WEB}/data/balloon/current", "786432")
    waiting = private_xs.popen("-d", "web", "--wait", "target", "600M")
    try:
        first = waiting.stderr.readline()  # the first progress line (after the note): it is waiting now
        while first.startswith("xbctl: note: "):
            first = waiting.stderr.readline()
        assert first == "xbctl: web: current 786432 KiB, target 614400 KiB\n", first
        private_xs.daemon.kill()
        stdout, stderr = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == 3, (stdout, stderr)
    assert stderr.startswith(f"xbctl: Xenstore at {private_xs.socket_path}: connection lost"), stderr
    assert "Traceback" not in stderr
    assert stdout == "machdep.xen.balloon.target: 786432 -> 614400\n"  # the write happened before the wait


def test_daemon_killed_before_a_command(private_xs: XenHost):
    private_xs.daemon.kill()
    outcome = private_xs.process("-d", "web", "-a", timeout=30)
    assert_clean_failure(outcome, 3, f"Xenstore at {private_xs.socket_path}")


# ---------------------------------------------------------------- inside a guest


def test_guest_sees_its_own_domain(xs):
    outcome = xs.guest("--json", "-a")
    assert outcome.status == 0, outcome
    document = outcome.json()
    assert document["domain"] == {"id": 3, "name": "mail"}
    assert document["nodes"]["target"]["value_kib"] == 524288


def test_guest_reading_another_domain_gets_eacces(xs):
    before = xs.listing()
    outcome = xs.guest("-d", "1", "-a")
    assert_clean_failure(outcome, 1, "/local/domain/1", "Permission denied (EACCES)")
    json_outcome = xs.guest("--json", "-d", "1", "target")
    assert json_outcome.status == 1
    assert json_outcome.json()["error"]["errno"] == "EACCES"
    # By name it is simply not there: a guest cannot see the others' names.
    assert_clean_failure(xs.guest("-d", "web", "target", "200M"), 4, "unknown domain")
    assert xs.listing() == before


def test_guest_write_to_a_read_only_node_gets_eacces_and_changes_nothing(xs):
    before = xs.listing()
    outcome = xs.guest("target", "400M")
    assert_clean_failure(outcome, 1, "/local/domain/3/memory/target", "Permission denied (EACCES)")
    assert xs.listing() == before


def test_guest_may_not_set_xen_max(xs):
    before = xs.listing()
    outcome = xs.guest("xen-max", "1G")
    assert_clean_failure(outcome, 1, "Operation not permitted", "only the host administrator sets xen-max")
    assert_clean_failure(xs.guest("mem-max", "mail", "1024"), 1, "only the host administrator")
    assert xs.listing() == before


@pytest.mark.parametrize("name, errno_name", [("EQUOTA", "EQUOTA"), ("ENOSPC", "ENOSPC"), ("E2BIG", "E2BIG")])
def test_xenstore_error_names_survive(name, errno_name):
    from xbctl.errors import ExitStatus
    from xbctl.transports.xenstore.transport import XenstoreReplyError, XenstoreTransport

    error = XenstoreTransport.error_for(None, XenstoreReplyError(name), "/local/domain/1/memory/target")  # type: ignore[arg-type]
    assert error.errno_name == errno_name
    assert f"({name})" in error.message and "errno 0" not in error.message
    assert error.status == ExitStatus.REFUSED


def test_xenstored_path_that_is_no_socket_or_device_is_left_alone(xs, tmp_path):
    settings = tmp_path / "a.conf"
    settings.write_text("machdep.xen.balloon.target=600M\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    directory = tmp_path / "dir"
    directory.mkdir()
    for path in (settings, fifo, directory):
        env = {"XENSTORED_PATH": str(path), "XBCTL_XENSTORE_TIMEOUT": "1"}
        for args in (("--transport", "xenstore", "-a"), ("-d", "web", "target", "600M")):
            outcome = xs.process(*args, env=env, timeout=30)
            assert_clean_failure(outcome, 3, f"Xenstore at {path}", "not a socket or xenbus device")
    assert settings.read_text() == "machdep.xen.balloon.target=600M\n"
    assert xs.read(f"{WEB}/memory/target") == "786432"


def waiting_in_connect(pid: int) -> bool:
    """True while process PID sleeps in connect(), waiting for room in a listen queue."""
    try:
        with open(f"/proc/{pid}/wchan") as wchan:
            return wchan.read() == "unix_wait_for_peer"
    except OSError:
        return False


def test_a_burst_of_clients_waits_for_a_busy_daemon_instead_of_failing(private_xs: XenHost):
    # 100 clients at once while xenstored is busy (stopped): its listen queue fills, and
    # each client waits in connect() for room, as libxenstore's clients do, within its deadline.
    clients = 100
    env = {"XBCTL_XENSTORE_TIMEOUT": "120"}
    os.kill(private_xs.daemon.pid, signal.SIGSTOP)
    processes = []
    try:
        processes = [private_xs.popen("-n", "-d", "1", "target", env=env) for _ in range(clients)]
        # Until (nearly) every one has come to connect(): the few the queue holds wait for
        # their reply instead, and a client that fails at once has ended.
        deadline = time.monotonic() + 180
        while sum(p.poll() is not None or waiting_in_connect(p.pid) for p in processes) < clients - 10:
            assert time.monotonic() < deadline, "the clients never came to connect()"
            time.sleep(0.05)
        time.sleep(1.0)  # busy for another second
    finally:
        os.kill(private_xs.daemon.pid, signal.SIGCONT)
    outcomes = [(p.wait(timeout=180), *p.communicate()) for p in processes]
    failed = [outcome for outcome in outcomes if outcome[0] != 0]
    assert not failed, (len(failed), failed[:3])
    assert all(out == "786432\n" for _status, out, _err in outcomes)


def test_a_listen_queue_that_stays_full_fails_clearly_at_the_deadline(xs, tmp_path):
    # A listener that never accepts: its queue fills, and the client gives up at its deadline.
    path = tmp_path / "socket"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)
    queued = []
    try:
        while True:
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            filler.setblocking(False)
            try:
                filler.connect(str(path))
            except BlockingIOError:
                filler.close()
                break
            queued.append(filler)
        outcome = xs.process(
            "-n", "-d", "1", "target", env={"XENSTORED_PATH": str(path), "XBCTL_XENSTORE_TIMEOUT": "0.5"}
        )
    finally:
        for sock in (*queued, listener):
            sock.close()
    assert_clean_failure(outcome, 3, f"Xenstore at {path}", "no connection within 0.5 s", "is xenstored running?")
