"""The Xenstore transport: the five nodes mapped onto /local/domain/N.

Mapping (decimal KiB strings):

    target   memory/target (as Domain-0 with the hypervisor: xl mem-set's whole effect)
    xen-max  memory/static-max (as Domain-0 with the hypervisor: also its maximum, as xl mem-max)
    min      max(host floor, data/balloon/min when sensible); the host floor is
             memory/dynamic-min, else (a guest that publishes no minimum) a quarter of
             static-max; Domain-0 at least libxl's 128 MiB; writes set memory/dynamic-min
    current  the hypervisor's (tot_pages + outstanding_pages) * 4 as Domain-0, else
             data/balloon/current (published by the guest), else target
    max      xen-max clipped by data/balloon/max (published by the guest, when sensible)

What a guest publishes (data/balloon/*, control/*) is advice: garbage or nonsense there
is ignored with a warning and never blocks the host's own nodes.

plus `control/feature-balloon` (a driver acts on target) and `data/balloon/diagnostic`
(the driver's last word on why it cannot reach target; xbctl's own convention).

The wire (framing, request ids, deadlines, watches) is xbctl/xenstore_wire.py: every
request has one deadline, no reply may exceed Xenstore's 4096 bytes, a peer that breaks
the protocol is a lost connection (exit 3), and errors keep the daemon's own names.
"""

from __future__ import annotations

import os
import random
import socket
import stat
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, TypeVar

from ..errors import ExitStatus, XbctlError, unavailable, unknown
from ..nodes import Balloon
from ..units import MAX_KIB, is_node_kib, parse_number, round_up_to_page
from .wire import WireClient, XenstoreLost, XenstoreReplyError
from . import DOMID_FIRST_RESERVED, Domain, Plan, Transport, match_domain, parse_domain_id
from .choice import XENBUS_DEVICES, xenstore_socket_path

T = TypeVar("T")

DEFAULT_REQUEST_TIMEOUT_S = 5.0
MAX_ATTEMPTS = 8  # transaction attempts before giving up on EAGAIN
FIRST_BACKOFF_S = 0.005

# Node paths relative to /local/domain/N.
TARGET = "memory/target"
STATIC_MAX = "memory/static-max"
DYNAMIC_MIN = "memory/dynamic-min"
GUEST_CURRENT = "data/balloon/current"
GUEST_MAX = "data/balloon/max"
GUEST_MIN = "data/balloon/min"
DIAGNOSTIC = "data/balloon/diagnostic"
FEATURE_BALLOON = "control/feature-balloon"
VIDEORAM = "memory/videoram"
NODE_PATHS = {"target": TARGET, "xen-max": STATIC_MAX, "min": DYNAMIC_MIN}

# Errors that are the store refusing this request (exit 1), as opposed to failing (exit 3).
REFUSING_ERRORS = {"EACCES", "EPERM", "EQUOTA", "ENOSPC", "E2BIG", "EROFS"}
# libxl refuses a Domain-0 target below LIBXL_MIN_DOM0_MEM (128 MiB): below it dom0 cannot run.
DOM0_MIN_KIB = 128 * 1024
# x86 LIBXL_MAXMEM_CONSTANT: libxl gives the hypervisor's maximum this much slack over the target.
MAXMEM_SLACK_KIB = 1024
# A guest that publishes no minimum and has no memory/dynamic-min: its floor is static-max
# divided by this (XAPI refuses dynamic-min below a quarter of static-max for the same reason:
# a Linux guest sizes its kernel tables for static-max at boot and thrashes or OOMs far below).
DEFAULT_FLOOR_DIVISOR = 4
# --wait re-reads the hypervisor's figure this often: it changes without a Xenstore event.
HYPERVISOR_POLL_S = 0.25
# xenfs's xenbus is a regular file in /proc, which only the kernel can create.
XENFS_XENBUS = Path("/proc/xen/xenbus")


def request_timeout_s() -> float:
    """The deadline for one Xenstore request ($XBCTL_XENSTORE_TIMEOUT seconds, default 5)."""
    text = os.environ.get("XBCTL_XENSTORE_TIMEOUT", "")
    if text == "":
        return DEFAULT_REQUEST_TIMEOUT_S
    return parse_number(text, what="XBCTL_XENSTORE_TIMEOUT", maximum=3600, positive=True)


