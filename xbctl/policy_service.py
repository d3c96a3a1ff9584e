"""The policy service: the configuration files applied to each domain once, as it appears.

`xbctl policy` configures the domains it has not configured yet (one pass of the
service), `--reapply [DOMAIN...]` all of them (or those named) again, `--dry-run` says
what either would change and changes nothing. `--follow` is the service: at start it
configures the running domains it has not configured since they were created, then
watches Xenstore's @introduceDomain and @releaseDomain and configures each new domain
the moment it has a name (a domain may be introduced before libxl or another toolstack
has written its name and memory nodes: such a domain is watched until they are there).
What was configured is kept in a record (xbctl.configured), so a restart of the service,
SIGHUP (which re-reads the configuration) or a re-opened Xenstore connection never
touches a domain configured before, whatever was changed on it since. Each domain's
settings are one change of its own: a refusal for one domain is logged and never stops
the others (and such a domain counts as not configured). SIGTERM and SIGINT end the
service (exit 0).

Log lines go to stderr, one event per line: under systemd (stderr is the journal, as
$JOURNAL_STREAM says) with sd-daemon(3)'s `<N>` priority prefix, else as `xbctl policy: ...`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Callable

from .errors import ExitStatus, XbctlError, printable

if TYPE_CHECKING:
    from .assignments import Assignment
    from .conf import UnsafeFile
    from .configured import Record
    from .transports import Domain, Transport
    from .transports.xenstore.transport import XenstoreTransport

# sd-daemon(3) priorities (syslog's).
ERR, WARNING, NOTICE, INFO, DEBUG = 3, 4, 5, 6, 7
INTRODUCE, RELEASE = "@introduceDomain", "@releaseDomain"
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0  # a restarted xenstored is found again within this long
IDLE_WAIT_S = 3600.0  # a watch wait has no end of its own; signals and events end it
PENDING_TOKEN = b"xbctl-policy-pending"


class ServiceLog:
    """One event per line on stderr: `<N>message` for the journal, `xbctl policy: message` elsewhere."""

    def __init__(self, quiet: bool = False) -> None:
        self.journal = stderr_is_journal()
        self.quiet = quiet  # -q: warnings and errors only

    def __call__(self, priority: int, message: str) -> None:
        if self.quiet and priority > WARNING:
            return
        text = printable(message)  # names come from guests: never a line of their own
        sys.stderr.write(f"<{priority}>{text}\n" if self.journal else f"xbctl policy: {text}\n")
        sys.stderr.flush()


def stderr_is_journal() -> bool:
    """True when stderr is systemd's journal stream ($JOURNAL_STREAM names its device and inode)."""
    device_inode = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = device_inode.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(2)
    except OSError:
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


class Notifier:
    """sd_notify(3)'s datagram protocol: states such as READY=1 sent to $NOTIFY_SOCKET (a path,
    or an abstract name given as @name), so a Type=notify unit is started once the first pass is
    done. Without NOTIFY_SOCKET it does nothing; a socket that fails is logged once, never fatal."""

    def __init__(self, log: ServiceLog) -> None:
        self.log = log
        address = os.environ.get("NOTIFY_SOCKET", "")
        # "@name" is the abstract name "\0name" (the kernel's spelling); systemd passes a path.
        self.address = "\0" + address[1:] if address.startswith("@") else address if address.startswith("/") else None
        if address and self.address is None:
            log(WARNING, f"NOTIFY_SOCKET={address}: not a Unix socket; systemd is not told when the service is ready")
        self.failed = False

    def __call__(self, *states: str) -> None:
        """Send STATES (`READY=1`, `STATUS=...`) as one datagram."""
        if self.address is None or self.failed:
            return
        import socket

        message = "\n".join(printable(state) for state in states).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sender:
                sender.sendto(message, self.address)
        except OSError as exc:
            self.failed = True  # systemd's notify socket does not come back: one line, not one per event
            self.log(WARNING, f"NOTIFY_SOCKET: {exc.strerror or exc}; systemd is not told how the service is")


# ---------------------------------------------------------------- the configuration


