"""The five balloon nodes, declared once, with the driver's rules for writing them.

This table feeds reads, writes, help, completion and the man page.
"""

from __future__ import annotations

from .errors import refused, unknown

TYPE_CHECKING = False  # importing typing costs every start-up a few ms
if TYPE_CHECKING:
    from typing import Callable

    from .errors import XbctlError

SYSCTL_PREFIX = "machdep.xen.balloon"
BALLAST_PAGES = 256  # NetBSD keeps uvmexp.freemin + 256 pages out of the balloon's reach


class Balloon:
    """One domain's balloon as seen at one moment, all values in KiB (immutable: copy to change)."""

    # (field, default); fields without a default come first, in this order, as arguments.
    _DEFAULTS = (
        ("current_kib", None),
        ("target_kib", None),
        ("min_kib", None),  # effective floor: the larger of the configured and the driver's minimum
        ("xen_max_kib", None),
        # Every size is the domain's, as `xl list` counts it: video memory included (see videoram_kib).
        ("driver_max_kib", None),  # the most the driver can handle (boot-time size); None if unknown
        ("floor_kib", None),  # the driver's safeguard floor (free-page reserve + ballast); 0 if unknown
        ("has_driver", True),  # a driver acts on target; None: unknown (nothing says either way)
        ("current_source", "driver"),
        ("target_source", None),  # "sysfs": the guest's own Linux driver answered for target
        ("diagnostic", None),  # the driver's last word on why it cannot reach target
        ("min_origin", None),  # where min comes from, when a refusal should say so
        ("min_hint", None),  # how the host administrator can lower that min
        ("floor_hint", None),  # how the host administrator can go below floor_kib
        ("host_min_kib", None),  # min without the guest's published floor (None: no guest floor)
        ("hypervisor_max_kib", None),  # the hypervisor's maximum (max_pages * 4), when read
        ("hypervisor_max_unlimited", False),  # max_pages is 2^32-1: the hypervisor sets no limit
        ("max_mismatch", None),  # how static-max and the hypervisor's maximum disagree
        # memory/videoram: target counts it (target is what xl mem-set takes and xl list reaches),
        # memory/target holds target less it; xl mem-set lets memory/target reach static-max.
        ("videoram_kib", 0),
        ("warnings", ()),  # guest-published values that were ignored, and why
        # The malformed-value error of a target that is no number (then target_kib is 0):
        # only policy's planning sees such a balloon; reads raise the error instead.
        ("target_malformed", None),
    )
    _REQUIRED = 6
    __slots__ = tuple(name for name, _ in _DEFAULTS)
    # The fields above, for type checkers (bare annotations: no class attribute, no run-time cost).
    current_kib: int
    target_kib: int
    min_kib: int
    xen_max_kib: int
    driver_max_kib: int | None
    floor_kib: int
    has_driver: bool | None
    current_source: str
    target_source: str | None
    diagnostic: str | None
    min_origin: str | None
    min_hint: str | None
    floor_hint: str | None
    host_min_kib: int | None
    hypervisor_max_kib: int | None
    hypervisor_max_unlimited: bool
    max_mismatch: str | None
    videoram_kib: int
    warnings: tuple[str, ...]
    target_malformed: XbctlError | None

    def __init__(self, *args, **kwargs) -> None:
        setter = object.__setattr__
        if not args and kwargs.keys() <= _BALLOON_DEFAULTS.keys() and kwargs.keys() >= _BALLOON_REQUIRED:
            # By name, as transports build them: the checks below as set operations in C.
            values = {**_BALLOON_DEFAULTS, **kwargs}
            for name, value in values.items():
                setter(self, name, value)
            return
        names = self.__slots__
        if len(args) > len(names):
            raise TypeError("too many arguments")
        values = dict(zip(names, args))
        for name, value in kwargs.items():
            if name in values or name not in _BALLOON_DEFAULTS:
                raise TypeError(f"bad argument {name!r}")
            values[name] = value
        for name in names[: self._REQUIRED]:
            if name not in values:
                raise TypeError(f"missing {name!r}")
        for name, default in _BALLOON_DEFAULTS.items():  # a list of many domains makes many
            setter(self, name, values.get(name, default))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Balloon is immutable")

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Balloon) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return "Balloon(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    @property
    def max_kib(self) -> int:
        """The highest target accepted: xen-max (plus the video memory, as xl mem-set compares
        memory/target with static-max), clipped to what the driver can handle."""
        ceiling_kib = self.xen_max_kib + self.videoram_kib
        if self.driver_max_kib is None:
            return ceiling_kib
        return min(ceiling_kib, self.driver_max_kib)

    @property
    def memory_target_kib(self) -> int:
        """What Xenstore's memory/target holds: target less the video memory."""
        return max(self.target_kib - self.videoram_kib, 0)

    def value_kib(self, key: str) -> int:
        """The value of node KEY."""
        return getattr(self, _FIELDS[key])

    def with_fields(self, **changes: object) -> "Balloon":
        """A copy with CHANGES applied."""
        copy = object.__new__(Balloon)  # field by field: a plan over 1,000 domains makes thousands
        for name in self.__slots__:
            object.__setattr__(copy, name, changes.pop(name) if name in changes else getattr(self, name))
        if changes:
            raise TypeError(f"bad argument {next(iter(changes))!r}")
        return copy

    def with_values(self, values: "dict[str, int]") -> "Balloon":
        """A copy with each writable node in VALUES ({key: KiB}) set, in one copy."""
        fields: dict[str, object] = {_FIELDS[key]: kib for key, kib in values.items()}
        if "target" in values:
            fields["target_malformed"] = None
        return self.with_fields(**fields)

    def with_value(self, key: str, kib: int) -> "Balloon":
        """A copy with writable node KEY set to KIB (a target set is no longer malformed)."""
        if key == "target":
            return self.with_fields(target_kib=kib, target_malformed=None)
        return self.with_fields(**{_FIELDS[key]: kib})


