"""Xenstore's picture of one domain's balloon: which nodes hold what, read into a Balloon.

Mapping (decimal KiB strings, relative to /local/domain/N):

    target   memory/target + memory/videoram: what xl mem-set takes and xl list reaches (as
             Domain-0 with the hypervisor: xl mem-set's whole effect); every figure is the
             domain's, video memory included, so the guest's own figures get it added
    xen-max  memory/static-max (as Domain-0 with the hypervisor: also its maximum, as xl mem-max)
    min      max(host floor, data/balloon/min when sensible); the host floor is policy's
             (memory/dynamic-min, else a quarter of static-max for a guest that publishes
             no minimum; Domain-0 at least libxl's 128 MiB); writes set memory/dynamic-min
    current  the hypervisor's (tot_pages + outstanding_pages) * 4 as Domain-0, else
             data/balloon/current (published by the guest), else target
    max      xen-max clipped by data/balloon/max (published by the guest, when sensible)

plus `control/feature-balloon` (a driver acts on target) and `data/balloon/diagnostic`
(the driver's last word on why it cannot reach target; xbctl's own convention).

What a guest publishes (data/balloon/*, control/*) is advice: garbage or nonsense there
is ignored with a warning and never blocks the host's own nodes. Only reads here: every
write rule is xbctl/rules.py's.
"""

from __future__ import annotations

from ...errors import ExitStatus, XbctlError, unknown
from ...nodes import Balloon
from ...rules import host_floor
from ...units import MAX_KIB, is_node_kib

TYPE_CHECKING = False  # importing typing costs every start-up a few ms
if TYPE_CHECKING:
    from .. import Domain
    from .txn import Txn

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
# Every node balloon_from reads (Txn.prefetch_balloons asks for them all in one batch).
BALLOON_READS = (
    TARGET,
    STATIC_MAX,
    DYNAMIC_MIN,
    VIDEORAM,
    GUEST_CURRENT,
    GUEST_MAX,
    GUEST_MIN,
    FEATURE_BALLOON,
    DIAGNOSTIC,
)
# The guest's own nodes, all under GUEST_DIR: usually none exist, so one XS_DIRECTORY of
# GUEST_DIR answers for the four (prefetch_balloons then reads only those that exist).
GUEST_DIR = "data/balloon"
GUEST_READS = (GUEST_CURRENT, GUEST_MAX, GUEST_MIN, DIAGNOSTIC)
# The toolstack's nodes, read one by one (they exist on every domain a toolstack built).
HOST_READS = tuple(rel for rel in BALLOON_READS if rel not in GUEST_READS)
# x86 LIBXL_MAXMEM_CONSTANT: libxl gives the hypervisor's maximum this much slack over the target.
MAXMEM_SLACK_KIB = 1024


def balloon_from(txn: "Txn", domain: "Domain", info=None, *, tolerate_malformed: bool = False) -> Balloon:
    """DOMAIN's balloon from Xenstore (through TXN) and INFO (the hypervisor's, or None).

    A memory/target that is no number raises, unless TOLERATE_MALFORMED: then (for policy's
    planning only) the balloon reads target 0 and carries the error in target_malformed.
    """
    warnings: list[str] = []
    target = txn.read(TARGET)
    if target is None and domain.id == 0 and info is not None:
        # libxl's stand-in for a Domain-0 nobody wrote a target for (it records it on mem-set).
        target = str(info.tot_pages * 4)
    if target is None:
        if txn.store.list_path(txn.base) is None:
            raise unknown(f"domain {domain.id}: no such domain (it is gone)")
        raise unknown(
            f"domain {domain.name}: no balloon: {txn.path(TARGET)} does not exist",
            hint="the toolstack writes memory/target when it builds the domain",
        )
    videoram_kib = _videoram_kib(txn.read(VIDEORAM))
    # A malformed target is stood in for by 0: nothing is judged against it.
    target_known = _is_kib(target)
    target_malformed = None
    if target_known or not tolerate_malformed:
        # The domain's target as xl mem-set takes it and xl list reaches it: with its video memory.
        target_kib = _kib(txn.path(TARGET), target) + videoram_kib
    else:
        target_kib, target_malformed = 0, malformed_kib_error(txn.path(TARGET), target)
    static_max = txn.read(STATIC_MAX)
    if static_max is None and domain.id == 0 and info is not None:
        static_max = str(info.max_kib)
    xen_max_kib = _kib(txn.path(STATIC_MAX), static_max) if static_max is not None else target_kib
    dynamic_min_kib = _optional_kib(txn, DYNAMIC_MIN)

    # What the guest publishes about itself: advice, honoured only within sense. It counts its
    # own memory; the domain's figures add the video memory, as for target.
    guest_current_kib = _plus(_guest_kib(txn, GUEST_CURRENT, warnings), videoram_kib)
    guest_max_kib = _plus(_guest_kib(txn, GUEST_MAX, warnings), videoram_kib)
    guest_min_kib = _plus(_guest_kib(txn, GUEST_MIN, warnings), videoram_kib)
    above_target = target_known and guest_min_kib is not None and guest_min_kib > target_kib
    if guest_min_kib is not None and (above_target or guest_min_kib > xen_max_kib + videoram_kib):
        limit = "target" if above_target else "xen-max"
        warnings.append(
            f"domain {domain.name}: ignoring {txn.path(GUEST_MIN)} = {guest_min_kib - videoram_kib} KiB: "
            f"a guest's floor above its {limit} is not honoured"
        )
        guest_min_kib = None
    if guest_max_kib is not None and target_known and guest_max_kib < target_kib:
        warnings.append(
            f"domain {domain.name}: ignoring {txn.path(GUEST_MAX)} = {guest_max_kib - videoram_kib} KiB: "
            f"below the target {target_kib - videoram_kib} KiB the host set"
        )
        guest_max_kib = None
    feature = txn.read(FEATURE_BALLOON)
    has_driver: bool | None = {"1": True, "0": False, None: None}.get(feature, None)
    if feature not in ("1", "0", None):
        warnings.append(f"domain {domain.name}: ignoring {txn.path(FEATURE_BALLOON)} = {feature[:40]!r} (not 0 or 1)")
    if has_driver is None and (guest_current_kib, guest_max_kib, guest_min_kib) != (None, None, None):
        has_driver = True  # it publishes its balloon: something in it runs one

    host_min_kib, min_origin, min_hint = host_floor(
        domain.id, dynamic_min_kib, guest_min_kib, target_kib if target_known else None, xen_max_kib
    )
    min_kib = max(host_min_kib, guest_min_kib or 0)
    floor_hint = None
    if guest_min_kib is not None:
        floor_hint = (
            f"the guest publishes {txn.path(GUEST_MIN)} = {guest_min_kib - videoram_kib} KiB; "
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
    unlimited = info is not None and info.max_unlimited
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
        hypervisor_max_unlimited=unlimited,
        max_mismatch=None if unlimited else _max_mismatch(hypervisor_max_kib, target_kib, xen_max_kib + videoram_kib),
        videoram_kib=videoram_kib,
        warnings=tuple(warnings),
        target_malformed=target_malformed,
    )


