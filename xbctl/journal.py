"""The record of every change: a line in the system log for each node a write changed, and
for each refusal, whichever front end asked (command line, -f, --system, the policy
service, the Ansible modules, the Python API).

Lines go to syslog's socket ($XBCTL_SYSLOG_SOCKET, default /dev/log, where journald or a
syslog daemon listens) as syslog(3) sends them: RFC 3164, `<PRI>Mmm dd hh:mm:ss
xbctl[PID]: MESSAGE`, facility user. A change is logged at notice, a refusal at info.
The message is `EVENT key=value...` (logfmt: a value with blanks, quotes, `=` or
backslashes is quoted, control characters escaped), for example

    change domain=web domid=1 node=machdep.xen.balloon.target old_kib=786432 new_kib=524288
    user=root sudo_user=alice via=command transport=xenstore

A dry run and a node that already held its value record nothing. $XBCTL_SYSLOG=off
switches the record off. The write has happened when the record is sent: a log socket
that is missing or refuses is a note, never a failure. Imported only by writes.
"""

from __future__ import annotations

import os

from .errors import ExitStatus, printable, usage_error

TYPE_CHECKING = False  # importing typing costs every start-up a few ms
if TYPE_CHECKING:
    from .errors import XbctlError
    from .operations import DomainRequests, WriteResult
    from .transports import Domain, Transport

SOCKET_ENV = "XBCTL_SYSLOG_SOCKET"
SWITCH_ENV = "XBCTL_SYSLOG"
DEFAULT_SOCKET = "/dev/log"
IDENTIFIER = "xbctl"
# LOG_USER: nothing in a record is secret (authpriv is for what must stay out of the
# world-readable logs), and user is where administrators and journalctl -t look first.
FACILITY_USER = 1
NOTICE, INFO = 5, 6
# A log daemon that stopped reading must not hold up a write that has happened.
SEND_TIMEOUT_S = 2.0


def journal_for(transport: "Transport", via: str) -> "Journal | None":
    """The record for writes made through TRANSPORT by the front end VIA (command, policy,
    ansible, api); None when $XBCTL_SYSLOG is off. Any other value is a usage error, raised
    before anything is written."""
    switch = os.environ.get(SWITCH_ENV, "")
    if switch == "off":
        return None
    if switch not in ("", "on"):
        raise usage_error(
            f"{SWITCH_ENV}={printable(switch)}: neither on nor off",
            hint=f"{SWITCH_ENV}=off switches the record of changes in the system log off",
        )
    return Journal(transport, via, os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET)


class Journal:
    """Record lines for one write, sent to the log socket at PATH."""

    def __init__(self, transport: "Transport", via: str, path: str) -> None:
        self.transport, self.via, self.path = transport, via, path

    def changes(self, results: "list[WriteResult]") -> None:
        """Record every node RESULTS changed (a node that held its value already is no change)."""
        from .rules import net_changes

        lines = []
        for result in results:
            for change in net_changes(result.changes):
                fields = [
                    *_domain_fields(result.domain),
                    ("node", change.name),
                    ("old_kib", change.old_kib),
                    ("new_kib", change.new_kib),
                    *self._who(change.origin),
                ]
                lines.append((NOTICE, _message("change", fields)))
            for _name, error in result.skipped:
                if error.status == ExitStatus.REFUSED:  # `name?=value` refused: skipped, not fatal
                    lines.append(
                        (
                            INFO,
                            _message(
                                "skipped", [*_domain_fields(result.domain), *self._who(None), ("reason", error.message)]
                            ),
                        )
                    )
        self._send(lines)

    def refusal(self, groups: "list[DomainRequests]", error: "XbctlError") -> None:
        """Record that ERROR refused the whole change GROUPS asked for (nothing was written)."""
        domains = [group.domain for group in groups if group.domain is not None]
        if len(domains) == 1:
            where = _domain_fields(domains[0])
        else:
            where = [("domain", ",".join(d.name for d in domains)), ("domid", ",".join(str(d.id) for d in domains))]
        self._send([(INFO, _message("refused", [*where, *self._who(None), ("reason", error.message)]))])

    def _who(self, origin: str | None) -> list[tuple[str, object]]:
        """Who asked, through what, from which FILE:LINE, on which transport."""
        fields: list[tuple[str, object]] = [("user", _user())]
        sudo_user = os.environ.get("SUDO_USER")
        if sudo_user:
            fields.append(("sudo_user", sudo_user))
        fields.append(("via", self.via))
        if origin:
            fields.append(("origin", origin))
        fields.append(("transport", self.transport.name))
        return fields

    def _send(self, lines: list[tuple[int, str]]) -> None:
        if not lines:
            return
        import socket
        import time

        stamp = time.strftime("%b %e %H:%M:%S")  # syslog(3)'s, in local time (the C locale's month names)
        head = f"{IDENTIFIER}[{os.getpid()}]: "
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(SEND_TIMEOUT_S)
                sock.connect(self.path)
                for severity, message in lines:
                    sock.send(f"<{FACILITY_USER * 8 + severity}>{stamp} {head}{message}".encode("utf-8", "replace"))
        except OSError as exc:
            why = exc.strerror or str(exc) or type(exc).__name__
            self.transport.note(
                f"not recorded in the system log ({printable(self.path)}: {why}); "
                f"{SWITCH_ENV}=off goes without the record"
            )


def _domain_fields(domain: "Domain") -> list[tuple[str, object]]:
    return [("domain", domain.name), ("domid", domain.id)]


def _user() -> str:
    """The name of the user whose rights made the write (its uid if it has no name)."""
    uid = os.geteuid()
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def _message(event: str, fields: "list[tuple[str, object]]") -> str:
    """EVENT and FIELDS as one logfmt line (names come from guests and files: never a line of their own)."""
    return " ".join([event, *(f"{key}={_value(value)}" for key, value in fields)])


def _value(value: object) -> str:
    text = printable(str(value))
    if text and not any(c in text for c in ' "=\\') and text.isprintable():
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
