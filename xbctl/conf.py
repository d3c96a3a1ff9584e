"""The configuration files, found in sysctl's order: what `xbctl --system` and `xbctl policy` apply.

    /usr/lib/xbctl.d/*.conf   the vendor's (a package's) files
    /etc/xbctl.d/*.conf       the administrator's: one overrides the vendor file of the same name
    /etc/xbctl.conf           read last, so it overrides every file in xbctl.d

As systemd-sysctl and procps's `sysctl --system` do: the files of both directories are
read in the order of their names (whichever directory each comes from), a name in /etc
replacing the same name in /usr/lib (a link to /dev/null there masks the vendor's file);
/etc/xbctl.conf comes after them all, as /etc/sysctl.conf does (procps reads it last;
Debian links it as /etc/sysctl.d/99-sysctl.conf for systemd-sysctl). Only regular files
(or links to one, or to /dev/null) whose names end in `.conf` and do not start with a dot
count. XBCTL_CONF_ROOT=DIR puts etc/ and usr/lib/ under DIR (tests, containers).

Root applies these files to every domain, so a file that someone else could change is
not applied (checked_configuration_files), as sudo, cron and logrotate refuse theirs:
the file, and each directory from its own up to the configuration root, must belong to
root (or, when xbctl runs as another user, to that user) and be writable by its owner
alone (no group or other write bit, sticky or not, as OpenSSH's StrictModes). A link is
followed: the file it names and that file's directory are checked too.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .errors import XbctlError

CONF_ROOT_VARIABLE = "XBCTL_CONF_ROOT"
MAIN_FILE = "etc/xbctl.conf"
# Lowest precedence first: a later directory's file replaces an earlier one's of the same name.
DROP_IN_DIRS = ("usr/lib/xbctl.d", "etc/xbctl.d")


def configuration_root() -> str:
    """Where etc/ and usr/lib/ are: $XBCTL_CONF_ROOT, or /."""
    return os.environ.get(CONF_ROOT_VARIABLE) or "/"


def configuration_files(root: str | None = None) -> list[str]:
    """The configuration files under ROOT (default configuration_root()), in the order they apply."""
    root = configuration_root() if root is None else root
    chosen: dict[str, str] = {}  # file name -> path; /etc's replaces /usr/lib's
    for directory in DROP_IN_DIRS:
        path = os.path.join(root, directory)
        try:
            names = os.listdir(path)
        except OSError:
            continue  # a missing (or unreadable) directory holds no configuration
        for name in names:
            if name.startswith(".") or not name.endswith(".conf"):
                continue
            candidate = os.path.join(path, name)
            if _is_configuration(candidate):
                chosen[name] = candidate
    files = [chosen[name] for name in sorted(chosen)]
    main = os.path.join(root, MAIN_FILE)
    if _is_configuration(main):
        files.append(main)
    return files


class UnsafeFile:
    """A configuration file not applied: at PATH, CULPRIT (the file, the file a link names, or a
    directory above either; described by ROLE) may be changed by someone other than root."""

    __slots__ = ("path", "culprit", "role", "owner", "mode", "reason")

    def __init__(self, path: str, culprit: str, role: str, owner: str, mode: int | None, reason: str) -> None:
        self.path, self.culprit, self.role = path, culprit, role
        self.owner, self.mode, self.reason = owner, mode, reason

    @property
    def message(self) -> str:
        """One line: the file, what is wrong and with what, and that one's owner and mode."""
        what = self.role.format(self.culprit) + " is " if self.role else ""
        shown = "" if self.mode is None else f" (owner {self.owner}, mode {self.mode:04o})"
        return f"{self.path}: not applied: {what}{self.reason}{shown}"

    def __repr__(self) -> str:
        return f"UnsafeFile({self.message!r})"


def checked_configuration_files(root: str | None = None) -> tuple[list[str], list[UnsafeFile]]:
    """The configuration files under ROOT that only root can change, in the order they apply,
    and the others (not applied: see UnsafeFile)."""
    root = configuration_root() if root is None else root
    trusted = trusted_owners()
    files: list[str] = []
    unsafe: list[UnsafeFile] = []
    for path in configuration_files(root):
        problem = _unsafe(path, root, trusted)
        if problem is None:
            files.append(path)
        else:
            unsafe.append(problem)
    return files, unsafe


