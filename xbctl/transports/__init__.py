"""The seam between operations and the balloon: the interface every transport implements.

Implementations: sim (the simulated host), xenstore (over wire, with hypervisor as
Domain-0); choice picks one.
"""

from __future__ import annotations

import os

from ..errors import ExitStatus, XbctlError, unknown, usage_error

TYPE_CHECKING = False  # importing typing costs every start-up a few ms
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Callable, TypeAlias

    from ..nodes import Balloon

# Xen reserves domain ids from DOMID_FIRST_RESERVED (0x7FF0) upwards.
DOMID_FIRST_RESERVED = 0x7FF0
TRANSPORT_NAMES = ("sim", "xenstore")
# A tmpfs: what is kept there lasts until the host reboots (xbctl-policy.service's RuntimeDirectory).
DEFAULT_RUNTIME_DIR = "/run/xbctl"

# A plan (policy's, through operations): {node: new KiB} for a balloon snapshot, or a refusal.
Plan: TypeAlias = "Callable[[Balloon], dict[str, int]]"


class Domain:
    """A domain as the transport knows it."""

    __slots__ = ("id", "name")
    id: int
    name: str

    def __init__(self, id: int, name: str) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "name", name)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Domain is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Domain) and (self.id, self.name) == (other.id, other.name)

    def __hash__(self) -> int:
        return hash((self.id, self.name))

    def __repr__(self) -> str:
        return f"Domain(id={self.id!r}, name={self.name!r})"


if TYPE_CHECKING:  # type checkers know abc's: these bodies are meant to be empty
    from abc import abstractmethod
else:

    def abstractmethod(method):
        """Marks what every transport implements (abc's machinery costs start-up time for nothing)."""

        def missing(self, *args, **kwargs):
            raise NotImplementedError(f"{type(self).__name__} does not implement {method.__name__}")

        missing.__name__, missing.__doc__ = method.__name__, method.__doc__
        return missing


