"""A real Xen host for the tests: Xen 4.17 under QEMU (TCG), a Linux Domain-0, Linux PV guests.

``ensure_images()`` fetches with ``apt-get download`` (as ``tests/xenharness`` does, into
the same cache, ``$XBCTL_TEST_CACHE`` or ``~/.cache/xbctl-tests``) Debian 12's
``xen-hypervisor-4.17-amd64`` (the hypervisor, gunzipped for QEMU's multiboot loader), the
current ``linux-image-6.1.*-amd64`` (named by ``linux-image-amd64``'s dependency; one kernel
for Domain-0 and the guests, unpacked from its bzImage into an ELF: balloon, xenbus and PV
console are built in, the rest are modules), ``busybox-static``, and Debian's real
``libxencall1``/``libxenforeignmemory1`` (the harness replaces those two on the host side),
unpacks them with ``dpkg -x`` and builds two initramfs images with its own cpio writer:

- Domain-0's (``dom0-init.sh`` as ``/init``, busybox, the kernel modules it loads in
  dependency order: virtio-9p and overlayfs, then xen-evtchn, xen-privcmd, xenfs, xen-gntdev,
  xen-gntalloc).  It mounts the host's ``/``, shared read-only over virtio-9p, under an
  overlay whose upper layer is a tmpfs and whose lower layers, each a read-only 9p share of
  its own, lay Xen's userspace over it (the real ``libxencall``, then the harness's unpacked
  ``xen-utils-4.17``, ``libxenmisc4.17``...): the host's Python, a venv built on the host and
  Xen's tools all run in Domain-0 at the paths they have on the host, without ``ldconfig``
  or ``LD_LIBRARY_PATH``.  A read-write 9p share (the boot's directory on the host) is
  mounted at its host path; ``/init`` runs ``job`` from it (``chroot``, with a time limit),
  writes ``job.status`` and ``job.log`` there, and powers off whatever happens (Xen enters
  ACPI S5, QEMU exits).
- a guest's (``guest-init.sh``): busybox only.  The guest reports its own balloon driver's
  figures (``current_kb``, ``target_kb`` of ``/sys/devices/system/xen_memory/xen_memory0``)
  as ``data/realhost/balloon`` in its Xenstore home whenever they change, speaking the
  Xenstore wire protocol to ``/dev/xen/xenbus`` with busybox's ``printf`` (busybox has no
  Xenstore client), and prints them on its console too.

``boot()`` runs one QEMU, bounded in time, with the serial console (Xen's and Domain-0's
messages) in a file; it never raises for a failed boot: the caller reads ``Boot.ok`` and
``Boot.describe()``.  ``run_program()`` installs xbctl as a user would (a venv, ``pip
install`` of a copy of the tree), boots, and runs ``dom0-start-xen.sh`` (Debian's
``xenstored``, ``xen-init-dom0``, ``xenconsoled``) then ``dom0_checks.py`` in Domain-0, which
records what every check saw in ``results.json``; ``as-unit.sh`` runs a command in the policy
service's sandbox.  tests/realhost_fixtures.py and tests/test_real_host.py use it; so does
tests/benchmark.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "RealHostError",
    "Images",
    "Boot",
    "ProgramRun",
    "ensure_images",
    "boot",
    "install_xbctl",
    "run_program",
    "recorded_run",
    "qemu_command",
    "write_cpio",
]

HERE = Path(__file__).resolve().parent
#: Packages fetched besides the kernel (whose package name comes from linux-image-amd64).
PACKAGES: tuple[str, ...] = (
    "xen-hypervisor-4.17-amd64",
    "busybox-static",
    "libxencall1",
    "libxenforeignmemory1",
)
KERNEL_META = "linux-image-amd64"
#: Modules Domain-0 loads (their dependencies are found from each module's depends=).
DOM0_MODULES: tuple[str, ...] = (
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "overlay",
    "xen_evtchn",
    "xen_privcmd",
    "xenfs",
    "xen_gntdev",
    "xen_gntalloc",
)
#: Files of this directory an image is built from (their bytes are part of the cache key).
SOURCES: tuple[str, ...] = ("dom0-init.sh", "guest-init.sh")
_FORMAT = 2
QEMU = "qemu-system-x86_64"
#: Xen's command line: Domain-0 gets a fixed size (its balloon may not grow past it); a console
#: ring that holds a whole domain dump (`xl debug-keys q`, read back with `xl dmesg -c`).
XEN_ARGS = (
    "dom0_mem=512M,max:512M dom0_max_vcpus=2 console=com1 com1=115200,8n1 conring_size=1m loglvl=all guest_loglvl=all"
)
DOM0_KERNEL_ARGS = "console=hvc0 quiet"


class RealHostError(RuntimeError):
    """Anything that keeps the rig from providing a bootable host (not a failed boot)."""


@dataclass(frozen=True)
class Images:
    """What a boot needs, in the cache."""

    base: Path  # the versioned cache directory
    root: Path  # the packages, unpacked
    xen: Path  # the hypervisor, gunzipped (a multiboot image)
    vmlinuz: Path
    vmlinux: Path  # the same kernel unpacked (an ELF), for Domain-0 and the guests: under emulation
    # xl loads it in seconds instead of a minute of unxz, and Xen builds Domain-0 a few seconds sooner
    dom0_initrd: Path
    guest_initrd: Path
    kernel_version: str  # e.g. 6.1.0-57-amd64
    versions: dict[str, str] = field(default_factory=dict)  # package -> version

    @property
    def xen_libs(self) -> Path:
        """A root holding only Debian's real libxencall and libxenforeignmemory (a lower layer)."""
        return self.base / "xenlibs"


