"""The Xenstore transport: connection, transactions, domains, reads and watches.

The nodes and how they read into a balloon are model.py; what a write does to the
hypervisor and Xenstore, in xl's order, is xl.py; every rule a write must pass is
xbctl/rules.py's, run on a snapshot inside the write's transaction.

The wire (framing, request ids, deadlines, watches) is wire.py: every request has one
deadline, no reply may exceed Xenstore's 4096 bytes, a peer that breaks the protocol is
a lost connection (exit 3), and errors keep the daemon's own names.
"""

from __future__ import annotations

import errno
import os
import socket
import time

from ...errors import ExitStatus, XbctlError, permission_denied, unavailable, unknown
from ...units import parse_number
from .. import DOMID_FIRST_RESERVED, Domain, Transport, is_transport_failure, match_domain, parse_domain_id
from .endpoint import find_endpoint, no_daemon_error
from .model import (  # noqa: F401  (the node paths, for the agent and tests)
    BALLOON_READS,
    DIAGNOSTIC,
    DYNAMIC_MIN,
    FEATURE_BALLOON,
    GUEST_CURRENT,
    GUEST_DIR,
    GUEST_MAX,
    GUEST_MIN,
    GUEST_READS,
    HOST_READS,
    NODE_PATHS,
    STATIC_MAX,
    TARGET,
    VIDEORAM,
    balloon_from,
    decode_value,
    unnamed,
)
from .txn import FIRST_BACKOFF_S, MAX_ATTEMPTS, Txn, _flush, domain_views  # noqa: F401
from .wire import NUL, Op, WireClient, XenstoreLost, XenstoreReplyError
from .xl import HYPERVISOR_POLL_S, XlWrites  # noqa: F401

TYPE_CHECKING = False  # importing typing costs every start-up a few ms
if TYPE_CHECKING:
    from typing import Callable, TypeVar

    from ...nodes import Balloon
    from ..linux_sysfs import LinuxBalloon

    T = TypeVar("T")

DEFAULT_REQUEST_TIMEOUT_S = 5.0
# --wait in a guest re-reads its driver's sysfs this often: its figures change without a Xenstore event.
DRIVER_POLL_S = 0.25

# Errors that are the store refusing this request (exit 1), as opposed to failing (exit 3).
REFUSING_ERRORS = {"EACCES", "EPERM", "EQUOTA", "ENOSPC", "E2BIG", "EROFS"}

_UUID_CHARACTERS = frozenset("0123456789abcdefABCDEF-")


def _is_vm_path(path: str) -> bool:
    """PATH is /vm/<uuid> as libxl writes it (only such a path is read on from)."""
    uuid = path[4:] if path.startswith("/vm/") else ""
    return 0 < len(uuid) <= 64 and set(uuid) <= _UUID_CHARACTERS


def request_timeout_s() -> float:
    """The deadline for one Xenstore request ($XBCTL_XENSTORE_TIMEOUT seconds, default 5)."""
    text = os.environ.get("XBCTL_XENSTORE_TIMEOUT", "")
    if text == "":
        return DEFAULT_REQUEST_TIMEOUT_S
    return parse_number(text, what="XBCTL_XENSTORE_TIMEOUT", maximum=3600, positive=True)


# ---------------------------------------------------------------- the transport


