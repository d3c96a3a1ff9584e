"""The simulator's state file: crash-safe, concurrent-safe, never silently replaced.

Writers hold an exclusive lock on a separate, stable lock file (the state file itself
is replaced by rename, so locking it would lock a file that is about to vanish), write
a temporary file in the same directory, fsync it, rename it over the state file and
fsync the directory. Readers need no lock: a rename is atomic.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import time
from pathlib import Path
from typing import Iterator, NoReturn

from .errors import unavailable

SCHEMA_VERSION = 1


def default_state_path() -> Path:
    """Where the simulator keeps its state: $XDG_STATE_HOME/xbctl/sim.json."""
    state_home = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state_home) / "xbctl" / "sim.json"


class CorruptState(Exception):
    """The state file exists but cannot be understood."""


CORRUPT = "EBADMSG"  # errno name of the error that reports a state file kept aside


class StateStore:
    """Load and save the simulator's state as JSON with a schema version."""

    def __init__(self, path: Path) -> None:
        # Follow a symlink once, here: the rename must replace the file it points to.
        self.path = Path(os.path.realpath(path))
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_held = False

    def check_regular(self) -> bool:
        """True when the state file exists; refuses anything but a regular file."""
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise unavailable(f"simulator state {self.path}: {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            raise unavailable(
                f"simulator state {self.path} is not a regular file; not touching it",
                hint="point --sim-state (XBCTL_SIM_STATE) at a file",
            )
        return True

    def read_raw(self) -> bytes | None:
        """The stored bytes, or None when there is no state yet."""
        if not self.check_regular():
            return None
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise unavailable(f"simulator state {self.path}: {exc.strerror}") from None

    def decode(self, raw: bytes) -> dict:
        """RAW as a state dict; a torn or corrupt state file is kept aside and reported."""
        if not raw.lstrip().startswith(b"{"):
            # Not even the start of a state file: someone else's file, never ours to move.
            raise unavailable(
                f"{self.path} is not an xbctl simulator state file; not touching it",
                hint="point --sim-state (XBCTL_SIM_STATE) elsewhere",
            )
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or type(data.get("schema")) is not int:
                raise CorruptState("no schema version")
        except (ValueError, CorruptState) as exc:
            self.keep_aside(raw, str(exc))
        if data["schema"] > SCHEMA_VERSION:
            raise unavailable(
                f"simulator state {self.path} has schema {data['schema']}, newer than this "
                f"xbctl understands ({SCHEMA_VERSION})",
                hint="use the xbctl that wrote it, or point --sim-state elsewhere",
            )
        return data

    def keep_aside(self, raw: bytes, reason: str) -> NoReturn:
        """Move a bad state file out of the way (if it is still the same) and report it."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = None
        with self.locked():
            with contextlib.suppress(OSError):
                if self.path.read_bytes() == raw:
                    aside = self._link_aside(stamp)
                    os.unlink(self.path)
        where = f"kept aside as {aside}" if aside else "it has changed meanwhile"
        raise unavailable(
            f"simulator state {self.path} is corrupt ({reason}); {where}",
            hint="the next command starts from a freshly reset simulated host",
            errno_name=CORRUPT,
        )

    def _link_aside(self, stamp: str) -> Path:
        """A new name for the state file under which nothing existed (never overwrite one)."""
        for attempt in range(1, 1000):
            suffix = f".corrupt-{stamp}" + (f"-{attempt}" if attempt > 1 else "")
            aside = self.path.with_name(self.path.name + suffix)
            try:
                os.link(self.path, aside)
                return aside
            except FileExistsError:
                continue
        raise OSError("no free name to keep the corrupt state aside")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive writer lock (re-entrant within this process)."""
        if self._lock_held:
            yield
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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

    def save(self, data: dict) -> None:
        """Replace the state with DATA atomically and durably (call with the lock held)."""
        self.check_regular()  # never rename over a device, directory or fifo
        payload = json.dumps({**data, "schema": SCHEMA_VERSION}, indent=1).encode() + b"\n"
        directory = self.path.parent
        # A unique name, created exclusively and private (tempfile would cost start-up time).
        tmp_name = directory / f".{self.path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(payload)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