_BALLOON_DEFAULTS = dict(Balloon._DEFAULTS)
_BALLOON_REQUIRED = frozenset(Balloon.__slots__[: Balloon._REQUIRED])
_FIELDS = {
    "current": "current_kib",
    "target": "target_kib",
    "min": "min_kib",
    "max": "max_kib",
    "xen-max": "xen_max_kib",
}

# A rule: (sysctl name, new KiB, balloon, writer_is_host, show) -> None, or raise the refusal.
# SHOW(kib) renders a size for the message in the unit the user typed, with KiB beside it.


def show_kib(kib: int) -> str:
    """KIB for a message, when the user typed KiB."""
    return f"{kib} KiB"


def _read_only(name: str, new_kib: int, balloon: Balloon, writer_is_host: bool, show=show_kib) -> None:
    raise refused(name, "read-only node")


def _video(balloon: Balloon) -> str:
    return f" plus its {balloon.videoram_kib} KiB of video memory" if balloon.videoram_kib else ""


def _check_target(name: str, new_kib: int, balloon: Balloon, writer_is_host: bool, show=show_kib) -> None:
    if new_kib < balloon.min_kib:
        origin = f" ({balloon.min_origin})" if balloon.min_origin else ""
        raise refused(name, f"{show(new_kib)} is below min {show(balloon.min_kib)}{origin}", hint=balloon.min_hint)
    if new_kib < balloon.videoram_kib:
        # memory/target (target less the video memory) would be negative: xl refuses it too
        # (its unsigned subtraction wraps above static-max).
        raise refused(
            name,
            f"{show(new_kib)} is below the domain's {show(balloon.videoram_kib)} of video memory "
            "(memory/videoram), which the target counts",
        )
    if new_kib > balloon.max_kib:
        ceiling_kib = balloon.xen_max_kib + balloon.videoram_kib
        if balloon.driver_max_kib is not None and balloon.driver_max_kib < ceiling_kib:
            raise refused(
                name,
                f"{show(new_kib)} is above max {show(balloon.max_kib)}: the guest booted with that much and its "
                "balloon driver cannot hot-plug memory above its boot-time size",
                hint="the guest can use more only after it boots with more (raise its memory and maxmem, restart it)",
            )
        raise refused(
            name,
            f"{show(new_kib)} is above max {show(balloon.max_kib)}: xen-max {show(balloon.xen_max_kib)}"
            f"{_video(balloon)}, the hypervisor's ceiling for the domain",
            hint="raise xen-max first (xbctl mem-max DOMAIN SIZE), then the target",
        )