class Configuration:
    """The configuration files' assignments, each with its FILE:LINE and [DOMAIN] section."""

    __slots__ = ("files", "assignments", "unsafe", "failed", "order")

    def __init__(
        self,
        files: list[str],
        assignments: list[Assignment],
        unsafe: list[UnsafeFile] | None = None,
        failed: list[tuple[str, XbctlError]] | None = None,
    ) -> None:
        self.files, self.assignments = files, assignments
        self.unsafe = unsafe or []  # files not applied: someone other than root may change them
        self.failed = failed or []  # files not applied: they do not parse (FILE, its error)
        self.order = files + [path for path, _error in self.failed]  # every file read, in the order they apply

    def keeping(self, previous: Configuration) -> tuple[Configuration, list[str]]:
        """This configuration with, for each file that does not parse now, its lines in PREVIOUS
        (SIGHUP: an edit gone wrong leaves that file as it was), and those files."""
        from .assignments import origin_file

        kept = [path for path, _error in self.failed if path in previous.files]
        if not kept:
            return self, []
        files = [path for path in self.order if path in self.files or path in kept]
        lines: dict[str, list[Assignment]] = {path: [] for path in files}
        for assignment in self.assignments:
            lines[origin_file(assignment.origin)].append(assignment)
        for assignment in previous.assignments:
            if origin_file(assignment.origin) in kept:
                lines[origin_file(assignment.origin)].append(assignment)
        merged = Configuration(files, [a for path in files for a in lines[path]], self.unsafe, self.failed)
        merged.order = self.order
        return merged, kept

    def for_domain(self, domain: Domain, named: bool, own_id: int) -> list[Assignment]:
        """The lines for DOMAIN in the order they apply: [*], then the glob sections matching
        its name, then the sections naming its id or (when NAMED) its exact name and, for our
        own domain, the lines before any section; each kind in file order."""
        from .assignments import in_precedence_order

        return in_precedence_order([a for a in self.assignments if section_matches(a.domain, domain, named, own_id)])

    def sections(self) -> dict[str | None, str]:
        """Each section's domain spec (None: our own domain) and where it first appears."""
        found: dict[str | None, str] = {}
        for assignment in self.assignments:
            found.setdefault(assignment.domain, assignment.origin or "?")
        return found


def section_matches(spec: str | None, domain: Domain, named: bool, own_id: int) -> bool:
    """True when a section for SPEC is DOMAIN's: [*], a glob matching its name, its id, or its
    exact name (-d's rule)."""
    from .assignments import ALL_DOMAINS, glob_matches, is_glob_section

    if spec is None:
        return domain.id == own_id
    if spec == ALL_DOMAINS:
        return True
    if is_glob_section(spec):
        return named and glob_matches(spec, domain.name)
    if spec.isascii() and spec.isdigit():
        return int(spec) == domain.id
    return named and spec == domain.name


def load_configuration(root: str | None = None, log: ServiceLog | None = None) -> Configuration:
    """Read and check the configuration files one by one, as sysctl.d's: a file that does not
    parse (a malformed line, an unknown name) and a file someone other than root may change
    are left out, each logged to LOG (priority err); the others apply."""
    from .conf import checked_configuration_files
    from .operations import checked_configuration

    files, unsafe = checked_configuration_files(root)
    if log is not None:
        log_unsafe(log, unsafe)
    files, assignments, failed = checked_configuration(files)
    if log is not None:
        log_failed(log, failed)
    return Configuration(files, assignments, unsafe, failed)


def log_failed(log: ServiceLog, failed: list[tuple[str, XbctlError]]) -> None:
    """Say which configuration files do not parse, with FILE:LINE: they are left out."""
    from .conf import failed_file_message

    for path, error in failed:
        log(ERR, failed_file_message(path, error))


def log_unsafe(log: ServiceLog, unsafe: list[UnsafeFile]) -> None:
    """Say which configuration files are not applied, and why (before a malformed one stops the run)."""
    for problem in unsafe:
        log(ERR, problem.message)


# ---------------------------------------------------------------- applying


class PlannedChange:
    """One node a dry run would change: LABEL's node NAME from OLD_KIB to NEW_KIB, as ORIGIN asks."""

    __slots__ = ("label", "name", "old_kib", "new_kib", "origin")

    def __init__(self, label: str, name: str, old_kib: int, new_kib: int, origin: str) -> None:
        self.label, self.name, self.old_kib, self.new_kib, self.origin = label, name, old_kib, new_kib, origin

    def __str__(self) -> str:
        return f"{self.label}: {self.name}: {self.old_kib} -> {self.new_kib} ({self.origin})"


