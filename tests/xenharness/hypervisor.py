"""A fake Xen hypervisor under Debian's real libxenctrl and Debian's real ``xl``.

The replacement ``libxencall.so.1`` built by :func:`xenharness.ensure_tools` (from
``hypervisor_stubs/xencall_rig.c``) answers the hypercalls that memory management issues
(domctl getdomaininfo and max_mem, sysctl getdomaininfolist, physinfo and sched_id,
memory_op set/get_pod_target, also inside a multicall, xen_version) from a domain table in
a text file named by ``XBCTL_TEST_HYPERVISOR``, and appends one line per hypercall to
``XBCTL_TEST_HYPERCALL_LOG``.  Every process of a test (xbctl as a subprocess, xl, a
ctypes check) thus sees, and changes, the same hypervisor.  Each writer raises the
table's ``generation=N`` line; the rig parses the table again only when another process
changed it, and rewrites one domain's (blank-padded, fixed-width) line in place when one
domain changed, so a hypercall costs microseconds with thousands of domains in the table,
as on a hypervisor.

:class:`FakeHypervisor` writes and reads that table and log; :func:`run_xl` runs Debian's
``xl`` over it with a private ``/var/lib`` (``unshare -m`` and a bind mount: root, or a user
namespace where the kernel allows one), where :meth:`FakeHypervisor.write_userdata` put the
``userdata-d.<domid>.<uuid>.libxl-json`` files libxl keeps for each domain.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errno_module
import fcntl
import os
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import XenHarnessError, XenTools

__all__ = [
    "TABLE_ENV",
    "LOG_ENV",
    "PAGE_KIB",
    "Domain",
    "FakeHypervisor",
    "XlResult",
    "run_xl",
    "preload_client_libs",
]

TABLE_ENV = "XBCTL_TEST_HYPERVISOR"
LOG_ENV = "XBCTL_TEST_HYPERCALL_LOG"
PAGE_KIB = 4
XEN_DOMINF_HVM_GUEST = 1 << 1
#: Hypercalls that change the hypervisor's state (what parity compares).
WRITE_CALLS = ("max_mem", "set_pod_target")


@dataclass(frozen=True)
class Domain:
    """One domain as the hypervisor knows it (sizes in 4 KiB pages)."""

    domid: int
    tot_pages: int
    max_pages: int
    flags: int = 0  # XEN_DOMINF_*: bit 1 = HVM or PVH
    outstanding_pages: int = 0
    handle: str = "00000000-0000-0000-0000-000000000000"  # the uuid
    pod_target: int = 0
    vcpus: int = 1
    cpu_time: int = 0  # ns

    @property
    def hvm(self) -> bool:
        return bool(self.flags & XEN_DOMINF_HVM_GUEST)

    @property
    def current_kib(self) -> int:
        """What ``xl list`` shows as Mem, in KiB."""
        return (self.tot_pages + self.outstanding_pages) * PAGE_KIB

    @property
    def max_kib(self) -> int:
        return self.max_pages * PAGE_KIB

    def line(self) -> str:
        return (
            f"domain domid={self.domid} flags={self.flags} tot_pages={self.tot_pages} "
            f"max_pages={self.max_pages} outstanding_pages={self.outstanding_pages} "
            f"pod_target={self.pod_target} vcpus={self.vcpus} cpu_time={self.cpu_time} "
            f"handle={self.handle}"
        )


@dataclass
class Host:
    """Host-wide figures (physinfo), in pages."""

    total_pages: int = 4 * 1024 * 1024  # 16 GiB
    free_pages: int = 1024 * 1024  # 4 GiB
    outstanding_pages: int = 0
    nr_cpus: int = 2
    cpu_khz: int = 2_000_000

    def line(self) -> str:
        return (
            f"host total_pages={self.total_pages} free_pages={self.free_pages} "
            f"outstanding_pages={self.outstanding_pages} nr_cpus={self.nr_cpus} "
            f"cpu_khz={self.cpu_khz}"
        )


@dataclass
class Failure:
    """An injected failure: the next ``times`` calls named ``op`` fail with ``err``."""

    op: str
    err: int
    domid: int = -1  # any domain
    times: int = 1  # -1: every call

    def line(self) -> str:
        return f"fail op={self.op} domid={self.domid} errno={self.err} times={self.times}"


@dataclass
class Table:
    host: Host = field(default_factory=Host)
    domains: dict[int, Domain] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    #: Raised by every writer: the rig re-parses a table only when it changed.
    generation: int = 0

    def text(self) -> str:
        lines = [
            "# xbctl test hypervisor (tests/xenharness/hypervisor.py)",
            f"generation={self.generation}",
            self.host.line(),
        ]
        lines += [d.line() for _, d in sorted(self.domains.items())]
        lines += [f.line() for f in self.failures if f.times != 0]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> "Table":
        table = cls()
        for raw in text.splitlines():
            words = raw.split()
            if not words or words[0].startswith("#"):
                continue
            kv = dict(w.split("=", 1) for w in words[1:] if "=" in w)
            if words[0].startswith("generation="):
                table.generation = int(words[0].split("=", 1)[1])
            elif words[0] == "host":
                table.host = Host(**{k: int(v, 0) for k, v in kv.items()})
            elif words[0] == "domain":
                handle = kv.pop("handle", Domain.handle)
                dom = Domain(handle=handle, **{k: int(v, 0) for k, v in kv.items()})
                table.domains[dom.domid] = dom
            elif words[0] == "fail":
                op = kv.pop("op")
                nums = {k: int(v, 0) for k, v in kv.items()}
                table.failures.append(Failure(op=op, err=nums.pop("errno"), **nums))
        return table


class FakeHypervisor:
    """The domain table and hypercall log of one test, and the environment that uses them."""

    def __init__(self, tools: XenTools, directory: os.PathLike | str):
        self.tools = tools
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.table_path = self.directory / "hypervisor.table"
        self.log_path = self.directory / "hypercalls.log"
        #: The private /var/lib that xl sees (run_xl bind-mounts it).
        self.var_lib = self.directory / "var-lib"
        if not self.table_path.exists():
            self.table_path.write_text(Table().text())

    # the environment -------------------------------------------------------
    @property
    def library_path(self) -> str:
        """LD_LIBRARY_PATH for the client side: the rig's libraries before Debian's."""
        return f"{self.tools.client_lib_dir}:{self.tools.lib_dir}"

    def env(
        self, base: dict[str, str] | None = None, xenstored_socket: os.PathLike | str | None = None
    ) -> dict[str, str]:
        """Variables a subprocess (xbctl, xl) needs to run over this hypervisor (and, given
        its socket, a xenstored): BASE (default: none) plus LD_LIBRARY_PATH,
        XBCTL_LIBXENCTRL, XBCTL_TEST_HYPERVISOR, XBCTL_TEST_HYPERCALL_LOG [, XENSTORED_PATH]."""
        env = {} if base is None else dict(base)
        if xenstored_socket is not None:
            env["XENSTORED_PATH"] = str(xenstored_socket)
        old = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = self.library_path + (f":{old}" if old else "")
        env["XBCTL_LIBXENCTRL"] = str(self.tools.libxenctrl)
        env[TABLE_ENV] = str(self.table_path)
        env[LOG_ENV] = str(self.log_path)
        return env

    # the table ---------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, write: bool):
        # The C side flocks the table file itself and rewrites it in place: do the same.
        with open(self.table_path, "r+" if write else "r") as f:
            fcntl.flock(f, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            table = Table.parse(f.read())
            yield table
            if write:
                table.generation += 1
                f.seek(0)
                f.truncate()
                f.write(table.text())
                f.flush()
                os.fsync(f.fileno())

    def reset(self, domains: list[Domain] | tuple[Domain, ...], host: Host | None = None) -> None:
        """Replace the whole table (no injected failures) and empty the log."""
        with self._locked(write=True) as table:
            table.host = host or Host()
            table.domains = {d.domid: d for d in domains}
            table.failures = []
        self.clear_log()

    def table(self) -> Table:
        with self._locked(write=False) as table:
            return table

    def domains(self) -> dict[int, Domain]:
        return self.table().domains

    def domain(self, domid: int) -> Domain:
        try:
            return self.domains()[domid]
        except KeyError:
            raise XenHarnessError(f"no domain {domid} in the hypervisor table") from None

    def host(self) -> Host:
        return self.table().host

    def set_domain(self, domid: int, **fields) -> Domain:
        """Change some of a domain's fields (e.g. tot_pages=...) while processes may run."""
        with self._locked(write=True) as table:
            dom = table.domains[domid] = replace(table.domains[domid], **fields)
        return dom

    def add_domain(self, domain: Domain) -> None:
        with self._locked(write=True) as table:
            table.domains[domain.domid] = domain

    def remove_domain(self, domid: int) -> None:
        with self._locked(write=True) as table:
            table.domains.pop(domid, None)

    def set_host(self, **fields) -> Host:
        """Change host figures (free_pages, outstanding_pages, ...)."""
        with self._locked(write=True) as table:
            table.host = replace(table.host, **fields)
        return table.host

    def fail(self, op: str, err: int | str = "ENOMEM", domid: int | None = None, times: int = 1) -> None:
        """Make the next ``times`` calls of ``op`` (for ``domid``, or any) fail with ``err``.

        ``op`` is a log name: max_mem, set_pod_target, getdomaininfo, getdomaininfolist,
        physinfo.  ``times=-1`` fails every call."""
        code = getattr(errno_module, err) if isinstance(err, str) else int(err)
        with self._locked(write=True) as table:
            table.failures.append(Failure(op=op, err=code, domid=-1 if domid is None else domid, times=times))

    # the log -----------------------------------------------------------------
    def log(self) -> list[str]:
        """Every hypercall served since the last clear, one line each, in order."""
        try:
            return self.log_path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def writes(self) -> list[str]:
        """The calls that change the hypervisor (max_mem, set_pod_target), failed ones too."""
        return [ln for ln in self.log() if ln.split(" ", 1)[0] in WRITE_CALLS]

    def clear_log(self) -> None:
        self.log_path.write_text("")

    # what libxl keeps on disk --------------------------------------------------
    def write_userdata(
        self, domid: int, name: str, *, hvm: bool, uuid: str, max_memkb: int, target_memkb: int, video_memkb: int = 0
    ) -> Path:
        """The ``/var/lib/xen/userdata-d.<domid>.<uuid>.libxl-json`` libxl writes when it
        builds a domain (for Domain-0: xen-init-dom0); xl mem-set/mem-max read the domain
        type from it and refuse to run without it."""
        xen = self.var_lib / "xen"
        xen.mkdir(parents=True, exist_ok=True)
        kind = "hvm" if hvm else "pv"
        b_info = f'"max_memkb": {max_memkb}, "target_memkb": {target_memkb}, "video_memkb": {video_memkb}'
        if hvm:
            b_info += ', "type.hvm": {}'
        else:
            b_info += ', "type.pv": {}'
        text = f'{{"c_info": {{"type": "{kind}", "name": "{name}", "uuid": "{uuid}"}}, "b_info": {{{b_info}}}}}\n'
        path = xen / f"userdata-d.{domid}.{uuid}.libxl-json"
        path.write_text(text)
        return path

    def clear_userdata(self) -> None:
        xen = self.var_lib / "xen"
        if xen.exists():
            for p in xen.iterdir():
                p.unlink()


