"""The simulated balloon driver: a deterministic model of NetBSD's driver on a small host.

The balloon thread moves each domain's reservation toward its target in steps of at
most BALLOON_DELTA pages, `steps_per_second` steps per simulated second. Simulated
time follows the wall clock (clock "wall") or only `xbctl sim advance` (clock
"manual", step-exact for tests). The state is a pure function of the stored state and
the simulated time, so reads compute it without writing; writers persist it.
"""

from __future__ import annotations

import time

from ..nodes import BALLAST_PAGES, Balloon
from ..units import MAX_KIB, PAGE_KIB

TYPE_CHECKING = False  # importing typing costs every start-up a few ms
if TYPE_CHECKING:
    from typing import Any

BALLOON_DELTA_PAGES = 512  # PAGE_SIZE / sizeof(xen_pfn_t)
STEP_KIB = BALLOON_DELTA_PAGES * PAGE_KIB
DEFAULT_STEPS_PER_SECOND = 50.0
CLOCKS = ("wall", "manual")
DRIVERS = ("netbsd", "linux", "none")
LOG_LIMIT = 500
MAX_STEPS_PER_SECOND = 10**6
# Bounds a state file must keep: simulated time within about 30,000 years either way, and
# boot sizes up to 1 TiB, so catching up on time is a bounded number of balloon steps.
MAX_SIM_SECONDS = 1e12
MAX_BOOT_KIB = 2**30
MIB = 1024
GIB = 1024 * MIB
_REQUIRED = object()  # a field without a default