def unsafe_configuration_error(unsafe: list[UnsafeFile], applied: int, dry_run: bool) -> XbctlError:
    """The error that ends a run which left out UNSAFE and applied (with DRY_RUN: checked) APPLIED files."""
    from .errors import ExitStatus, XbctlError

    count = len(unsafe)
    verb = "checked" if dry_run else "applied"
    others = "" if not applied else f"; the other {applied} were {verb}" if applied > 1 else f"; the other was {verb}"
    return XbctlError(
        f"{count} configuration file{'s were' if count > 1 else ' was'} not applied: someone other than "
        f"root can change {'them' if count > 1 else 'it'} (see above){others}",
        status=ExitStatus.REFUSED,
        hint="make each file and its directories root's and writable by root alone (chown root; chmod go-w)",
    )


def failed_file_message(path: str, error: XbctlError) -> str:
    """The line that says configuration file PATH was left out, and why (its FILE:LINE first)."""
    return (
        f"{error.message} ({path} not applied)"
        if error.message.startswith(path)
        else f"{path}: not applied: {error.message}"
    )


def failed_configuration_error(
    failed: list[tuple[str, XbctlError]], unsafe: list[UnsafeFile], applied: int, dry_run: bool
) -> XbctlError:
    """The error that ends a run which left out the FAILED files (those that do not parse or
    whose lines were refused) and the UNSAFE ones, and applied (with DRY_RUN: checked) APPLIED:
    the first failed file's status."""
    from .errors import XbctlError

    count = len(failed) + len(unsafe)
    verb = "checked" if dry_run else "applied"
    others = "" if not applied else f"; the other {applied} were {verb}" if applied > 1 else f"; the other was {verb}"
    return XbctlError(
        f"{count} configuration file{'s were' if count > 1 else ' was'} not applied (see above){others}",
        status=failed[0][1].status,
        hint="correct the lines cited above; the files apply as a whole or not at all",
    )


def trusted_owners() -> frozenset[int]:
    """Who may own the configuration: root, and the user xbctl runs as (a user's own XBCTL_CONF_ROOT)."""
    return frozenset({0, os.geteuid()})


def _unsafe(path: str, root: str, trusted: frozenset[int]) -> UnsafeFile | None:
    """Why PATH may be changed by someone other than root, or None."""
    real = os.path.realpath(path)
    linked = os.path.islink(path)
    places: list[tuple[str, str]] = []  # (how the message names it, {} for its path; its path), the file first
    if real != os.devnull:  # a mask reads nothing: only the directories that hold it matter
        places.append(("the file it links to {}" if linked else "", real if linked else path))
    directory = os.path.dirname(path)
    for above in _directories_up_to(directory, root):
        places.append(("its directory {}" if above == directory else "the directory {} above it", above))
    if linked and real != os.devnull:
        places.append(("the directory {} of the file it links to", os.path.dirname(real)))
    for role, place in places:
        problem = _problem(place, trusted)
        if problem is not None:
            owner, mode, reason = problem
            return UnsafeFile(path, place, role, owner, mode, reason)
    return None


def _directories_up_to(directory: str, root: str) -> list[str]:
    """DIRECTORY and each directory above it up to ROOT, ROOT included."""
    root = os.path.normpath(os.path.abspath(root))
    directory = os.path.normpath(os.path.abspath(directory))
    chain = [directory]
    while directory != root and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
        chain.append(directory)
    return chain


def _problem(path: str, trusted: frozenset[int]) -> tuple[str, int | None, str] | None:
    """(owner, mode, what is wrong) when someone other than root may change PATH, else None."""
    try:
        status = os.stat(path)
    except OSError as exc:  # gone or unreadable since it was listed: nothing vouches for it
        return "?", None, f"unreadable ({exc.strerror})"
    mode = stat.S_IMODE(status.st_mode)
    if status.st_uid not in trusted:
        me = "" if os.geteuid() == 0 else f" or {_user_name(os.geteuid())} (who runs xbctl)"
        return _user_name(status.st_uid), mode, f"not owned by root{me}"
    writers = [who for bit, who in ((stat.S_IWGRP, "its group"), (stat.S_IWOTH, "every user")) if mode & bit]
    if writers:
        return _user_name(status.st_uid), mode, "writable by " + " and ".join(writers)
    return None


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _is_configuration(path: str) -> bool:
    # A directory named x.conf is not a file; /dev/null (a mask) reads as an empty one.
    return os.path.isfile(path) or os.path.realpath(path) == os.devnull
