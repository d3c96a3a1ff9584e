"""What xl does to the hypervisor and Xenstore for a write, in xl's order, as Domain-0.

xl mem-max: the hypervisor's maximum (with libxl's 1024 KiB slack), then memory/static-max.
xl mem-set (enforce): the maximum follows target + videoram + 1024, PoD target for HVM/PVH,
memory/target and /vm/<uuid>/memory, in one transaction retried on EAGAIN. The rules that
refuse a write are xbctl/rules.py's, checked before any hypercall: a refused write
makes none at all (tests/test_xl_parity.py compares the hypercall logs with Debian's xl).
"""

from __future__ import annotations

import os
import time

from ...errors import ExitStatus, XbctlError, permission_denied, unavailable, unknown
from .model import (
    DIAGNOSTIC,
    GUEST_MIN,
    MAXMEM_SLACK_KIB,
    NODE_PATHS,
    STATIC_MAX,
    TARGET,
    balloon_from,
    stored_kib,
)

TYPE_CHECKING = False  # importing typing costs every start-up a few ms
if TYPE_CHECKING:
    from typing import Callable, TypeVar

    from ...nodes import Balloon
    from .. import Domain, Plan
    from ..hypervisor import DomainInfo, Hypervisor
    from ..linux_sysfs import LinuxBalloon
    from .endpoint import Endpoint
    from .txn import Txn
    from .wire import WireClient

    T = TypeVar("T")

# --wait re-reads the hypervisor's figure this often: it changes without a Xenstore event.
HYPERVISOR_POLL_S = 0.25
MAX_NAMED_PUT_BACKS = 3  # a failed many-domain write names this many of the maximums it put back