class XenstoreTransport(XlWrites, Transport):
    """Balloons of real domains (or agents' simulated ones) through xenstored."""

    name = "xenstore"

    def __init__(self) -> None:
        self.endpoint = find_endpoint()
        self.timeout_s = request_timeout_s()
        self._own: Domain | None = None
        self._watched: set[str] = set()
        self._token = f"xbctl-{os.getpid()}-{os.urandom(4).hex()}".encode()
        try:
            self.client = WireClient(self.endpoint.path, self.endpoint.is_socket, self.timeout_s)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):  # the socket's or device's mode: root's
                raise permission_denied(self.endpoint.path) from None
            reason = exc.strerror or str(exc)
            if isinstance(exc, socket.timeout) or exc.errno == errno.EAGAIN:
                reason = f"no connection within {self.timeout_s:g} s (its listen queue stayed full)"
            raise no_daemon_error(self.endpoint.path, reason) from None
        self._hypervisor = None
        self._hypervisor_tried = False
        self._hypervisor_problem: str | None = None
        self._known_infos = None  # the hypervisor's domains, read in bulk for a many-domain write
        self._driver: LinuxBalloon | None = None  # inside a Linux guest: its own balloon driver (sysfs)
        self._driver_tried = False

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

    def read_paths(self, paths: list[str]) -> list[str | None | XbctlError]:
        """The values at PATHS, read in one pipelined batch: each a value, None when it does
        not exist, or the XbctlError Xenstore answered for it; a lost connection is raised."""
        return self.read_and_list(paths, [])[0]

    def read_and_list(
        self, read: list[str], listed: list[str]
    ) -> tuple[list[str | None | XbctlError], list[list[str] | None | XbctlError]]:
        """The values at READ and the children of LISTED, in one pipelined batch: each a
        value (or list of names), None when it does not exist, or the XbctlError Xenstore
        answered for it; a lost connection is raised."""
        requests = [(Op.READ, path.encode() + NUL) for path in read]
        requests += [(Op.DIRECTORY, path.encode() + NUL) for path in listed]
        try:
            answers = self.client.pipeline(requests) if requests else []
        except XenstoreLost as exc:
            raise unavailable(f"{self.where()}: {exc}", hint="is xenstored still running?") from None
        values: list[str | None | XbctlError] = []
        for path, answer in zip(read, answers):
            if isinstance(answer, XenstoreReplyError):
                values.append(None if answer.name == "ENOENT" else self.error_for(answer, path))
            else:
                values.append(decode_value(answer.rstrip(NUL)))
        children: list[list[str] | None | XbctlError] = []
        for path, answer in zip(listed, answers[len(read) :]):
            if isinstance(answer, XenstoreReplyError):
                children.append(None if answer.name == "ENOENT" else self.error_for(answer, path))
            else:
                children.append([decode_value(name) for name in answer.split(NUL) if name])
        return values, children

    def send_writes(self, writes: list[tuple[Op, str, str | None]]) -> None:
        """Send WRITES ((Op.WRITE, path, value) or (Op.RM, path, None)) in one pipelined batch,
        in order; the first refusal is raised as an XbctlError naming its path."""
        requests: list[tuple[Op, bytes]] = [
            # An Op.WRITE always carries its value (str), only an Op.RM none.
            (op, path.encode() + NUL + value.encode()) if op == Op.WRITE else (op, path.encode() + NUL)  # type: ignore[union-attr]
            for op, path, value in writes
        ]
        try:
            answers = self.client.pipeline(requests)
        except XenstoreLost as exc:
            raise unavailable(f"{self.where()}: {exc}", hint="is xenstored still running?") from None
        for (_op, path, _value), answer in zip(writes, answers):
            if isinstance(answer, XenstoreReplyError):
                raise self.error_for(answer, path)

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
        base = f"/local/domain/{domid}"
        views: list[Txn] = []

        def checked() -> T:
            views[:] = [Txn(self, domid)]  # each attempt reads afresh: nothing cached outlives a conflict
            # A WRITE creates missing parents: a domain that is gone must not reappear.
            if self.list_path(base) is None:
                raise unknown(f"domain {domid}: no such domain (it is gone)")
            return body(views[0])

        return self._retried(checked, what=what, path=base, before_commit=lambda: _flush(views))

    def transact_domains(self, domids: list[int], body: Callable[[list[Txn]], T], *, what: str) -> T:
        """Run BODY with one Txn per domain of DOMIDS, all in one transaction, retried as transact().

        BODY must read each domain's memory/target before writing anything of it (balloon_from
        does, and raises when the domain is gone): that read, checked again at commit, is what
        keeps a write from recreating a domain destroyed meanwhile.
        """
        views: list[Txn] = []

        def attempt() -> T:
            views[:] = domain_views(self, domids)  # each attempt reads afresh
            return body(views)

        return self._retried(attempt, what=what, path="/local/domain", before_commit=lambda: _flush(views))

    def _retried(
        self, attempt_body: Callable[[], T], *, what: str, path: str, before_commit: Callable[[], None] | None = None
    ) -> T:
        backoff_s = FIRST_BACKOFF_S
        for _attempt in range(MAX_ATTEMPTS):
            self.call(path, lambda c: c.transaction())
            try:
                result = attempt_body()
                if before_commit is not None:
                    before_commit()
                committed = self.call(path, lambda c: c.commit())
            except BaseException:
                self._abandon()
                raise
            if committed:
                return result
            time.sleep(backoff_s * (0.5 + os.urandom(1)[0] / 256))  # jittered, so rivals part
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
                    raise unavailable(f"{self.where()}: cannot tell which domain this is (no 'domid' node)")
                domid = int(text)
            name = self.read_path(f"/local/domain/{domid}/name")
            self._own = Domain(domid, name if name is not None else unnamed(domid))
        return self._own

    def list_domains(self) -> list[Domain]:
        return [Domain(domid, name if name is not None else unnamed(domid)) for domid, name in self._named_domains()]

    def _named_domains(self) -> list[tuple[int, str | None]]:
        try:
            children = self.list_path("/local/domain") or []
        except XbctlError as exc:
            if exc.errno_name != "EACCES":
                raise
            own = self.own_domain()  # a guest may not list the others
            return [(own.id, self.read_path(f"/local/domain/{own.id}/name"))]
        domids = [
            int(child)
            for child in children
            if child.isascii() and child.isdigit() and int(child) < DOMID_FIRST_RESERVED
        ]
        # Every name in one pipelined batch: a host of 1,000 domains costs one round trip.
        names = self.read_paths([f"/local/domain/{domid}/name" for domid in domids])
        found = []
        for domid, name in zip(domids, names):
            if isinstance(name, XbctlError):
                if name.errno_name == "EACCES":
                    continue  # not ours to see
                raise name
            found.append((domid, name))
        return sorted(found)

    def domain_instances(self, domains: list[Domain]) -> list[dict[str, str]]:
        # libxl writes /local/domain/N/vm = /vm/<uuid> (a handle xl keeps when it restarts a
        # domain, or takes from the configuration's uuid=) and /vm/<uuid>/start_time, which
        # no two instances share. Domain-0 has neither: it lives as long as the host.
        # Two pipelined batches, however many domains.
        vms = self.read_paths([f"/local/domain/{domain.id}/vm" for domain in domains])
        instances: list[dict[str, str]] = []
        for vm in vms:
            if isinstance(vm, XbctlError) and is_transport_failure(vm):
                raise vm
            instances.append({"vm": vm} if isinstance(vm, str) else {})
        readable = [i for i, instance in enumerate(instances) if _is_vm_path(instance.get("vm", ""))]
        start_times = self.read_paths([f"{instances[i]['vm']}/start_time" for i in readable])
        for i, start_time in zip(readable, start_times):
            if isinstance(start_time, XbctlError) and is_transport_failure(start_time):
                raise start_time
            if isinstance(start_time, str):
                instances[i]["start_time"] = start_time
        return instances

    def resolve_domain(self, spec: str | None) -> Domain:
        if spec is None:
            return self.own_domain()
        if spec == "":
            from ...errors import usage_error

            raise usage_error("empty domain name")
        domid = parse_domain_id(spec)
        if domid is not None:
            if self.list_path(f"/local/domain/{domid}") is None:
                raise unknown(f"domain {spec!r}: unknown domain", hint="xbctl list shows the domains")
            name = self.read_path(f"/local/domain/{domid}/name")
            return Domain(domid, name if name is not None else unnamed(domid))
        # A name is only ever compared with the names Xenstore holds, never put in a path,
        # by the rule every transport shares (exact, and never a guess between namesakes).
        named = [Domain(found_id, name) for found_id, name in self._named_domains() if name is not None]
        return match_domain(spec, named)

    # ------------------------------------------------------------ balloons

    def read_balloon(self, domain: Domain) -> Balloon:
        txn = Txn(self, domain.id)
        txn.prefetch_balloons([domain])  # one round trip for every node, not one per node
        return self._balloon(txn, domain)

    def read_balloons(self, domains: list[Domain]) -> list[Balloon | XbctlError]:
        # Every node of every domain in one pipelined batch: a list costs one round trip's
        # latency (and a lost connection, raised, ends it), however many domains there are.
        txn = Txn(self, domains[0].id if domains else 0)
        txn.prefetch_balloons(domains)
        results: list[Balloon | XbctlError] = []
        for domain in domains:
            try:
                results.append(self._balloon(txn.for_domain(domain.id), domain))
            except XbctlError as exc:
                if is_transport_failure(exc):
                    raise  # the connection or the daemon, not this domain
                results.append(exc)
        return results

    def _balloon(self, txn: Txn, domain: Domain) -> Balloon:
        """DOMAIN's balloon read through TXN, with the hypervisor's figures when it answers
        (or, inside a Linux guest, its own driver's)."""
        info = self._domain_info(domain.id)
        balloon = balloon_from(txn, domain, info)
        if info is None and self._hypervisor is not None:
            stale = f"domain {domain.name}: the hypervisor has no domain {domain.id}; Xenstore's figures only"
            balloon = balloon.with_fields(warnings=(*balloon.warnings, stale))
        return self.with_driver(balloon, domain)

    # ------------------------------------------------------------ a Linux guest's own driver

    def guest_driver(self, domain: Domain) -> "LinuxBalloon | None":
        """The Linux balloon driver of the guest xbctl runs in, when DOMAIN is that guest; else None.

        Only from inside a guest (a xenbus device, a domain other than 0): there the driver's
        own figures are what the guest has, and its target_kb is what root sets.
        """
        if self.endpoint.is_socket or domain.id == 0:
            return None
        if domain.id != self.own_domain().id:
            return None
        if not self._driver_tried:
            self._driver_tried = True
            from ..linux_sysfs import LinuxBalloon

            self._driver = LinuxBalloon.find()
        return self._driver

    def with_driver(self, balloon: Balloon, domain: Domain, figures: "tuple[int, int] | None" = None) -> Balloon:
        """BALLOON with current and target from DOMAIN's own driver (FIGURES: (current, target) KiB
        read already), when xbctl runs inside it; a driver that cannot be read leaves Xenstore's
        figures, with a warning."""
        driver = self.guest_driver(domain)
        if driver is None:
            return balloon
        if figures is None:
            try:
                figures = driver.read()
            except XbctlError as exc:
                return balloon.with_fields(warnings=(*balloon.warnings, f"{exc.message}; Xenstore's figures only"))
        current_kib, target_kib = figures
        video_kib = balloon.videoram_kib  # the driver counts the guest's memory; the domain's figures add it
        return balloon.with_fields(
            current_kib=current_kib + video_kib,
            current_source="sysfs",
            target_kib=target_kib + video_kib,
            target_source="sysfs",
            target_malformed=None,
            has_driver=True,
        )

    def guest_writable_nodes(self, domain: Domain) -> "frozenset[str] | None":
        # Root sets its own driver's target through sysfs, as NetBSD's sysctl lets a domain's root.
        return frozenset({"min", "target"}) if self.guest_driver(domain) is not None else None

    def snapshot(self, domain: Domain) -> Balloon:
        # What update_balloon's transaction reads first: no hypercall unless Domain-0 has
        # no target or static-max yet (then libxl's stand-ins from the hypervisor's figures).
        txn = Txn(self, domain.id)
        txn.prefetch_balloons([domain])
        unfilled = domain.id == 0 and (txn.read(TARGET) is None or txn.read(STATIC_MAX) is None)
        info = self._domain_info(domain.id) if unfilled else None
        balloon = balloon_from(txn, domain, info, tolerate_malformed=True)
        if not self.endpoint.is_socket:
            from .xl import own_floor

            balloon = self.with_driver(own_floor(balloon), domain)
        return balloon

    def snapshots(self, domains: list[Domain]) -> list[Balloon]:
        if not domains:
            return []
        views = domain_views(self, [domain.id for domain in domains])
        views[0].prefetch_balloons(domains)  # one pipelined batch for every domain
        balloons = []
        for domain, txn in zip(domains, views):
            unfilled = domain.id == 0 and (txn.read(TARGET) is None or txn.read(STATIC_MAX) is None)
            info = self._domain_info(domain.id) if unfilled else None
            balloons.append(balloon_from(txn, domain, info, tolerate_malformed=True))
        return balloons

    def node_location(self, domain: Domain, key: str) -> str | None:
        driver = self.guest_driver(domain) if key == "target" else None
        if driver is not None:
            from ..linux_sysfs import TARGET_KB

            return driver.path(TARGET_KB)
        rel = GUEST_MIN if key == "min" and not self.endpoint.is_socket else NODE_PATHS.get(key)
        return None if rel is None else f"/local/domain/{domain.id}/{rel}"

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
        if self.guest_driver(domain) is not None:
            timeout_s = min(timeout_s, DRIVER_POLL_S)  # its sysfs moves without a Xenstore event
        self.next_events(timeout_s)

    def close(self) -> None:
        # Closing ends any transaction still open (xenstored, or the guest kernel, rolls it
        # back). Watches go with a socket connection, but a xenbus ring outlives us where
        # nothing tracks them per open file: take ours back, or the next client of the ring
        # gets our events.
        if self._watched and not self.endpoint.is_socket and not self.client.failure and not self.client.tx_id:
            for path in sorted(self._watched):
                try:
                    self.client.unwatch(path.encode(), self._token)
                except (XenstoreReplyError, XenstoreLost):
                    break
            self._watched.clear()
        self.client.close()
        if self._hypervisor is not None:
            self._hypervisor.close()
