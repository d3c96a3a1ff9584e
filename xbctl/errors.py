"""The one error type xbctl raises, and the exit statuses it maps to."""

from __future__ import annotations

import os


class _ExitStatusType(type):
    """Iteration over ExitStatus and lookup by value, as an IntEnum's."""

    _members: dict[int, ExitStatus]

    def __iter__(cls):
        return iter(cls._members.values())

    def __len__(cls) -> int:
        return len(cls._members)

    def __call__(cls, value: int) -> ExitStatus:
        try:
            return cls._members[value]
        except KeyError:
            raise ValueError(f"{value!r} is not a valid ExitStatus") from None


class ExitStatus(int, metaclass=_ExitStatusType):
    """Process exit statuses, as documented in xbctl(8): ints with a name, like an IntEnum's members.

    Not an enum.IntEnum: the enum module (and the functools and collections it imports) is
    about a third of the time xbctl adds to Python's own start-up, and every command loads this.
    """

    name: str
    OK: ExitStatus  # 0
    REFUSED: ExitStatus  # 1: a driver rule (EPERM), Xenstore saying no (EACCES, ENOSPC...), unwritable output
    USAGE: ExitStatus  # 2: bad usage or a malformed value
    UNAVAILABLE: ExitStatus  # 3: transport unavailable: no daemon, lost connection, timeout
    UNKNOWN: ExitStatus  # 4: unknown domain or node
    NOT_REACHED: ExitStatus  # 5: --wait ended without reaching the target
    WRITTEN_OUTPUT_FAILED: ExitStatus  # 6: the write happened, but its output could not be written

    @property
    def value(self) -> int:
        """The status as a plain int."""
        return int(self)

    def __repr__(self) -> str:
        return f"<ExitStatus.{self.name}: {int(self)}>"

    __str__ = int.__repr__  # as IntEnum's: str(ExitStatus.USAGE) == "2"

    def __reduce__(self):
        return ExitStatus, (int(self),)  # unpickled as the member itself


ExitStatus._members = {}
for _value, _name in enumerate(
    ("OK", "REFUSED", "USAGE", "UNAVAILABLE", "UNKNOWN", "NOT_REACHED", "WRITTEN_OUTPUT_FAILED")
):
    _member = int.__new__(ExitStatus, _value)
    _member.name = _name
    setattr(ExitStatus, _name, _member)
    ExitStatus._members[_value] = _member
del _value, _name, _member


def printable(text: str, *, keep_layout: bool = False) -> str:
    """TEXT safe for a terminal: control and other unprintable characters (ESC, CR, BEL,
    C1 controls, U+2028, bidi overrides...) shown as escapes such as \\x1b or \\u2028.

    Names, values and diagnostics come from guests and files, so no message may carry
    them raw; newlines and tabs are kept only in whole output that xbctl itself laid
    out (KEEP_LAYOUT), where they separate lines and fields.
    """
    if text.isprintable():
        return text
    if keep_layout and text.replace("\n", "").replace("\t", "").isprintable():
        return text  # the common case of whole output: no character-by-character pass
    return "".join(c if c.isprintable() or (keep_layout and c in "\n\t") else repr(c)[1:-1] for c in text)


class XbctlError(Exception):
    """An error for the user: a message, an optional hint, an exit status and errno name."""

    # Set only by a command whose JSON document already reported it (cli.main reads it with getattr).
    document_shown: bool
    # The settings line (FILE:LINE) the error is about, when one is: --system and the policy
    # service leave that line's file out and apply the others.
    origin: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: ExitStatus,
        hint: str | None = None,
        errno_name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.hint = hint
        self.errno_name = errno_name

    def with_prefix(self, prefix: str) -> "XbctlError":
        """The same error, its message prefixed (for example with a node's name)."""
        error = XbctlError(f"{prefix}: {self.message}", status=self.status, hint=self.hint, errno_name=self.errno_name)
        error.origin = self.origin
        return error

    def at(self, origin: str | None) -> "XbctlError":
        """The same error, about the settings line ORIGIN (FILE:LINE; None: no line)."""
        if origin is None:
            return self
        error = self.with_prefix(origin)
        error.origin = origin
        return error


# What went wrong, as a word from a fixed set: monitoring labels and scripts match on these,
# while messages (free text, with guests' values in them) are for people.
ERROR_KINDS = ("missing", "malformed", "permission", "refused", "unavailable", "usage", "other")


def error_kind(error: XbctlError) -> str:
    """ERROR as one of ERROR_KINDS."""
    if error.errno_name == "EINVAL":  # a node holding garbage (exit 3 as a read, yet the domain's fault)
        return "malformed"
    if error.errno_name == "EACCES":
        return "permission"
    if error.status == ExitStatus.UNAVAILABLE:
        return "unavailable"
    if error.status == ExitStatus.UNKNOWN:
        return "missing"
    if error.status == ExitStatus.REFUSED:
        return "refused"
    if error.status == ExitStatus.USAGE:
        return "usage"
    return "other"


def usage_error(message: str, hint: str | None = None) -> XbctlError:
    """A malformed command line or value (exit 2)."""
    return XbctlError(message, status=ExitStatus.USAGE, hint=hint)


def refused(name: str, reason: str, hint: str | None = None) -> XbctlError:
    """A request the balloon driver refuses: EPERM, exit 1."""
    return XbctlError(
        f"{name}: Operation not permitted: {reason}",
        status=ExitStatus.REFUSED,
        hint=hint,
        errno_name="EPERM",
    )


def unknown(message: str, hint: str | None = None) -> XbctlError:
    """An unknown domain or node (exit 4)."""
    return XbctlError(message, status=ExitStatus.UNKNOWN, hint=hint, errno_name="ENOENT")


def unavailable(message: str, hint: str | None = None, errno_name: str | None = None) -> XbctlError:
    """The transport cannot be reached or answered too late (exit 3)."""
    return XbctlError(message, status=ExitStatus.UNAVAILABLE, hint=hint, errno_name=errno_name)


# Why a non-root user is refused Xenstore's socket or the hypervisor's privcmd device.
ROOTS_ONLY = "Xenstore and the hypervisor are root's; run xbctl as root (sudo xbctl ...)"


def permission_denied(path: str) -> XbctlError:
    """PATH (Xenstore's socket or device, the hypervisor's privcmd) refused to us: exit 3, as a
    transport that cannot be opened; a user who is not root is told to be."""
    if os.geteuid() != 0:
        return unavailable(f"{path}: Permission denied: {ROOTS_ONLY}", errno_name="EACCES")
    return unavailable(
        f"{path}: Permission denied",
        hint="root is refused too: a security policy (SELinux, AppArmor) or a container stands in the way",
        errno_name="EACCES",
    )