@dataclass(frozen=True)
class Endpoint:
    """Where Xenstore is: a daemon's socket (we are the host) or a xenbus device (a guest)."""

    path: Path
    is_socket: bool


def find_endpoint() -> Endpoint:
    """The Xenstore endpoint, chosen as libxenstore chooses it."""
    explicit = os.environ.get("XENSTORED_PATH")
    if explicit:
        # libxenstore accepts a socket or a device here and tells them apart by stat().
        return _endpoint_at(Path(explicit))
    path = xenstore_socket_path()
    if path.exists():
        return _endpoint_at(path)
    for device in XENBUS_DEVICES:
        if device.exists():
            return _endpoint_at(device)
    raise _no_daemon(path, "no such socket, and no xenbus device")


def _endpoint_at(path: Path) -> Endpoint:
    # Anything else (a file, a directory, a fifo) would be opened read-write and get
    # Xenstore requests written into it, even by a read.
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise _no_daemon(path, exc.strerror or "cannot stat") from None
    if stat.S_ISSOCK(mode):
        return Endpoint(path, True)
    if stat.S_ISCHR(mode) or (stat.S_ISREG(mode) and path == XENFS_XENBUS):
        return Endpoint(path, False)
    raise unavailable(
        f"Xenstore at {path}: not a socket or xenbus device",
        hint="XENSTORED_PATH names xenstored's socket or a xenbus device (/dev/xen/xenbus)",
    )


def _no_daemon(path: Path, why: str) -> XbctlError:
    return unavailable(
        f"Xenstore at {path}: {why}",
        hint="is xenstored running? Set XENSTORED_PATH or XENSTORED_RUNDIR, or use --transport sim",
    )


# ---------------------------------------------------------------- transactions


class Txn:
    """Reads and writes of one domain's nodes, inside one Xenstore transaction."""

    def __init__(self, store: "XenstoreTransport", domid: int) -> None:
        self.store = store
        self.base = f"/local/domain/{domid}"

    def path(self, rel: str) -> str:
        """The absolute path of node REL of this domain."""
        return f"{self.base}/{rel}"

    def read(self, rel: str) -> str | None:
        """The value of REL, or None when it does not exist."""
        return self.store.read_path(self.path(rel))

    def write(self, rel: str, value: str) -> None:
        """Set REL to VALUE."""
        self.store.call(self.path(rel), lambda c: c.write(self.path(rel).encode(), value.encode()))

    def remove(self, rel: str) -> None:
        """Delete REL if it exists."""
        if self.read(rel) is not None:
            self.store.call(self.path(rel), lambda c: c.delete(self.path(rel).encode()))


# ---------------------------------------------------------------- the transport


