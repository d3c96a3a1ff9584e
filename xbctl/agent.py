"""The guest agent: a simulated NetBSD balloon driver for one domain, behind Xenstore.

It behaves as NetBSD's balloon(4) thread does: it watches memory/target, moves the
reservation toward it in steps of at most 512 pages, and when it cannot get there
it says why (its dmesg lines) and, when shrinking is impossible, feeds the current
reservation back into memory/target. It publishes what a host cannot ask the
guest otherwise:

    data/balloon/current      the reservation now (KiB), updated at every step
    data/balloon/max          the boot-time size: the driver cannot hot-plug above it
    data/balloon/min          the safeguard floor: freemin + 256 pages
    data/balloon/diagnostic   the driver's last word on the current target (absent: none)
    control/feature-balloon   1 while the driver runs
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Callable

from .errors import ExitStatus, XbctlError, usage_error
from .nodes import BALLAST_PAGES
from .transports import Transport
from .transports.simmodel import SimDomain, SimHost
from .units import round_up_to_page

IDLE_POLL_S = 0.2  # how often an idle agent looks at its stop flag
UNLIMITED_HOST_FREE_KIB = 2**50


def run_agent(
    transport: Transport,
    domain_spec: str | None,
    *,
    steps_per_second: float,
    say: Callable[[str], None],
    boot_kib: int | None = None,
    used_kib: int | None = None,
    host_free_kib: int | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Drive the balloon of DOMAIN_SPEC (or our own domain) until SIGINT/SIGTERM or STOP."""
    from .transports.xenstore.transport import XenstoreTransport

    if not isinstance(transport, XenstoreTransport):
        raise usage_error("the agent plays a guest over Xenstore", hint="use --transport xenstore")
    stop = stop or threading.Event()
    restore = _stop_on_signals(stop)
    try:
        Agent(transport, domain_spec, steps_per_second, say, boot_kib, used_kib, host_free_kib).run(stop)
    finally:
        restore()


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Make SIGINT and SIGTERM set STOP (main thread only); returns how to undo it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


