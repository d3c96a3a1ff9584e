"""Where Xenstore is, found as libxenstore finds it: a daemon's socket (we are the host) or a
xenbus device (a guest). Light enough for every start-up: choosing a transport asks it too."""

from __future__ import annotations

import os
import stat

from ...errors import XbctlError, permission_denied, unavailable

XENBUS_DEVICES = ("/dev/xen/xenbus", "/proc/xen/xenbus")
# xenfs's xenbus is a regular file in /proc, which only the kernel can create.
XENFS_XENBUS = "/proc/xen/xenbus"


def xenstore_socket_path() -> str:
    """The Xenstore socket, found as libxenstore finds it."""
    if os.environ.get("XENSTORED_PATH"):
        return os.environ["XENSTORED_PATH"]
    rundir = os.environ.get("XENSTORED_RUNDIR") or "/var/run/xenstored"
    return os.path.join(rundir, "socket")


def is_there(path: str) -> bool:
    """True when something is at PATH, or we may not look (then opening it says so)."""
    try:
        os.stat(path)
    except PermissionError:
        return True  # a socket in a directory only root may enter is still Xenstore's
    except (OSError, ValueError):
        return False
    return True


class Endpoint:
    """Where Xenstore is: a daemon's socket (we are the host) or a xenbus device (a guest)."""

    __slots__ = ("path", "is_socket")

    def __init__(self, path: str, is_socket: bool) -> None:
        self.path, self.is_socket = path, is_socket


def find_endpoint() -> Endpoint:
    """The Xenstore endpoint, chosen as libxenstore chooses it."""
    explicit = os.environ.get("XENSTORED_PATH")
    if explicit:
        # libxenstore accepts a socket or a device here and tells them apart by stat().
        return _endpoint_at(explicit)
    path = xenstore_socket_path()
    if is_there(path):
        return _endpoint_at(path)
    for device in XENBUS_DEVICES:
        if is_there(device):
            return _endpoint_at(device)
    raise no_daemon_error(path, "no such socket, and no xenbus device")


def _endpoint_at(path: str) -> Endpoint:
    # Anything else (a file, a directory, a fifo) would be opened read-write and get
    # Xenstore requests written into it, even by a read.
    try:
        mode = os.stat(path).st_mode
    except PermissionError:
        raise permission_denied(path) from None
    except OSError as exc:
        raise no_daemon_error(path, exc.strerror or "cannot stat") from None
    if stat.S_ISSOCK(mode):
        return Endpoint(path, True)
    if stat.S_ISCHR(mode) or (stat.S_ISREG(mode) and os.path.normpath(path) == XENFS_XENBUS):
        return Endpoint(path, False)
    raise unavailable(
        f"Xenstore at {path}: not a socket or xenbus device",
        hint="XENSTORED_PATH names xenstored's socket or a xenbus device (/dev/xen/xenbus)",
    )


def no_daemon_error(path: str, why: str) -> XbctlError:
    return unavailable(
        f"Xenstore at {path}: {why}",
        hint="is xenstored running? Set XENSTORED_PATH or XENSTORED_RUNDIR, or use --transport sim",
    )
