"""Which transport answers: the one named, or Xenstore when reachable, else the simulator.

The interface (xbctl.transports) never imports its implementations; this module does,
lazily, and completion uses the same choice as the commands.
"""

from __future__ import annotations

import os

from ..errors import ExitStatus, XbctlError
from . import TRANSPORT_NAMES, Transport


def xenstore_socket_path() -> str:
    """The Xenstore socket, found as libxenstore finds it."""
    if os.environ.get("XENSTORED_PATH"):
        return os.environ["XENSTORED_PATH"]
    rundir = os.environ.get("XENSTORED_RUNDIR") or "/var/run/xenstored"
    return os.path.join(rundir, "socket")


XENBUS_DEVICES = ("/dev/xen/xenbus", "/proc/xen/xenbus")


def xenstore_reachable() -> bool:
    """True when a Xenstore socket or xenbus device is there to talk to."""
    return os.path.exists(xenstore_socket_path()) or any(os.path.exists(dev) for dev in XENBUS_DEVICES)


def on_xen() -> bool:
    """True on a Xen host or guest, where a missing Xenstore is a failure, not a cue to simulate."""
    try:
        with open("/sys/hypervisor/type") as kind:
            if kind.read().strip() == "xen":
                return True
    except OSError:
        pass  # no /sys/hypervisor (an older kernel, a container): xenfs may still say so
    return os.path.exists("/proc/xen/capabilities")


def fallback_note(name: str | None, transport: Transport) -> str | None:
    """What to tell the user when, on a Xen machine, the default fell back to the simulator."""
    if name is None and transport.name == "sim" and on_xen():
        return (
            "this is a Xen machine but no Xenstore is reachable (is xenstored running?); "
            "answering from the simulated host (--transport xenstore insists on Xenstore)"
        )
    return None


def transport_name(name: str | None) -> str:
    """NAME, or the default: Xenstore when reachable, else the simulator.

    Naming a Xenstore (XENSTORED_PATH, XENSTORED_RUNDIR) means Xenstore: a typo must
    fail, never answer from a simulated host.
    """
    if name is not None:
        return name
    explicit = bool(os.environ.get("XENSTORED_PATH") or os.environ.get("XENSTORED_RUNDIR"))
    return "xenstore" if explicit or xenstore_reachable() else "sim"


def open_transport(name: str | None, sim_state: str | None) -> Transport:
    """The transport called NAME, or the default (transport_name)."""
    name = transport_name(name)
    if name == "sim":
        from .sim import SimTransport

        return SimTransport(sim_state)
    if name == "xenstore":
        from .xenstore import XenstoreTransport

        return XenstoreTransport()
    raise XbctlError(
        f"unknown transport {name!r}",
        status=ExitStatus.USAGE,
        hint="transports: " + ", ".join(TRANSPORT_NAMES),
    )
