"""Fixtures for running xbctl against Debian's real C xenstored (see tests/xenharness).

One daemon per test session; before each test the host is laid out again as libxl
lays out /local/domain. `xs` runs xbctl against it from the host (Domain-0, over the
socket), `xs.guest(...)` runs it inside guest "mail" (domain 3), whose xenbus device
is a pseudo-terminal relayed byte for byte onto the domain's real ring.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path

import pytest
from pyxs import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import Outcome, cli_runner  # noqa: E402
from xenharness import Xenstored, ensure_tools  # noqa: E402
from xenharness.hypervisor import Domain, FakeHypervisor, preload_client_libs, run_xl  # noqa: E402

from xbctl.cli import app  # noqa: E402

MIB = 1024
GIB = 1024 * MIB
GUEST_ID = 3  # the domain that can be played over its ring
OTHER_DOMAINS = (1, 2, 4, 5)  # exist for the stub hypervisor, so permissions may name them

# id -> (name, static-max KiB, target KiB); a domain's nodes are laid out as libxl does.
LAYOUT = {
    0: ("Domain-0", 4 * GIB, 4 * GIB),
    1: ("web", 1 * GIB, 768 * MIB),
    2: ("db", 2 * GIB, 1536 * MIB),
    GUEST_ID: ("mail", 512 * MIB, 512 * MIB),
    4: ("web ", 256 * MIB, 256 * MIB),  # a name that differs from "web" only by a blank
    5: ("7", 256 * MIB, 256 * MIB),  # a name that looks like an id
}


class GuestBus:
    """A pseudo-terminal that plays /dev/xen/xenbus for one guest: bytes go to its ring and back."""

    def __init__(self, daemon: Xenstored, domid: int) -> None:
        self.daemon = daemon
        self.ring = daemon.domain_ring(domid)
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        # The harness's ring speaks whole requests; the relay needs its byte-level half.
        last_kick = 0.0
        while not self.stopping.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.002)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    data = b""
                if data:
                    self.ring._send(data, time.monotonic() + 5)
            if not self.daemon.running():
                continue
            available = self.ring._available()
            if available:
                os.write(self.master, self.ring._take(available))
            elif time.monotonic() - last_kick > 0.02:
                self.daemon.kick()  # let the daemon notice output it holds back for a full ring
                last_kick = time.monotonic()

    def flush(self) -> None:
        """Forget bytes an earlier guest process left unread."""
        termios.tcflush(self.slave, termios.TCIOFLUSH)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)
        self.ring.close()


class XenHost:
    """xbctl against the session's xenstored, with the C clients to check what it did."""

    def __init__(self, daemon: Xenstored, guest_bus: GuestBus | None = None, runtime_dir: Path | None = None) -> None:
        self.daemon = daemon
        self.socket_path = daemon.socket_path
        self.guest_bus = guest_bus
        # policy's record of configured domains: the test's own, never the machine's /run/xbctl.
        self.runtime_dir = runtime_dir
        self.env = {
            "XBCTL_RUNTIME_DIR": str(runtime_dir) if runtime_dir is not None else "/nonexistent/never-used",
            "XENSTORED_PATH": str(self.socket_path),
            "XENSTORED_RUNDIR": None,
            "XBCTL_TRANSPORT": "xenstore",
            "XBCTL_XENSTORE_TIMEOUT": "10",
            "NO_COLOR": "1",
            "XBCTL_DEBUG": None,
            "XBCTL_SIM_STATE": "/nonexistent/never-used",
            # A guest's own Linux driver only where a test lays one out (tests/linux_sysfs_model.py):
            # never the sysfs of a machine the suite happens to run on inside a Xen guest.
            "XBCTL_SYSFS_ROOT": "/nonexistent/never-used",
        }

    # xbctl runs
    def __call__(self, *args: str, env: dict | None = None) -> Outcome:
        """xbctl ARGS in-process (Typer's runner), from the host."""
        result = cli_runner().invoke(app, list(args), env={**self.env, **(env or {})}, catch_exceptions=False)
        return Outcome(result.exit_code, result.stdout, result.stderr)

    def process_env(self, env: dict | None = None) -> dict:
        merged = {**os.environ, **self.env, **(env or {})}
        return {k: v for k, v in merged.items() if v is not None}

    def process(self, *args: str, env: dict | None = None, timeout: float = 60) -> Outcome:
        """The installed xbctl ARGS as a separate process, from the host."""
        done = subprocess.run(
            [xbctl_command(), *args],
            env=self.process_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Outcome(done.returncode, done.stdout, done.stderr)

    def popen(self, *args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
        """Start the installed xbctl ARGS in the background (stdout/stderr piped, text)."""
        return subprocess.Popen(
            [xbctl_command(), *args],
            env=self.process_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            **kwargs,
        )

    def guest_env(self) -> dict:
        return {"XENSTORED_PATH": self.guest_bus.path}

    def guest(self, *args: str, timeout: float = 60) -> Outcome:
        """The installed xbctl ARGS inside guest mail (domain 3), over its xenbus device."""
        self.guest_bus.flush()
        return self.process(*args, env=self.guest_env(), timeout=timeout)

    # C clients
    def read(self, path: str) -> str:
        return self.daemon.xs_read(path)

    def write(self, path: str, value: str) -> None:
        self.daemon.xs_write(path, value)

    def exists(self, path: str) -> bool:
        return self.daemon.xs_exists(path)

    def rm(self, path: str) -> None:
        self.daemon.xs_rm(path)

    def listing(self) -> str:
        """The whole tree with permissions, to prove a command changed nothing."""
        return self.daemon.xs_listing()

    def dom(self, domid: int, rel: str) -> str:
        return self.read(f"/local/domain/{domid}/{rel}")

    def wait_for(self, predicate, what: str, timeout_s: float = 20.0) -> None:
        """Poll PREDICATE until true; fail (not hang) after TIMEOUT_S."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)


def xbctl_command() -> str:
    return shutil.which("xbctl") or str(Path(sys.executable).with_name("xbctl"))


def lay_out_host(client: Client) -> None:
    """Write /local/domain as libxl would for LAYOUT, after removing whatever was there."""
    if client.exists(b"/local/domain"):
        for child in client.list(b"/local/domain"):
            client.delete(b"/local/domain/" + child)
    if client.exists(b"/vm"):
        client.delete(b"/vm")
    for domid, (name, static_max_kib, target_kib) in LAYOUT.items():
        base = f"/local/domain/{domid}"
        client.mkdir(base.encode())
        if domid != 0:
            # The domain may read its home (new nodes inherit that); it owns control/ and data/.
            client.set_perms(base.encode(), [b"n0", f"r{domid}".encode()])
        for rel, value in (
            ("name", name),
            ("domid", str(domid)),
            ("memory/static-max", str(static_max_kib)),
            ("memory/target", str(target_kib)),
            ("memory/videoram", "-1"),
        ):
            client.write(f"{base}/{rel}".encode(), value.encode())
        if domid != 0:
            for rel in ("control", "data"):
                client.mkdir(f"{base}/{rel}".encode())
                client.set_perms(f"{base}/{rel}".encode(), [f"n{domid}".encode(), b"r0"])


MANY_FIRST_ID = 10  # the many domains of lay_out_many_domains start here, after LAYOUT's
MANY_SIZES_MIB = (256, 512, 768, 1024, 2048)


def many_domain(domid: int) -> tuple[str, int, int]:
    """(name, static-max KiB, target KiB) of domain DOMID of a large host: from its id alone."""
    static_max_kib = MANY_SIZES_MIB[domid % len(MANY_SIZES_MIB)] * MIB
    return f"guest{domid}", static_max_kib, static_max_kib * 3 // 4 if domid % 2 else static_max_kib


def large_host_domids(count: int = 4000) -> list[int]:
    """COUNT domain ids beside LAYOUT's for a large host: a quarter from MANY_FIRST_ID on
    (2 to 4 digits), the rest 5-digit ids up to the last one Xen hands out (32751), whose
    /local/domain listing takes several XS_DIRECTORY_PART replies."""
    low = count // 4
    last = 0x7FF0 - 1  # DOMID_FIRST_RESERVED - 1
    return [*range(MANY_FIRST_ID, MANY_FIRST_ID + low), *range(last - (count - low) + 1, last + 1)]


def lay_out_many_domains(client: Client, count: int | None = None, domids: list[int] | None = None) -> list[int]:
    """COUNT more domains beside LAYOUT's, from MANY_FIRST_ID on (or those of DOMIDS), as
    libxl lays them out (every third also publishes a NetBSD-style driver's data/balloon);
    their ids."""
    if domids is None:
        domids = list(range(MANY_FIRST_ID, MANY_FIRST_ID + count))
    for domid in domids:
        name, static_max_kib, target_kib = many_domain(domid)
        base = f"/local/domain/{domid}"
        nodes = [
            ("name", name),
            ("domid", str(domid)),
            ("memory/static-max", str(static_max_kib)),
            ("memory/target", str(target_kib)),
            ("memory/videoram", "-1"),
        ]
        if domid % 3 == 0:
            nodes += [
                ("control/feature-balloon", "1"),
                ("data/balloon/current", str(target_kib)),
                ("data/balloon/max", str(static_max_kib)),
            ]
        for rel, value in nodes:
            client.write(f"{base}/{rel}".encode(), value.encode())
    return domids


@pytest.fixture(scope="session")
def xs_tools():
    """Debian's xenstored and C clients, fetched and unpacked once."""
    return ensure_tools()


@pytest.fixture(scope="session")
def xs_daemon(xs_tools, tmp_path_factory):
    """One xenstored for the session; guest mail introduced so it can speak over its ring."""
    daemon = Xenstored(xs_tools, tmp_path_factory.mktemp("xenstored"), extra_domains=OTHER_DOMAINS)
    with daemon:
        with Client(unix_socket_path=str(daemon.socket_path)) as client:
            client.introduce_domain(GUEST_ID, 0x1000 + GUEST_ID, 10 + GUEST_ID)
        yield daemon


@pytest.fixture(scope="session")
def xs_guest_bus(xs_daemon):
    """Guest mail's xenbus device, as a pseudo-terminal path."""
    bus = GuestBus(xs_daemon, GUEST_ID)
    yield bus
    bus.close()


@pytest.fixture
def xs(xs_daemon, xs_guest_bus, tmp_path) -> XenHost:
    """The host freshly laid out in the session's xenstored."""
    assert xs_daemon.running(), xs_daemon.log_tail()
    with Client(unix_socket_path=str(xs_daemon.socket_path)) as client:
        lay_out_host(client)
    return XenHost(xs_daemon, xs_guest_bus, runtime_dir=tmp_path / "run")


@pytest.fixture
def private_xs(xs_tools, tmp_path) -> XenHost:
    """A xenstored of this test's own, laid out like the shared one, for killing or stopping."""
    daemon = Xenstored(xs_tools, tmp_path / "xenstored", extra_domains=(*OTHER_DOMAINS, GUEST_ID))
    with daemon:
        with Client(unix_socket_path=str(daemon.socket_path)) as client:
            lay_out_host(client)
        yield XenHost(daemon, runtime_dir=tmp_path / "run")
        if daemon.running():
            os.kill(daemon.pid, signal.SIGCONT)  # a test may have stopped it


@pytest.fixture(scope="session")
def large_daemon(xs_tools, tmp_path_factory):
    """A xenstored of its own holding a large host, laid out once for the session: LAYOUT's
    6 domains and the 4,000 of large_host_domids() (tests that change it put it back)."""
    daemon = Xenstored(
        xs_tools, tmp_path_factory.mktemp("xenstored-large"), trace=False, extra_domains=(*OTHER_DOMAINS, GUEST_ID)
    )
    with daemon:
        with Client(unix_socket_path=str(daemon.socket_path)) as client:
            lay_out_host(client)
            lay_out_many_domains(client, domids=large_host_domids())
        yield daemon


@pytest.fixture
def large_host(large_daemon, tmp_path) -> XenHost:
    """xbctl against the session's large host (4,006 domains, ids up to 32751)."""
    assert large_daemon.running(), large_daemon.log_tail()
    return XenHost(large_daemon, runtime_dir=tmp_path / "run")


# --------------------------------------------------------------------------
# The hypervisor rig: Debian's real libxenctrl and xl over a fake hypervisor
# --------------------------------------------------------------------------

HVM_DOMAINS = frozenset({2})  # db is an HVM guest (flags bit 1); the others are PV
HVM_VIDEORAM_KIB = 8 * MIB  # what libxl writes for an HVM guest with 8 MiB of video memory
XL_MAXMEM_CONSTANT_KIB = 1024  # libxl's LIBXL_MAXMEM_CONSTANT on x86


def domain_uuid(domid: int) -> str:
    """The domain handle: all zeros for Domain-0 (as Xen boots it), a fixed one per guest."""
    if domid == 0:
        return "00000000-0000-0000-0000-000000000000"
    return f"{domid:08x}-5eed-4b1c-9a3e-{0xDB000000 + domid:012x}"


def layout_domains() -> list[Domain]:
    """LAYOUT as the hypervisor holds it: every domain at its target; the maximum libxl sets
    (static-max + 1024 KiB; Domain-0 booted with dom0_mem=4G,max:4G: exactly static-max)."""
    domains = []
    for domid, (_name, static_max_kib, target_kib) in LAYOUT.items():
        extra = 0 if domid == 0 else XL_MAXMEM_CONSTANT_KIB
        domains.append(
            Domain(
                domid=domid,
                flags=2 if domid in HVM_DOMAINS else 0,
                tot_pages=target_kib // 4,
                max_pages=(static_max_kib + extra) // 4,
                handle=domain_uuid(domid),
                vcpus=2 if domid == 0 else 1,
            )
        )
    return domains


def videoram_kib(domid: int) -> int:
    return HVM_VIDEORAM_KIB if domid in HVM_DOMAINS else 0


def lay_out_hypervisor_host(client: Client, hv: FakeHypervisor) -> None:
    """LAYOUT in Xenstore as libxl 4.17 writes it, and in the hypervisor table and
    /var/lib/xen: guests get memory/videoram (0 for PV, 8 MiB for HVM), a `vm` link to
    /vm/<uuid> (uuid, name); Domain-0 (set up by xen-init-dom0) has neither."""
    lay_out_host(client)
    for domid, (name, _static_max_kib, _target_kib) in LAYOUT.items():
        base = f"/local/domain/{domid}"
        if domid == 0:
            client.delete(f"{base}/memory/videoram".encode())
        else:
            uuid = domain_uuid(domid)
            vm = f"/vm/{uuid}"
            client.write(f"{base}/memory/videoram".encode(), str(videoram_kib(domid)).encode())
            client.write(f"{base}/vm".encode(), vm.encode())
            client.mkdir(vm.encode())
            client.set_perms(vm.encode(), [b"n0", f"r{domid}".encode()])
            client.write(f"{vm}/uuid".encode(), uuid.encode())
            client.write(f"{vm}/name".encode(), name.encode())
    hv.reset(layout_domains())
    hv.clear_userdata()
    for domid, (name, static_max_kib, target_kib) in LAYOUT.items():
        hv.write_userdata(
            domid,
            name,
            hvm=domid in HVM_DOMAINS,
            uuid=domain_uuid(domid),
            max_memkb=static_max_kib,
            target_memkb=target_kib,
            video_memkb=videoram_kib(domid),
        )


def lay_out_many_hypervisor_domains(client: Client, hv: FakeHypervisor, domids: list[int]) -> None:
    """LAYOUT (lay_out_hypervisor_host) and the PV guests DOMIDS (many_domain's sizes) as libxl
    4.17 writes them: in Xenstore (memory/videoram 0, a `vm` link to /vm/<uuid>), in the
    hypervisor table (at their target, maximum static-max + 1024 KiB) and in /var/lib/xen."""
    lay_out_hypervisor_host(client, hv)
    lay_out_many_domains(client, domids=domids)
    domains = layout_domains()
    for domid in domids:
        name, static_max_kib, target_kib = many_domain(domid)
        uuid, base = domain_uuid(domid), f"/local/domain/{domid}"
        client.write(f"{base}/memory/videoram".encode(), b"0")
        client.write(f"{base}/vm".encode(), f"/vm/{uuid}".encode())
        client.write(f"/vm/{uuid}/uuid".encode(), uuid.encode())
        client.write(f"/vm/{uuid}/name".encode(), name.encode())
        domains.append(
            Domain(
                domid=domid,
                tot_pages=target_kib // 4,
                max_pages=(static_max_kib + XL_MAXMEM_CONSTANT_KIB) // 4,
                handle=uuid,
            )
        )
        hv.write_userdata(domid, name, hvm=False, uuid=uuid, max_memkb=static_max_kib, target_memkb=target_kib)
    hv.reset(domains)


class HypervisorHost(XenHost):
    """A XenHost whose xbctl runs (and xl runs) see a hypervisor: Debian's real libxenctrl
    over the rig's libxencall, with the domain table in `hv`."""

    def __init__(self, daemon: Xenstored, hv: FakeHypervisor, guest_bus: GuestBus | None = None):
        super().__init__(daemon, guest_bus)
        self.hv = hv
        self.env.update(hv.env())

    def reset(self) -> None:
        """Back to the fresh layout: Xenstore, hypervisor table (no failures), empty log."""
        with Client(unix_socket_path=str(self.socket_path)) as client:
            lay_out_hypervisor_host(client, self.hv)

    def xl(self, *args: str, timeout: float = 30) -> Outcome:
        """Debian's real xl ARGS over the same hypervisor and xenstored."""
        done = run_xl(self.hv, self.socket_path, *args, timeout=timeout)
        return Outcome(done.status, done.stdout, done.stderr)

    def tree(self) -> str:
        """/local and /vm with permissions (xenstore-ls -f -p), for comparisons."""
        return self.daemon.xs_ls("/local") + self.daemon.xs_ls("/vm")


@pytest.fixture
def hv_host(xs_daemon, xs_guest_bus, xs_tools, tmp_path) -> HypervisorHost:
    """The host freshly laid out in Xenstore and in a fake hypervisor of this test's own."""
    assert xs_daemon.running(), xs_daemon.log_tail()
    preload_client_libs(xs_tools)  # so in-process runs load the real libxenctrl over the rig
    host = HypervisorHost(xs_daemon, FakeHypervisor(xs_tools, tmp_path / "hypervisor"), xs_guest_bus)
    host.env["XBCTL_RUNTIME_DIR"] = str(tmp_path / "run")
    host.reset()
    return host
