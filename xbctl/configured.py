"""The record of the domains `xbctl policy` has configured, so that it configures each once.

One JSON file, `configured.json` in $XBCTL_RUNTIME_DIR (default /run/xbctl, a tmpfs: the
record lasts until the host reboots, as the domains do); the simulator keeps its own
beside its state file. Each entry is a domain id with what tells that domain from a later
one given the same id (its instance, from the transport), its name and when it was
configured. Every change is made under a lock on a fresh reading of the file (the service
and a `policy --reapply` by hand may both write) and written whole to a temporary file
that is then renamed over the record: a crash leaves the old record or the new, never half.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

from .errors import ExitStatus, XbctlError

if TYPE_CHECKING:
    from pathlib import Path

    from .transports import Domain, Transport

RECORD_NAME = "configured.json"
FORMAT = "xbctl-configured-domains"
VERSION = 1
MAX_RECORD_BYTES = 16 * 1024 * 1024  # 32,752 domains of long names fit; a larger file is not ours
DAMAGED = (
    "remove it (every running domain then counts as not configured; "
    "'xbctl policy --dry-run' shows what that would change)"
)
UNUSABLE = (
    "it lives in $XBCTL_RUNTIME_DIR (default /run/xbctl; the simulator's beside its state), which must be writable"
)


def record_for(transport: Transport) -> Record:
    """The record of TRANSPORT's host."""
    return Record(transport.runtime_path(RECORD_NAME))


def same_instance(recorded: dict[str, str], now: dict[str, str]) -> bool:
    """True when NOW (a domain's instance read now) is the domain RECORDED was read from:
    every key recorded is there with the same value (a toolstack may write some later)."""
    return all(now.get(key) == value for key, value in recorded.items())


def entry_for(domain: Domain, instance: dict[str, str]) -> dict:
    """The record's entry for DOMAIN, configured now."""
    return {
        "name": domain.name,
        "instance": dict(instance),
        "configured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class Record:
    """The record file at PATH: read it, and change it under its lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def load(self) -> dict[int, dict]:
        """Domain id -> entry; {} when there is no record yet. A record that is not ours or
        is damaged is an error (exit 3): guessing could undo an administrator's change."""
        try:
            with open(self.path, "rb") as file:
                raw = file.read(MAX_RECORD_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            raise self._error(f"cannot read it: {exc.strerror}", UNUSABLE) from None
        try:
            document = json.loads(raw) if len(raw) <= MAX_RECORD_BYTES else None
            return _entries(document)
        except ValueError as exc:
            raise self._error(f"damaged ({exc})", DAMAGED) from None

    def prepare(self) -> None:
        """Make sure the record can be written (its directory made, mode 0755), before anything is."""
        try:
            self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            os.close(os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        except OSError as exc:
            raise self._error(f"cannot write it: {exc.strerror}", UNUSABLE) from None

    def update(self, configured: dict[int, dict], forget: set[int]) -> None:
        """Add CONFIGURED (domain id -> entry), drop the domains FORGET names."""
        if not configured and not forget:
            return
        import fcntl

        try:
            lock = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise self._error(f"cannot write it: {exc.strerror}", UNUSABLE) from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self.load()
            if not configured and not forget & entries.keys():
                return
            for domid in forget:
                entries.pop(domid, None)
            entries.update(configured)
            self._write(entries)
        finally:
            os.close(lock)  # releases the lock

    def _write(self, entries: dict[int, dict]) -> None:
        document = {
            "format": FORMAT,
            "version": VERSION,
            "domains": {str(domid): entries[domid] for domid in sorted(entries)},
        }
        data = (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode()
        prefix = f".{self.path.name}."
        try:  # under the lock no other writer is at work: a temporary left now is a killed writer's
            for name in os.listdir(self.path.parent):
                if name.startswith(prefix) and name.endswith(".tmp"):
                    os.unlink(self.path.parent / name)
        except OSError:
            pass
        temporary = self.path.with_name(f"{prefix}{os.getpid()}.tmp")
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.write(descriptor, data)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(temporary, self.path)
        except OSError as exc:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise self._error(f"cannot write it: {exc.strerror}", UNUSABLE) from None

    def _error(self, why: str, hint: str) -> XbctlError:
        return XbctlError(
            f"the record of configured domains {self.path}: {why}", status=ExitStatus.UNAVAILABLE, hint=hint
        )


def _entries(document: object) -> dict[int, dict]:
    """The entries of DOCUMENT (the record's JSON); ValueError unless it is a record of ours."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError("not a record of xbctl's")
    version = document.get("version")
    if type(version) is not int or not 1 <= version <= VERSION:
        raise ValueError(f"version {version!r}, this xbctl reads {VERSION}")
    domains = document.get("domains")
    if not isinstance(domains, dict):
        raise ValueError("no domains")
    entries: dict[int, dict] = {}
    for key, entry in domains.items():
        instance = entry.get("instance") if isinstance(entry, dict) else None
        if not (key.isascii() and key.isdigit() and len(key) <= 5 and isinstance(instance, dict)):
            raise ValueError(f"bad entry {key!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in instance.items()):
            raise ValueError(f"bad instance of domain {key}")
        entries[int(key)] = entry
    return entries
