"""The simulator's state file: crash-safe, concurrent-safe, never silently replaced.

Writers hold an exclusive lock on a separate, stable lock file (the state file itself
is replaced by rename, so locking it would lock a file that is about to vanish), write
a temporary file in the same directory, fsync it, rename it over the state file and
fsync the directory. Readers need no lock: a rename is atomic.

Only a file that carries xbctl's own marker is ever replaced or kept aside, and only
by a writer: a read never moves, replaces or re-permissions anything.
"""

from __future__ import annotations

import os
import stat
import time

from ..errors import XbctlError, unavailable

TYPE_CHECKING = False  # typing and pathlib cost every start-up a few ms: paths here are str
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Iterator

SCHEMA_VERSION = 1
# Every state file xbctl writes starts with this marker, so even a torn one is known as ours.
FORMAT_KEY = "format"
FORMAT = "xbctl-sim-state"
_HEADER = b'{\n "%s": "%s",' % (FORMAT_KEY.encode(), FORMAT.encode())
# The state of xbctl 0.1.0 before the marker: recognised by its exact set of keys only.
_LEGACY_KEYS = frozenset(
    {
        "schema",
        "clock",
        "steps_per_second",
        "offset_s",
        "boot_s",
        "last_tick_s",
        "position",
        "host_free_kib",
        "domains",
        "log",
    }
)
# Our state is a few tens of KiB (the log keeps 500 lines); a larger file is not one we wrote.
MAX_STATE_BYTES = 1024 * 1024
CORRUPT = "EBADMSG"  # errno name of the error that reports a corrupt state file


def _scanner():
    """CPython's C JSON scanner, set up as json.loads sets up its own; None where there is none."""
    try:
        from _json import make_scanner
    except ImportError:
        return None
    constants = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}

    class Context:  # the settings the C scanner reads, which json.JSONDecoder() holds
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = constants.__getitem__

    return make_scanner(Context())  # type: ignore[arg-type]  # typeshed wants a JSONDecoder; any such object does


def loads_json(raw: bytes):
    """RAW's JSON, exactly as json.loads(RAW) reads it, without importing json for a file we wrote.

    The json package imports re, and with it enum, functools and collections: on a simulator
    read that is as long as all of xbctl's own modules. A file xbctl wrote (ASCII, our header,
    whole) is read by the C scanner json.loads itself runs; anything else (another encoding,
    a torn file, trailing data, no C scanner) goes to json.loads, for its very result or error.
    """
    if raw.startswith(_HEADER) and raw.isascii():
        scan = _scanner()
        if scan is not None:
            text = raw.decode("ascii")
            try:
                data, end = scan(text, 0)
            except (StopIteration, ValueError):
                pass  # json.loads says what is wrong, below
            else:
                if not text[end:].strip(" \t\n\r"):  # json's whitespace, and nothing else after the value
                    return data
    import json

    return json.loads(raw)


def default_state_path() -> str:
    """Where the simulator keeps its state: $XDG_STATE_HOME/xbctl/sim.json."""
    state_home = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state_home, "xbctl", "sim.json")


class CorruptState(Exception):
    """The state file is ours (it carries the marker) but cannot be understood."""