class _Record:
    """A plain record of FIELDS ((name, default), ...; a callable default is a factory).

    Cheaper to import than dataclasses, whose start-up cost every command would pay.
    """

    __slots__ = ()
    FIELDS: tuple = ()

    def __init__(self, *args, **kwargs) -> None:
        if not args and len(kwargs) == len(self.FIELDS) and kwargs.keys() == self.field_names():
            for name, value in kwargs.items():  # every field given by name: a state file's record
                setattr(self, name, value)
            return
        if len(args) > len(self.FIELDS):
            raise TypeError(f"{type(self).__name__}: too many arguments")
        for index, (name, default) in enumerate(self.FIELDS):
            if index < len(args):
                if name in kwargs:
                    raise TypeError(f"{type(self).__name__}: {name} given twice")
                value = args[index]
            elif name in kwargs:
                value = kwargs.pop(name)
            elif default is _REQUIRED:
                raise TypeError(f"{type(self).__name__}: missing {name}")
            else:
                value = default() if callable(default) else default
            setattr(self, name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected {', '.join(sorted(kwargs))}")

    @classmethod
    def field_names(cls) -> frozenset[str]:
        """The names of the fields."""
        names = cls.__dict__.get("_field_names")
        if names is None:
            names = frozenset(name for name, _ in cls.FIELDS)
            type.__setattr__(cls, "_field_names", names)
        return names

    def to_dict(self) -> dict:
        """The record as plain data."""
        return {name: getattr(self, name) for name, _ in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"


class SimDomain(_Record):
    """One simulated domain: what the hypervisor and its balloon driver know."""

    FIELDS = (
        ("id", _REQUIRED),
        ("name", _REQUIRED),
        ("driver", _REQUIRED),  # netbsd: publishes current/min/max; linux: publishes nothing; none: no driver
        ("boot_kib", _REQUIRED),  # the driver cannot hot-plug memory above this
        ("xen_max_kib", _REQUIRED),
        ("target_kib", _REQUIRED),
        ("current_kib", _REQUIRED),
        ("dynamic_min_kib", _REQUIRED),
        ("used_kib", _REQUIRED),  # memory the guest's processes and kernel hold; never ballooned out
        ("freemin_pages", _REQUIRED),  # uvmexp.freemin: the free-page reserve
        ("diagnostic", None),  # the driver's last word on the current target
        ("short_reported", False),
    )
    __slots__ = tuple(name for name, _ in FIELDS)
    # The fields, for type checkers (bare annotations: nothing at run time).
    id: int
    name: str
    driver: str
    boot_kib: int
    xen_max_kib: int
    target_kib: int
    current_kib: int
    dynamic_min_kib: int
    used_kib: int
    freemin_pages: int
    diagnostic: str | None
    short_reported: bool

    @property
    def floor_kib(self) -> int:
        """NetBSD's safeguard floor for min: freemin + 256 pages."""
        return (self.freemin_pages + BALLAST_PAGES) * PAGE_KIB

    def balloon(self) -> Balloon:
        """The five nodes as the host sees them through this domain's driver."""
        publishes = self.driver == "netbsd"
        floor_kib = self.floor_kib if publishes else 0
        return Balloon(
            current_kib=self.current_kib,
            target_kib=self.target_kib,
            min_kib=max(self.dynamic_min_kib, floor_kib),
            xen_max_kib=self.xen_max_kib,
            driver_max_kib=self.boot_kib if publishes else None,
            floor_kib=floor_kib,
            # As over Xenstore: NetBSD's publishes its balloon, Linux's says nothing (unknown),
            # and the driverless guest says it has none (feature-balloon = 0).
            has_driver={"netbsd": True, "linux": None, "none": False}[self.driver],
            current_source="hypervisor",
            diagnostic=self.diagnostic,
        )


def _require_kib(value: object, what: str) -> None:
    if type(value) is not int or not 0 <= value <= MAX_KIB:
        raise ValueError(f"bad {what}")


# The fields of a SimDomain that hold KiB (freemin_pages is held to the same bounds).
_KIB_FIELDS = ("boot_kib", "xen_max_kib", "target_kib", "current_kib", "dynamic_min_kib", "used_kib", "freemin_pages")


def _require_seconds(value: Any, what: str, *, positive: bool = False, limit: float = MAX_SIM_SECONDS) -> None:
    if type(value) not in (int, float) or not -limit <= value <= limit or (positive and not value > 0):
        raise ValueError(f"bad {what}")


DEFAULT_GUESTS = 3  # web, db and mail
# The most guests `sim reset --guests` boots: the state of 2,001 domains, each with a driver's
# message, and a full log stays well within the state file's 1 MiB (simstore.MAX_STATE_BYTES).
MAX_GUESTS = 2000
# Guests beyond mail cycle through these boot sizes (MiB) and drivers, so a large host is
# varied yet the same on every reset (tests and benchmarks repeat).
EXTRA_GUEST_MIB = (256, 512, 1024, 2048, 768, 4096, 384)
EXTRA_GUEST_DRIVERS = ("netbsd", "linux", "netbsd", "none", "netbsd")


def default_domains(guests: int = DEFAULT_GUESTS) -> list[SimDomain]:
    """The simulated host: Domain-0 and GUESTS guests of different sizes, one without a driver.

    The first three guests are web, db and mail; guests from id 4 on are named guestID.
    """
    domains = [
        SimDomain(0, "Domain-0", "netbsd", 4 * GIB, 4 * GIB, 4 * GIB, 4 * GIB, 1 * GIB, 1 * GIB, 4096),
        SimDomain(1, "web", "netbsd", 1 * GIB, 1 * GIB, 768 * MIB, 768 * MIB, 128 * MIB, 384 * MIB, 1024),
        SimDomain(2, "db", "linux", 2 * GIB, 4 * GIB, 1536 * MIB, 1536 * MIB, 512 * MIB, 1 * GIB, 2048),
        SimDomain(3, "mail", "none", 512 * MIB, 512 * MIB, 512 * MIB, 512 * MIB, 256 * MIB, 200 * MIB, 512),
    ][: guests + 1]
    domains.extend(_extra_guest(domid) for domid in range(len(domains), guests + 1))
    return domains


def _extra_guest(domid: int) -> SimDomain:
    """Guest DOMID of a large simulated host: its size and driver follow from its id alone."""
    boot_kib = EXTRA_GUEST_MIB[domid % len(EXTRA_GUEST_MIB)] * MIB
    driver = EXTRA_GUEST_DRIVERS[domid % len(EXTRA_GUEST_DRIVERS)]
    # Some guests run below their boot size, some Linux ones may grow past it (xen-max above).
    target_kib = boot_kib * 3 // 4 if domid % 2 else boot_kib
    xen_max_kib = boot_kib * 2 if driver == "linux" else boot_kib
    return SimDomain(
        domid,
        f"guest{domid}",
        driver,
        boot_kib,
        xen_max_kib,
        target_kib,
        target_kib,
        boot_kib // 8,
        boot_kib // 4,
        boot_kib // 1024,
    )


class SimHost(_Record):
    """The whole simulated host: clock, free memory, domains and the drivers' log."""

    FIELDS = (
        ("clock", "wall"),
        ("steps_per_second", DEFAULT_STEPS_PER_SECOND),
        ("offset_s", 0.0),  # added by `sim advance`
        ("boot_s", 0.0),  # simulated time of the last reset
        ("last_tick_s", 0.0),  # simulated time the model was last advanced to
        ("position", 0),  # the domain xbctl runs in
        ("host_free_kib", 2 * GIB),
        ("domains", default_domains),
        ("log", list),
        # Set anew by each `sim reset`, which destroys every domain and creates it again: a
        # domain's id and this tell its instances apart (None: the host before any reset).
        ("boot_id", None),
    )
    __slots__ = tuple(name for name, _ in FIELDS)
    # The fields, for type checkers (bare annotations: nothing at run time).
    clock: str
    steps_per_second: float
    offset_s: float
    boot_s: float
    last_tick_s: float
    position: int
    host_free_kib: int
    domains: list[SimDomain]
    log: list[dict]
    boot_id: str | None

    @classmethod
    def fresh(cls, **settings: object) -> "SimHost":
        """A newly booted host; its clock starts now."""
        host = cls(**settings)
        host.boot_s = host.last_tick_s = host.now()
        return host

    @classmethod
    def from_dict(cls, data: dict) -> "SimHost":
        """The host stored as DATA; raises ValueError (or KeyError/TypeError) when malformed."""
        names = cls.field_names()
        host = cls(**{k: v for k, v in data.items() if k in names})
        host.domains = [SimDomain(**d) for d in data["domains"]]
        host.check()
        return host

    def check(self) -> None:
        """Raise ValueError unless every field holds what the model can run on."""
        if self.clock not in CLOCKS:
            raise ValueError("bad clock")
        _require_seconds(self.steps_per_second, "steps_per_second", positive=True, limit=MAX_STEPS_PER_SECOND)
        for name in ("offset_s", "boot_s", "last_tick_s"):
            _require_seconds(getattr(self, name), name)
        _require_kib(self.host_free_kib, "host_free_kib")
        if not (self.boot_id is None or (isinstance(self.boot_id, str) and 0 < len(self.boot_id) <= 64)):
            raise ValueError("bad boot_id")
        ids = [domain.id for domain in self.domains]
        if not ids or len(set(ids)) != len(ids) or self.position not in ids:
            raise ValueError("bad domain ids or position")
        for domain in self.domains:
            if type(domain.id) is not int or not 0 <= domain.id < 0x7FF0:
                raise ValueError("bad domain id")
            if not isinstance(domain.name, str) or not domain.name or domain.driver not in DRIVERS:
                raise ValueError(f"bad domain {domain.id}")
            for name in _KIB_FIELDS:  # inline, not _require_kib: a large host has thousands
                value = getattr(domain, name)
                if type(value) is not int or not 0 <= value <= MAX_KIB:
                    raise ValueError(f"bad {name} of domain {domain.id}")
            if not domain.current_kib <= domain.boot_kib <= MAX_BOOT_KIB:
                raise ValueError(f"bad boot_kib or current_kib of domain {domain.id}")
            if not (domain.diagnostic is None or isinstance(domain.diagnostic, str)):
                raise ValueError(f"bad diagnostic of domain {domain.id}")
            if type(domain.short_reported) is not bool:
                raise ValueError(f"bad short_reported of domain {domain.id}")
        for entry in self.log:
            if not (isinstance(entry, dict) and set(entry) == {"t", "domain", "message"}):
                raise ValueError("bad log entry")
            _require_seconds(entry["t"], "log time")
            if not (isinstance(entry["domain"], str) and isinstance(entry["message"], str)):
                raise ValueError("bad log entry")

    def to_dict(self) -> dict:
        """The host as plain data for the state file."""
        data = super().to_dict()
        data["domains"] = [domain.to_dict() for domain in self.domains]
        data["log"] = [dict(entry) for entry in self.log]
        return data

    def now(self) -> float:
        """Simulated time in seconds."""
        return (time.time() if self.clock == "wall" else 0.0) + self.offset_s

    def total_kib(self) -> int:
        """The host's memory: the model only moves it between the free pool and the domains
        (a Xen of its own takes none), so it is their sum, kept by every step."""
        return self.host_free_kib + sum(domain.current_kib for domain in self.domains)

    def at_rest(self) -> bool:
        """True when nothing moves as time passes: the clock is manual, or every balloon is
        where its driver (or the lack of one) leaves it."""
        return self.clock == "manual" or all(
            domain.driver == "none" or domain.current_kib == domain.target_kib for domain in self.domains
        )

    def domain(self, domid: int) -> SimDomain:
        """The domain with id DOMID."""
        return next(d for d in self.domains if d.id == domid)

    def advance(self) -> None:
        """Run the balloon threads up to now."""
        now = self.now()
        rounds = int(((now - self.last_tick_s) * self.steps_per_second + 1e-9) // 1)  # floor, without math
        for done in range(rounds):
            at = self.last_tick_s + (done + 1) / self.steps_per_second
            if not any([self._step(domain, at) for domain in self.domains]):
                self.last_tick_s = now  # every driver is idle: nothing to catch up on
                return
        self.last_tick_s += max(rounds, 0) / self.steps_per_second

    def step(self, domain: SimDomain) -> bool:
        """One turn of DOMAIN's balloon thread now, alone (the guest agent drives one domain)."""
        return self._step(domain, self.now())

    def _step(self, domain: SimDomain, at: float) -> bool:
        """One turn of DOMAIN's balloon thread; True when it moved."""
        if domain.driver == "none" or domain.current_kib == domain.target_kib:
            return False
        if domain.target_kib < domain.current_kib:
            return self._inflate(domain, at)
        return self._deflate(domain, at)

    def _inflate(self, domain: SimDomain, at: float) -> bool:
        # The guest can give back only free pages above its free-page reserve.
        givable_kib = domain.current_kib - domain.used_kib - domain.freemin_pages * PAGE_KIB
        step_kib = min(STEP_KIB, domain.current_kib - domain.target_kib, max(givable_kib, 0))
        if step_kib <= 0:
            self._report(
                domain,
                at,
                f"WARNING: balloon could not reach target {domain.target_kib} (current {domain.current_kib})",
            )
            domain.target_kib = domain.current_kib  # the driver feeds current back into target
            return False
        domain.current_kib -= step_kib
        self.host_free_kib += step_kib
        return True

    def _deflate(self, domain: SimDomain, at: float) -> bool:
        if domain.target_kib > domain.boot_kib and domain.diagnostic is None:
            self._report(
                domain,
                at,
                f"memory 'hot-plug' unsupported - clipping reservation "
                f"{domain.target_kib // PAGE_KIB} => {domain.boot_kib // PAGE_KIB} pages.",
            )
        want_kib = min(STEP_KIB, domain.target_kib - domain.current_kib, domain.boot_kib - domain.current_kib)
        if want_kib <= 0:
            return False
        got_kib = min(want_kib, self.host_free_kib)
        if got_kib < want_kib and not domain.short_reported:
            domain.short_reported = True
            self._report(
                domain,
                at,
                f"increase reservation incomplete: was {want_kib // PAGE_KIB}, returned {got_kib // PAGE_KIB}",
            )
        domain.current_kib += got_kib
        self.host_free_kib -= got_kib
        return got_kib > 0

    def _report(self, domain: SimDomain, at: float, message: str) -> None:
        domain.diagnostic = message
        self.log.append({"t": round(at - self.boot_s, 3), "domain": domain.name, "message": message})
        del self.log[:-LOG_LIMIT]

    def set_node(self, domain: SimDomain, key: str, kib: int) -> None:
        """Write a writable node of DOMAIN, as the host's toolstack would."""
        if key == "target":
            if kib != domain.target_kib:  # a new target: the driver tries again
                domain.diagnostic = None
                domain.short_reported = False
            domain.target_kib = kib
        elif key == "min":
            domain.dynamic_min_kib = kib
        elif key == "xen-max":
            domain.xen_max_kib = kib
        else:  # the node table's rules refuse read-only nodes before this
            raise AssertionError(key)