class Agent:
    """One domain's simulated balloon driver, its state mirrored in Xenstore."""

    def __init__(self, store, domain_spec, steps_per_second, say, boot_kib, used_kib, host_free_kib) -> None:
        from .transports.xenstore.transport import DYNAMIC_MIN, GUEST_CURRENT, STATIC_MAX, TARGET

        self.store = store
        self.say = say
        self.domain = store.resolve_domain(domain_spec)
        self.interval_s = 1.0 / steps_per_second
        self.base = f"/local/domain/{self.domain.id}"

        def initial(txn):
            return {rel: txn.read(rel) for rel in (TARGET, STATIC_MAX, DYNAMIC_MIN, GUEST_CURRENT)}

        found = store.transact(self.domain.id, initial, what=f"domain {self.domain.name}")
        target_kib = self._number(TARGET, found[TARGET])
        if target_kib is None:
            raise XbctlError(
                f"domain {self.domain.name}: {self.base}/{TARGET} does not exist: no target to follow",
                status=ExitStatus.UNKNOWN,
            )
        xen_max_kib = self._number(STATIC_MAX, found[STATIC_MAX]) or target_kib
        # By default the guest booted with its ceiling (memory = maxmem), the usual setup for ballooning.
        boot = round_up_to_page(boot_kib or xen_max_kib)
        published = self._number(GUEST_CURRENT, found[GUEST_CURRENT])
        current = published if published is not None and published <= boot else min(target_kib, boot)
        self.sim = SimDomain(
            id=self.domain.id,
            name=self.domain.name,
            driver="netbsd",
            boot_kib=boot,
            xen_max_kib=xen_max_kib,
            target_kib=target_kib,
            current_kib=round_up_to_page(current),
            dynamic_min_kib=self._number(DYNAMIC_MIN, found[DYNAMIC_MIN]) or 0,
            used_kib=round_up_to_page(boot // 4 if used_kib is None else used_kib),
            freemin_pages=max(16, boot // 1024),  # NetBSD's freemin grows with memory: ~1 page per MiB
        )
        self.host = SimHost(
            clock="manual",
            steps_per_second=steps_per_second,
            host_free_kib=UNLIMITED_HOST_FREE_KIB if host_free_kib is None else host_free_kib,
            domains=[self.sim],
        )
        self.requested_kib = target_kib  # the target the driver is working on
        self.published: dict[str, str | None] = {}

    def _number(self, rel: str, text: str | None) -> int | None:
        if text is None or text == "":
            return None
        if not (text.isascii() and text.isdigit()):
            self.say(f"ignoring {self.base}/{rel} = {text[:40]!r}: not a number of KiB")
            return None
        return int(text)

    # ------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """Publish, then follow memory/target until STOP is set."""
        from .transports.xenstore.transport import TARGET

        sim = self.sim
        self.say(
            f"domain {self.domain.name} ({self.domain.id}): balloon driver up: current {sim.current_kib} KiB, "
            f"target {sim.target_kib} KiB, max {sim.boot_kib} KiB, min {sim.floor_kib} KiB "
            f"(freemin {sim.freemin_pages} + {BALLAST_PAGES} pages)"
        )
        self.publish(announce=True)
        self.store.watch(f"{self.base}/{TARGET}")
        next_step = time.monotonic()
        idle = sim.current_kib == sim.target_kib
        while not stop.is_set():
            timeout_s = IDLE_POLL_S if idle else max(0.0, next_step - time.monotonic())
            if self.store.next_events(min(timeout_s, IDLE_POLL_S)):
                if self.follow_target():
                    idle = False
                    next_step = time.monotonic()
            if idle or time.monotonic() < next_step:
                continue
            next_step += self.interval_s
            idle = not self.step()
        self.shut_down()

    def follow_target(self) -> bool:
        """Re-read memory/target (after any event); True when there is a new target to work on."""
        from .transports.xenstore.transport import TARGET

        target_kib = self._number(TARGET, self.store.read_path(f"{self.base}/{TARGET}"))
        if target_kib is None:
            if self.store.list_path(self.base) is None:
                raise XbctlError(f"domain {self.domain.name} is gone", status=ExitStatus.UNKNOWN)
            return False
        if target_kib == self.sim.target_kib and target_kib == self.requested_kib:
            return False  # a spurious event, or our own feedback coming back
        self.host.set_node(self.sim, "target", target_kib)
        self.requested_kib = target_kib
        self.say(f"new target {target_kib} KiB (current {self.sim.current_kib} KiB)")
        self.publish()
        return True

    def step(self) -> bool:
        """One turn of the balloon thread; True while there is more to do."""
        log_before = len(self.host.log)
        moved = self.host.step(self.sim)
        for entry in self.host.log[log_before:]:
            self.say(entry["message"])
        self.publish()
        if self.sim.target_kib != self.requested_kib:
            self.feed_back()
        return moved and self.sim.current_kib != self.sim.target_kib

    def publish(self, *, announce: bool = False) -> None:
        """Write what changed of current/max/min/diagnostic (and the feature flag) in one transaction."""
        from .transports.xenstore.transport import (
            DIAGNOSTIC,
            FEATURE_BALLOON,
            GUEST_CURRENT,
            GUEST_MAX,
            GUEST_MIN,
            TARGET,
        )

        wanted: dict[str, str | None] = {
            GUEST_CURRENT: str(self.sim.current_kib),
            GUEST_MAX: str(self.sim.boot_kib),
            GUEST_MIN: str(self.sim.floor_kib),
            DIAGNOSTIC: self.sim.diagnostic,
        }
        if announce:
            wanted[FEATURE_BALLOON] = "1"
        changes = {rel: value for rel, value in wanted.items() if announce or self.published.get(rel) != value}
        if not changes:
            return
        requested = str(self.requested_kib)

        def body(txn) -> bool:
            # A complaint about a target the host has since replaced must not be published.
            if DIAGNOSTIC in changes and changes[DIAGNOSTIC] and txn.read(TARGET) != requested:
                return False
            for rel, value in changes.items():
                if value is None:
                    txn.remove(rel)
                else:
                    txn.write(rel, value)
            return True

        if self.store.transact(self.domain.id, body, what=f"domain {self.domain.name}"):
            self.published.update(changes)
        else:
            self.published.update({k: v for k, v in changes.items() if k != DIAGNOSTIC})

    def feed_back(self) -> None:
        """Write current into memory/target, as NetBSD does when it cannot shrink further."""
        from .transports.xenstore.transport import TARGET

        new_target = str(self.sim.target_kib)
        requested = str(self.requested_kib)

        def body(txn) -> bool:
            if txn.read(TARGET) != requested:
                return False  # the host asked for something else meanwhile: follow that instead
            txn.write(TARGET, new_target)
            return True

        try:
            if self.store.transact(self.domain.id, body, what=f"domain {self.domain.name}"):
                self.requested_kib = self.sim.target_kib
        except XbctlError as exc:
            if exc.errno_name != "EACCES":
                raise
            self.say(f"cannot feed current back into {TARGET}: {exc.message}")
            self.requested_kib = self.sim.target_kib  # keep our own idea; the host sees the diagnostic

    def shut_down(self) -> None:
        """Withdraw control/feature-balloon and what it published: nothing acts on target any more."""
        from .transports.xenstore.transport import FEATURE_BALLOON, GUEST_CURRENT, GUEST_MAX, GUEST_MIN

        def withdraw(txn) -> None:
            # Published values left behind would read as evidence of a driver that is gone.
            for rel in (FEATURE_BALLOON, GUEST_CURRENT, GUEST_MAX, GUEST_MIN):
                txn.remove(rel)

        try:
            self.store.transact(self.domain.id, withdraw, what="shutting down")
        except XbctlError as exc:
            if exc.status != ExitStatus.UNKNOWN:
                raise
        self.say(f"domain {self.domain.name}: stopped at current {self.sim.current_kib} KiB")