class XlWrites:
    """The hypervisor side of the Xenstore transport (mixed into XenstoreTransport)."""

    if TYPE_CHECKING:  # what XenstoreTransport, the one class this is mixed into, provides
        endpoint: Endpoint
        _hypervisor: Hypervisor | None
        _hypervisor_tried: bool
        _hypervisor_problem: str | None
        _known_infos: dict[int, DomainInfo | None] | None

        def note(self, message: str) -> None: ...
        def where(self) -> str: ...
        def call(self, path: str, request: Callable[[WireClient], T]) -> T: ...
        def read_paths(self, paths: list[str]) -> list[str | None | XbctlError]: ...
        def list_path(self, path: str) -> list[str] | None: ...
        def transact(self, domid: int, body: Callable[[Txn], T], *, what: str) -> T: ...
        def transact_domains(self, domids: list[int], body: Callable[[list[Txn]], T], *, what: str) -> T: ...
        def guest_driver(self, domain: Domain) -> LinuxBalloon | None: ...
        def with_driver(self, balloon: Balloon, domain: Domain, figures: tuple[int, int] | None = None) -> Balloon: ...

    # ------------------------------------------------------------ the hypervisor

    def hypervisor(self):
        """libxenctrl opened as Domain-0, or None (then say once why: Xenstore alone answers);
        a user other than root whom privcmd refuses gets an error (exit 3) saying to be root."""
        if not self._hypervisor_tried:
            self._hypervisor_tried = True
            if not self.endpoint.is_socket:
                return None  # a guest: the hypervisor is not ours to ask
            if os.environ.get("XBCTL_LIBXENCTRL") == "":  # switched off: not even ctypes is loaded
                self._drop_hypervisor("XBCTL_LIBXENCTRL is empty (the hypervisor layer is switched off)")
                return None
            from ..hypervisor import Hypervisor, Refused, Unavailable, privcmd_path

            try:
                self._hypervisor = Hypervisor()
            except Refused as exc:
                if os.geteuid() != 0:
                    # Domain-0's balloons are root's: answering from Xenstore alone would
                    # read another `current` and write without the hypervisor's maximum.
                    raise permission_denied(privcmd_path()) from None
                self._drop_hypervisor(str(exc))  # root refused (a policy, a container): Xenstore alone
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
        if self._known_infos is not None and domid in self._known_infos:
            return self._known_infos[domid]  # read in bulk for a many-domain write
        from ..hypervisor import HypervisorError

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
        from ..hypervisor import HypervisorError

        try:
            return hypervisor.free_kib()
        except HypervisorError as exc:
            self._drop_hypervisor(str(exc))
            return None

    def host_memory_kib(self) -> tuple[int, int] | None:
        hypervisor = self.hypervisor()
        if hypervisor is None:
            return None
        from ..hypervisor import HypervisorError

        try:
            return hypervisor.memory_kib()
        except HypervisorError as exc:
            self._drop_hypervisor(str(exc))
            return None

    def hypervisor_poll_s(self) -> float | None:
        return HYPERVISOR_POLL_S if self._hypervisor is not None else None

    def update_balloon(self, domain: Domain, plan: Plan) -> tuple[Balloon, Balloon]:
        self.hypervisor()  # opening it is no hypercall; a note says at once if it is not used
        # The hypervisor's maximum before this command changed it, to put back on failure.
        original: dict[str, int] = {}
        # Inside a Linux guest, its own driver's figures, read once: an attempt retried after a
        # conflict must plan on what was there before this command, not on its own write.
        driver = self.guest_driver(domain)
        figures = driver.read() if driver is not None else None

        def body(txn: "Txn") -> tuple[Balloon, Balloon]:
            # xbctl's own rules need only Xenstore: a refusal makes no hypercall, not even a
            # read. Only a Domain-0 without target or static-max needs the hypervisor's figures
            # first (libxl reads them there too).
            unfilled = domain.id == 0 and (txn.read(TARGET) is None or txn.read(STATIC_MAX) is None)
            info = self._domain_info(domain.id) if unfilled else None
            # Every rule is policy's, run on this snapshot inside the transaction: a refusal
            # (the malformed-target rule and the guest position among them) writes nothing.
            before = balloon_from(txn, domain, info, tolerate_malformed=True)
            if not self.endpoint.is_socket:
                before = self.with_driver(own_floor(before), domain, figures)
            values = plan(before)
            info = self._hypervisor_domain(domain, values, info)
            if info is not None:
                if unfilled and "target" in values:
                    raise _FillDomain0(info)
                info = self._apply_to_hypervisor(domain, info, values, before, original)
            for key, kib in values.items():
                if key == "target" and driver is not None:
                    continue  # the guest's own driver's target, not the host's memory/target
                self._write_node(txn, key, kib, before)
            if values.get("target", before.target_kib) != before.target_kib:
                # A new target: the driver tries again, its old complaint no longer applies.
                # The same target again changes nothing for the driver, so its word stands.
                txn.remove(DIAGNOSTIC)
            after = balloon_from(txn, domain, info, tolerate_malformed=True)
            if driver is not None and figures is not None:
                target_kib = stored_kib("target", values.get("target", before.target_kib), before)
                after = self.with_driver(after, domain, (figures[0], target_kib))
                if "target" in values:
                    # Last, once every rule has passed: a refusal above writes nothing here either.
                    # A retried attempt writes the same number again, which changes nothing.
                    driver.set_target_kib(target_kib)
                    host_target[:] = [txn.read(TARGET)]
            return before, after

        what = f"domain {domain.name}"
        host_target: list[str | None] = []  # memory/target, when the guest's driver got a target of its own
        try:
            try:
                result = self.transact(domain.id, body, what=what)
                if host_target and driver is not None:
                    from ..linux_sysfs import TARGET_KB

                    self.note(
                        f"set through this guest's own balloon driver ({driver.path(TARGET_KB)}); the host's "
                        f"memory/target still holds {host_target[0]} KiB, and the host's next change of it "
                        "replaces this target"
                    )
                return result
            except _FillDomain0 as fill:
                self._fill_domain0(fill.info)  # committed on its own first, as libxl does
                return self.transact(domain.id, body, what=what)
        except BaseException as exc:
            if "max_kib" in original:
                self._put_back_max(domain, original["max_kib"], exc)
            raise

    def update_balloons(self, plans: "list[tuple[Domain, Plan]]") -> "list[tuple[Balloon, Balloon]]":
        """Several domains as ONE transaction.

        C xenstored (4.17) keeps the nodes a transaction touched in a list it walks on every
        request, so a transaction's cost grows with the square of the nodes it reads: 1,000
        domains read whole inside one took 4 s. So each attempt reads every balloon first,
        outside the transaction (as xl mem-max reads memory/target), and plans every domain
        (a refusal anywhere: no hypercall, nothing written); as Domain-0 it then checks that
        the hypervisor holds each domain. Only then the transaction: it reads again just
        memory/target and the nodes about to be written (one or two per domain) and starts
        over if any differs from what was planned on; then, domain by domain in xl's order,
        the hypercalls and the writes; one commit. A conflict (EAGAIN) or a changed node
        starts over, at most MAX_ATTEMPTS times.

        A failure after hypercalls (one that fails, too many conflicts, a lost connection)
        abandons the transaction (nothing reaches Xenstore) and puts back every maximum
        changed, saying so; a PoD target already set for an earlier domain is the one
        thing the hypervisor cannot be asked to undo, and the message names those domains.
        """
        if len(plans) == 1:
            return [self.update_balloon(*plans[0])]
        from .txn import FIRST_BACKOFF_S, MAX_ATTEMPTS

        self.hypervisor()
        originals: dict[Domain, dict[str, int]] = {}
        pod_set: list[Domain] = []
        what = f"{len(plans)} domains"
        domids = [domain.id for domain, _plan in plans]
        backoff_s = FIRST_BACKOFF_S
        try:
            for _attempt in range(MAX_ATTEMPTS):
                self._read_infos(domids)  # every domain's in a few hypercalls, not one each
                try:
                    staged = self._plan_domains(plans)
                except _FillDomain0 as fill:
                    self._fill_domain0(fill.info)  # committed on its own first, as libxl does
                    staged = self._plan_domains(plans)
                try:
                    # Run now, inside transact_domains: this attempt's STAGED, never a later one's.
                    return self.transact_domains(
                        domids,
                        lambda txns: self._write_domains(staged, txns, originals, pod_set),  # noqa: B023
                        what=what,
                    )
                except _Stale:
                    time.sleep(backoff_s * (0.5 + os.urandom(1)[0] / 256))
                    backoff_s *= 2
            raise unavailable(
                f"{self.where()}: {what}: gave up after {MAX_ATTEMPTS} attempts: their nodes kept changing (EAGAIN)",
                errno_name="EAGAIN",
                hint="another client keeps changing these nodes; try again",
            )
        except BaseException as exc:
            changed = [(domain, kept["max_kib"]) for domain, kept in originals.items() if "max_kib" in kept]
            undone = [
                (domain, *self._put_back_max(domain, max_kib, exc, named=True, tell=False))
                for domain, max_kib in reversed(changed)
            ]
            put_back = [(domain, said) for domain, said, ok in undone if ok]
            # Each domain by name when a few; in one sentence when many (a whole host's -f).
            if len(put_back) > MAX_NAMED_PUT_BACKS:
                names = ", ".join(domain.name for domain, _said in put_back[:MAX_NAMED_PUT_BACKS])
                sentences = [
                    f"the hypervisor's maximum of all {len(put_back)} domains changed ({names}, ...) "
                    "was put back to what it was"
                ]
            else:
                sentences = [said for _domain, said in put_back]
            for sentence in sentences + [said for _domain, said, ok in undone if not ok]:
                self._tell(exc, sentence)
            if changed and pod_set and isinstance(exc, XbctlError):
                exc.message = (
                    f"{exc.message} (the PoD target of {', '.join(d.name for d in pod_set)} stays as set: "
                    "the hypervisor keeps no earlier value to put back)"
                )
            raise
        finally:
            self._known_infos = None  # read for this write only

    def _read_infos(self, domids: list[int]) -> None:
        """The hypervisor's info of every domain of DOMIDS, read in bulk for _domain_info."""
        self._known_infos = None
        if self._hypervisor is None:
            return
        from ..hypervisor import HypervisorError

        try:
            self._known_infos = self._hypervisor.domains(domids)
        except HypervisorError as exc:
            self._drop_hypervisor(str(exc))

    def _plan_domains(self, plans: "list[tuple[Domain, Plan]]") -> list:
        """Every domain's snapshot (read outside any transaction, recording the raw values) and
        plan; then what the hypervisor must hold for each. Changes nothing."""
        from .txn import domain_views

        domains = [domain for domain, _plan in plans]
        # XlWrites is only ever part of a XenstoreTransport.
        readers = domain_views(self, [domain.id for domain in domains])  # type: ignore[arg-type]
        readers[0].prefetch_balloons(domains)  # one pipelined batch of every read balloon_from makes, cached
        staged: list[list] = []  # [domain, seen, before, values, info, unfilled] each
        for (domain, plan), reader in zip(plans, readers):
            unfilled = domain.id == 0 and (reader.read(TARGET) is None or reader.read(STATIC_MAX) is None)
            info = self._domain_info(domain.id) if unfilled else None
            before = balloon_from(reader, domain, info, tolerate_malformed=True)
            # What the plan rests on, as read (the cache answers again without a request).
            seen = {rel: reader.read(rel) for rel in (TARGET, *NODE_PATHS.values())}
            staged.append([domain, seen, before, plan(before), info, unfilled])
        for entry in staged:  # the hypervisor's reads only: nothing changed yet
            domain, _seen, _before, values, info, unfilled = entry
            entry[4] = info = self._hypervisor_domain(domain, values, info)
            if info is not None and unfilled and "target" in values:
                raise _FillDomain0(info)
        return staged

    def _write_domains(self, staged: list, txns: "list[Txn]", originals: dict, pod_set: list) -> list:
        """Inside the transaction: check that what each plan rests on still holds, then each
        domain's hypercalls and writes, in xl's order."""
        pod_set.clear()
        # memory/target read here also proves the domain exists until commit: a write must
        # never recreate a domain destroyed meanwhile. Only these nodes are read inside the
        # transaction (its cost grows with the square of what it touches).
        checks = [
            (domain, txn, rel, seen.get(rel))
            for (domain, seen, _before, values, _info, _unfilled), txn in zip(staged, txns)
            for rel in dict.fromkeys([TARGET, *(NODE_PATHS[key] for key in values)])
        ]
        found = self.read_paths([txn.path(rel) for _domain, txn, rel, _seen in checks])  # one pipelined batch
        for (domain, txn, rel, seen), now in zip(checks, found):
            if isinstance(now, XbctlError):
                raise now
            if now != seen:
                if rel == TARGET and now is None and self.list_path(txn.base) is None:
                    raise unknown(f"domain {domain.id}: no such domain (it is gone)")
                raise _Stale()
        results = []
        for (domain, _seen, before, values, info, _unfilled), txn in zip(staged, txns):
            if info is not None:
                info = self._apply_to_hypervisor(
                    domain, info, values, before, originals.setdefault(domain, {}), txn=txn
                )
                if "target" in values and info.is_hvm:
                    pod_set.append(domain)
            for key, kib in values.items():
                self._write_node(txn, key, kib, before)
            after = before.with_values(values) if values else before
            if values.get("target", before.target_kib) != before.target_kib and before.diagnostic is not None:
                txn.remove(DIAGNOSTIC)  # a new target: the driver's old complaint no longer applies
                after = after.with_fields(diagnostic=None)
            results.append((before, after, info))
        changed = [domain.id for (domain, *_rest), (_b, _a, info) in zip(staged, results) if info is not None]
        infos_now: dict[int, DomainInfo | None] = {}
        if changed:
            # What the hypervisor holds now, for the report: read in bulk, as before. Should
            # that read fail, the report shows the figures just set (the writes are done).
            from ..hypervisor import HypervisorError

            assert self._hypervisor is not None  # a changed domain's info came from it
            try:
                infos_now = self._hypervisor.domains(changed)
            except HypervisorError:
                pass
        shown = []
        for (domain, *_rest), (before, after, info) in zip(staged, results):
            if info is not None:
                info = infos_now.get(domain.id) or info
                after = after.with_fields(
                    current_kib=info.current_kib, current_source="hypervisor", hypervisor_max_kib=info.max_kib
                )
            shown.append((before, after))
        return shown

    def _write_node(self, txn: "Txn", key: str, kib: int, before: Balloon) -> None:
        """Write node KEY's value KIB where it lives: memory/target less the video memory (as xl
        mem-set); a guest's own min is its published floor, data/balloon/min."""
        if key == "min" and not self.endpoint.is_socket:
            txn.write(GUEST_MIN, str(stored_kib("guest-min", kib, before)))
        else:
            txn.write(NODE_PATHS[key], str(stored_kib(key, kib, before)))

    def _hypervisor_domain(self, domain: Domain, values: dict[str, int], info=None):
        """The hypervisor's info for a write of VALUES to DOMAIN, or None when the hypervisor
        has no part in it (not used, or nothing it holds changes).

        A domain the hypervisor does not know (Xenstore holds a stale entry) cannot have its
        memory changed: refused, before any hypercall that changes something.
        """
        if self._hypervisor is None or not ("target" in values or "xen-max" in values):
            return None
        if info is None:
            info = self._domain_info(domain.id)
        # self._hypervisor again: a failed read above drops it (with a note): Xenstore alone.
        if self._hypervisor is None:
            return None
        if info is None:
            raise unknown(
                f"domain {domain.name}: the hypervisor has no domain {domain.id} (Xenstore holds a stale entry)"
            )
        return info

    def check_write(self, domain: Domain, values: dict[str, int]) -> None:
        # A dry run meets what the write would meet at the hypervisor (its reads only).
        self.hypervisor()
        self._hypervisor_domain(domain, values)

    def _apply_to_hypervisor(
        self,
        domain: Domain,
        info,
        values: dict[str, int],
        before: Balloon,
        original: dict[str, int],
        txn: "Txn | None" = None,
    ):
        """What xl mem-max / mem-set do to the hypervisor, in the order VALUES were asked for.

        Records in ORIGINAL the maximum before the first change; returns the domain's info after.
        With TXN (a many-domain write) the info is not read again after each change (its uuid
        is the one just read) and /vm/<uuid>/memory is queued in TXN, sent with its other
        writes: one hypercall and no round trip of its own per domain.
        """
        from ..hypervisor import HypervisorError

        hypervisor = self._hypervisor
        assert hypervisor is not None  # INFO came from it (_hypervisor_domain)

        def set_max(max_kib: int) -> None:
            hypervisor.set_max_kib(domain.id, max_kib)
            original.setdefault("max_kib", info.max_kib)

        after = info
        try:
            for key, kib in values.items():
                if key == "xen-max":  # xl mem-max: the maximum, with libxl's slack
                    set_max(kib + MAXMEM_SLACK_KIB)
                    after = after.with_fields(max_pages=(kib + MAXMEM_SLACK_KIB) // 4)
                elif key == "target":  # xl mem-set (enforce): the maximum follows the target
                    # KIB counts the video memory; memory/target (xl's new_target_memkb) does not.
                    memory_target_kib = stored_kib(key, kib, before)
                    set_max(kib + MAXMEM_SLACK_KIB)
                    if info.is_hvm:
                        hypervisor.set_pod_target(domain.id, (memory_target_kib + MAXMEM_SLACK_KIB) // 4)
                    mib = str(memory_target_kib // 1024)
                    if txn is not None:
                        after = after.with_fields(max_pages=(kib + MAXMEM_SLACK_KIB) // 4)
                        txn.write_path(f"/vm/{after.uuid}/memory", mib)
                        continue
                    # As libxl: the domain's uuid read again after the change, for /vm/<uuid>/memory.
                    after = hypervisor.domain(domain.id)
                    if after is None:
                        raise unknown(f"domain {domain.name}: gone from the hypervisor meanwhile")
                    path = f"/vm/{after.uuid}/memory"
                    # mypy infers no lambda with default arguments for call's generic REQUEST.
                    self.call(path, lambda c, p=path, v=mib: c.write(p.encode(), v.encode()))  # type: ignore[misc]
        except HypervisorError as exc:
            status = ExitStatus.REFUSED if exc.errno_name in ("EPERM", "EACCES") else ExitStatus.UNAVAILABLE
            raise XbctlError(
                f"domain {domain.name}: {exc}; nothing was written to Xenstore",
                status=status,
                errno_name=exc.errno_name,
            ) from None
        return after

    def _put_back_max(
        self, domain: Domain, max_kib: int, failure: BaseException, named: bool = False, tell: bool = True
    ) -> tuple[str, bool]:
        """Undo this command's change to the hypervisor's maximum; say so in FAILURE's message
        (NAMED: which domain's, when several were changed) unless not TELL. What was said,
        and whether it was put back."""
        from ..hypervisor import HypervisorError

        whose = f"the hypervisor's maximum for {domain.name}" if named else "the hypervisor's maximum"
        try:
            if self._hypervisor is None:  # dropped since it was changed (a later read failed): closed
                said, done = (
                    f"putting {whose} back to {max_kib} KiB failed too: the hypervisor is no longer used",
                    False,
                )
            else:
                self._hypervisor.set_max_kib(domain.id, max_kib)
                said, done = f"{whose} was put back to {max_kib} KiB", True
        except HypervisorError as exc:
            said, done = f"putting {whose} back to {max_kib} KiB failed too: {exc}", False
        if tell:
            self._tell(failure, said)
        return said, done

    def _tell(self, failure: BaseException, said: str) -> None:
        """SAID added to FAILURE's message (or a note, when it is no XbctlError)."""
        if isinstance(failure, XbctlError):
            failure.message = f"{failure.message} ({said})"
        else:
            self.note(said)

    def _fill_domain0(self, info) -> None:
        """libxl's Domain-0 fill-in: record the hypervisor's figures where Xenstore has none."""

        def body(txn: "Txn") -> None:
            if txn.read(TARGET) is None:
                txn.write(TARGET, str(info.tot_pages * 4))
            if txn.read(STATIC_MAX) is None:
                txn.write(STATIC_MAX, str(info.max_kib))

        self.transact(0, body, what="Domain-0")


# Where Linux keeps its free-page reserve (NetBSD's uvmexp.freemin), in KiB.
MIN_FREE_KBYTES = "/proc/sys/vm/min_free_kbytes"


def own_floor(balloon: Balloon) -> Balloon:
    """BALLOON as its own guest's root sees it: the safeguard floor for min is the kernel's
    free-page reserve plus the ballast, not the floor the guest published before."""
    from ...nodes import BALLAST_PAGES
    from ...units import PAGE_KIB, round_up_to_page

    try:
        with open(MIN_FREE_KBYTES) as reserve:
            reserve_kib = int(reserve.read().strip())
    except (OSError, ValueError):
        reserve_kib = 0  # not Linux: the ballast alone
    floor_kib = round_up_to_page(reserve_kib) + BALLAST_PAGES * PAGE_KIB + balloon.videoram_kib
    return balloon.with_fields(floor_kib=floor_kib, floor_hint=None)


class _Stale(Exception):
    """A node a plan rests on changed between the snapshot and the transaction: plan again."""


class _FillDomain0(Exception):
    """Domain-0 has no memory/target or static-max: libxl fills them in before a mem-set."""

    def __init__(self, info) -> None:
        super().__init__("Domain-0 fill-in")
        self.info = info