def _check_min(name: str, new_kib: int, balloon: Balloon, writer_is_host: bool, show=show_kib) -> None:
    if new_kib < balloon.floor_kib:
        raise refused(
            name,
            f"{show(new_kib)} is below the driver's safeguard floor {show(balloon.floor_kib)} "
            f"(free-page reserve + {BALLAST_PAGES} pages)",
            hint=balloon.floor_hint,
        )
    if new_kib > balloon.max_kib:
        raise refused(name, f"{show(new_kib)} is above max {show(balloon.max_kib)}")
    if new_kib > balloon.target_kib:
        raise refused(
            name,
            f"{show(new_kib)} is above target {show(balloon.target_kib)}",
            hint="raise target first",
        )


def _check_xen_max(name: str, new_kib: int, balloon: Balloon, writer_is_host: bool, show=show_kib) -> None:
    if not writer_is_host:
        raise refused(name, "only the host administrator sets xen-max (this is a guest)")
    # As xl mem-max: static-max may not go below memory/target (the target less its video memory).
    if new_kib < balloon.memory_target_kib:
        video = (
            f" less its {balloon.videoram_kib} KiB of video memory ({show(balloon.memory_target_kib)})"
            if balloon.videoram_kib
            else ""
        )
        raise refused(
            name,
            f"{show(new_kib)} is below target {show(balloon.target_kib)}{video} "
            "(memory_static_max must be greater than or equal to memory_dynamic_max)",
            hint="lower target first",
        )


class Node:
    """One balloon node: its short name, access and meaning, and the rule for writes."""

    __slots__ = ("key", "writable", "summary", "rule", "host_only")

    def __init__(
        self,
        key: str,
        writable: bool,
        summary: str,
        rule: "Callable[..., None]",
        host_only: bool = False,
    ) -> None:
        self.key, self.writable, self.summary, self.rule, self.host_only = key, writable, summary, rule, host_only

    def __repr__(self) -> str:
        return f"Node({self.key!r})"

    @property
    def sysctl_name(self) -> str:
        """The full sysctl name, e.g. machdep.xen.balloon.target."""
        return f"{SYSCTL_PREFIX}.{self.key}"

    @property
    def access(self) -> str:
        """read-only, read-write, or read-write (host administrator only)."""
        if not self.writable:
            return "read-only"
        return "read-write, host only" if self.host_only else "read-write"

    def check_write(self, new_kib: int, balloon: Balloon, writer_is_host: bool, show=show_kib) -> None:
        """Raise the driver's refusal (EPERM) if NEW_KIB may not be written to this node
        (SHOW renders sizes in the message)."""
        self.rule(self.sysctl_name, new_kib, balloon, writer_is_host, show)


NODES: tuple[Node, ...] = (
    Node("current", False, "the domain's current memory reservation", _read_only),
    Node(
        "target",
        True,
        "the reservation the driver steers toward",
        _check_target,
    ),
    Node(
        "min",
        True,
        "the lowest reservation the driver accepts",
        _check_min,
    ),
    Node(
        "max",
        False,
        "xen-max clipped to what the driver can reach",
        _read_only,
    ),
    Node(
        "xen-max",
        True,
        "the hypervisor's ceiling for the domain",
        _check_xen_max,
        host_only=True,
    ),
)
NODE_BY_KEY = {node.key: node for node in NODES}


def find_node(name: str) -> Node:
    """The node called NAME (full sysctl name or short key); unknown names exit 4."""
    key = name[len(SYSCTL_PREFIX) + 1 :] if name.startswith(SYSCTL_PREFIX + ".") else name
    node = NODE_BY_KEY.get(key)
    if node is None:
        raise unknown(
            f"{name}: unknown node",
            hint="nodes: " + ", ".join(n.sysctl_name for n in NODES),
        )
    return node


def select_nodes(name: str) -> tuple[Node, ...]:
    """NAME as a node or a subtree of the sysctl tree (machdep, machdep.xen, ...)."""
    if SYSCTL_PREFIX == name or SYSCTL_PREFIX.startswith(name + "."):
        return NODES
    return (find_node(name),)