class Transport:
    """What operations need from a balloon: find domains, read, change atomically, wait.

    Transports only read, write atomically and report: every write rule is policy's
    (xbctl/rules.py), run on a snapshot inside the transport's lock or transaction.
    """

    name: str
    # Where notes go (the CLI prints them on stderr); until set, they are kept in pending_notes.
    on_note: Callable[[str], None] | None = None

    def note(self, message: str) -> None:
        """Tell the user MESSAGE once (for instance why the hypervisor is not used)."""
        if self.on_note is not None:
            self.on_note(message)
        else:
            self.__dict__.setdefault("pending_notes", []).append(message)

    def hypervisor_status(self) -> dict | None:
        """Whether the hypervisor answers and why not; None where it is not ours to ask."""
        return None

    def host_free_kib(self) -> int | None:
        """The host's free memory as `xl info` computes it, when known."""
        return None

    def host_memory_kib(self) -> tuple[int, int] | None:
        """The host's total and free memory in KiB as `xl info` computes them, when known."""
        return None

    def hypervisor_poll_s(self) -> float | None:
        """How often --wait must re-read a figure that changes without notice (None: never)."""
        return None

    @abstractmethod
    def own_domain(self) -> Domain:
        """The domain xbctl runs in (Domain-0 on a host)."""

    @abstractmethod
    def list_domains(self) -> list[Domain]:
        """Every domain this position can see, by id."""

    @abstractmethod
    def read_balloon(self, domain: Domain) -> Balloon:
        """The balloon of DOMAIN now."""

    def read_balloons(self, domains: list[Domain]) -> list[Balloon | XbctlError]:
        """The balloons of DOMAINS in their order, each a Balloon or the error reading it raised.

        Transports override this to read many domains at once (one state load, pipelined
        Xenstore requests); an error of the transport itself (not of one domain) is raised.
        """
        results: list[Balloon | XbctlError] = []
        for domain in domains:
            try:
                results.append(self.read_balloon(domain))
            except XbctlError as exc:
                if is_transport_failure(exc):
                    raise  # the transport itself failed, not this one domain
                results.append(exc)
        return results

    def snapshot(self, domain: Domain) -> Balloon:
        """DOMAIN's balloon as update_balloon hands it to a plan (a dry run plans on this).

        Unlike read_balloon, a target that is no number is not an error here: the balloon
        carries the error in target_malformed, for policy's rule on replacing it.
        """
        return self.read_balloon(domain)

    def snapshots(self, domains: list[Domain]) -> list[Balloon]:
        """snapshot() of each of DOMAINS, in order (transports override it to read them at once)."""
        return [self.snapshot(domain) for domain in domains]

    def check_write(self, domain: Domain, values: dict[str, int]) -> None:
        """Raise what a write of VALUES would meet beyond policy's rules (a dry run asks this).

        Over Xenstore as Domain-0: a domain the hypervisor does not know. None by default.
        """

    def node_location(self, domain: Domain, key: str) -> str | None:
        """Where node KEY of DOMAIN is stored, for messages (None: nowhere a user can look)."""
        return None

    def guest_writable_nodes(self, domain: Domain) -> "frozenset[str] | None":
        """The nodes of DOMAIN a guest's own root may set from inside it (None: policy's default, min)."""
        return None

    @abstractmethod
    def update_balloon(self, domain: Domain, plan: Plan) -> tuple[Balloon, Balloon]:
        """Atomically take a snapshot of DOMAIN's balloon, let PLAN compute {node: new KiB}
        (or raise: then nothing is written), write exactly that.

        Returns the balloon before and after.
        """

    def update_balloons(self, plans: "list[tuple[Domain, Plan]]") -> "list[tuple[Balloon, Balloon]]":
        """update_balloon for several domains as one change: every PLAN runs on its domain's
        snapshot before anything is written; one refusal writes nothing anywhere.

        Returns each domain's balloon before and after, in PLANS' order.
        """
        if len(plans) == 1:
            return [self.update_balloon(*plans[0])]
        raise NotImplementedError(f"{type(self).__name__} does not implement update_balloons")

    @abstractmethod
    def wait_for_change(self, domain: Domain, timeout_s: float) -> None:
        """Block until DOMAIN's balloon may have changed, or TIMEOUT_S passed."""

    def domain_instances(self, domains: list[Domain]) -> list[dict[str, str]]:
        """What tells each of DOMAINS from an earlier domain that had its id: {} when nothing does.

        Two readings belong to one domain when every key of the earlier is in the later with
        the same value (a toolstack may write some of them after the domain appears).
        """
        return [{} for _ in domains]

    def runtime_path(self, name: str) -> Path:
        """Where file NAME about this host lives until the host reboots."""
        return runtime_path(name)

    def writer_is_host(self) -> bool:
        """True when xbctl acts from the host (Domain-0), not from inside a guest."""
        return self.own_domain().id == 0

    @abstractmethod
    def resolve_domain(self, spec: str | None) -> Domain:
        """The domain named or numbered SPEC (looked up, never put in a path), or our own."""

    def close(self) -> None:
        """Release connections."""


def runtime_path(name: str) -> Path:
    """File NAME in the host's runtime directory: $XBCTL_RUNTIME_DIR, default /run/xbctl."""
    from pathlib import Path

    return Path(os.environ.get("XBCTL_RUNTIME_DIR") or DEFAULT_RUNTIME_DIR) / name


def is_transport_failure(error: XbctlError) -> bool:
    """ERROR is the transport failing (exit 3), not one domain's nodes holding nonsense."""
    return error.status == ExitStatus.UNAVAILABLE and error.errno_name != "EINVAL"


def parse_domain_id(spec: str) -> int | None:
    """SPEC as a domain id when it is all ASCII digits, else None (then it is a name)."""
    if not (spec.isascii() and spec.isdigit()):
        return None
    domid = int(spec)
    if domid >= DOMID_FIRST_RESERVED:
        raise unknown(f"domain {spec}: unknown domain (ids are below {DOMID_FIRST_RESERVED})")
    return domid


def match_domain(spec: str, domains: list[Domain]) -> Domain:
    """The domain whose id or exact name is SPEC; names are only ever looked up."""
    if spec == "":
        raise usage_error("empty domain name")
    shown = spec if len(spec) <= 64 else spec[:64] + "..."
    domid = parse_domain_id(spec)
    if domid is not None:
        found = [domain for domain in domains if domain.id == domid]
    else:
        found = [domain for domain in domains if domain.name == spec]
    if len(found) > 1:  # two live domains with one name: never guess which one is meant
        raise usage_error(
            f"domain {shown!r}: ambiguous name (ids {', '.join(str(d.id) for d in found)})",
            hint="give the domain id",
        )
    if not found:
        raise unknown(f"domain {shown!r}: unknown domain", hint="xbctl list shows the domains")
    return found[0]
