"""A Xenstore transaction's view of domains: reads cached and pipelined, writes queued and sent
in one batch before the commit; the retry bounds of a transaction that meets EAGAIN."""

from __future__ import annotations

from ...errors import XbctlError
from .model import GUEST_DIR, GUEST_READS, HOST_READS
from .wire import Op

TYPE_CHECKING = False  # importing typing costs every start-up a few ms
if TYPE_CHECKING:
    from .transport import XenstoreTransport

MAX_ATTEMPTS = 8  # transaction attempts before giving up on EAGAIN
FIRST_BACKOFF_S = 0.005


class Txn:
    """Reads and writes of domains' nodes, inside one Xenstore transaction (or none, to read).

    One Txn is one domain's view (relative paths resolve under its /local/domain/N);
    for_domain() gives the view of another domain that shares this one's cache and queue,
    so a transaction can span many domains. Reads are cached (prefetch_balloons fills the
    cache with one pipelined batch); writes are queued, seen by later reads, and sent
    pipelined by flush() (transact flushes before it commits).
    """

    def __init__(self, store: "XenstoreTransport", domid: int, _shared: "_TxnState | None" = None) -> None:
        self.store = store
        self.domid = domid
        self.base = f"/local/domain/{domid}"
        self._state = _shared if _shared is not None else _TxnState()

    def for_domain(self, domid: int) -> "Txn":
        """DOMID's view of this same transaction (same cache, same queued writes)."""
        return self if domid == self.domid else Txn(self.store, domid, self._state)

    def path(self, rel: str) -> str:
        """The absolute path of node REL of this domain."""
        return f"{self.base}/{rel}"

    def read(self, rel: str) -> str | None:
        """The value of REL, or None when it does not exist."""
        path = self.path(rel)
        state = self._state
        if state.removed and _under_any(path, state.removed):
            return None  # removed with a parent in this transaction
        if path not in state.values:
            state.values[path] = self.store.read_path(path)
        value = state.values[path]
        if isinstance(value, XbctlError):
            raise value  # what Xenstore answered when the batch asked
        return value

    def prefetch_balloons(self, domains) -> None:
        """Read, in one pipelined batch, every node balloon_from reads for DOMAINS (Domains
        or ids) that this transaction has not read or written yet.

        The four guest nodes under data/balloon are usually absent: one XS_DIRECTORY of
        data/balloon stands for them (six requests a domain, not nine), and only the ones it
        lists are then read, in a second batch. A directory Xenstore will not list (EACCES)
        is read node by node, as before, so each node keeps its own answer.
        """
        cache = self._state.values
        reads: list[str] = []
        listed: list[tuple[str, list[str]]] = []  # (data/balloon path, its guest nodes not yet known)
        for domain in domains:
            base = f"/local/domain/{getattr(domain, 'id', domain)}/"
            reads.extend(path for path in (base + rel for rel in HOST_READS) if path not in cache)
            unknown_guest = [path for path in (base + rel for rel in GUEST_READS) if path not in cache]
            if unknown_guest:
                listed.append((base + GUEST_DIR, unknown_guest))
        values, children = self.store.read_and_list(reads, [directory for directory, _paths in listed])
        cache.update(zip(reads, values))
        again: list[str] = []
        for (_directory, paths), names in zip(listed, children):
            if names is None:  # no data/balloon: none of its nodes exists
                cache.update(dict.fromkeys(paths))
                continue
            if isinstance(names, XbctlError):
                again.extend(paths)  # not listable (EACCES, or E2BIG for junk): each node answers for itself
                continue
            present = set(names)
            for path in paths:
                if path.rpartition("/")[2] in present:
                    again.append(path)
                else:
                    cache[path] = None
        if again:
            cache.update(zip(again, self.store.read_paths(again)))

    def write(self, rel: str, value: str) -> None:
        """Set REL to VALUE (sent by flush)."""
        self.write_path(self.path(rel), value)

    def write_path(self, path: str, value: str) -> None:
        """Set the node at the absolute PATH to VALUE (sent by flush)."""
        self._state.values[path] = value
        self._state.removed.discard(path)  # written again after its removal: it exists
        self._state.queued.append((Op.WRITE, path, value))

    def remove(self, rel: str) -> None:
        """Delete REL if it exists (sent by flush)."""
        if self.read(rel) is not None:
            path = self.path(rel)
            self._state.values[path] = None
            self._state.removed.add(path)  # and whatever was below it
            self._state.queued.append((Op.RM, path, None))

    def flush(self) -> None:
        """Send the queued writes, pipelined; the first that Xenstore refused is raised.

        Inside a transaction nothing is visible before the commit, so a refusal leaves
        nothing behind once transact abandons it; outside one, the writes before it stay.
        """
        queued, self._state.queued = self._state.queued, []
        if queued:
            self.store.send_writes(queued)


class _TxnState:
    """What the domain views of one Txn share: values read or written, and queued writes."""

    __slots__ = ("values", "queued", "removed")

    def __init__(self) -> None:
        # path -> value (None: absent), or the XbctlError reading it met.
        self.values: dict[str, str | None | XbctlError] = {}
        self.queued: list[tuple[Op, str, str | None]] = []
        self.removed: set[str] = set()  # paths removed here: what was below them is gone too


def _under_any(path: str, removed: set[str]) -> bool:
    """True when PATH lies strictly below one of REMOVED."""
    cut = path.rfind("/")
    while cut > 0:
        if path[:cut] in removed:
            return True
        cut = path.rfind("/", 0, cut)
    return False


def _flush(views: "list[Txn]") -> None:
    """Send the writes VIEWS queued (one queue for them all, pipelined) before the commit."""
    if views:
        views[0].flush()


def domain_views(store: "XenstoreTransport", domids: list[int]) -> list[Txn]:
    """One Txn per domain of DOMIDS, sharing one cache and one write queue."""
    first = Txn(store, domids[0])
    return [first.for_domain(domid) for domid in domids]