def _run(cmd: list[str], *, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise RealHostError(f"command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise RealHostError(f"timed out after {timeout} s: {' '.join(cmd)}") from exc
    if done.returncode != 0:
        raise RealHostError(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr}{done.stdout}")
    return done


def _apt_download(names: list[str], into: Path) -> None:
    try:
        _run(["apt-get", "download", *names], cwd=into)
    except RealHostError:
        # Missing or stale package lists (a fresh machine, a superseded security version).
        _run(["apt-get", "update"], timeout=900)
        _run(["apt-get", "download", *names], cwd=into)


def _one_deb(debs: Path, package: str) -> Path:
    found = sorted(debs.glob(f"{package}_*.deb"))
    if len(found) != 1:
        raise RealHostError(f"expected one {package} .deb in {debs}, got {[p.name for p in found]}")
    return found[0]


def _deb_field(deb: Path, name: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), name]).stdout.strip()


def _kernel_package(meta_deb: Path) -> str:
    """linux-image-6.1.0-NN-amd64, the package linux-image-amd64 depends on."""
    for alternative in _deb_field(meta_deb, "Depends").split(","):
        name = alternative.split("|")[0].split("(")[0].strip()
        if re.fullmatch(r"linux-image-[0-9][\w.+-]*-amd64", name):
            return name
    raise RealHostError(f"{meta_deb.name} names no linux-image-*-amd64")


def unpack_bzimage(bzimage: Path) -> bytes:
    """The ELF kernel inside a bzImage compressed with xz (Debian's): the first xz stream."""
    import lzma

    data = bzimage.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise RealHostError(f"{bzimage} holds no xz stream (not Debian's xz-compressed kernel?)")
    unpacker = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    elf = unpacker.decompress(data[start:])
    if not elf.startswith(b"\x7fELF") or not unpacker.eof:
        raise RealHostError(f"the xz stream in {bzimage} is not a whole ELF kernel")
    return elf


def module_depends(ko: Path) -> list[str]:
    """The depends= entry of a kernel module's .modinfo (module names, as modinfo shows them)."""
    found = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", ko.read_bytes())
    if found is None:
        raise RealHostError(f"{ko} has no depends= in its .modinfo")
    return [name.replace("-", "_") for name in found.group(1).decode().split(",") if name]


