"""The simulator as a transport: the simulated host (simmodel.py) kept in a state file.

Reads compute the host's state from the stored state and the simulated time without
writing; writers take the lock, advance the model, apply what policy planned, and save.
"""

from __future__ import annotations

import os
import time

from ..errors import ExitStatus, XbctlError, unavailable, unknown, usage_error
from . import Domain, Transport, match_domain, parse_domain_id
from .simmodel import (  # noqa: F401  (the model's names, for the commands and the agent)
    DEFAULT_GUESTS,
    DEFAULT_STEPS_PER_SECOND,
    MAX_GUESTS,
    MAX_STEPS_PER_SECOND,
    SimDomain,
    SimHost,
    default_domains,
)
from .simstore import CorruptState, StateStore, default_state_path

TYPE_CHECKING = False  # typing and pathlib cost every start-up a few ms: the state path is a str
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path
    from typing import Iterator

    from ..nodes import Balloon
    from . import Plan


class SimTransport(Transport):
    """The embedded default: the simulated host, kept in a state file."""

    name = "sim"

    def __init__(self, state_path: str | None = None) -> None:
        if state_path == "":
            raise usage_error("--sim-state: empty path")
        path = state_path or os.environ.get("XBCTL_SIM_STATE")  # empty in the environment: unset
        self.store = StateStore(path or default_state_path())
        self._layout: SimHost | None = None
        self._last_read: tuple[bytes, SimHost] | None = None  # the stored bytes and the host load() made of them
        self.kept_aside: str | None = None  # where `sim reset` moved a damaged state file

    def layout(self) -> SimHost:
        """The host as first loaded by this command: for its domains and position, which
        only `sim reset` changes (balloon values always come from a fresh load)."""
        if self._layout is None:
            self._layout = self.load()
        return self._layout

    def load(self) -> SimHost:
        """The host advanced to now, to read (never to change: see changing()); a damaged
        state file is reported, never moved.

        A command that reads several times (list: its domains, their balloons, the host's
        free memory) decodes and checks the state once: while the stored bytes stay the same
        and nothing in the host can move by itself, the host loaded last is the answer.
        """
        raw = self.store.read_raw()
        last = self._last_read
        if raw is not None and last is not None and last[0] == raw and last[1].at_rest():
            return last[1]
        host = self._load_fresh(raw)
        self._last_read = (raw, host) if raw is not None else None
        return host

    def _load_fresh(self, raw: bytes | None) -> SimHost:
        """The host stored as RAW (None: a fresh host), advanced to now: a new object to change."""
        if raw is None:
            host = SimHost.fresh()
            host.advance()
            return host
        try:
            return self._host_from(raw)
        except CorruptState as exc:
            raise self.store.corrupt(str(exc)) from None

    def _host_from(self, raw: bytes) -> SimHost:
        """The host stored as RAW, advanced to now; CorruptState when it is ours but damaged."""
        data = self.store.decode(raw)  # a file that is not ours is refused here
        try:
            host = SimHost.from_dict(data)
            host.advance()
        except (KeyError, TypeError, ValueError, AttributeError, StopIteration, ArithmeticError) as exc:
            raise CorruptState(f"unexpected content: {exc!r}") from None
        return host

    def save(self, host: SimHost) -> None:
        """Persist HOST (call with the lock held)."""
        try:
            self.store.save(host.to_dict())
        except OSError as exc:
            raise unavailable(f"simulator state {self.store.path}: {exc.strerror}") from None

    def own_domain(self) -> Domain:
        host = self.layout()
        own = host.domain(host.position)
        return Domain(own.id, own.name)

    def list_domains(self) -> list[Domain]:
        host = self.layout()
        if host.position != 0:  # a guest sees only itself
            own = host.domain(host.position)
            return [Domain(own.id, own.name)]
        return [Domain(d.id, d.name) for d in host.domains]

    def resolve_domain(self, spec: str | None) -> Domain:
        if spec is None:
            return self.own_domain()
        host = self.layout()
        if host.position == 0:
            return match_domain(spec, [Domain(d.id, d.name) for d in host.domains])
        # A guest cannot list other domains, so their names are unknown to it, and reading
        # another domain's nodes by id is refused, as Xenstore answers a guest.
        own = host.domain(host.position)
        domid = parse_domain_id(spec)
        if domid is None or domid == own.id or not any(d.id == domid for d in host.domains):
            return match_domain(spec, [Domain(own.id, own.name)])
        raise XbctlError(
            f"domain {spec}: Permission denied: a guest sees only its own domain",
            status=ExitStatus.REFUSED,
            errno_name="EACCES",
        )

    def read_balloon(self, domain: Domain) -> Balloon:
        return self.load().domain(domain.id).balloon()

    def read_balloons(self, domains: list[Domain]) -> list[Balloon | XbctlError]:
        # One load (and one validation) of the state for the whole list, not one per domain.
        host = self.load()
        by_id = {sim_domain.id: sim_domain for sim_domain in host.domains}
        return [
            by_id[domain.id].balloon()
            if domain.id in by_id
            else unknown(f"domain {domain.id}: no such domain (it is gone)")
            for domain in domains
        ]

    def domain_instances(self, domains: list[Domain]) -> list[dict[str, str]]:
        # Only `sim reset` destroys domains, every one, and creates them again.
        boot_id = self.load().boot_id
        return [{"boot_id": boot_id} if boot_id else {} for _ in domains]

    def runtime_path(self, name: str) -> Path:
        from pathlib import Path

        # Beside the state file: the record goes with the simulated host it is about.
        return Path(f"{self.store.path}.{name}")

    def host_free_kib(self) -> int | None:
        host = self.load()
        return host.host_free_kib if host.position == 0 else None  # a guest cannot ask

    def host_memory_kib(self) -> tuple[int, int] | None:
        host = self.load()
        return (host.total_kib(), host.host_free_kib) if host.position == 0 else None

    def changing(self) -> AbstractContextManager[SimHost]:
        """The host, loaded under the writer lock, to change and save."""
        import contextlib  # writers only: a read does without it

        return contextlib.contextmanager(self._changing)()

    def _changing(self) -> Iterator[SimHost]:
        self.layout()  # refuse a foreign or damaged file before creating a lock file beside it
        with self.store.locked():
            yield self._load_fresh(self.store.read_raw())

    def update_balloon(self, domain: Domain, plan: Plan) -> tuple[Balloon, Balloon]:
        with self.changing() as host:
            sim_domain = host.domain(domain.id)
            before = sim_domain.balloon()
            values = plan(before)  # policy's rules, the guest position among them, raise here
            for key, kib in values.items():
                host.set_node(sim_domain, key, kib)
            self.save(host)
            return before, sim_domain.balloon()

    def update_balloons(self, plans: "list[tuple[Domain, Plan]]") -> "list[tuple[Balloon, Balloon]]":
        # One lock, one load, one save: every plan runs before any node is set.
        with self.changing() as host:
            staged = []
            by_id = {sim_domain.id: sim_domain for sim_domain in host.domains}
            for domain, plan in plans:
                sim_domain = by_id[domain.id]
                before = sim_domain.balloon()
                staged.append((sim_domain, before, plan(before)))
            for sim_domain, _before, values in staged:
                for key, kib in values.items():
                    host.set_node(sim_domain, key, kib)
            self.save(host)
            return [(before, sim_domain.balloon()) for sim_domain, before, _values in staged]

    def wait_for_change(self, domain: Domain, timeout_s: float) -> None:
        time.sleep(max(0.0, min(timeout_s, 0.05)))

    # Simulator controls, for `xbctl sim ...`.

    def advance(self, seconds: float) -> SimHost:
        """Let SECONDS of simulated time pass."""
        with self.changing() as host:
            host.offset_s += seconds
            host.advance()
            self.save(host)
            return host

    def reset(
        self,
        *,
        clock: str,
        steps_per_second: float,
        host_free_kib: int,
        position: str | None,
        guests: int = DEFAULT_GUESTS,
    ) -> SimHost:
        """Boot a fresh simulated host with these settings and GUESTS guests, whatever state ours held.

        The old state is not needed, only checked to be ours: a damaged one is kept aside
        (its name is returned in `kept_aside`), anything else refused and left alone.
        """
        host = SimHost.fresh(
            clock=clock,
            steps_per_second=steps_per_second,
            host_free_kib=host_free_kib,
            domains=default_domains(guests),
            boot_id=os.urandom(16).hex(),
        )
        if position is not None:
            host.position = match_domain(position, [Domain(d.id, d.name) for d in host.domains]).id
        self.kept_aside = None
        self._replaceable()  # before creating a lock file beside someone else's file
        with self.store.locked():
            raw = self._replaceable()
            if raw is not None:
                try:
                    self._host_from(raw)
                except CorruptState:
                    self.kept_aside = self.store.keep_aside(raw)
                    if self.kept_aside is None:
                        raise unavailable(f"simulator state {self.store.path} changed meanwhile; try again") from None
            self.save(host)
            self._layout = None
            return host

    def _replaceable(self) -> bytes | None:
        """The stored bytes, once the file is known to be ours and writable (or None: no file)."""
        self.store.check_replaceable(self.store.status())
        raw = self.store.read_raw()
        if raw is not None:
            try:
                self.store.decode(raw)  # refuses a file that is not ours, or a newer xbctl's
            except CorruptState:
                pass
        return raw
