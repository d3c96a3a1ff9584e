"""The real-xenstored harness works: Debian's C xenstored, its C clients and pyxs."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pyxs import Client
from pyxs._internal import Op
from pyxs.exceptions import ConnectionError as PyXSConnectionError
from pyxs.exceptions import PyXSError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xenharness import DEBIAN_PACKAGES, XenHarnessError, Xenstored, XenstoreError, ensure_tools  # noqa: E402


@pytest.fixture(scope="session")
def xen_tools():
    return ensure_tools()


@pytest.fixture(scope="module")
def xenstored(xen_tools, tmp_path_factory):
    with Xenstored(xen_tools, tmp_path_factory.mktemp("xenstored")) as daemon:
        yield daemon


@pytest.fixture
def pyxs_client(xenstored):
    with Client(unix_socket_path=str(xenstored.socket_path)) as c:
        yield c


def _bounded(fn, timeout=5.0):
    """Run fn in a thread; fail instead of hanging (pyxs waits forever)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} did not finish within {timeout}s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# ---------------------------------------------------------------- tools


def test_tools_are_unpacked_and_stamp_makes_second_call_instant(xen_tools):
    assert xen_tools.xenstored.name == "xenstored"
    assert os.access(xen_tools.xenstored, os.X_OK)
    for name in ("read", "write", "ls", "rm"):
        assert os.access(xen_tools.clients[name], os.X_OK)
    assert (xen_tools.lib_dir / "libxenstore.so.4").exists()
    assert (
        {"xen-utils-4.17", "xenstore-utils", "libxenstore4", "libxentoolcore1"}
        <= set(xen_tools.versions)
        == set(DEBIAN_PACKAGES)
    )
    assert all(v.startswith("4.17") for p, v in xen_tools.versions.items() if "xen" in p)
    t0 = time.monotonic()
    again = ensure_tools()
    assert time.monotonic() - t0 < 0.5
    assert again == xen_tools


def _dynsyms(path: Path, defined: bool) -> set[tuple[str, str]]:
    out = subprocess.run(["objdump", "-T", str(path)], check=True, capture_output=True, text=True).stdout
    syms = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3 or "DF" not in parts:
            continue
        und = "*UND*" in parts
        if und == defined:
            continue
        name = parts[-1]
        version = parts[-2].strip("()")
        syms.add((name, version))
    return syms


def test_stubs_export_every_versioned_symbol_xenstored_imports(xen_tools):
    wanted = {
        (n, v)
        for n, v in _dynsyms(xen_tools.xenstored, defined=False)
        if n.startswith(("xc_", "xenevtchn_", "xengnttab_"))
    }
    # What was measured when the harness was written: all must still be asked for.
    assert ("xc_domain_getinfo", "VERS_4.17.0") in wanted
    assert ("xenevtchn_fdopen", "VERS_1.2") in wanted
    assert ("xengnttab_map_grant_ref", "VERS_1.0") in wanted
    provided = set()
    for lib in ("libxenctrl.so.4.17", "libxenevtchn.so.1", "libxengnttab.so.1"):
        provided |= _dynsyms(xen_tools.stub_dir / lib, defined=True)
    assert wanted <= provided, wanted - provided
    env = dict(os.environ, LD_LIBRARY_PATH=str(xen_tools.stub_dir))
    ldd = subprocess.run(["ldd", str(xen_tools.xenstored)], env=env, check=True, capture_output=True, text=True).stdout
    assert "not found" not in ldd
    assert str(xen_tools.stub_dir / "libxenctrl.so.4.17") in ldd


# ---------------------------------------------------------------- daemon