class StateStore:
    """Load and save the simulator's state as JSON with a marker and a schema version."""

    def __init__(self, path: str) -> None:
        # Follow a symlink once, here: the rename must replace the file it points to.
        self.path = os.path.realpath(path)
        self.directory, self.name = os.path.split(self.path)
        self.lock_path = self.path + ".lock"
        self._lock_held = False

    def status(self) -> os.stat_result | None:
        """The state file's stat, or None when there is none; refuses anything but a regular file."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise unavailable(f"simulator state {self.path}: {exc.strerror}") from None
        if not stat.S_ISREG(status.st_mode):
            raise unavailable(
                f"simulator state {self.path} is not a regular file; not touching it",
                hint="point --sim-state (XBCTL_SIM_STATE) at a file",
            )
        return status

    def read_raw(self) -> bytes | None:
        """The stored bytes (at most MAX_STATE_BYTES + 1), or None when there is no state yet."""
        if self.status() is None:
            return None
        try:
            with open(self.path, "rb") as file:
                return file.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise unavailable(f"simulator state {self.path}: {exc.strerror}") from None

    def foreign(self) -> XbctlError:
        """The error for a file at the state path that xbctl did not write."""
        return unavailable(
            f"{self.path} is not an xbctl simulator state file; not touching it",
            hint="point --sim-state (XBCTL_SIM_STATE) elsewhere, or remove the file yourself",
        )

    def decode(self, raw: bytes) -> dict:
        """RAW as a state dict; raises CorruptState for a damaged file of ours (moving nothing)."""
        ours = raw.startswith(_HEADER)
        if len(raw) > MAX_STATE_BYTES:
            if ours:
                raise CorruptState(f"larger than {MAX_STATE_BYTES} bytes")
            raise self.foreign()
        try:
            data = loads_json(raw)
        except (ValueError, RecursionError) as exc:
            if ours:
                raise CorruptState(f"not JSON: {exc}") from None
            raise self.foreign() from None
        if not isinstance(data, dict):
            raise self.foreign()
        if data.get(FORMAT_KEY) != FORMAT:
            if set(data) == _LEGACY_KEYS and data["schema"] == 1:
                return data  # an unmarked file of ours: read, and replaced by a marked one on write
            raise self.foreign()  # someone else's JSON (a package.json...): never ours to move
        schema = data.get("schema")
        if type(schema) is not int:
            raise CorruptState("no schema version")
        if schema > SCHEMA_VERSION:
            raise unavailable(
                f"simulator state {self.path} has schema {schema}, newer than this "
                f"xbctl understands ({SCHEMA_VERSION})",
                hint="use the xbctl that wrote it, or point --sim-state elsewhere",
            )
        return data

    def corrupt(self, reason: str) -> XbctlError:
        """The error that reports a damaged state file of ours, left where it is."""
        return unavailable(
            f"simulator state {self.path} is corrupt ({reason}); nothing was changed",
            hint="'xbctl sim reset' keeps it aside and boots a fresh simulated host",
            errno_name=CORRUPT,
        )

    def keep_aside(self, raw: bytes) -> str | None:
        """Move a damaged state file of ours out of the way, if it still holds RAW (lock held)."""
        try:
            if self.read_raw() == raw:
                aside = self._link_aside(time.strftime("%Y%m%dT%H%M%S"))
                os.unlink(self.path)
                return aside
        except OSError:
            pass
        return None

    def _link_aside(self, stamp: str) -> str:
        """A new name for the state file under which nothing existed (never overwrite one)."""
        for attempt in range(1, 1000):
            suffix = f".corrupt-{stamp}" + (f"-{attempt}" if attempt > 1 else "")
            aside = self.path + suffix
            try:
                os.link(self.path, aside)
                return aside
            except FileExistsError:
                continue
        raise OSError("no free name to keep the corrupt state aside")

    def locked(self) -> AbstractContextManager[None]:
        """Hold the exclusive writer lock (re-entrant within this process)."""
        import contextlib  # writers only: a read does without it

        return contextlib.contextmanager(self._locked)()

    def _locked(self) -> Iterator[None]:
        if self._lock_held:
            yield
            return
        import fcntl  # writers only: a read takes no lock

        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)  # the mode for the last one only
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise unavailable(f"simulator lock {self.lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_held = True
            yield
        finally:
            self._lock_held = False
            os.close(fd)  # closing drops the lock

    def check_replaceable(self, status: os.stat_result | None) -> None:
        """Refuse to replace a state file its owner made read-only."""
        if status is not None and not status.st_mode & stat.S_IWUSR:
            raise unavailable(
                f"simulator state {self.path} is read-only (mode {stat.S_IMODE(status.st_mode):04o}); not replacing it",
                hint=f"chmod u+w {self.path} to let xbctl change it",
                errno_name="EACCES",
            )

    def remove_stale_temporaries(self) -> None:
        """Remove temporaries a killed writer left (lock held: no live writer has one)."""
        import contextlib
        import re

        # The temporaries save() creates: only these are ever cleaned up.
        temporary = re.compile(r"\.%s\.[0-9]+\.[0-9]+\.tmp" % re.escape(self.name))
        with contextlib.suppress(OSError), os.scandir(self.directory) as entries:
            for entry in entries:
                if temporary.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def save(self, data: dict) -> None:
        """Replace the state with DATA atomically and durably (call with the lock held).

        The new file keeps the old one's mode, owner and group (0600 when there was none).
        """
        status = self.status()  # never rename over a device, directory or fifo
        self.check_replaceable(status)
        self.remove_stale_temporaries()
        import json  # here, not at the top: a read goes without it (loads_json)

        document = {FORMAT_KEY: FORMAT, "schema": SCHEMA_VERSION, **data}
        payload = json.dumps(document, indent=1).encode() + b"\n"
        directory = self.directory
        # A unique name, created exclusively and private (tempfile would cost start-up time).
        tmp_name = os.path.join(directory, f".{self.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as tmp:
                if status is not None:
                    self._keep_ownership(tmp.fileno(), status)
                tmp.write(payload)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, self.path)
        except BaseException:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _keep_ownership(self, fd: int, status: os.stat_result) -> None:
        """Give the temporary FD the replaced file's owner, group and mode, or refuse."""
        if (status.st_uid, status.st_gid) != (os.geteuid(), os.getegid()):
            try:
                os.fchown(fd, status.st_uid, status.st_gid)
            except PermissionError:
                raise unavailable(
                    f"simulator state {self.path} belongs to uid {status.st_uid} gid {status.st_gid}; "
                    "a write would give it another owner, so it is not replaced",
                    hint="run xbctl as its owner, or point --sim-state elsewhere",
                    errno_name="EPERM",
                ) from None
        os.fchmod(fd, stat.S_IMODE(status.st_mode))