class Pass:
    """What one pass over the domains did: the first failure's status (0: none), the domains
    seen, those still being built, those configured now (id -> the record's entry), those
    left alone as configured before and those recorded that were created again since."""

    __slots__ = ("status", "seen", "unfinished", "configured", "left_alone", "recreated")

    def __init__(self) -> None:
        self.status = 0
        self.seen: set[int] = set()
        self.unfinished: set[int] = set()
        self.configured: dict[int, dict] = {}
        self.left_alone: list[Domain] = []
        self.recreated: set[int] = set()


class Applier:
    """Applies the configuration to domains of one transport, logging what it did (with
    DRY_RUN, collecting in `planned` what it would change instead)."""

    def __init__(
        self, transport: Transport, configuration: Configuration, log: ServiceLog, dry_run: bool = False
    ) -> None:
        self.transport, self.configuration, self.log, self.dry_run = transport, configuration, log, dry_run
        self.own_id = transport.own_domain().id
        self.planned: list[PlannedChange] = []
        self.files_refused = 0  # the status of the last apply() that left a file out (0: none)
        transport.on_note = lambda message: log(NOTICE, f"note: {message}")

    def domain_named(self, domain: Domain) -> bool:
        """True when DOMAIN has a name of its own (not a stand-in such as domain-7)."""
        read_path = getattr(self.transport, "read_path", None)
        if read_path is None:
            return True  # the simulator's domains always have their names
        return read_path(f"/local/domain/{domain.id}/name") is not None

    def label(self, domain: Domain, named: bool = True) -> str:
        """DOMAIN as log lines name it."""
        return f"{domain.name} ({domain.id})" if named else f"domain {domain.id}"

    def apply(self, domain: Domain) -> int | None:
        """Apply DOMAIN's settings; None when it has none, else the status (0 done).

        File by file, as sysctl.d's: a file whose line is refused is logged and left out for
        this domain, and the others apply (then 0, with files_refused set); the status is a
        refusal's when every file was. Exit status 4 (no such domain or no balloon nodes yet)
        is returned, not logged, so the caller can wait for the domain to be built; a lost
        connection is raised.
        """
        from .assignments import cited_file, origin_file
        from .operations import requests_from_assignments, write_nodes

        self.files_refused = 0
        named = self.domain_named(domain)
        settings = self.configuration.for_domain(domain, named, self.own_id)
        if not settings:
            return None
        label = self.label(domain, named)
        while True:
            requests, ignored = requests_from_assignments(settings)
            try:
                # The service records its settings in the domain's own nodes, even a value a node
                # reads already (a min equal to today's default floor); a dry run shows real changes.
                result = write_nodes(
                    self.transport,
                    str(domain.id),
                    requests,
                    dry_run=self.dry_run,
                    ignored=ignored,
                    rewrite_unchanged=not self.dry_run,
                    via="policy",
                )
                break
            except XbctlError as exc:
                if connection_lost(self.transport, exc):
                    raise
                if exc.status == ExitStatus.UNKNOWN:
                    return int(exc.status)
                culprit = cited_file(exc, [origin_file(a.origin) for a in settings])
                left_out = f"; {culprit} left out for this domain" if culprit else ""
                self.log(
                    ERR, f"{label}: {'would be refused' if self.dry_run else 'not applied'}: {exc.message}{left_out}"
                )
                # Nothing was written: the other files are tried without that one.
                settings = [a for a in settings if culprit and origin_file(a.origin) != culprit]
                self.files_refused = self.files_refused or int(exc.status)
                if not settings:
                    return self.files_refused
        changed = [c for c in result.changes if c.old_kib != c.new_kib]
        for change, origin in zip(result.changes, self._origins(requests, result)):
            if change.old_kib == change.new_kib:
                continue
            if self.dry_run:
                self.planned.append(PlannedChange(label, change.name, change.old_kib, change.new_kib, origin))
            else:
                self.log(NOTICE, f"{label}: {change.name}: {change.old_kib} -> {change.new_kib} ({origin})")
        for _name, error in result.skipped:
            self.log(WARNING, f"{label}: ignored: {error.message}")  # a `-name` (or `name?=`) line's failure
        for warning in dict.fromkeys(result.warnings):
            self.log(WARNING, f"{label}: warning: {warning}")
        if not changed:
            self.log(DEBUG, f"{label}: settings already hold")
        return 0

    @staticmethod
    def _origins(requests, result) -> list[str]:
        """FILE:LINE of each change of RESULT: its requests in order, less those skipped (name?=value)."""
        skipped = [error.message for _name, error in result.skipped]
        return [
            request.origin or "?"
            for request in requests
            if not any(message.startswith(f"{request.origin}:") for message in skipped)
        ]

    def apply_all(self, *, following: bool, recorded: dict[int, dict] | None, only: set[int] | None = None) -> Pass:
        """Apply the settings of every domain (of those ONLY names) that RECORDED (the record's
        entries; None: reapply) does not hold as configured since it was created."""
        from .configured import entry_for, same_instance

        done = Pass()
        domains = self.transport.list_domains()
        done.seen = {domain.id for domain in domains}
        if only is None:
            self.note_absent(domains, following)
        chosen = [domain for domain in domains if only is None or domain.id in only]
        for domain, instance in zip(chosen, self.transport.domain_instances(chosen)):
            entry = None if recorded is None else recorded.get(domain.id)
            if entry is not None:
                if same_instance(entry["instance"], instance):
                    done.left_alone.append(domain)
                    self.log(
                        DEBUG, f"{self.label(domain)}: configured at {entry.get('configured_at', '?')}; left alone"
                    )
                    continue
                done.recreated.add(domain.id)  # the id of a domain configured earlier, now another's
            if not self.domain_named(domain) and domain.id != self.own_id:
                done.unfinished.add(domain.id)
                continue
            status = self.apply(domain)
            if status == ExitStatus.UNKNOWN:
                done.unfinished.add(domain.id)
            elif status:
                done.status = done.status or status
            else:
                done.configured[domain.id] = entry_for(domain, instance)
                done.status = done.status or self.files_refused  # configured, less a file refused
        if done.left_alone:
            self.log(
                INFO,
                f"left alone: {len(done.left_alone)} domain(s) configured earlier, since they were created "
                "(xbctl policy --reapply applies their settings again)",
            )
        return done

    def note_absent(self, domains: list[Domain], following: bool) -> None:
        """Say which sections name no domain that exists now."""
        then = "its settings apply when it appears" if following else "skipped"
        for spec, origin in self.configuration.sections().items():
            if spec is None or spec == "*":
                continue
            if not any(section_matches(spec, d, True, self.own_id) for d in domains):
                self.log(INFO, f"[{spec}] ({origin}): no such domain now; {then}")