def module_load_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[Path]:
    """The .ko files of WANTED and what they depend on, each after its dependencies."""
    index = {ko.name[: -len(".ko")].replace("-", "_"): ko for ko in modules_dir.rglob("*.ko")}
    order: list[Path] = []
    placed: set[str] = set()

    def place(name: str, chain: tuple[str, ...]) -> None:
        if name in placed:
            return
        if name in chain:
            raise RealHostError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        if name not in index:
            raise RealHostError(f"module {name} is not in {modules_dir} (built in?)")
        for dep in module_depends(index[name]):
            place(dep, chain + (name,))
        placed.add(name)
        order.append(index[name])

    for name in wanted:
        place(name, ())
    return order


def write_cpio(path: Path, entries: list[tuple[str, int, bytes | None, tuple[int, int] | None]]) -> None:
    """An initramfs (cpio "newc", uncompressed) of ENTRIES: (name, mode, data or symlink
    target, (major, minor) for device nodes).  Directories must come before their contents."""
    out = bytearray()
    for ino, (name, mode, data, rdev) in enumerate(entries + [("TRAILER!!!", 0, b"", None)], start=1):
        data = data or b""
        major, minor = rdev or (0, 0)
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, major, minor, len(name) + 1, 0)
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        out += header + name.encode() + b"\0"
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    path.write_bytes(bytes(out))


def _busybox_entries(root: Path) -> list:
    dirs = ["bin", "dev", "proc", "sys", "mnt", "tmp", "lib", "lib/modules"]
    entries: list = [(d, 0o40755, None, None) for d in dirs]
    entries.append(("bin/busybox", 0o100755, (root / "bin" / "busybox").read_bytes(), None))
    entries.append(("bin/sh", 0o120777, b"busybox", None))
    entries.append(("dev/console", 0o20600, None, (5, 1)))
    entries.append(("dev/null", 0o20666, None, (1, 3)))
    return entries


def _build_initrds(tmp: Path, kernel_version: str) -> None:
    root = tmp / "root"
    modules_dir = root / "lib" / "modules" / kernel_version
    order = module_load_order(modules_dir, DOM0_MODULES)
    entries = _busybox_entries(root)
    entries.append(("init", 0o100755, (HERE / "dom0-init.sh").read_bytes(), None))
    for ko in order:
        entries.append((f"lib/modules/{ko.name}", 0o100644, ko.read_bytes(), None))
    entries.append(("lib/modules/order", 0o100644, "".join(f"{ko.name}\n" for ko in order).encode(), None))
    write_cpio(tmp / "dom0.cpio", entries)
    guest = _busybox_entries(root)
    guest.append(("init", 0o100755, (HERE / "guest-init.sh").read_bytes(), None))
    write_cpio(tmp / "guest.cpio", guest)


def _key() -> str:
    digest = hashlib.sha256(f"{_FORMAT};{KERNEL_META};{','.join(PACKAGES)};{','.join(DOM0_MODULES)}".encode())
    for name in SOURCES:
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:16]


def _images(base: Path, stamp: dict) -> Images:
    root = base / "root"
    version = stamp["kernel_version"]
    return Images(
        base=base,
        root=root,
        xen=base / "xen-4.17",
        vmlinuz=root / "boot" / f"vmlinuz-{version}",
        vmlinux=base / "vmlinux",
        dom0_initrd=base / "dom0.cpio",
        guest_initrd=base / "guest.cpio",
        kernel_version=version,
        versions=stamp["versions"],
    )


def _complete(images: Images) -> bool:
    return all(
        p.exists()
        for p in (
            images.xen,
            images.vmlinuz,
            images.vmlinux,
            images.dom0_initrd,
            images.guest_initrd,
            images.xen_libs / "usr/lib/x86_64-linux-gnu/libxencall.so.1",
        )
    )


