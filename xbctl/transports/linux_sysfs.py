"""A Linux guest's own balloon driver, as its sysfs shows it: /sys/devices/system/xen_memory/xen_memory0.

What Linux's drivers/xen/xen-balloon.c publishes there (decimal, one line each):

    target_kb        the driver's target, target_pages * 4 (KiB); root (CAP_SYS_ADMIN) writes it:
                     balloon_set_new_target(simple_strtoull(text, 0) * 1024 >> PAGE_SHIFT), which
                     takes any number (garbage reads as 0) and checks nothing
    target           the same target in bytes; a write goes through memparse (K, M, G... suffixes)
    info/current_kb  current_pages * 4: what the guest holds now
    info/low_kb, info/high_kb     the pages in the balloon (low and high memory)
    schedule_delay, retry_count   the retry state (read-only)
    max_schedule_delay, max_retry_count   its limits (root writes them; xbctl never does)

xbctl reads info/current_kb and target_kb, and sets the target as `echo N > target_kb` does:
one write of decimal KiB and a newline. The driver refuses nothing, so every rule is
xbctl/rules.py's, checked before the write. $XBCTL_SYSFS_ROOT stands for /sys (tests).
"""

from __future__ import annotations

import errno
import os

from ..errors import ExitStatus, XbctlError, unavailable

SYSFS_ROOT_ENV = "XBCTL_SYSFS_ROOT"
BALLOON_DIR = "devices/system/xen_memory/xen_memory0"
TARGET_KB = "target_kb"
CURRENT_KB = "info/current_kb"
MAX_LINE = 64  # "%lu\n" of a 64-bit number is 21 bytes; more is not the driver's


def balloon_dir() -> str:
    """Where the driver's files are: $XBCTL_SYSFS_ROOT (default /sys) + devices/system/xen_memory/xen_memory0."""
    return os.path.join(os.environ.get(SYSFS_ROOT_ENV) or "/sys", BALLOON_DIR)


class LinuxBalloon:
    """The guest's own Linux balloon driver, through its sysfs files."""

    __slots__ = ("directory",)

    def __init__(self, directory: str) -> None:
        self.directory = directory

    @classmethod
    def find(cls) -> "LinuxBalloon | None":
        """The driver of the kernel xbctl runs on, or None (not Linux, or no Xen balloon driver)."""
        directory = balloon_dir()
        return cls(directory) if os.path.exists(os.path.join(directory, TARGET_KB)) else None

    def path(self, name: str) -> str:
        """The file NAME of the driver."""
        return os.path.join(self.directory, name)

    def read_kib(self, name: str) -> int:
        """File NAME's value (KiB); an unreadable file or one that holds no number is an error (exit 3)."""
        path = self.path(name)
        try:
            with open(path, "rb") as file:
                raw = file.read(MAX_LINE + 1)
        except OSError as exc:
            raise unavailable(f"{path}: {exc.strerror or exc}", errno_name=_errno_name(exc)) from None
        text = raw.decode("ascii", "replace").rstrip("\n")
        if not (text.isascii() and text.isdigit()) or len(raw) > MAX_LINE:
            raise XbctlError(
                f"{path}: holds {text[:40]!r}, not a number of KiB",
                status=ExitStatus.UNAVAILABLE,
                errno_name="EINVAL",
                hint=f"{SYSFS_ROOT_ENV} names a directory laid out as Linux's /sys",
            )
        return int(text)

    def read(self) -> tuple[int, int]:
        """(current, target) in KiB, as the driver counts them (without video memory)."""
        return self.read_kib(CURRENT_KB), self.read_kib(TARGET_KB)

    def set_target_kib(self, kib: int) -> None:
        """Set the driver's target to KIB, as `echo KIB > target_kb` (one write, never a file created)."""
        path = self.path(TARGET_KB)
        data = f"{kib}\n".encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
            try:
                written = os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _write_error(path, exc) from None
        if written != len(data):  # sysfs takes a store in one write(): a part would be another number
            raise unavailable(f"{path}: only {written} of {len(data)} bytes written")


def _errno_name(exc: OSError) -> str | None:
    return errno.errorcode.get(exc.errno) if exc.errno else None


def _write_error(path: str, exc: OSError) -> XbctlError:
    name = _errno_name(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        # EACCES: opening the root-only file; EPERM: the driver's own check (CAP_SYS_ADMIN).
        return XbctlError(
            f"{path}: {exc.strerror} ({name})",
            status=ExitStatus.REFUSED,
            errno_name=name,
            hint="the balloon driver takes a target from root only (CAP_SYS_ADMIN): sudo xbctl target SIZE",
        )
    return unavailable(f"{path}: {exc.strerror or exc}", errno_name=name)