def _guest_kib(txn: "Txn", rel: str, warnings: list[str]) -> int | None:
    """A guest-published KiB value; garbage reads as unknown, with a warning."""
    text = txn.read(rel)
    if text is None or text == "":
        return None
    if not _is_kib(text) or int(text) > MAX_KIB:
        warnings.append(f"ignoring {txn.path(rel)} = {text[:40]!r}: not a number of KiB (the guest wrote it)")
        return None
    return int(text)


def _plus(kib: int | None, more_kib: int) -> int | None:
    return None if kib is None else kib + more_kib


def stored_kib(key: str, kib: int, balloon: Balloon) -> int:
    """What node KEY's Xenstore node holds for the value KIB: memory/target is the target less
    the video memory (as xl mem-set writes it), the guest's data/balloon/min its own floor less it."""
    return max(kib - balloon.videoram_kib, 0) if key in ("target", "guest-min") else kib


def _videoram_kib(text: str | None) -> int:
    """memory/videoram as KiB; missing, negative ("-1": older toolstacks' "none") or garbage is 0."""
    return int(text) if text is not None and _is_kib(text) else 0


def _max_mismatch(hypervisor_max_kib: int | None, target_kib: int, ceiling_kib: int) -> str | None:
    """How the hypervisor's maximum disagrees with Xenstore's figures, or None.

    Below target (video memory included) the domain cannot reach its target; above
    static-max (+ video memory) + 1024 (what xl mem-max leaves) it can grow past xen-max. xl mem-set leaves
    target + 1024 and Xen's Domain-0 builder its boot size: both lie in between. A maximum
    the hypervisor does not limit (Domain-0 booted without dom0_mem's max:) is no mismatch.
    """
    if hypervisor_max_kib is None:
        return None
    highest_kib = (ceiling_kib + MAXMEM_SLACK_KIB) // 4 * 4
    if hypervisor_max_kib < target_kib:
        return (
            f"the hypervisor's maximum {hypervisor_max_kib} KiB is below target "
            f"({target_kib} KiB, video memory included): the domain cannot reach its target"
        )
    if hypervisor_max_kib > highest_kib:
        return (
            f"the hypervisor's maximum {hypervisor_max_kib} KiB is above static-max + 1024 "
            f"({highest_kib} KiB): the domain can grow past xen-max"
        )
    return None


def unnamed(domid: int) -> str:
    return "Domain-0" if domid == 0 else f"domain-{domid}"


def decode_value(raw: bytes) -> str:
    """A Xenstore value as text: UTF-8, other bytes shown as \\xNN (values come from guests)."""
    # Never surrogateescape: lone surrogates are not Unicode and cannot be printed or
    # put in JSON; backslashreplace keeps the bytes recognisable and the text valid.
    return raw.decode("utf-8", "backslashreplace")


def _is_kib(text: str) -> bool:
    return is_node_kib(text)


def malformed_kib_error(path: str, text: str) -> XbctlError:
    """The error for node PATH holding TEXT, which is no number of KiB."""
    return XbctlError(
        f"{path}: holds {text[:40]!r}, not a number of KiB",
        status=ExitStatus.UNAVAILABLE,
        errno_name="EINVAL",  # the node is there but unusable: `list` shows such a row
        hint="something other than a balloon driver or toolstack wrote it",
    )


def _kib(path: str, text: str) -> int:
    if not _is_kib(text):
        raise malformed_kib_error(path, text)
    return int(text)


def _optional_kib(txn: "Txn", rel: str) -> int | None:
    text = txn.read(rel)
    return None if text is None or text == "" else _kib(txn.path(rel), text)