def test_daemon_starts_answers_and_stops(xen_tools, tmp_path):
    daemon = Xenstored(xen_tools, tmp_path / "run")
    with daemon:
        assert daemon.running()
        assert daemon.answers()
        assert daemon.socket_path == tmp_path / "run" / "socket"
        assert daemon.socket_path.is_socket()
        assert int(daemon.pid_file.read_text()) == daemon.pid
        cmdline = Path(f"/proc/{daemon.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0] == bytes(xen_tools.xenstored)
        assert b"--no-fork" in cmdline and b"-D" not in cmdline
        # The daemon's own root entries exist.
        assert "/tool/xenstored" in daemon.xs_listing()
        pid = daemon.pid
    assert not daemon.running()
    assert not Path(f"/proc/{pid}").exists()
    assert not daemon.answers()


def test_daemon_is_idle_when_idle(xenstored):
    xenstored.xs_write("/harness/idle", "1")
    before = xenstored.cpu_seconds()
    time.sleep(1.0)
    used = xenstored.cpu_seconds() - before
    assert used < 0.05, f"xenstored used {used}s CPU in 1s while idle (busy loop?)"


def test_failed_start_raises_with_log(xen_tools, tmp_path):
    daemon = Xenstored(xen_tools, tmp_path / "bad", extra_args=("--quota", "bogus=1"))
    with pytest.raises(XenHarnessError, match="xenstored exited") as info:
        daemon.start()
    # The daemon's own complaint is in the exception text.
    assert 'FATAL: unknown quota "bogus=1"' in str(info.value)
    assert "xenstored.log" in str(info.value)
    assert not daemon.running()


def test_kill_makes_socket_stop_answering(xen_tools, tmp_path):
    with Xenstored(xen_tools, tmp_path / "k") as daemon:
        daemon.xs_write("/before/kill", "x")
        with Client(unix_socket_path=str(daemon.socket_path)) as c:
            assert c.read(b"/before/kill") == b"x"
        daemon.kill()
        assert not daemon.running()
        assert daemon.proc.returncode == -9
        assert not daemon.answers()
        with pytest.raises(XenHarnessError, match="xenstore-read"):
            daemon.xs_read("/before/kill")

        def connect():
            with Client(unix_socket_path=str(daemon.socket_path)) as c:
                c.read(b"/before/kill")

        with pytest.raises(PyXSConnectionError):
            _bounded(connect)


# ---------------------------------------------------------------- C clients


def test_c_write_then_c_read_roundtrip(xenstored):
    xenstored.xs_write("/harness/c/value", "hello world")
    assert xenstored.xs_read("/harness/c/value") == "hello world"
    # Raw mode: backslashes and newlines go through unchanged.
    xenstored.xs_write("/harness/c/raw", "a\\nb\nc")
    assert xenstored.xs_read("/harness/c/raw") == "a\\nb\nc"
    assert sorted(xenstored.xs_list("/harness/c")) == ["raw", "value"]
    assert xenstored.xs_exists("/harness/c/value")
    xenstored.xs_rm("/harness/c/value")
    assert not xenstored.xs_exists("/harness/c/value")
    with pytest.raises(XenHarnessError, match="couldn't read path"):
        xenstored.xs_read("/harness/c/value")


def test_listing_is_full_tree_with_perms(xenstored):
    xenstored.xs_write("/harness/list/a", "1")
    xenstored.xs_write("/harness/list/b/c", "two words")
    before = xenstored.xs_listing()
    assert '/harness/list/a = "1"   (n0)' in before.splitlines()
    assert '/harness/list/b/c = "two words"   (n0)' in before.splitlines()
    assert '/harness/list/b = ""   (n0)' in before.splitlines()
    xenstored.xs_write("/harness/list/a", "2")
    after = xenstored.xs_listing()
    changed = set(before.splitlines()) ^ set(after.splitlines())
    assert changed == {'/harness/list/a = "1"   (n0)', '/harness/list/a = "2"   (n0)'}
    assert xenstored.xs_ls("/harness/list", perms=False).splitlines() == [
        '/harness/list/a = "2"',
        '/harness/list/b = ""',
        '/harness/list/b/c = "two words"',
    ]


# ---------------------------------------------------------------- pyxs


def test_pyxs_and_c_clients_see_each_others_writes(xenstored, pyxs_client):
    xenstored.xs_write("/harness/mix/from-c", "c-value")
    assert pyxs_client.read(b"/harness/mix/from-c") == b"c-value"
    pyxs_client.write(b"/harness/mix/from-py", b"py-value")
    assert xenstored.xs_read("/harness/mix/from-py") == "py-value"
    assert sorted(pyxs_client.list(b"/harness/mix")) == [b"from-c", b"from-py"]


def test_pyxs_error_types(pyxs_client):
    with pytest.raises(PyXSError) as info:
        pyxs_client.read(b"/harness/does/not/exist")
    assert type(info.value) is PyXSError
    assert info.value.args[0] == errno.ENOENT
    with pytest.raises(PyXSError) as info:
        pyxs_client.execute_command(Op.READ, b"/harness/../x\x00")
    assert info.value.args[0] == errno.EINVAL


def test_introduce_domain_then_set_perms_naming_it(xenstored, pyxs_client):
    domid = 7
    base = f"/local/domain/{domid}".encode()
    pyxs_client.write(base + b"/memory/target", b"524288")
    # Before introduction the domain does not exist: it cannot own a node.
    with pytest.raises(PyXSError) as info:
        pyxs_client.set_perms(base, [f"b{domid}".encode()])
    assert info.value.args[0] == errno.ENOENT
    assert pyxs_client.is_domain_introduced(domid) is False

    pyxs_client.introduce_domain(domid, 0x1234, 5)
    assert pyxs_client.is_domain_introduced(domid) is True
    pyxs_client.set_perms(base, [f"n{domid}".encode(), b"r0"])
    pyxs_client.set_perms(base + b"/memory", [b"n0", f"r{domid}".encode()])
    assert pyxs_client.get_perms(base) == [f"n{domid}".encode(), b"r0"]
    assert pyxs_client.get_perms(base + b"/memory") == [b"n0", f"r{domid}".encode()]
    listing = xenstored.xs_listing().splitlines()
    assert f'/local/domain/{domid} = ""   (n{domid},r0)' in listing
    assert f'/local/domain/{domid}/memory = ""   (n0,r{domid})' in listing
    # The domain's permissions survive a later write by dom0 (it "exists").
    pyxs_client.write(base + b"/memory/target", b"262144")
    assert pyxs_client.get_perms(base) == [f"n{domid}".encode(), b"r0"]


def test_release_domain_removes_nodes_it_owns(xenstored, pyxs_client):
    domid = 8
    base = f"/local/domain/{domid}".encode()
    pyxs_client.write(base + b"/keep", b"1")
    pyxs_client.introduce_domain(domid, 1, 3)
    pyxs_client.write(base + b"/owned/leaf", b"x")
    pyxs_client.set_perms(base + b"/owned", [f"b{domid}".encode()])
    # pyxs refuses release_domain client-side unless /proc/xen/capabilities
    # says control_d; send the request directly.
    pyxs_client.ack(Op.RELEASE, str(domid).encode() + b"\x00")
    assert pyxs_client.is_domain_introduced(domid) is False
    assert pyxs_client.read(base + b"/keep") == b"1"
    assert not pyxs_client.exists(base + b"/owned")


def test_transaction_conflict_gives_eagain(xenstored, pyxs_client):
    path = b"/harness/tx/value"
    pyxs_client.write(path, b"0")
    with Client(unix_socket_path=str(xenstored.socket_path)) as other:
        pyxs_client.transaction()
        assert pyxs_client.read(path) == b"0"
        pyxs_client.write(path, b"from-transaction")
        other.write(path, b"from-outside")
        with pytest.raises(PyXSError) as info:
            pyxs_client.ack(Op.TRANSACTION_END, b"T\x00")
        pyxs_client.tx_id = 0
        assert info.value.args[0] == errno.EAGAIN
        assert pyxs_client.read(path) == b"from-outside"
        # pyxs's own commit() turns that EAGAIN into a False return.
        pyxs_client.transaction()
        pyxs_client.read(path)
        other.write(path, b"again")
        assert pyxs_client.commit() is False
        # Without interference the transaction commits.
        pyxs_client.transaction()
        pyxs_client.write(path, b"committed")
        assert pyxs_client.commit() is True
    assert xenstored.xs_read("/harness/tx/value") == "committed"


def test_watch_fires_on_registration_and_on_change(xenstored, pyxs_client):
    path = b"/harness/watch/target"
    pyxs_client.write(path, b"1")
    with Client(unix_socket_path=str(xenstored.socket_path)) as watcher:
        monitor = watcher.monitor()
        monitor.watch(path, b"tok")
        events = monitor.wait()
        first = _bounded(lambda: next(events))
        assert (first.path, first.token) == (path, b"tok")
        xenstored.xs_write("/harness/watch/target", "2")  # C client writes
        second = _bounded(lambda: next(events))
        assert (second.path, second.token) == (path, b"tok")
        assert watcher.read(path) == b"2"
        monitor.unwatch(path, b"tok")


def test_special_watches_for_domain_introduction(xenstored, pyxs_client):
    with Client(unix_socket_path=str(xenstored.socket_path)) as watcher:
        monitor = watcher.monitor()
        monitor.watch(b"@introduceDomain", b"intro")
        events = monitor.wait()
        assert _bounded(lambda: next(events)).token == b"intro"  # registration
        pyxs_client.introduce_domain(9, 1, 4)
        assert _bounded(lambda: next(events)) == (b"@introduceDomain", b"intro")
        monitor.unwatch(b"@introduceDomain", b"intro")


# ---------------------------------------------------------------- a guest's ring


def test_unprivileged_domain_over_its_ring(xenstored, pyxs_client):
    domid = 11
    base = f"/local/domain/{domid}"
    pyxs_client.write(f"{base}/memory/target".encode(), b"1024")
    pyxs_client.write(f"{base}/secret".encode(), b"dom0-only")
    pyxs_client.introduce_domain(domid, 1, 6)
    pyxs_client.set_perms(base.encode(), [f"n{domid}".encode()])
    for node in ("/memory", "/memory/target"):
        pyxs_client.set_perms(f"{base}{node}".encode(), [b"n0", f"r{domid}".encode()])
    pyxs_client.set_perms(f"{base}/secret".encode(), [b"n0"])
    with xenstored.domain_ring(domid) as guest:
        # Relative paths are relative to the domain's home, as for a guest.
        assert guest.read("memory/target") == "1024"
        assert guest.read(f"{base}/memory/target") == "1024"
        with pytest.raises(XenstoreError) as info:
            guest.write("memory/target", "1")  # read-only for the guest
        assert (info.value.errno, info.value.name) == (errno.EACCES, "EACCES")
        with pytest.raises(XenstoreError) as info:
            guest.read("secret")
        assert info.value.errno == errno.EACCES
        with pytest.raises(XenstoreError) as info:
            guest.read("nothing/here")
        assert info.value.errno == errno.ENOENT
        # The guest may write below its own home; new nodes are its own.
        guest.write("data/balloon/current", "1024")
        assert xenstored.xs_read(f"{base}/data/balloon/current") == "1024"
        assert f'{base}/data/balloon/current = "1024"   (n{domid})' in xenstored.xs_listing().splitlines()
        # Watches fire on the ring: on registration, then on dom0's write.
        guest.watch("memory/target", "t")
        assert guest.wait_event() == ("memory/target", "t")
        xenstored.xs_write(f"{base}/memory/target", "2048")
        assert guest.wait_event() == ("memory/target", "t")
        assert guest.read("memory/target") == "2048"
        # Transaction conflict on the ring: EAGAIN.
        tx = guest.transaction_start()
        guest.write("data/x", "guest", tx_id=tx)
        pyxs_client.write(f"{base}/data/x".encode(), b"dom0")
        with pytest.raises(XenstoreError) as info:
            guest.transaction_end(tx)
        assert info.value.errno == errno.EAGAIN
        assert guest.read("data/x") == "dom0"


def test_ring_needs_introduction(xenstored):
    with pytest.raises(XenHarnessError, match="introduce the domain first"):
        xenstored.domain_ring(4321)
