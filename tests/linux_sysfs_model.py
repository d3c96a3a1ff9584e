"""A Linux guest's balloon driver as its sysfs shows it, for the tests: a directory laid out as
/sys (given to xbctl as $XBCTL_SYSFS_ROOT) whose devices/system/xen_memory/xen_memory0 files
behave as Linux 6.1's drivers/xen/xen-balloon.c makes them behave.

Plain files run no store function when written, so the model runs it afterwards: settle()
takes what a writer left in a writable file as the text of one write(2), does with it what
the driver's store does, and renders every file again as its show function would. write()
is the same store for one write the test makes itself, with the errno the kernel answers
(tests/test_real_host.py replays on it what the real guest's sysfs did, and compares).

What the model follows, from Linux 6.1 (drivers/xen/xen-balloon.c, drivers/xen/balloon.c,
drivers/base/core.c, lib/vsprintf.c, lib/cmdline.c, fs/sysfs):

- target_kb (0644): show_target_kb prints "%lu\\n" of PAGES2KB(balloon_stats.target_pages);
  store_target_kb returns -EPERM without CAP_SYS_ADMIN, else takes
  simple_strtoull(buf, &endchar, 0) * 1024 (base 0: 0x hex, a leading 0 octal; it stops at the
  first character that is no digit, so "12abc" is 12 and "abc" is 0, and ignores the rest),
  calls balloon_set_new_target(bytes >> PAGE_SHIFT) and returns count: every write succeeds.
- target (0644): the same target in bytes ("%llu\\n" of target_pages << PAGE_SHIFT); store_target
  is store_target_kb with memparse(buf) (simple_strtoull, then K M G T P E shift by 10 each).
- balloon_set_new_target only stores the number and wakes the balloon thread: no bound.
- info/current_kb, info/low_kb, info/high_kb (0444, BALLOON_SHOW: no store).
- schedule_delay, retry_count (DEVICE_ULONG_ATTR, 0444), max_schedule_delay,
  max_retry_count (0644): device_show_ulong prints them in hex, "%lx\\n" (32 reads "20");
  device_store_ulong takes kstrtoul(buf, 0) (a whole number in any base, an optional
  leading +, one trailing newline; else -EINVAL, -ERANGE above 2^64-1). Debian's 6.1
  kernel starts them at 1, 32, 1, 4 (what the real guest shows).
- sysfs (its kernfs root has KERNFS_ROOT_EXTRA_OPEN_PERM_CHECK) refuses to open a file for
  writing that has no write permission bit, even to root: EACCES at open(2).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

BALLOON_DIR = "devices/system/xen_memory/xen_memory0"
PAGE_SHIFT = 12
ULONG = (1 << 64) - 1
# name -> mode, as the driver registers them.
MODES = {
    "target_kb": 0o644,
    "target": 0o644,
    "schedule_delay": 0o444,
    "max_schedule_delay": 0o644,
    "retry_count": 0o444,
    "max_retry_count": 0o644,
    "info/current_kb": 0o444,
    "info/low_kb": 0o444,
    "info/high_kb": 0o444,
}
RETRY_SETTINGS = ("schedule_delay", "max_schedule_delay", "retry_count", "max_retry_count")


HEX_DIGITS = b"0123456789abcdefABCDEF"


def simple_strtoull(text: bytes) -> tuple[int, int]:
    """lib/vsprintf.c simple_strtoull(cp, &end, 0): (value, bytes consumed). The base comes from
    the prefix (0x hex, a leading 0 octal); digits are taken up to the first that is not one;
    no sign, no blank skipped; the value wraps at 2^64 as the C arithmetic does."""
    base, at = 10, 0
    if text[:1] == b"0":
        if text[1:2] in (b"x", b"X") and text[2:3] and text[2:3] in HEX_DIGITS:
            base, at = 16, 2
        else:
            base = 8
    value = 0
    while at < len(text) and text[at : at + 1] in HEX_DIGITS and int(text[at : at + 1], 16) < base:
        value = (value * base + int(text[at : at + 1], 16)) & ULONG
        at += 1
    return value, at


def memparse(text: bytes) -> int:
    """lib/cmdline.c memparse: simple_strtoull, then a suffix K M G T P E (either case) shifts it."""
    value, at = simple_strtoull(text)
    shifts = {b"k": 10, b"m": 20, b"g": 30, b"t": 40, b"p": 50, b"e": 60}
    suffix = text[at : at + 1].lower()
    return (value << shifts[suffix]) & ULONG if suffix in shifts else value


def kstrtoul(text: bytes) -> int:
    """lib/kstrtox.c kstrtoul(s, 0): the whole text one number (one trailing newline allowed)."""
    if text.endswith(b"\n"):
        text = text[:-1]
    if text.startswith(b"+"):
        text = text[1:]
    if not text:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    if text[:2].lower() == b"0x":
        base, digits = 16, text[2:]
    elif text[:1] == b"0":
        base, digits = 8, text
    else:
        base, digits = 10, text
    try:
        value = int(digits, base) if digits and digits.isascii() and digits.isalnum() else None
    except ValueError:
        value = None
    if value is None:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    if value > ULONG:
        raise OSError(errno.ERANGE, os.strerror(errno.ERANGE))
    return value


class LinuxBalloonSysfs:
    """The driver's state (in pages and its retry settings) and its sysfs files under ROOT."""

    def __init__(
        self,
        root: Path,
        *,
        current_kb: int,
        target_kb: int | None = None,
        low_kb: int = 0,
        high_kb: int = 0,
        retry: dict[str, int] | None = None,
    ) -> None:
        self.root = Path(root)
        self.directory = self.root / BALLOON_DIR
        self.current_pages = current_kb >> 2
        self.target_pages = (current_kb if target_kb is None else target_kb) >> 2
        self.low_pages, self.high_pages = low_kb >> 2, high_kb >> 2
        self.retry = {
            "schedule_delay": 1,
            "max_schedule_delay": 32,
            "retry_count": 1,
            "max_retry_count": 4,
            **(retry or {}),
        }
        (self.directory / "info").mkdir(parents=True, exist_ok=True)
        self.render()

    # ------------------------------------------------------------ what the show functions print

    def shown(self) -> dict[str, str]:
        """Every file's text, as its show function prints it."""
        return {
            "target_kb": f"{(self.target_pages << 2) & ULONG}\n",
            "target": f"{(self.target_pages << PAGE_SHIFT) & ULONG}\n",
            "info/current_kb": f"{self.current_pages << 2}\n",
            "info/low_kb": f"{self.low_pages << 2}\n",
            "info/high_kb": f"{self.high_pages << 2}\n",
            **{name: f"{value:x}\n" for name, value in self.retry.items()},  # device_show_ulong: "%lx"
        }

    def render(self) -> None:
        """Lay out every file as the driver shows it, with the driver's modes."""
        for name, text in self.shown().items():
            # Replaced whole, never truncated then written: a sysfs read never sees an empty file,
            # and xbctl may be reading while the balloon thread of a test moves.
            path = self.directory / name
            fresh = path.with_name(f".{path.name}.new")
            fresh.write_text(text)
            os.chmod(fresh, MODES[name])
            os.replace(fresh, path)

    # ------------------------------------------------------------ what the store functions do

    def write(self, name: str, data: bytes) -> int | None:
        """One write(2) of DATA to file NAME by root: None when the kernel takes it, else its errno."""
        if not MODES[name] & 0o222:
            return errno.EACCES  # sysfs opens no file without a write bit for writing, even for root
        if name == "target_kb":
            self.target_pages = ((simple_strtoull(data)[0] * 1024) & ULONG) >> PAGE_SHIFT
        elif name == "target":
            self.target_pages = memparse(data) >> PAGE_SHIFT
        else:
            try:
                self.retry[name] = kstrtoul(data)
            except OSError as exc:
                return exc.errno
        return None

    def settle(self) -> None:
        """Apply, as the driver's store, what a writer left in any file, then render them all again.

        A read-only file that was written is an error of the code under test: the kernel would
        have refused to open it (EACCES), so the test fails here.
        """
        shown = self.shown()
        for name, text in shown.items():
            now = (self.directory / name).read_bytes()
            if now == text.encode():
                continue
            refused = self.write(name, now)
            assert refused is None, f"{name}: the kernel refuses {now!r} ({errno.errorcode[refused]})"
        self.render()

    def reach(self) -> None:
        """The balloon thread got to the target (the guest had the pages to give, or to take)."""
        self.current_pages = self.target_pages
        self.render()

    # ------------------------------------------------------------ for assertions

    def read(self, name: str) -> str:
        return (self.directory / name).read_text()

    def snapshot(self) -> dict[str, tuple[str, int]]:
        """Every file's text and mode, to prove a command changed nothing."""
        return {name: (self.read(name), os.stat(self.directory / name).st_mode & 0o777) for name in MODES}
