"""Run Debian's real C ``xenstored`` for tests, on a machine without Xen.

``ensure_tools()`` fetches, with ``apt-get download`` (running ``apt-get update``
once if the package lists are missing or stale), Debian 12's ``xen-utils-4.17``
(for ``/usr/lib/xen-4.17/bin/xenstored``), ``xenstore-utils`` (the C clients
``xenstore-read``/``-write``/``-ls``/``-rm``/``-list``/``-exists``/``-chmod``/
``-watch``, hard links of one multi-call binary) and the two runtime libraries
those clients need that a standard Debian 12 lacks (``libxenstore4``,
``libxentoolcore1``; xenstored itself needs only libc plus the three hypervisor
libraries below), and unpacks them with ``dpkg -x`` into a cache directory
(``$XBCTL_TEST_CACHE`` or ``~/.cache/xbctl-tests``), never installing anything
system-wide.  It then compiles with gcc, from the C files and version scripts in
``stubs/`` beside this file, three stub hypervisor libraries that replace the
ones xenstored links against (``libxenctrl.so.4.17``, ``libxenevtchn.so.1``,
``libxengnttab.so.1``; no hypervisor, an event-channel fd that fires only when a test kicks it, a
page per introduced domain, shared as a file so a test can also play that
unprivileged guest over its ring) and an ``LD_PRELOAD`` shim that redirects
``/proc/xen/xsd_port`` and ``/proc/xen/xsd_kva`` to per-daemon files, because
that is the smallest change that lets the unmodified daemon run as a normal
process, so the project's Xenstore code is tested against the real protocol
implementation rather than a fake.  A stamp file makes later calls instant.

For the hypervisor rig (``tests/xenharness/hypervisor.py``) it also fetches
Debian's real ``libxenctrl.so.4.17`` and the rest of the toolstack libraries
(``libxenmisc4.17`` and the small libraries it and Debian's real ``xl``, in
``xen-utils-4.17``, need that a stock Debian 12 lacks), ``libxen-dev`` (the
headers of the same Xen version), and builds from ``hypervisor_stubs/``,
against those headers, a replacement ``libxencall.so.1`` (the hypercalls,
answered from a domain table in a file) and ``libxenforeignmemory.so.1``
(``xc_interface_open`` opens one; there is no /dev/xen/privcmd here) into a
separate directory, ``clientlib``, for the client side (xbctl, xl): xenstored
keeps its own stubs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEBIAN_PACKAGES",
    "XenHarnessError",
    "XenstoreError",
    "DomainRing",
    "XenTools",
    "Xenstored",
    "ensure_tools",
    "default_cache_dir",
    "compiler",
]

#: Debian packages fetched (``apt-get download``) and unpacked (``dpkg -x``).
DEBIAN_PACKAGES: tuple[str, ...] = (
    "xen-utils-4.17",  # xenstored
    "xenstore-utils",  # C clients xenstore-read/-write/-ls/...
    "libxenstore4",  # needed by the C clients
    "libxentoolcore1",  # needed by libxenstore4
    # The hypervisor rig: Debian's real libxenctrl (and libxenlight, libxenguest, libxlutil)
    # plus everything it and /usr/lib/xen-4.17/bin/xl load that a stock Debian 12 lacks.
    "libxenmisc4.17",
    "libxen-dev",  # headers: the replacement libxencall must speak 4.17's domctl/sysctl
    "libxentoollog1",
    "libxenevtchn1",
    "libxengnttab1",
    "libxendevicemodel1",
    "libxenhypfs1",
    "libyajl2",
    # libxencall1 and libxenforeignmemory1 are replaced by the rig's own (clientlib).
)

XENSTORED_REL = "usr/lib/xen-4.17/bin/xenstored"
XL_REL = "usr/lib/xen-4.17/bin/xl"
INCLUDE_DIR_REL = "usr/include"
CLIENT_DIR_REL = "usr/bin"
LIB_DIR_REL = "usr/lib/x86_64-linux-gnu"
CLIENTS = ("read", "write", "ls", "rm", "list", "exists", "chmod", "watch")

_HERE = Path(__file__).resolve().parent
_STUB_DIR = _HERE / "stubs"
_CLIENT_STUB_DIR = _HERE / "hypervisor_stubs"
# (output file, soname or None, C source, version script or None, extra args)
_BUILDS: tuple[tuple[str, str | None, str, str | None, tuple[str, ...]], ...] = (
    ("libxengnttab.so.1", "libxengnttab.so.1", "xengnttab_stub.c", "xengnttab.map", ()),
    ("libxenevtchn.so.1", "libxenevtchn.so.1", "xenevtchn_stub.c", "xenevtchn.map", ()),
    # libxenctrl asks the gnttab stub which domains are introduced.
    ("libxenctrl.so.4.17", "libxenctrl.so.4.17", "xenctrl_stub.c", "xenctrl.map", ("{out}/libxengnttab.so.1",)),
    ("xsd_shim.so", None, "xsd_shim.c", None, ("-ldl",)),
)
# The client side of the hypervisor rig, built into clientlib/ against libxen-dev's headers
# (same Xen version: domctl/sysctl carry an interface version).
_CLIENT_BUILDS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("libxencall.so.1", "libxencall.so.1", "xencall_rig.c", "xencall_rig.map", ("-D__XEN_TOOLS__", "-I{include}")),
    ("libxenforeignmemory.so.1", "libxenforeignmemory.so.1", "xenforeignmemory_rig.c", "xenforeignmemory_rig.map", ()),
)
_STAMP_FORMAT = 2


class XenHarnessError(RuntimeError):
    """Anything that keeps the harness from providing a working xenstored."""


def default_cache_dir() -> Path:
    env = os.environ.get("XBCTL_TEST_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "xbctl-tests"


def _run(
    cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as exc:
        raise XenHarnessError(f"command not found: {cmd[0]} ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise XenHarnessError(f"command timed out after {timeout}s: {' '.join(cmd)}") from exc


def _check(cp: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if cp.returncode != 0:
        raise XenHarnessError(
            f"{what} failed (exit {cp.returncode}): {' '.join(map(str, cp.args))}\n"
            f"--- stdout ---\n{cp.stdout}\n--- stderr ---\n{cp.stderr}"
        )
    return cp


# --------------------------------------------------------------------------
# Tools: fetch, unpack, build
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class XenTools:
    """Paths to the unpacked Debian binaries and the built stubs."""

    cache_dir: Path  # the versioned directory holding everything below
    root: Path  # where the .debs were unpacked (dpkg -x)
    xenstored: Path
    lib_dir: Path  # unpacked runtime libraries (libxenstore.so.4, ...)
    stub_dir: Path  # stub libxenctrl/libxenevtchn/libxengnttab
    preload: Path  # the /proc/xen redirection shim
    client_lib_dir: Path  # replacement libxencall/libxenforeignmemory (before lib_dir)
    include_dir: Path  # libxen-dev's headers
    xl: Path  # Debian's real xl
    libxenctrl: Path  # Debian's real libxenctrl.so.4.17
    clients: dict[str, Path] = field(default_factory=dict)  # "read" -> .../xenstore-read
    versions: dict[str, str] = field(default_factory=dict)  # package -> version

    # paths of the individual clients ------------------------------------
    @property
    def xenstore_read(self) -> Path:
        return self.clients["read"]

    @property
    def xenstore_write(self) -> Path:
        return self.clients["write"]

    @property
    def xenstore_ls(self) -> Path:
        return self.clients["ls"]

    @property
    def xenstore_rm(self) -> Path:
        return self.clients["rm"]

    @property
    def xenstore_list(self) -> Path:
        return self.clients["list"]

    def env(self, socket_path: os.PathLike | str, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for running the C clients against ``socket_path``."""
        env = dict(os.environ if base is None else base)
        env.pop("LD_PRELOAD", None)
        old = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = str(self.lib_dir) + (f":{old}" if old else "")
        env["XENSTORED_PATH"] = str(socket_path)
        return env

    def daemon_env(self, rundir: os.PathLike | str, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for running xenstored with its state in ``rundir``."""
        rundir = Path(rundir)
        env = dict(os.environ if base is None else base)
        env["LD_LIBRARY_PATH"] = f"{self.stub_dir}:{self.lib_dir}"
        env["LD_PRELOAD"] = str(self.preload)
        env["XENSTORED_RUNDIR"] = str(rundir)
        env["XENHARNESS_XSD_PORT"] = str(rundir / "xsd_port")
        env["XENHARNESS_XSD_KVA"] = str(rundir / "xsd_kva")
        env["XENHARNESS_RING_DIR"] = str(rundir)
        env["XENHARNESS_EVTCHN_FIFO"] = str(rundir / "evtchn")
        env.pop("XENSTORED_PATH", None)
        return env

    def run_client(self, name: str, socket_path: os.PathLike | str, *args: str, timeout: float = 10) -> str:
        """Run ``xenstore-NAME args`` against the daemon; stdout or raise."""
        try:
            exe = self.clients[name]
        except KeyError:
            raise XenHarnessError(f"no xenstore client {name!r}; have {sorted(self.clients)}") from None
        cp = _run([str(exe), *args], env=self.env(socket_path), timeout=timeout)
        if cp.returncode != 0:
            raise XenHarnessError(
                f"xenstore-{name} {' '.join(args)} failed (exit {cp.returncode}): "
                f"{cp.stderr.strip() or cp.stdout.strip()}"
            )
        return cp.stdout


def _source_key() -> str:
    h = hashlib.sha256()
    h.update(f"format={_STAMP_FORMAT};packages={','.join(DEBIAN_PACKAGES)};".encode())
    for where, builds in ((_STUB_DIR, _BUILDS), (_CLIENT_STUB_DIR, _CLIENT_BUILDS)):
        for out, soname, src, vscript, extra in builds:
            h.update(repr((out, soname, src, vscript, extra)).encode())
            for name in (src, vscript):
                if name:
                    h.update((where / name).read_bytes())
    return h.hexdigest()[:16]


def _tools_from(base: Path, versions: dict[str, str]) -> XenTools:
    root = base / "root"
    clients = {c: root / CLIENT_DIR_REL / f"xenstore-{c}" for c in CLIENTS}
    return XenTools(
        cache_dir=base,
        root=root,
        xenstored=root / XENSTORED_REL,
        lib_dir=root / LIB_DIR_REL,
        stub_dir=base / "stubs",
        preload=base / "stubs" / "xsd_shim.so",
        client_lib_dir=base / "clientlib",
        include_dir=root / INCLUDE_DIR_REL,
        xl=root / XL_REL,
        libxenctrl=root / LIB_DIR_REL / "libxenctrl.so.4.17",
        clients={c: p for c, p in clients.items() if p.exists()},
        versions=dict(versions),
    )


def _required_files(t: XenTools) -> list[Path]:
    return [
        t.xenstored,
        t.preload,
        t.lib_dir / "libxenstore.so.4",
        *(t.stub_dir / out for out, *_ in _BUILDS if out != "xsd_shim.so"),
        *(t.client_lib_dir / out for out, *_ in _CLIENT_BUILDS),
        t.xl,
        t.libxenctrl,
        t.include_dir / "xen" / "domctl.h",
        *(t.root / CLIENT_DIR_REL / f"xenstore-{c}" for c in ("read", "write", "ls", "rm")),
    ]


def _apt_download(debs: Path) -> None:
    cmd = ["apt-get", "download", *DEBIAN_PACKAGES]
    if shutil.which("apt-get") is None:
        raise XenHarnessError("apt-get not found: the xenstored test harness needs Debian (12)")
    cp = _run(cmd, cwd=debs)
    if cp.returncode == 0:
        return
    # Missing or stale package lists (fresh container, superseded security
    # version) are the usual cause: refresh once and retry.
    upd = _run(["apt-get", "update"], timeout=900)
    if upd.returncode != 0:
        raise XenHarnessError(
            f"apt-get download failed and 'apt-get update' failed too (are you root, is a "
            f"Debian mirror reachable?)\n--- download stderr ---\n{cp.stderr}\n"
            f"--- update stderr ---\n{upd.stderr}"
        )
    _check(_run(cmd, cwd=debs), "apt-get download (after apt-get update)")


def _deb_field(deb: Path, name: str) -> str:
    return _check(_run(["dpkg-deb", "-f", str(deb), name]), "dpkg-deb -f").stdout.strip()


def compiler() -> str:
    """The C compiler the harness builds its stubs with (gcc)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise XenHarnessError(
            "gcc not found: the xenstored test harness compiles small stub libraries (apt-get install gcc libc6-dev)"
        )
    return gcc


def _build_stubs(out_dir: Path, *, builds=_BUILDS, src_dir: Path = _STUB_DIR, include: Path | None = None) -> None:
    gcc = compiler()
    out_dir.mkdir(parents=True, exist_ok=True)
    for out, soname, src, vscript, extra in builds:
        cmd = [gcc, "-O2", "-Wall", "-fPIC", "-shared", "-o", str(out_dir / out)]
        if soname:
            cmd.append(f"-Wl,-soname,{soname}")
        if vscript:
            cmd.append(f"-Wl,--version-script={src_dir / vscript}")
        cmd.append(str(src_dir / src))
        cmd.extend(a.format(out=out_dir, include=include) for a in extra)
        _check(_run(cmd), f"building stub {out}")


def _check_linkage(t: XenTools) -> None:
    """Every binary we run must resolve all its libraries (ldd)."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = f"{t.stub_dir}:{t.lib_dir}"
    for exe in (t.xenstored, t.xenstore_read):
        cp = _check(_run(["ldd", str(exe)], env=env), f"ldd {exe}")
        missing = [ln.strip() for ln in cp.stdout.splitlines() if "not found" in ln]
        if missing:
            raise XenHarnessError(
                f"{exe} needs libraries that are neither on this machine nor in {DEBIAN_PACKAGES}: {missing}"
            )
    # The client side: Debian's xl (and so its real libxenctrl, libxenlight...) must load
    # over the replacement libxencall/libxenforeignmemory (BIND_NOW: every import resolves).
    client_env = dict(os.environ)
    client_env["LD_LIBRARY_PATH"] = f"{t.client_lib_dir}:{t.lib_dir}"
    cp = _check(_run(["ldd", "-r", str(t.xl)], env=client_env), f"ldd -r {t.xl}")
    out = cp.stdout + cp.stderr
    missing = [ln.strip() for ln in out.splitlines() if "not found" in ln or "undefined symbol" in ln]
    if missing:
        raise XenHarnessError(f"{t.xl} does not link over the rig's libraries: {missing}")
    for lib in ("libxencall.so.1", "libxenforeignmemory.so.1"):
        if f"{t.client_lib_dir / lib} " not in out:
            raise XenHarnessError(f"xl does not load the rig's {lib}:\n{out}")
    # The stubs must provide every versioned symbol xenstored imports.
    cp = _check(_run([str(t.xenstored), "--help"], env=env), "xenstored --help with the stub libraries")
    if "--no-fork" not in cp.stdout + cp.stderr:
        raise XenHarnessError(f"unexpected xenstored --help output:\n{cp.stdout}{cp.stderr}")


def ensure_tools(cache_dir: Path | None = None) -> XenTools:
    """Fetch/unpack/build everything once; later calls only read a stamp."""
    top = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _source_key()
    base = top / f"xen-4.17-{key}"
    stamp = base / "stamp.json"
    if stamp.exists():
        with contextlib.suppress(ValueError, OSError):
            tools = _tools_from(base, json.loads(stamp.read_text())["versions"])
            if all(p.exists() for p in _required_files(tools)):
                return tools
    top.mkdir(parents=True, exist_ok=True)
    with open(top / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test processes
        if stamp.exists():
            with contextlib.suppress(ValueError, OSError):
                tools = _tools_from(base, json.loads(stamp.read_text())["versions"])
                if all(p.exists() for p in _required_files(tools)):
                    return tools
        if base.exists():
            shutil.rmtree(base)
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=top))
        try:
            debs = tmp / "debs"
            debs.mkdir()
            _apt_download(debs)
            versions: dict[str, str] = {}
            for pkg in DEBIAN_PACKAGES:
                found = sorted(debs.glob(f"{pkg}_*.deb"))
                if len(found) != 1:
                    raise XenHarnessError(f"expected one {pkg} .deb in {debs}, got {found}")
                versions[pkg] = _deb_field(found[0], "Version")
                _check(_run(["dpkg", "-x", str(found[0]), str(tmp / "root")]), f"dpkg -x {found[0].name}")
            _build_stubs(tmp / "stubs")
            _build_stubs(
                tmp / "clientlib",
                builds=_CLIENT_BUILDS,
                src_dir=_CLIENT_STUB_DIR,
                include=tmp / "root" / INCLUDE_DIR_REL,
            )
            tmp.rename(base)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        tools = _tools_from(base, versions)
        missing = [str(p) for p in _required_files(tools) if not p.exists()]
        if missing:
            raise XenHarnessError(f"unpacked packages lack expected files: {missing}")
        _check_linkage(tools)
        stamp.write_text(json.dumps({"key": key, "versions": versions, "packages": list(DEBIAN_PACKAGES)}, indent=1))
        # Drop builds for other stub sources once nobody has built them for a day (other
        # checkouts of the project may share the cache and be running their tests now).
        for old in top.glob("xen-4.17-*"):
            with contextlib.suppress(OSError):
                if old != base and old.is_dir() and time.time() - old.stat().st_mtime > 86400:
                    shutil.rmtree(old, ignore_errors=True)
        return tools


# --------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------


def _die_with_parent():
    """preexec_fn making the daemon get SIGKILL if the test process dies
    (PR_SET_PDEATHSIG), so a crashed test run leaves no xenstored behind.
    Only from the main thread: the signal follows the creating thread."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def preexec() -> None:
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG

    return preexec


# --------------------------------------------------------------------------
# The daemon (class)
# --------------------------------------------------------------------------


class Xenstored:
    """One private xenstored process with its socket at ``rundir/socket``.

    Use as a context manager (``with Xenstored(tools, tmp) as xs: ...``).
    Files kept in ``rundir``: ``socket``, ``xenstored.pid``, ``xenstored.log``
    (stdout+stderr), ``trace`` (every request, if ``trace``), ``xsd_port`` and
    ``xsd_kva`` (what the daemon believes are /proc/xen/xsd_port and _kva),
    ``evtchn`` (a FIFO: a byte written there wakes the daemon) and
    ``ring-<domid>`` (the shared ring page of each introduced domain; see
    :meth:`domain_ring`).
    """

    def __init__(
        self,
        tools: XenTools,
        rundir: os.PathLike | str,
        *,
        start_timeout: float = 5.0,
        trace: bool = True,
        verbose: bool = False,
        extra_args: tuple[str, ...] = (),
        extra_domains: tuple[int, ...] = (),
    ):
        self.tools = tools
        self.rundir = Path(rundir).resolve()
        self.socket_path = self.rundir / "socket"
        self.log_path = self.rundir / "xenstored.log"
        self.trace_path = self.rundir / "trace"
        self.pid_file = self.rundir / "xenstored.pid"
        self.start_timeout = start_timeout
        self.trace = trace
        self.verbose = verbose
        self.extra_args = tuple(extra_args)
        #: domain ids the stub hypervisor reports as existing besides dom0
        #: and the introduced ones (perms naming them are then kept).
        self.extra_domains = tuple(extra_domains)
        self.proc: subprocess.Popen | None = None
        self._log = None

    # lifecycle -----------------------------------------------------------
    @property
    def pid(self) -> int:
        if self.proc is None:
            raise XenHarnessError("xenstored is not started")
        return self.proc.pid

    @property
    def argv(self) -> list[str]:
        argv = [str(self.tools.xenstored), "--no-fork", "--pid-file", str(self.pid_file)]
        if self.trace:
            argv += ["--trace-file", str(self.trace_path)]
        if self.verbose:
            argv.append("--verbose")
        return argv + list(self.extra_args)

    def start(self) -> "Xenstored":
        if self.proc is not None and self.proc.poll() is None:
            raise XenHarnessError("xenstored already running")
        self.rundir.mkdir(parents=True, exist_ok=True)
        (self.rundir / "xsd_port").write_text("1\n")
        (self.rundir / "xsd_kva").write_bytes(bytes(4096))
        for stale in (self.socket_path, self.pid_file):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        env = self.tools.daemon_env(self.rundir)
        if self.extra_domains:
            env["XENHARNESS_DOMAINS"] = ",".join(str(d) for d in self.extra_domains)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            cwd=self.rundir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._close_log()
                raise XenHarnessError(f"xenstored exited with {rc} during start-up:\n{self.log_tail()}")
            if self.answers():
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise XenHarnessError(
                    f"xenstored did not accept connections on {self.socket_path} within "
                    f"{self.start_timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.01)

    def answers(self, timeout: float = 1.0) -> bool:
        """True if the socket accepts a connection and answers a request."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(str(self.socket_path))
                # XS_DIRECTORY (1) of "/": header op, req_id, tx_id, len
                payload = b"/\x00"
                s.sendall(
                    (1).to_bytes(4, "little")
                    + (7).to_bytes(4, "little")
                    + (0).to_bytes(4, "little")
                    + len(payload).to_bytes(4, "little")
                    + payload
                )
                hdr = s.recv(16)
                return len(hdr) == 16
        except OSError:
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the daemon (to test a daemon that dies) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_log()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, n: int = 4000) -> str:
        try:
            data = self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            data = ""
        return f"--- {self.log_path} ---\n{data}"

    def cpu_seconds(self) -> float:
        """User+system CPU time the daemon has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> "Xenstored":
        if not self.running():
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def kick(self) -> None:
        """Raise an "event channel" event: wakes xenstored so it scans rings."""
        fd = os.open(self.rundir / "evtchn", os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, b"k")
        except BlockingIOError:
            pass  # FIFO full of unread kicks: it is awake anyway
        finally:
            os.close(fd)

    def domain_ring(self, domid: int, timeout: float = 5.0) -> "DomainRing":
        """Play domain ``domid``'s (unprivileged) side of its xenstore ring.

        The domain must have been introduced (XS_INTRODUCE, e.g. pyxs
        ``introduce_domain(domid, mfn, port)``) on this daemon first."""
        return DomainRing(self, domid, timeout=timeout)

    # C client helpers ------------------------------------------------------
    def env(self) -> dict[str, str]:
        return self.tools.env(self.socket_path)

    def client(self, name: str, *args: str, timeout: float = 10) -> str:
        return self.tools.run_client(name, self.socket_path, *args, timeout=timeout)

    def xs_read(self, path: str) -> str:
        """Value of ``path`` exactly (``xenstore-read -R``); raises if absent."""
        return self.client("read", "-R", path)

    def xs_write(self, path: str, value: str) -> None:
        """Write ``value`` verbatim (``xenstore-write -R``)."""
        self.client("write", "-R", path, value)

    def xs_rm(self, path: str) -> None:
        self.client("rm", path)

    def xs_exists(self, path: str) -> bool:
        cp = _run([str(self.tools.clients["exists"]), path], env=self.env(), timeout=10)
        return cp.returncode == 0

    def xs_list(self, path: str) -> list[str]:
        """Names of the direct children (``xenstore-list``)."""
        return self.client("list", path).splitlines()

    def xs_ls(self, path: str = "/", perms: bool = True) -> str:
        """``xenstore-ls -f [-p] PATH``: the subtree, one node per line."""
        return self.client("ls", "-f", *(["-p"] if perms else []), path)

    def xs_listing(self, perms: bool = True) -> str:
        """The whole tree (``xenstore-ls -f -p /``) for before/after comparisons."""
        return self.xs_ls("/", perms=perms)


# --------------------------------------------------------------------------
# A domain's side of its ring: requests as an unprivileged domain
# --------------------------------------------------------------------------

XS_OPS = {
    "DEBUG": 0,
    "DIRECTORY": 1,
    "READ": 2,
    "GET_PERMS": 3,
    "WATCH": 4,
    "UNWATCH": 5,
    "TRANSACTION_START": 6,
    "TRANSACTION_END": 7,
    "INTRODUCE": 8,
    "RELEASE": 9,
    "GET_DOMAIN_PATH": 10,
    "WRITE": 11,
    "MKDIR": 12,
    "RM": 13,
    "SET_PERMS": 14,
    "WATCH_EVENT": 15,
    "ERROR": 16,
}
_RING_SIZE = 1024
_REQ, _RSP = 0, 1024
_REQ_CONS, _REQ_PROD, _RSP_CONS, _RSP_PROD = 2048, 2052, 2056, 2060


class XenstoreError(OSError):
    """An ERROR reply on a ring: ``.errno`` (0 for names Python lacks, such
    as EQUOTA) and ``.name`` (what xenstored sent, e.g. "EACCES")."""

    def __init__(self, name: str):
        import errno as _errno

        code = getattr(_errno, name, 0)
        super().__init__(code, f"{name} ({os.strerror(code) if code else 'xenstore error'})")
        self.name = name


class DomainRing:
    """Speak the xenstore wire protocol over domain ``domid``'s shared ring,
    i.e. as that (unprivileged) domain, the way its kernel's xenbus does.

    Requests are synchronous; watch events that arrive are kept in
    ``.events`` as ``(path, token)`` pairs."""

    def __init__(self, daemon: Xenstored, domid: int, timeout: float = 5.0):
        import mmap

        self.daemon = daemon
        self.domid = domid
        self.timeout = timeout
        self.path = daemon.rundir / f"ring-{domid}"
        if not self.path.exists():
            raise XenHarnessError(f"no ring for domain {domid} at {self.path}: introduce the domain first")
        with open(self.path, "r+b") as f:
            self._mm = mmap.mmap(f.fileno(), 4096)
        self.events: list[tuple[str, str]] = []
        self._req_id = 0

    def close(self) -> None:
        self._mm.close()

    def __enter__(self) -> "DomainRing":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _u32(self, off: int) -> int:
        return int.from_bytes(self._mm[off : off + 4], "little")

    def _set_u32(self, off: int, value: int) -> None:
        self._mm[off : off + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")

    def _send(self, data: bytes, deadline: float) -> None:
        while data:
            cons, prod = self._u32(_REQ_CONS), self._u32(_REQ_PROD)
            space = _RING_SIZE - ((prod - cons) & 0xFFFFFFFF)
            if space == 0:
                self._wait(deadline, "request ring space")
                continue
            start = prod % _RING_SIZE
            n = min(space, len(data), _RING_SIZE - start)
            self._mm[_REQ + start : _REQ + start + n] = data[:n]
            self._set_u32(_REQ_PROD, prod + n)
            data = data[n:]
            self.daemon.kick()

    def _available(self) -> int:
        return (self._u32(_RSP_PROD) - self._u32(_RSP_CONS)) & 0xFFFFFFFF

    def _take(self, n: int) -> bytes:
        cons = self._u32(_RSP_CONS)
        out = b""
        while len(out) < n:
            start = (cons + len(out)) % _RING_SIZE
            k = min(n - len(out), _RING_SIZE - start)
            out += self._mm[_RSP + start : _RSP + start + k]
        self._set_u32(_RSP_CONS, cons + n)
        return out

    def _wait(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise XenHarnessError(f"domain {self.domid} ring: timed out waiting for {what}\n{self.daemon.log_tail()}")
        if not self.daemon.running():
            raise XenHarnessError(f"xenstored is not running\n{self.daemon.log_tail()}")
        time.sleep(0.001)
        self.daemon.kick()

    def _peek(self, n: int) -> bytes:
        cons = self._u32(_RSP_CONS)
        return bytes(self._mm[_RSP + (cons + i) % _RING_SIZE] for i in range(n))

    def _recv(self, deadline: float) -> tuple[int, int, int, bytes]:
        while self._available() < 16:
            self._wait(deadline, "a reply")
        raw = self._peek(16)
        op, req_id, tx_id, length = (int.from_bytes(raw[i : i + 4], "little") for i in range(0, 16, 4))
        while self._available() < 16 + length:
            self._wait(deadline, "a reply body")
        msg = self._take(16 + length)
        return op, req_id, tx_id, msg[16:]

    def request(self, op: str | int, *args: str | bytes, tx_id: int = 0, terminate_last: bool = True) -> bytes:
        """Send one request; return the reply payload or raise XenstoreError.
        Each argument is NUL-terminated (the last one only if terminate_last,
        as WRITE's value is not)."""
        code = XS_OPS[op] if isinstance(op, str) else op
        parts = [a.encode() if isinstance(a, str) else a for a in args]
        payload = b"".join(p + b"\0" for p in parts[:-1])
        if parts:
            payload += parts[-1] + (b"\0" if terminate_last else b"")
        self._req_id += 1
        header = b"".join(v.to_bytes(4, "little") for v in (code, self._req_id, tx_id, len(payload)))
        deadline = time.monotonic() + self.timeout
        self._send(header + payload, deadline)
        while True:
            rop, req_id, _tx, body = self._recv(deadline)
            if rop == XS_OPS["WATCH_EVENT"]:
                path, token = (body.split(b"\0") + [b"", b""])[:2]
                self.events.append((path.decode(), token.decode()))
                continue
            if req_id != self._req_id:
                raise XenHarnessError(f"unexpected reply {rop}/{req_id}: {body!r}")
            if rop == XS_OPS["ERROR"]:
                raise XenstoreError(body.rstrip(b"\0").decode())
            return body

    # conveniences ----------------------------------------------------------
    def read(self, path: str, tx_id: int = 0) -> str:
        return self.request("READ", path, tx_id=tx_id).decode()

    def write(self, path: str, value: str, tx_id: int = 0) -> None:
        self.request("WRITE", path, value, tx_id=tx_id, terminate_last=False)

    def rm(self, path: str, tx_id: int = 0) -> None:
        self.request("RM", path, tx_id=tx_id)

    def directory(self, path: str, tx_id: int = 0) -> list[str]:
        body = self.request("DIRECTORY", path, tx_id=tx_id)
        return [p.decode() for p in body.split(b"\0") if p]

    def get_perms(self, path: str) -> list[str]:
        return [p.decode() for p in self.request("GET_PERMS", path).split(b"\0") if p]

    def set_perms(self, path: str, perms: list[str]) -> None:
        self.request("SET_PERMS", path, *perms)

    def watch(self, path: str, token: str) -> None:
        self.request("WATCH", path, token)

    def unwatch(self, path: str, token: str) -> None:
        self.request("UNWATCH", path, token)

    def transaction_start(self) -> int:
        return int(self.request("TRANSACTION_START", "").rstrip(b"\0"))

    def transaction_end(self, tx_id: int, commit: bool = True) -> None:
        self.request("TRANSACTION_END", "T" if commit else "F", tx_id=tx_id)

    def wait_event(self, timeout: float | None = None) -> tuple[str, str]:
        """Next watch event (path, token), waiting up to ``timeout``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.events:
            if self._available() >= 16:
                op, _req, _tx, body = self._recv(deadline)
                if op != XS_OPS["WATCH_EVENT"]:
                    raise XenHarnessError(f"unexpected unsolicited message {op}: {body!r}")
                path, token = (body.split(b"\0") + [b"", b""])[:2]
                self.events.append((path.decode(), token.decode()))
            else:
                self._wait(deadline, "a watch event")
        return self.events.pop(0)


# --------------------------------------------------------------------------
# promtool, from Debian's prometheus package, for linting the exporter's metrics


def ensure_promtool(cache_dir: Path | None = None) -> Path:
    """Debian's promtool, fetched (apt-get download prometheus) and unpacked (dpkg -x) once."""
    return ensure_debian_program("prometheus", "usr/bin/promtool", cache_dir)


def ensure_node_exporter(cache_dir: Path | None = None) -> Path:
    """Debian's node_exporter (prometheus-node-exporter), fetched and unpacked once."""
    return ensure_debian_program("prometheus-node-exporter", "usr/bin/prometheus-node-exporter", cache_dir)


def ensure_debian_program(package: str, program: str, cache_dir: Path | None = None) -> Path:
    """PROGRAM (a path inside Debian's PACKAGE), fetched (apt-get download) and unpacked (dpkg -x)
    into the cache once; Go programs such as these need no library from the host."""
    top = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    found_program = top / package / program
    if found_program.exists():
        return found_program
    top.mkdir(parents=True, exist_ok=True)
    with open(top / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test processes
        if found_program.exists():
            return found_program
        tmp = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=top))
        try:
            cmd = ["apt-get", "download", package]
            if _run(cmd, cwd=tmp).returncode != 0:
                _check(_run(["apt-get", "update"], timeout=900), "apt-get update")
                _check(_run(cmd, cwd=tmp), f"apt-get download {package}")
            found = sorted(tmp.glob(f"{package}_*.deb"))
            if len(found) != 1:
                raise XenHarnessError(f"expected one {package} .deb in {tmp}, got {found}")
            _check(_run(["dpkg", "-x", str(found[0]), str(tmp / "root")]), f"dpkg -x {found[0].name}")
            if not (tmp / "root" / program).exists():
                raise XenHarnessError(f"the {package} package has no {program}")
            found[0].unlink()  # only the unpacked tree is kept
            (tmp / "root").rename(top / package)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return found_program