class XenstoreTransport(Transport):
    """Balloons of real domains (or agents' simulated ones) through xenstored."""

    name = "xenstore"

    def __init__(self) -> None:
        self.endpoint = find_endpoint()
        self.timeout_s = request_timeout_s()
        self._own: Domain | None = None
        self._watched: set[str] = set()
        self._token = f"xbctl-{os.getpid()}-{random.getrandbits(32):08x}".encode()
        try:
            self.client = WireClient(self.endpoint.path, self.endpoint.is_socket, self.timeout_s)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if isinstance(exc, socket.timeout):
                reason = f"no answer within {self.timeout_s:g} s"
            raise _no_daemon(self.endpoint.path, reason) from None
        self._hypervisor = None
        self._hypervisor_tried = False
        self._hypervisor_problem: str | None = None

    # ------------------------------------------------------------ the hypervisor

    def hypervisor(self):
        """libxenctrl opened as Domain-0, or None (then say once why: Xenstore alone answers)."""
        if not self._hypervisor_tried:
            self._hypervisor_tried = True
            if not self.endpoint.is_socket:
                return None  # a guest: the hypervisor is not ours to ask
            if os.environ.get("XBCTL_LIBXENCTRL") == "":  # switched off: not even ctypes is loaded
                self._drop_hypervisor("XBCTL_LIBXENCTRL is empty (the hypervisor layer is switched off)")
                return None
            from .hypervisor import Hypervisor, Unavailable

            try:
                self._hypervisor = Hypervisor()
            except Unavailable as exc:
                self._drop_hypervisor(str(exc))
        return self._hypervisor

    def _drop_hypervisor(self, why: str) -> None:
        if self._hypervisor is not None:
            self._hypervisor.close()
            self._hypervisor = None
        self._hypervisor_problem = why
        self.note(f"hypervisor not used: {why}; answering from Xenstore alone")

    def _domain_info(self, domid: int):
        """The hypervisor's info for DOMID; None without a hypervisor or such a domain there."""
        hypervisor = self.hypervisor()
        if hypervisor is None:
            return None
        from .hypervisor import HypervisorError

        try:
            return hypervisor.domain(domid)
        except HypervisorError as exc:
            self._drop_hypervisor(str(exc))
            return None

    def hypervisor_status(self) -> dict | None:
        if not self.endpoint.is_socket:
            return None
        self.hypervisor()
        hypervisor = self._hypervisor
        return {
            "used": hypervisor is not None,
            "library": hypervisor.library_name if hypervisor else None,
            "release": hypervisor.release if hypervisor else None,
            "reason": self._hypervisor_problem,
        }

    def host_free_kib(self) -> int | None:
        hypervisor = self.hypervisor()
        if hypervisor is None:
            return None
        from .hypervisor import HypervisorError

        try:
            return hypervisor.free_kib()
        except HypervisorError as exc:
            self._drop_hypervisor(str(exc))
            return None

    def hypervisor_poll_s(self) -> float | None:
        return HYPERVISOR_POLL_S if self._hypervisor is not None else None

    # ------------------------------------------------------------ requests

    def where(self) -> str:
        """How to name this connection in messages."""
        return f"Xenstore at {self.endpoint.path}"

    def call(self, path: str, request: Callable[[WireClient], T]) -> T:
        """Run REQUEST on the client; Xenstore errors become XbctlErrors that name PATH."""
        try:
            return request(self.client)
        except XenstoreLost as exc:
            raise unavailable(f"{self.where()}: {exc}", hint="is xenstored still running?") from None
        except XenstoreReplyError as exc:
            raise self.error_for(exc, path) from None

    def error_for(self, exc: XenstoreReplyError, path: str) -> XbctlError:
        """EXC about PATH as the user sees it: by name, with its exit status."""
        if exc.name == "ENOENT":
            status = ExitStatus.UNKNOWN
        elif exc.name in REFUSING_ERRORS:
            status = ExitStatus.REFUSED
        else:
            status = ExitStatus.UNAVAILABLE
        return XbctlError(f"{path}: {exc.text} ({exc.name})", status=status, errno_name=exc.name)

    def read_path(self, path: str) -> str | None:
        """The value at PATH, or None when it does not exist."""
        try:
            value = self.client.read(path.encode())
        except XenstoreReplyError as exc:
            if exc.name == "ENOENT":
                return None
            raise self.error_for(exc, path) from None
        except XenstoreLost as exc:
            raise unavailable(f"{self.where()}: {exc}", hint="is xenstored still running?") from None
        return decode_value(value)

    def list_path(self, path: str) -> list[str] | None:
        """The children of PATH, or None when it does not exist."""
        try:
            names = self.call(path, lambda c: c.list(path.encode()))
        except XbctlError as exc:
            if exc.errno_name == "ENOENT":
                return None
            raise
        return [n.decode("ascii", "replace") for n in names]

    def transact(self, domid: int, body: Callable[[Txn], T], *, what: str) -> T:
        """Run BODY in a transaction that first checks /local/domain/DOMID still exists.

        A conflict (EAGAIN) reruns BODY from the start, a bounded number of times with
        backoff; BODY may raise XbctlError to abandon the transaction.
        """
        backoff_s = FIRST_BACKOFF_S
        txn = Txn(self, domid)
        for attempt in range(MAX_ATTEMPTS):
            self.call(txn.base, lambda c: c.transaction())
            try:
                # A WRITE creates missing parents: a domain that is gone must not reappear.
                if self.list_path(txn.base) is None:
                    raise unknown(f"domain {domid}: no such domain (it is gone)")
                result = body(txn)
                committed = self.call(txn.base, lambda c: c.commit())
            except BaseException:
                self._abandon()
                raise
            if committed:
                return result
            time.sleep(backoff_s * (0.5 + random.random()))
            backoff_s *= 2
        raise unavailable(
            f"{self.where()}: {what}: gave up after {MAX_ATTEMPTS} conflicting transactions (EAGAIN)",
            errno_name="EAGAIN",
            hint="another client keeps changing these nodes; try again",
        )

    def _abandon(self) -> None:
        # On a connection that failed, xenstored drops the transaction when we close it.
        if self.client.tx_id and not self.client.failure:
            try:
                self.client.rollback()
            except (XenstoreReplyError, XenstoreLost):
                pass
        self.client.tx_id = 0

    # ------------------------------------------------------------ domains

    def own_domain(self) -> Domain:
        if self._own is None:
            if self.endpoint.is_socket:
                domid = 0  # only Domain-0 (or its stand-in) talks to xenstored's socket
            else:
                # A guest's relative paths resolve under its own /local/domain/N.
                text = self.read_path("domid")
                if text is None or not (text.isascii() and text.isdigit()):
                    raise unavailable(
                        f"{self.where()}: cannot tell which domain this is (no 'domid' node)"
                    )
                domid = int(text)
            name = self.read_path(f"/local/domain/{domid}/name")
            self._own = Domain(domid, name if name is not None else _unnamed(domid))
        return self._own

    def list_domains(self) -> list[Domain]:
        return [Domain(domid, name if name is not None else _unnamed(domid)) for domid, name in self._named_domains()]

    def _named_domains(self) -> list[tuple[int, str | None]]:
        try:
            children = self.list_path("/local/domain") or []
        except XbctlError as exc:
            if exc.errno_name != "EACCES":
                raise
            own = self.own_domain()  # a guest may not list the others
            return [(own.id, self.read_path(f"/local/domain/{own.id}/name"))]
        found = []
        for child in children:
            if not (child.isascii() and child.isdigit()) or int(child) >= DOMID_FIRST_RESERVED:
                continue
            try:
                name = self.read_path(f"/local/domain/{int(child)}/name")
            except XbctlError as exc:
                if exc.errno_name == "EACCES":
                    continue  # not ours to see
                raise
            found.append((int(child), name))
        return sorted(found)

    def resolve_domain(self, spec: str | None) -> Domain:
        if spec is None:
            return self.own_domain()
        if spec == "":
            from ..errors import usage_error

            raise usage_error("empty domain name")
        domid = parse_domain_id(spec)
        if domid is not None:
            if self.list_path(f"/local/domain/{domid}") is None:
                raise unknown(f"domain {spec!r}: unknown domain", hint="xbctl list shows the domains")
            name = self.read_path(f"/local/domain/{domid}/name")
            return Domain(domid, name if name is not None else _unnamed(domid))
        # A name is only ever compared with the names Xenstore holds, never put in a path,
        # by the rule every transport shares (exact, and never a guess between namesakes).
        named = [Domain(found_id, name) for found_id, name in self._named_domains() if name is not None]
        return match_domain(spec, named)

    # ------------------------------------------------------------ balloons

    def read_balloon(self, domain: Domain) -> Balloon:
        info = self._domain_info(domain.id)
        balloon = self._balloon(Txn(self, domain.id), domain, info)
        if info is None and self._hypervisor is not None:
            stale = f"domain {domain.name}: the hypervisor has no domain {domain.id}; Xenstore's figures only"
            balloon = replace(balloon, warnings=(*balloon.warnings, stale))
        return balloon

    def _balloon(
        self, txn: Txn, domain: Domain, info=None, *, malformed_target_kib: int | None = None
    ) -> Balloon:
        """DOMAIN's balloon from Xenstore and INFO (the hypervisor's, or None).

        A malformed memory/target reads as MALFORMED_TARGET_KIB if given.
        """
        warnings: list[str] = []
        target = txn.read(TARGET)
        if target is None and domain.id == 0 and info is not None:
            # libxl's stand-in for a Domain-0 nobody wrote a target for (it records it on mem-set).
            target = str(info.tot_pages * 4)
        if target is None:
            if self.list_path(txn.base) is None:
                raise unknown(f"domain {domain.id}: no such domain (it is gone)")
            raise unknown(
                f"domain {domain.name}: no balloon: {txn.path(TARGET)} does not exist",
                hint="the toolstack writes memory/target when it builds the domain",
            )
        # A malformed target is stood in for by a placeholder: nothing is judged against it.
        target_known = malformed_target_kib is None or _is_kib(target)
        if not target_known:
            target_kib = malformed_target_kib
        else:
            target_kib = _kib(txn.path(TARGET), target)
        static_max = txn.read(STATIC_MAX)
        if static_max is None and domain.id == 0 and info is not None:
            static_max = str(info.max_kib)
        xen_max_kib = _kib(txn.path(STATIC_MAX), static_max) if static_max is not None else target_kib
        dynamic_min_kib = _optional_kib(txn, DYNAMIC_MIN)
        videoram_kib = _videoram_kib(txn.read(VIDEORAM))

        # What the guest publishes about itself: advice, honoured only within sense.
        guest_current_kib = self._guest_kib(txn, GUEST_CURRENT, warnings)
        guest_max_kib = self._guest_kib(txn, GUEST_MAX, warnings)
        guest_min_kib = self._guest_kib(txn, GUEST_MIN, warnings)
        above_target = target_known and guest_min_kib is not None and guest_min_kib > target_kib
        if guest_min_kib is not None and (above_target or guest_min_kib > xen_max_kib):
            limit = "target" if above_target else "xen-max"
            warnings.append(
                f"domain {domain.name}: ignoring {txn.path(GUEST_MIN)} = {guest_min_kib} KiB: "
                f"a guest's floor above its {limit} is not honoured"
            )
            guest_min_kib = None
        if guest_max_kib is not None and target_known and guest_max_kib < target_kib:
            warnings.append(
                f"domain {domain.name}: ignoring {txn.path(GUEST_MAX)} = {guest_max_kib} KiB: "
                f"below the target {target_kib} KiB the host set"
            )
            guest_max_kib = None
        feature = txn.read(FEATURE_BALLOON)
        has_driver: bool | None = {"1": True, "0": False, None: None}.get(feature, None)
        if feature not in ("1", "0", None):
            warnings.append(
                f"domain {domain.name}: ignoring {txn.path(FEATURE_BALLOON)} = {feature[:40]!r} (not 0 or 1)"
            )
        if has_driver is None and (guest_current_kib, guest_max_kib, guest_min_kib) != (None, None, None):
            has_driver = True  # it publishes its balloon: something in it runs one

        host_min_kib, min_origin, min_hint = self._host_floor(
            domain, dynamic_min_kib, guest_min_kib, target_kib if target_known else None, xen_max_kib
        )
        min_kib = max(host_min_kib, guest_min_kib or 0)
        floor_hint = None
        if guest_min_kib is not None:
            floor_hint = (
                f"the guest publishes {txn.path(GUEST_MIN)} = {guest_min_kib} KiB; "
                "--override-guest-floor lets the host go below it"
            )
            if guest_min_kib > host_min_kib:
                min_origin, min_hint = "the guest's data/balloon/min", floor_hint

        if info is not None:
            current_kib, source = info.current_kib, "hypervisor"
        elif guest_current_kib is not None:
            current_kib, source = guest_current_kib, "guest"
        else:
            current_kib, source = target_kib, "target"
        hypervisor_max_kib = info.max_kib if info is not None else None
        return Balloon(
            current_kib=current_kib,
            target_kib=target_kib,
            min_kib=min_kib,
            xen_max_kib=xen_max_kib,
            driver_max_kib=guest_max_kib,
            floor_kib=guest_min_kib or 0,
            has_driver=has_driver,
            current_source=source,
            diagnostic=txn.read(DIAGNOSTIC) or None,
            min_origin=min_origin,
            min_hint=min_hint,
            floor_hint=floor_hint,
            host_min_kib=host_min_kib if guest_min_kib is not None else None,
            hypervisor_max_kib=hypervisor_max_kib,
            max_mismatch=_max_mismatch(hypervisor_max_kib, target_kib, xen_max_kib, videoram_kib),
            videoram_kib=videoram_kib,
            warnings=tuple(warnings),
        )

    def _guest_kib(self, txn: Txn, rel: str, warnings: list[str]) -> int | None:
        """A guest-published KiB value; garbage reads as unknown, with a warning."""
        text = txn.read(rel)
        if text is None or text == "":
            return None
        if not _is_kib(text) or int(text) > MAX_KIB:
            warnings.append(f"ignoring {txn.path(rel)} = {text[:40]!r}: not a number of KiB (the guest wrote it)")
            return None
        return int(text)

    @staticmethod
    def _host_floor(
        domain: Domain,
        dynamic_min_kib: int | None,
        guest_min_kib: int | None,
        target_kib: int | None,
        xen_max_kib: int,
    ) -> tuple[int, str | None, str | None]:
        """The host's own floor for DOMAIN's target: its value, where it comes from, how to lower it."""
        lower = f"xbctl -d {domain.id} min SIZE sets memory/dynamic-min"
        if dynamic_min_kib is not None:
            floor_kib, origin, hint = dynamic_min_kib, "memory/dynamic-min", lower
        elif domain.id == 0 or guest_min_kib is not None:
            floor_kib, origin, hint = 0, None, None
        else:
            # Never above the target the domain has now: re-setting it must stay possible.
            floor_kib = round_up_to_page(xen_max_kib // DEFAULT_FLOOR_DIVISOR)
            if target_kib is not None:
                floor_kib = min(floor_kib, target_kib)
            origin = "the default floor for a guest that publishes no minimum: a quarter of static-max"
            hint = f"to go lower, {lower}"
        if domain.id == 0 and floor_kib < DOM0_MIN_KIB:
            floor_kib, origin, hint = DOM0_MIN_KIB, "libxl's Domain-0 minimum", None
        return floor_kib, origin, hint

    def update_balloon(self, domain: Domain, plan: Plan) -> tuple[Balloon, Balloon]:
        self.hypervisor()  # opening it is no hypercall; a note says at once if it is not used
        # The hypervisor's maximum before this command changed it, to put back on failure.
        original: dict[str, int] = {}

        def body(txn: Txn) -> tuple[Balloon, Balloon]:
            # xbctl's own rules need only Xenstore: a refusal makes no hypercall, not even a
            # read. Only a Domain-0 without target or static-max needs the hypervisor's figures
            # first (libxl reads them there too).
            unfilled = domain.id == 0 and (txn.read(TARGET) is None or txn.read(STATIC_MAX) is None)
            info = self._domain_info(domain.id) if unfilled else None
            try:
                before = self._balloon(txn, domain, info)
            except XbctlError as exc:
                target = txn.read(TARGET)
                if target is None or _is_kib(target):
                    raise
                before, values = self._plan_over_malformed_target(txn, domain, plan, exc, info)
            else:
                values = plan(before)
            if self._hypervisor is not None and ("target" in values or "xen-max" in values):
                if info is None:
                    info = self._domain_info(domain.id)
            # self._hypervisor again: a failed read above drops it (with a note): Xenstore alone.
            if self._hypervisor is not None and ("target" in values or "xen-max" in values):
                if info is None:
                    raise unknown(
                        f"domain {domain.name}: the hypervisor has no domain {domain.id} "
                        "(Xenstore holds a stale entry)"
                    )
                if unfilled and "target" in values:
                    raise _FillDomain0(info)
                info = self._apply_to_hypervisor(domain, info, values, before, original)
            for key, kib in values.items():
                txn.write(NODE_PATHS[key], str(kib))
            if values.get("target", before.target_kib) != before.target_kib:
                # A new target: the driver tries again, its old complaint no longer applies.
                # The same target again changes nothing for the driver, so its word stands.
                txn.remove(DIAGNOSTIC)
            return before, self._balloon(txn, domain, info)

        what = f"domain {domain.name}"
        try:
            try:
                return self.transact(domain.id, body, what=what)
            except _FillDomain0 as fill:
                self._fill_domain0(fill.info)  # committed on its own first, as libxl does
                return self.transact(domain.id, body, what=what)
        except BaseException as exc:
            if "max_kib" in original:
                self._put_back_max(domain, original["max_kib"], exc)
            raise

    def _apply_to_hypervisor(
        self, domain: Domain, info, values: dict[str, int], before: Balloon, original: dict[str, int]
    ):
        """What xl mem-max / mem-set do to the hypervisor, in the order VALUES were asked for.

        Records in ORIGINAL the maximum before the first change; returns the domain's info after.
        """
        from .hypervisor import HypervisorError

        hypervisor = self._hypervisor

        def set_max(max_kib: int) -> None:
            hypervisor.set_max_kib(domain.id, max_kib)
            original.setdefault("max_kib", info.max_kib)

        after = info
        try:
            for key, kib in values.items():
                if key == "xen-max":  # xl mem-max: the maximum, with libxl's slack
                    set_max(kib + MAXMEM_SLACK_KIB)
                    after = replace(after, max_pages=(kib + MAXMEM_SLACK_KIB) // 4)
                elif key == "target":  # xl mem-set (enforce): the maximum follows the target
                    set_max(kib + before.videoram_kib + MAXMEM_SLACK_KIB)
                    if info.is_hvm:
                        hypervisor.set_pod_target(domain.id, (kib + MAXMEM_SLACK_KIB) // 4)
                    # As libxl: the domain's uuid read again after the change, for /vm/<uuid>/memory.
                    after = hypervisor.domain(domain.id)
                    if after is None:
                        raise unknown(f"domain {domain.name}: gone from the hypervisor meanwhile")
                    path = f"/vm/{after.uuid}/memory"
                    self.call(path, lambda c, p=path, v=str(kib // 1024): c.write(p.encode(), v.encode()))
        except HypervisorError as exc:
            status = ExitStatus.REFUSED if exc.errno_name in ("EPERM", "EACCES") else ExitStatus.UNAVAILABLE
            raise XbctlError(
                f"domain {domain.name}: {exc}; nothing was written to Xenstore",
                status=status,
                errno_name=exc.errno_name,
            ) from None
        return after

    def _put_back_max(self, domain: Domain, max_kib: int, failure: BaseException) -> None:
        """Undo this command's change to the hypervisor's maximum; say so in FAILURE's message."""
        from .hypervisor import HypervisorError

        try:
            self._hypervisor.set_max_kib(domain.id, max_kib)
            said = f"the hypervisor's maximum was put back to {max_kib} KiB"
        except HypervisorError as exc:
            said = f"putting the hypervisor's maximum back to {max_kib} KiB failed too: {exc}"
        if isinstance(failure, XbctlError):
            failure.message = f"{failure.message} ({said})"
        else:
            self.note(said)

    def _fill_domain0(self, info) -> None:
        """libxl's Domain-0 fill-in: record the hypervisor's figures where Xenstore has none."""

        def body(txn: Txn) -> None:
            if txn.read(TARGET) is None:
                txn.write(TARGET, str(info.tot_pages * 4))
            if txn.read(STATIC_MAX) is None:
                txn.write(STATIC_MAX, str(info.max_kib))

        self.transact(0, body, what="Domain-0")

    def _plan_over_malformed_target(
        self, txn: Txn, domain: Domain, plan: Plan, malformed: XbctlError, info=None
    ) -> tuple[Balloon, dict[str, int]]:
        """PLAN run although memory/target holds no number, if its outcome does not depend on it.

        `xl mem-set` overwrites such a target, so an absolute target may too (still checked
        against min and max); anything computed from the old target (a relative change, a
        min or xen-max checked against it) gets the malformed-value error instead.
        """
        outcomes = []
        # Two placeholders far apart: a plan that depends on the old target sees them differ.
        # The last one run is 0, so the change reported reads "0 -> new" (no valid old value).
        for placeholder_kib in (1 << 60, 0):
            before = self._balloon(txn, domain, info, malformed_target_kib=placeholder_kib)
            try:
                outcomes.append((before, plan(before), None))
            except XbctlError as exc:
                outcomes.append((before, None, exc))
        (_, high_values, high_error), (before, values, error) = outcomes
        if error is not None and high_error is not None and (error.message, error.status) == (
            high_error.message,
            high_error.status,
        ):
            raise error  # refused whatever the old target was: say why
        if values is None or values != high_values or "target" not in values:
            raise XbctlError(
                malformed.message,
                status=malformed.status,
                errno_name=malformed.errno_name,
                hint=f"set an absolute target to replace it (xbctl mem-set {domain.id} SIZE)",
            )
        return before, values

    def watch(self, path: str) -> None:
        """Deliver changes at or below PATH to wait_for_change (once per path)."""
        if path in self._watched:
            return
        self.call(path, lambda c: c.watch(path.encode(), self._token))
        self._watched.add(path)

    def next_events(self, timeout_s: float) -> list[str]:
        """The paths that changed, waiting up to TIMEOUT_S for the first (events are only hints)."""
        try:
            paths = self.client.next_events(timeout_s)
        except XenstoreLost as exc:
            raise unavailable(f"{self.where()}: {exc}", hint="is xenstored still running?") from None
        return [decode_value(path) for path in paths]

    def wait_for_change(self, domain: Domain, timeout_s: float) -> None:
        base = f"/local/domain/{domain.id}"
        for rel in ("memory", "data/balloon", "control/feature-balloon"):
            self.watch(f"{base}/{rel}")
        self.next_events(timeout_s)

    def close(self) -> None:
        # Closing ends any transaction still open (xenstored, or the guest kernel, rolls it
        # back), so nothing here waits on the peer.
        self.client.close()
        if self._hypervisor is not None:
            self._hypervisor.close()


class _FillDomain0(Exception):
    """Domain-0 has no memory/target or static-max: libxl fills them in before a mem-set."""

    def __init__(self, info) -> None:
        super().__init__("Domain-0 fill-in")
        self.info = info


def _videoram_kib(text: str | None) -> int:
    """memory/videoram as KiB; missing, negative ("-1": older toolstacks' "none") or garbage is 0."""
    return int(text) if text is not None and _is_kib(text) else 0


def _max_mismatch(
    hypervisor_max_kib: int | None, target_kib: int, static_max_kib: int, videoram_kib: int
) -> str | None:
    """How the hypervisor's maximum disagrees with Xenstore's figures, or None.

    Below target + videoram the domain cannot reach its target; above static-max + 1024
    (what xl mem-max leaves) it can grow past xen-max. xl mem-set leaves target + videoram
    + 1024 and Xen's Domain-0 builder its boot size: both lie in between.
    """
    if hypervisor_max_kib is None:
        return None
    lowest_kib = target_kib + videoram_kib
    highest_kib = (static_max_kib + MAXMEM_SLACK_KIB) // 4 * 4
    if hypervisor_max_kib < lowest_kib:
        return (
            f"the hypervisor's maximum {hypervisor_max_kib} KiB is below target + videoram "
            f"({lowest_kib} KiB): the domain cannot reach its target"
        )
    if hypervisor_max_kib > highest_kib:
        return (
            f"the hypervisor's maximum {hypervisor_max_kib} KiB is above static-max + 1024 "
            f"({highest_kib} KiB): the domain can grow past xen-max"
        )
    return None


def _unnamed(domid: int) -> str:
    return "Domain-0" if domid == 0 else f"domain-{domid}"


def decode_value(raw: bytes) -> str:
    """A Xenstore value as text: UTF-8, other bytes shown as \\xNN (values come from guests)."""
    # Never surrogateescape: lone surrogates are not Unicode and cannot be printed or
    # put in JSON; backslashreplace keeps the bytes recognisable and the text valid.
    return raw.decode("utf-8", "backslashreplace")


def _is_kib(text: str) -> bool:
    return is_node_kib(text)


def _kib(path: str, text: str) -> int:
    if not _is_kib(text):
        raise XbctlError(
            f"{path}: holds {text[:40]!r}, not a number of KiB",
            status=ExitStatus.UNAVAILABLE,
            errno_name="EINVAL",  # the node is there but unusable: `list` shows such a row
            hint="something other than a balloon driver or toolstack wrote it",
        )
    return int(text)


def _optional_kib(txn: Txn, rel: str) -> int | None:
    text = txn.read(rel)
    return None if text is None or text == "" else _kib(txn.path(rel), text)