def default_cache_dir() -> Path:
    env = os.environ.get("XBCTL_TEST_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "xbctl-tests"


def ensure_images(cache_dir: Path | None = None) -> Images:
    """Fetch, unpack and build once (a stamp makes later calls instant); the images."""
    top = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    base = top / f"realhost-{_key()}"
    stamp_path = base / "stamp.json"

    def cached() -> Images | None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            images = _images(base, json.loads(stamp_path.read_text()))
            if _complete(images):
                return images
        return None

    if (images := cached()) is not None:
        return images
    top.mkdir(parents=True, exist_ok=True)
    with open(top / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other test processes, other checkouts
        if (images := cached()) is not None:
            return images
        shutil.rmtree(base, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".realhost-", dir=top))
        try:
            debs = tmp / "debs"
            debs.mkdir()
            _apt_download([KERNEL_META, *PACKAGES], debs)
            kernel = _kernel_package(_one_deb(debs, KERNEL_META))
            _apt_download([kernel], debs)
            versions = {}
            for package in (kernel, *PACKAGES):
                deb = _one_deb(debs, package)
                versions[package] = _deb_field(deb, "Version")
                target = tmp / ("xenlibs" if package.startswith("libxen") else "root")
                _run(["dpkg", "-x", str(deb), str(target)])
            kernel_version = kernel[len("linux-image-") :]
            with gzip.open(tmp / "root" / "boot" / "xen-4.17-amd64.gz") as packed:
                (tmp / "xen-4.17").write_bytes(packed.read())
            (tmp / "vmlinux").write_bytes(unpack_bzimage(tmp / "root" / "boot" / f"vmlinuz-{kernel_version}"))
            _build_initrds(tmp, kernel_version)
            shutil.rmtree(debs)
            stamp = {"kernel_version": kernel_version, "versions": versions}
            (tmp / "stamp.json").write_text(json.dumps(stamp, indent=1))
            tmp.rename(base)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in top.glob("realhost-*"):  # builds of other sources, unused for a day
            with contextlib.suppress(OSError):
                if old != base and time.time() - old.stat().st_mtime > 86400:
                    shutil.rmtree(old, ignore_errors=True)
        images = _images(base, stamp)
        if not _complete(images):
            raise RealHostError(f"the unpacked packages lack expected files under {base}")
        return images


# --------------------------------------------------------------------------
# A boot
# --------------------------------------------------------------------------


@dataclass
class Boot:
    """One finished boot of the real host."""

    directory: Path  # the read-write share: job, job.log, job.status, whatever the job wrote
    serial_path: Path
    ended: str  # "QEMU exited by itself" (power-off, or a reboot after a panic), "timed out after N s",
    # "QEMU exited with N", "cancelled"
    seconds: float
    qemu_stderr: str

    @property
    def job_status(self) -> int | None:
        """The job's exit status as /init recorded it (None: it never finished)."""
        with contextlib.suppress(OSError, ValueError):
            return int((self.directory / "job.status").read_text().strip())
        return None

    @property
    def ok(self) -> bool:
        """QEMU ended by itself after the job ran to its end with status 0 (Domain-0 powered off)."""
        return self.ended == "QEMU exited by itself" and self.job_status == 0

    def serial(self) -> str:
        with contextlib.suppress(OSError):
            return self.serial_path.read_bytes().decode(errors="replace").replace("\r\n", "\n")
        return ""

    def serial_tail(self, lines: int = 60) -> str:
        """The console's last lines (Xen's and Domain-0's), for a failure message."""
        return "\n".join(self.serial().splitlines()[-lines:])

    def job_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "job.log").read_text(errors="replace")
        return ""

    def describe(self, lines: int = 60) -> str:
        """Why the boot is not OK: how it ended, the job's status and output's end, the console's end."""
        job_tail = "\n".join(self.job_log().splitlines()[-30:])
        return (
            f"real host boot {self.ended} after {self.seconds:.0f} s; job status {self.job_status}\n"
            f"--- job.log (last lines) ---\n{job_tail}\n"
            f"--- serial console (last {lines} lines: {self.serial_path}) ---\n{self.serial_tail(lines)}\n"
            + (f"--- qemu stderr ---\n{self.qemu_stderr}" if self.qemu_stderr.strip() else "")
        )


