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
``libxengnttab.so.1``; no hypervisor, an event-channel fd that never fires, a
zeroed page per introduced domain) and an ``LD_PRELOAD`` shim that redirects
``/proc/xen/xsd_port`` and ``/proc/xen/xsd_kva`` to per-daemon files, because
that is the smallest change that lets the unmodified daemon run as a normal
process, so the project's Xenstore code is tested against the real protocol
implementation rather than a fake.  A stamp file makes later calls instant.
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
    "XenTools",
    "Xenstored",
    "ensure_tools",
    "default_cache_dir",
]

#: Debian packages fetched (``apt-get download``) and unpacked (``dpkg -x``).
DEBIAN_PACKAGES: tuple[str, ...] = (
    "xen-utils-4.17",  # xenstored
    "xenstore-utils",  # C clients xenstore-read/-write/-ls/...
    "libxenstore4",  # needed by the C clients
    "libxentoolcore1",  # needed by libxenstore4
)

XENSTORED_REL = "usr/lib/xen-4.17/bin/xenstored"
CLIENT_DIR_REL = "usr/bin"
LIB_DIR_REL = "usr/lib/x86_64-linux-gnu"
CLIENTS = ("read", "write", "ls", "rm", "list", "exists", "chmod", "watch")

_HERE = Path(__file__).resolve().parent
_STUB_DIR = _HERE / "stubs"
# (output file, soname or None, C source, version script or None, extra args)
_BUILDS: tuple[tuple[str, str | None, str, str | None, tuple[str, ...]], ...] = (
    ("libxengnttab.so.1", "libxengnttab.so.1", "xengnttab_stub.c", "xengnttab.map", ()),
    ("libxenevtchn.so.1", "libxenevtchn.so.1", "xenevtchn_stub.c", "xenevtchn.map", ()),
    # libxenctrl asks the gnttab stub which domains are introduced.
    ("libxenctrl.so.4.17", "libxenctrl.so.4.17", "xenctrl_stub.c", "xenctrl.map",
     ("{out}/libxengnttab.so.1",)),
    ("xsd_shim.so", None, "xsd_shim.c", None, ("-ldl",)),
)
_STAMP_FORMAT = 1


class XenHarnessError(RuntimeError):
    """Anything that keeps the harness from providing a working xenstored."""