def service_record() -> Record:
    """The record of the domains the service configured: the host's, in its runtime directory."""
    from .configured import RECORD_NAME, Record
    from .transports import runtime_path

    return Record(runtime_path(RECORD_NAME))


def connection_lost(transport: Transport, exc: XbctlError) -> bool:
    """True when EXC is the Xenstore connection failing (not one domain's problem)."""
    client = getattr(transport, "client", None)
    return exc.status == ExitStatus.UNAVAILABLE and client is not None and client.failure is not None


def forgotten(recorded: dict[int, dict], done: Pass) -> set[int]:
    """The recorded domains a pass found gone, or created again since."""
    return (recorded.keys() - done.seen) | done.recreated


def apply_once(
    transport: Transport,
    configuration: Configuration,
    log: ServiceLog,
    *,
    reapply: list[str] | None = None,
    dry_run: bool = False,
) -> tuple[int, list[PlannedChange]]:
    """`xbctl policy`: the domains not configured yet (REAPPLY: every domain, or those it
    names), each once; the first failure's status (0: none) and, with DRY_RUN, what would change."""
    from .configured import record_for

    record = record_for(transport)
    if not dry_run:
        record.prepare()  # an unwritable record fails before any domain is written
    recorded = record.load()
    only = None
    if reapply:  # every name resolved (or refused, exit 4) before anything is written
        only = {transport.resolve_domain(spec).id for spec in reapply}
    applier = Applier(transport, configuration, log, dry_run=dry_run)
    what = "the domains named" if only else "every domain" if reapply is not None else "the domains not configured yet"
    log(
        INFO,
        f"{'checking' if dry_run else 'applying'} {len(configuration.files)} configuration file(s): "
        f"{', '.join(configuration.files) or 'none'}, for {what}",
    )
    done = applier.apply_all(following=False, recorded=None if reapply is not None else recorded, only=only)
    for domid in sorted(done.unfinished):
        log(INFO, f"domain {domid}: skipped: it has no name or balloon nodes yet")
    if not dry_run:
        record.update(done.configured, forget=forgotten(recorded, done))
    return done.status, applier.planned


# ---------------------------------------------------------------- following


class _Wake(Exception):
    """A signal arrived while the service was waiting."""