def qemu_command(
    images: Images,
    directory: Path,
    serial_path: Path,
    *,
    layers: list[Path],
    memory_mib: int = 1536,
    cpus: int = 2,
    job_timeout_s: int = 600,
) -> list[str]:
    """The QEMU command line of a boot whose read-write share is DIRECTORY."""
    for path in (directory, *layers):
        if "," in str(path) or " " in str(path):
            raise RealHostError(f"QEMU's -initrd and -virtfs cannot take a path with ',' or ' ': {path}")
    dom0_args = (
        f"{DOM0_KERNEL_ARGS} realhost_out={directory} realhost_timeout={job_timeout_s} realhost_layers={len(layers)}"
    )
    return [
        QEMU,
        "-machine",
        "pc",
        "-accel",
        "tcg",
        "-cpu",
        "qemu64",
        "-smp",
        str(cpus),
        "-m",
        str(memory_mib),
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-kernel",
        str(images.xen),
        "-append",
        XEN_ARGS,
        "-initrd",
        f"{images.vmlinux} {dom0_args},{images.dom0_initrd}",
        "-chardev",
        f"file,id=serial,path={serial_path}",
        "-serial",
        "chardev:serial",
        "-virtfs",
        "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs",
        f"local,path={directory},mount_tag=out,security_model=none,multidevs=remap",
        *(
            arg
            for n, layer in enumerate(layers)
            for arg in ("-virtfs", f"local,path={layer},mount_tag=layer{n},security_model=none,readonly=on")
        ),
    ]