def default_cache_dir() -> Path:
    env = os.environ.get("XBCTL_TEST_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "xbctl-tests"


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise XenHarnessError(f"command not found: {cmd[0]} ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise XenHarnessError(f"command timed out after {timeout}s: {' '.join(cmd)}") from exc


def _check(cp: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if cp.returncode != 0:
        raise XenHarnessError(
            f"{what} failed (exit {cp.returncode}): {' '.join(map(str, cp.args))}\n"
            f"--- stdout ---\n{cp.stdout}\n--- stderr ---\n{cp.stderr}")
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

    def env(self, socket_path: os.PathLike | str,
            base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for running the C clients against ``socket_path``."""
        env = dict(os.environ if base is None else base)
        env.pop("LD_PRELOAD", None)
        old = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = str(self.lib_dir) + (f":{old}" if old else "")
        env["XENSTORED_PATH"] = str(socket_path)
        return env

    def daemon_env(self, rundir: os.PathLike | str,
                   base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for running xenstored with its state in ``rundir``."""
        rundir = Path(rundir)
        env = dict(os.environ if base is None else base)
        env["LD_LIBRARY_PATH"] = f"{self.stub_dir}:{self.lib_dir}"
        env["LD_PRELOAD"] = str(self.preload)
        env["XENSTORED_RUNDIR"] = str(rundir)
        env["XENHARNESS_XSD_PORT"] = str(rundir / "xsd_port")
        env["XENHARNESS_XSD_KVA"] = str(rundir / "xsd_kva")
        env.pop("XENSTORED_PATH", None)
        return env

    def run_client(self, name: str, socket_path: os.PathLike | str, *args: str,
                   timeout: float = 10) -> str:
        """Run ``xenstore-NAME args`` against the daemon; stdout or raise."""
        try:
            exe = self.clients[name]
        except KeyError:
            raise XenHarnessError(f"no xenstore client {name!r}; have {sorted(self.clients)}")
        cp = _run([str(exe), *args], env=self.env(socket_path), timeout=timeout)
        if cp.returncode != 0:
            raise XenHarnessError(
                f"xenstore-{name} {' '.join(args)} failed (exit {cp.returncode}): "
                f"{cp.stderr.strip() or cp.stdout.strip()}")
        return cp.stdout


def _source_key() -> str:
    h = hashlib.sha256()
    h.update(f"format={_STAMP_FORMAT};packages={','.join(DEBIAN_PACKAGES)};".encode())
    for out, soname, src, vscript, extra in _BUILDS:
        h.update(repr((out, soname, src, vscript, extra)).encode())
        for name in (src, vscript):
            if name:
                h.update((_STUB_DIR / name).read_bytes())
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
        clients={c: p for c, p in clients.items() if p.exists()},
        versions=dict(versions),
    )


def _required_files(t: XenTools) -> list[Path]:
    return [t.xenstored, t.preload, t.lib_dir / "libxenstore.so.4",
            *(t.stub_dir / out for out, *_ in _BUILDS if out != "xsd_shim.so"),
            *(t.root / CLIENT_DIR_REL / f"xenstore-{c}" for c in ("read", "write", "ls", "rm"))]


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
            f"--- update stderr ---\n{upd.stderr}")
    _check(_run(cmd, cwd=debs), "apt-get download (after apt-get update)")


def _deb_field(deb: Path, name: str) -> str:
    return _check(_run(["dpkg-deb", "-f", str(deb), name]), "dpkg-deb -f").stdout.strip()


def _build_stubs(out_dir: Path) -> None:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise XenHarnessError(
            "gcc not found: the xenstored test harness compiles small stub libraries "
            "(apt-get install gcc libc6-dev)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for out, soname, src, vscript, extra in _BUILDS:
        cmd = [gcc, "-O2", "-Wall", "-fPIC", "-shared", "-o", str(out_dir / out)]
        if soname:
            cmd.append(f"-Wl,-soname,{soname}")
        if vscript:
            cmd.append(f"-Wl,--version-script={_STUB_DIR / vscript}")
        cmd.append(str(_STUB_DIR / src))
        cmd.extend(a.format(out=out_dir) for a in extra)
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
                f"{exe} needs libraries that are neither on this machine nor in "
                f"{DEBIAN_PACKAGES}: {missing}")
    # The stubs must provide every versioned symbol xenstored imports.
    cp = _check(_run([str(t.xenstored), "--help"], env=env),
                "xenstored --help with the stub libraries")
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
                _check(_run(["dpkg", "-x", str(found[0]), str(tmp / "root")]),
                       f"dpkg -x {found[0].name}")
            _build_stubs(tmp / "stubs")
            tmp.rename(base)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        tools = _tools_from(base, versions)
        missing = [str(p) for p in _required_files(tools) if not p.exists()]
        if missing:
            raise XenHarnessError(f"unpacked packages lack expected files: {missing}")
        _check_linkage(tools)
        stamp.write_text(json.dumps({"key": key, "versions": versions,
                                     "packages": list(DEBIAN_PACKAGES)}, indent=1))
        # Drop builds for older stub sources.
        for old in top.glob("xen-4.17-*"):
            if old != base and old.is_dir():
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
    ``xsd_kva`` (what the daemon believes are /proc/xen/xsd_port and _kva).
    """

    def __init__(self, tools: XenTools, rundir: os.PathLike | str, *,
                 start_timeout: float = 5.0, trace: bool = True, verbose: bool = False,
                 extra_args: tuple[str, ...] = (), extra_domains: tuple[int, ...] = ()):
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
        self.proc = subprocess.Popen(self.argv, env=env, cwd=self.rundir,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent())
        deadline = time.monotonic() + self.start_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._close_log()
                raise XenHarnessError(
                    f"xenstored exited with {rc} during start-up:\n{self.log_tail()}")
            if self.answers():
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise XenHarnessError(
                    f"xenstored did not accept connections on {self.socket_path} within "
                    f"{self.start_timeout}s:\n{self.log_tail()}")
            time.sleep(0.01)

    def answers(self, timeout: float = 1.0) -> bool:
        """True if the socket accepts a connection and answers a request."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(str(self.socket_path))
                # XS_DIRECTORY (1) of "/": header op, req_id, tx_id, len
                payload = b"/\x00"
                s.sendall((1).to_bytes(4, "little") + (7).to_bytes(4, "little")
                          + (0).to_bytes(4, "little") + len(payload).to_bytes(4, "little")
                          + payload)
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