@dataclass
class XlResult:
    """What one xl run did."""

    status: int
    stdout: str
    stderr: str


def _private_mount_argv() -> list[str]:
    # unshare -m needs CAP_SYS_ADMIN (root, as CI runs); elsewhere a user namespace maps
    # the caller to root inside it, where the kernel allows unprivileged ones.
    if os.geteuid() == 0:
        return ["unshare", "--mount", "--propagation", "private"]
    return ["unshare", "--map-root-user", "--mount", "--propagation", "private"]


def run_xl(
    hv: FakeHypervisor,
    xenstored_socket: os.PathLike | str,
    *args: str,
    timeout: float = 30,
    env: dict[str, str] | None = None,
) -> XlResult:
    """Debian's real ``xl ARGS`` over ``hv`` and the xenstored at ``xenstored_socket``,
    with ``hv.var_lib`` mounted on /var/lib in a private mount namespace."""
    hv.var_lib.joinpath("xen").mkdir(parents=True, exist_ok=True)
    full_env = hv.env(
        {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "LD_LIBRARY_PATH")}, xenstored_socket
    )
    full_env.update(env or {})
    script = 'var_lib=$1; shift; mount --bind "$var_lib" /var/lib && exec "$@"'
    argv = [*_private_mount_argv(), "sh", "-c", script, "sh", str(hv.var_lib), str(hv.tools.xl), *args]
    try:
        done = subprocess.run(
            argv, env=full_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as exc:
        raise XenHarnessError(f"cannot run xl: {exc}") from exc
    if "mount:" in done.stderr or "unshare:" in done.stderr:
        raise XenHarnessError(
            "xl needs a private /var/lib (unshare -m and a bind mount: run the tests as root, "
            f"or where user namespaces are allowed):\n{done.stderr}"
        )
    return XlResult(done.returncode, done.stdout, done.stderr)


_preloaded: list[ctypes.CDLL] = []


def preload_client_libs(tools: XenTools) -> None:
    """Load the rig's libxencall/libxenforeignmemory into this process by path.

    LD_LIBRARY_PATH is read once at process start, so an in-process ``dlopen`` of
    ``XBCTL_LIBXENCTRL`` would otherwise find Debian's real libxencall (or none).  A library
    already loaded satisfies a later NEEDED entry with the same soname, so after this the
    real libxenctrl, opened by absolute path, runs over the rig.  Its other dependencies
    (libxentoollog, libxendevicemodel, ...) are loaded from ``lib_dir`` the same way."""
    if _preloaded:
        return
    order = [
        tools.client_lib_dir / "libxencall.so.1",
        tools.client_lib_dir / "libxenforeignmemory.so.1",
        tools.lib_dir / "libxentoolcore.so.1",
        tools.lib_dir / "libxentoollog.so.1",
        tools.lib_dir / "libxenevtchn.so.1",
        tools.lib_dir / "libxengnttab.so.1",
        tools.lib_dir / "libxendevicemodel.so.1",
    ]
    for path in order:
        _preloaded.append(ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL))