def boot(
    images: Images,
    directory: Path,
    job: str,
    *,
    layers: list[Path],
    timeout_s: float = 900,
    memory_mib: int = 1536,
    cpus: int = 2,
    cancel: threading.Event | None = None,
) -> Boot:
    """Boot the real host, run the shell script JOB in Domain-0, wait for the power-off.

    DIRECTORY (empty or new) becomes Domain-0's read-write share at the same path; JOB is
    written there as ``job``.  LAYERS are host directories laid over the host's ``/`` in
    Domain-0 (first wins), e.g. the unpacked Xen userspace.  The job gets ``timeout_s`` less a
    margin for boot and power-off; QEMU is killed at ``timeout_s``, or as soon as CANCEL is set
    (the test session ends)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "job").write_text(job)
    for stale in ("job.status", "job.log"):
        with contextlib.suppress(FileNotFoundError):
            (directory / stale).unlink()
    serial_path = directory.parent / f"{directory.name}.serial.log"
    job_timeout_s = max(30, int(timeout_s) - 120)
    command = qemu_command(
        images, directory, serial_path, layers=layers, memory_mib=memory_mib, cpus=cpus, job_timeout_s=job_timeout_s
    )
    (directory.parent / f"{directory.name}.qemu-command").write_text(" ".join(command) + "\n")
    if shutil.which("setpriv"):
        # QEMU dies with the thread that started it (a test run killed outright leaves no QEMU).
        command = ["setpriv", "--pdeathsig", "KILL", "--", *command]
    started = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as stderr:
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True
            )
        except FileNotFoundError as exc:
            raise RealHostError(f"{QEMU} not found (Debian package qemu-system-x86; tests/run installs it)") from exc
        try:
            deadline = started + timeout_s
            while True:
                try:
                    status = process.wait(timeout=1)
                    ended = "QEMU exited by itself" if status == 0 else f"QEMU exited with {status}"
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline or (cancel is not None and cancel.is_set()):
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(process.pid, signal.SIGKILL)
                        process.wait()
                        ended = f"timed out after {timeout_s:.0f} s" if time.monotonic() > deadline else "cancelled"
                        break
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        stderr.seek(0)
        qemu_stderr = stderr.read()
    return Boot(directory, serial_path, ended, time.monotonic() - started, qemu_stderr)


# --------------------------------------------------------------------------
# The program in Domain-0 (dom0_checks.py), from the host
# --------------------------------------------------------------------------

#: Not copied into the tree xbctl is installed from (pip writes build/ and *.egg-info into it).
_NOT_COPIED = (
    ".git",
    ".venv",
    "build",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    ".mypy_cache",
    "*.pyc",
)
SYSTEM_PYTHON = "/usr/bin/python3"


def install_xbctl(source: Path, dest: Path, python: str = SYSTEM_PYTHON) -> Path:
    """xbctl as a user installs it: a venv (Debian's Python) with ``pip install`` of a copy of
    SOURCE, with the exporter's extra; the venv's directory."""
    copy = dest / "src"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns(*_NOT_COPIED))
    venv = dest / "venv"
    _run([python, "-m", "venv", str(venv)])
    _run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", f"{copy}[exporter]"],
        timeout=1200,
    )
    if not (venv / "bin" / "xbctl").exists():
        raise RealHostError(f"pip installed no xbctl into {venv}")
    return venv


@dataclass
class ProgramRun:
    """One boot running dom0_checks.py, and what it recorded."""

    boot: Boot | None
    results: dict | None
    problem: str | None = None  # why there is no boot (preparation failed)

    def describe(self) -> str:
        if self.boot is None:
            return f"the real host was not booted: {self.problem}"
        return self.boot.describe()


def run_program(
    mode: str,
    workdir: Path,
    source: Path,
    *,
    python: str | None = None,
    timeout_s: float = 900,
    cancel: threading.Event | None = None,
    extra: dict | None = None,
    cache_dir: Path | None = None,
) -> ProgramRun:
    """Install xbctl from SOURCE, boot the real host and run dom0_checks.py in MODE ("checks" or
    "bench") in Domain-0 with PYTHON (default: this one, whose venv has pyxs); never raises for
    a failure, which the returned run describes."""
    import xenharness

    try:
        images = ensure_images(cache_dir)
        tools = xenharness.ensure_tools(cache_dir)
        if shutil.which(QEMU) is None:
            raise RealHostError(f"{QEMU} not found (Debian package qemu-system-x86; tests/run installs it)")
        venv = install_xbctl(source, workdir / "xbctl")
    except (RealHostError, xenharness.XenHarnessError, OSError) as exc:
        return ProgramRun(None, None, f"{type(exc).__name__}: {exc}")
    out = workdir / "boot"
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "mode": mode,
        "out": str(out),
        "rig": str(HERE),
        "venv": str(venv),
        "xbctl": str(venv / "bin" / "xbctl"),
        "kernel": str(images.vmlinux),
        "ramdisk": str(images.guest_initrd),
        "exporter_port": 9477,
        "versions": {**images.versions, **tools.versions},
        **(extra or {}),
    }
    (out / "config.json").write_text(json.dumps(config, indent=1))
    job = (
        f"set -e\nsh {HERE / 'dom0-start-xen.sh'}\n"
        f"exec {python or sys.executable} {HERE / 'dom0_checks.py'} {out / 'config.json'}\n"
    )
    finished = boot(images, out, job, layers=[images.xen_libs, tools.root], timeout_s=timeout_s, cancel=cancel)
    (workdir / "boot.json").write_text(
        json.dumps({"ended": finished.ended, "seconds": finished.seconds, "qemu_stderr": finished.qemu_stderr})
    )
    return recorded_run(workdir)


def recorded_run(workdir: Path) -> ProgramRun:
    """The run recorded in WORKDIR (run_program's), read back: e.g. to assert again on it."""
    out = workdir / "boot"
    try:
        facts = json.loads((workdir / "boot.json").read_text())
    except (OSError, ValueError) as exc:
        return ProgramRun(None, None, f"no boot recorded in {workdir}: {exc}")
    finished = Boot(out, out.parent / f"{out.name}.serial.log", facts["ended"], facts["seconds"], facts["qemu_stderr"])
    results = None
    with contextlib.suppress(OSError, ValueError):
        results = json.loads((out / "results.json").read_text())
    return ProgramRun(finished, results)
