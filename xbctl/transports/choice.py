"""Which transport answers: the one named; else Xenstore when it is there or this is a Xen
machine; else (no Xen here) the simulator.

On a Xen machine a missing Xenstore is a failure with its reason (exit 3), never a cue to
simulate: a script's `xbctl mem-set web 512 && ...` on a Domain-0 whose xenstored is
restarting must not succeed on an imaginary host. The interface (xbctl.transports) never
imports its implementations; this module does, lazily, and completion makes the same choice.
"""

from __future__ import annotations

import os

from ..errors import ExitStatus, XbctlError
from . import TRANSPORT_NAMES, Transport

# What says "this machine runs on Xen" (host or guest): the kernel's sysfs, or xenfs.
HYPERVISOR_TYPE = "/sys/hypervisor/type"
XENFS_CAPABILITIES = "/proc/xen/capabilities"

ON_XEN_HINT = (
    "this is a Xen machine, so xbctl answers from its simulator only when told (--transport sim); "
    "on Domain-0, is xenstored running?"
)


def xenstore_reachable() -> bool:
    """True when a Xenstore socket or xenbus device is there to talk to."""
    # Loaded here, not at start-up: a named transport never asks where Xenstore is.
    from .xenstore.endpoint import XENBUS_DEVICES, is_there, xenstore_socket_path

    return is_there(xenstore_socket_path()) or any(is_there(dev) for dev in XENBUS_DEVICES)


def on_xen() -> bool:
    """True on a Xen host or guest, where a missing Xenstore is a failure, not a cue to simulate."""
    try:
        with open(HYPERVISOR_TYPE) as kind:
            if kind.read().strip() == "xen":
                return True
    except OSError:
        pass  # no /sys/hypervisor (an older kernel, a container): xenfs may still say so
    return os.path.exists(XENFS_CAPABILITIES)


def transport_name(name: str | None) -> str:
    """NAME, or the default: Xenstore when reachable or on a Xen machine, else the simulator.

    Naming a Xenstore (XENSTORED_PATH, XENSTORED_RUNDIR) means Xenstore: a typo must
    fail, never answer from a simulated host.
    """
    if name is not None:
        return name
    explicit = bool(os.environ.get("XENSTORED_PATH") or os.environ.get("XENSTORED_RUNDIR"))
    return "xenstore" if explicit or xenstore_reachable() or on_xen() else "sim"


def open_transport(name: str | None, sim_state: str | None) -> Transport:
    """The transport called NAME, or the default (transport_name)."""
    chosen = transport_name(name)
    if chosen == "sim":
        from .sim import SimTransport

        return SimTransport(sim_state)
    if chosen == "xenstore":
        from .xenstore.transport import XenstoreTransport

        try:
            return XenstoreTransport()
        except XbctlError as exc:
            # Xenstore was not asked for, yet it is the only answer here: say why not the simulator.
            if name is None and exc.errno_name is None and on_xen():
                exc.hint = ON_XEN_HINT
            raise
    raise XbctlError(
        f"unknown transport {name!r}",
        status=ExitStatus.USAGE,
        hint="transports: " + ", ".join(TRANSPORT_NAMES),
    )