class Follower:
    """`xbctl policy --follow`: configure the domains not configured yet, then each new one
    as it appears; RECORD keeps which were configured."""

    def __init__(
        self,
        configuration: Configuration,
        log: ServiceLog,
        open_transport: Callable[[], XenstoreTransport],
        load: Callable[[], Configuration],
        record: Record,
    ) -> None:
        self.configuration, self.log, self.open_transport, self.load = configuration, log, open_transport, load
        self.record = record
        self.notify = Notifier(log)
        self.ready = False  # READY=1 sent: once, after the first pass over the running domains
        self.signals: list[int] = []
        self.idle = False  # a signal may end the wait only while nothing is half done

    def _on_signal(self, signum: int, frame) -> None:
        self.signals.append(signum)
        if self.idle:
            self.idle = False
            raise _Wake()

    def run(self) -> None:
        """Follow until SIGTERM or SIGINT."""
        previous = {
            signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
        }
        try:
            self._loop()
        finally:
            self.notify("STOPPING=1", "STATUS=stopping")
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _take_signals(self) -> bool:
        """Act on the signals that arrived; False when the service is to stop."""
        pending, self.signals[:] = list(self.signals), []
        if any(signum in (signal.SIGTERM, signal.SIGINT) for signum in pending):
            self.log(INFO, f"stopping ({signal.Signals(pending[-1]).name})")
            return False
        if signal.SIGHUP in pending:
            try:
                loaded = self.load()
            except XbctlError as exc:
                self.log(ERR, f"configuration not re-read, the previous one stays: {exc.message}")
            else:
                self.configuration, kept = loaded.keeping(self.configuration)
                for path in kept:
                    self.log(ERR, f"{path}: does not parse now; the version read before stays in force")
                self.log(NOTICE, f"configuration re-read: {', '.join(self.configuration.files) or 'no files'}")
                self.notify(f"STATUS={self._status()}")
        return True

    def _pause(self, seconds: float) -> None:
        """Sleep SECONDS; a signal ends it early."""
        try:
            self.idle = True
            if not self.signals:
                time.sleep(seconds)
        finally:
            self.idle = False

    def _loop(self) -> None:
        self.backoff_s = FIRST_BACKOFF_S
        while True:
            try:
                if not self._take_signals():
                    return
                self._connect_and_follow()
            except _Wake:
                continue  # a signal ended a wait (or landed as it ended): act on it above

    def _status(self, configured: int | None = None) -> str:
        """The one line `systemctl status` shows for the service."""
        done = "" if configured is None else f"{configured} domain(s) configured in the last pass; "
        failed = len(self.configuration.failed) + len(self.configuration.unsafe)
        left_out = f"; {failed} configuration file(s) left out (see the log)" if failed else ""
        return f"{done}following @introduceDomain with {len(self.configuration.files)} configuration file(s){left_out}"

    def _backoff(self, message: str) -> None:
        self.log(WARNING, f"{message}; trying again in {self.backoff_s:g} s")
        self.notify(f"STATUS=waiting for Xenstore: {message}")
        pause_s, self.backoff_s = self.backoff_s, min(self.backoff_s * 2, MAX_BACKOFF_S)
        self._pause(pause_s)

    def _connect_and_follow(self) -> None:
        """One connection: open it (or back off), apply, follow until a signal or its loss."""
        try:
            transport = self.open_transport()
        except XbctlError as exc:
            if exc.status != ExitStatus.UNAVAILABLE:
                raise
            self._backoff(exc.message)
            return
        try:
            self._follow(transport)  # returns when a signal came, raises when the connection is lost
        except XbctlError as exc:
            if not connection_lost(transport, exc) and exc.status != ExitStatus.UNAVAILABLE:
                raise
            self._backoff(exc.message)
        finally:
            transport.close()

    def _follow(self, transport: XenstoreTransport) -> None:
        """Configure the domains not configured yet, then each new one, on one connection
        until a signal arrives."""
        applier = Applier(transport, self.configuration, self.log)
        # Watches first: a domain introduced while we apply is then not missed.
        transport.watch(INTRODUCE)
        transport.watch(RELEASE)
        # Xenstore answered: this connection works, so the next loss waits the smallest step
        # again (a daemon restarted now and then must not make every later wait the longest).
        self.backoff_s = FIRST_BACKOFF_S
        files = ", ".join(self.configuration.files) or "no configuration files"
        self.log(INFO, f"applying {files} to the domains not configured yet")
        recorded = self.record.load()
        done = applier.apply_all(following=True, recorded=recorded)
        self.record.update(done.configured, forget=forgotten(recorded, done))
        # KNOWN is what apply_all saw: a domain introduced since is new at the next event.
        known = set(done.seen)
        pending: set[int] = set()
        for domid in done.unfinished:
            self._watch_pending(transport, domid, pending)
        # Ready once the running domains are configured (and recorded): a unit ordered
        # Before=xendomains.service then holds the domains started at boot until now.
        self.notify(*(() if self.ready else ("READY=1",)), f"STATUS={self._status(len(done.configured))}")
        self.ready = True
        self.log(INFO, "following @introduceDomain and @releaseDomain")
        while True:
            try:
                self.idle = True
                if self.signals:
                    return
                events = transport.next_events(IDLE_WAIT_S)
            except _Wake:
                return
            finally:
                self.idle = False
            retry = {domid for domid in pending if any(_under(path, domid) for path in events)}
            if INTRODUCE in events or RELEASE in events:
                domains = {domain.id: domain for domain in transport.list_domains()}
                gone = known - domains.keys()
                # Destroyed and created again with the same id between two looks (the events
                # of both may come together): its instance tells.
                recreated = self._recreated(transport, domains, known) if INTRODUCE in events else set()
                # The record first, the log after: a reader who sees the line finds the record current.
                self.record.update({}, forget=gone | recreated)
                for domid in sorted(gone | recreated):
                    self.log(INFO, f"domain {domid} is gone" + (" and created again" if domid in recreated else ""))
                    if domid in pending:
                        self._unwatch_pending(transport, domid, pending)
                retry |= (domains.keys() - known) | recreated
                known = set(domains)
                retry &= known
            for domid in sorted(retry):
                self._settle(applier, transport, domid, pending)

    def _recreated(self, transport: Transport, domains: dict[int, Domain], known: set[int]) -> set[int]:
        """The recorded domains among KNOWN whose id DOMAINS now holds with another instance."""
        from .configured import same_instance

        recorded = self.record.load()
        still = [domains[domid] for domid in sorted(known & domains.keys() & recorded.keys())]
        return {
            domain.id
            for domain, instance in zip(still, transport.domain_instances(still))
            if not same_instance(recorded[domain.id]["instance"], instance)
        }

    def _settle(self, applier: Applier, transport: XenstoreTransport, domid: int, pending: set[int]) -> None:
        """Configure DOMID once it has a name and balloon nodes; until then, watch it."""
        from .configured import entry_for, same_instance
        from .transports import Domain

        name = transport.read_path(f"/local/domain/{domid}/name")
        if name is None:
            self._watch_pending(transport, domid, pending)
            return
        domain = Domain(domid, name)
        instance = transport.domain_instances([domain])[0]
        entry = self.record.load().get(domid)
        if entry is not None and same_instance(entry["instance"], instance):
            self.log(DEBUG, f"{name} ({domid}): configured at {entry.get('configured_at', '?')}; left alone")
            if domid in pending:
                self._unwatch_pending(transport, domid, pending)
            return
        status = applier.apply(domain)
        if status == ExitStatus.UNKNOWN:
            self._watch_pending(transport, domid, pending)
            return
        if domid in pending:
            self._unwatch_pending(transport, domid, pending)
        if status is None:
            self.log(DEBUG, f"{name} ({domid}): no settings for it")
        if not status:  # configured (or nothing to configure): never again in its life
            self.record.update({domid: entry_for(domain, instance)}, forget=set())

    def _watch_pending(self, transport: XenstoreTransport, domid: int, pending: set[int]) -> None:
        # The whole subtree: its name and memory nodes may come in any order.
        if domid in pending:
            return
        path = f"/local/domain/{domid}".encode()
        transport.call(path.decode(), lambda client: client.watch(path, PENDING_TOKEN))
        pending.add(domid)

    def _unwatch_pending(self, transport: XenstoreTransport, domid: int, pending: set[int]) -> None:
        path = f"/local/domain/{domid}".encode()
        pending.discard(domid)
        try:
            transport.call(path.decode(), lambda client: client.unwatch(path, PENDING_TOKEN))
        except XbctlError as exc:
            if connection_lost(transport, exc):
                raise  # else the watch went with the domain (xenstored drops it): nothing to undo


def _under(path: str, domid: int) -> bool:
    base = f"/local/domain/{domid}"
    return path == base or path.startswith(base + "/")
