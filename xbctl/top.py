"""`xbctl top`: the domain table, redrawn whenever a balloon moves, or frames for scripts (-b).

Changes are found with a Xenstore watch on /local/domain (the simulator: its clock), never
by re-reading on a timer. On a terminal the table is redrawn in place until q or Ctrl-C
(s cycles the sort column, r reverses it); in a pipe one table is printed per change, until
interrupted. Batch mode (-b, as xentop -b) is the exception: a frame every --delay seconds,
what a script sampling a host wants, each after a `# TIME` line.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from typing import TYPE_CHECKING, Iterator

from .cells import LIST_COLUMNS, balloon_state

if TYPE_CHECKING:
    from .api import Xbctl
    from .operations import DomainRow

KEY_POLL_S = 0.2  # how long one watch wait lasts before looking at the keyboard again
QUIT_KEYS = (b"q", b"Q")
SORT_KEYS = (b"s", b"S")  # the next sort column, as xentop's S
REVERSE_KEYS = (b"r", b"R")
DEFAULT_DELAY_S = 3.0  # between batch frames, as xentop's default
COLUMNS = LIST_COLUMNS  # in the order s cycles through them
SIZE_COLUMNS = frozenset({"current", "target", "min", "max", "xen-max", "hv-max"})


class View:
    """What top shows of the rows: sorted by COLUMN (sizes largest first), REVERSE flips it,
    only names matching the shell pattern NAME_GLOB, sizes HUMAN (-h) or in MiB."""

    __slots__ = ("column", "reverse", "name_glob", "human")

    def __init__(self, column: str = "id", reverse: bool = False, name_glob: str | None = None, human: bool = False):
        self.column, self.reverse, self.name_glob, self.human = column, reverse, name_glob, human

    def rows(self, rows: list["DomainRow"]) -> list["DomainRow"]:
        """ROWS filtered and sorted as this view shows them (ties: by domain id)."""
        from fnmatch import fnmatchcase

        if self.name_glob is not None:
            rows = [row for row in rows if fnmatchcase(row.domain.name, self.name_glob)]
        shown = sorted(rows, key=lambda row: row.domain.id)
        shown.sort(key=self._key)
        return shown[::-1] if self.reverse else shown

    def _key(self, row: "DomainRow"):
        if self.column == "id":
            return (0, row.domain.id)
        if self.column == "name":
            return (0, row.domain.name)
        balloon = row.balloon
        if balloon is None:
            return (1, 0)  # unreadable: last
        if self.column == "balloon":
            return (0, balloon_state(balloon))
        kib = size_of(balloon, self.column)
        return (1, 0) if kib is None else (0, -kib)  # largest first

    def next_column(self) -> None:
        """The next column to sort by (s), back to the first after the last."""
        self.column = COLUMNS[(COLUMNS.index(self.column) + 1) % len(COLUMNS)]

    def describe(self) -> str:
        """How the rows are sorted, for the caption: `sorted by target, largest first`."""
        if self.column in SIZE_COLUMNS:
            order = "smallest first" if self.reverse else "largest first"
        else:
            order = "descending" if self.reverse else "ascending"
        return f"sorted by {self.column}, {order}"


def size_of(balloon, column: str) -> float | None:
    """The size COLUMN shows for BALLOON in KiB (hv-max: unlimited is infinite, None when not read)."""
    if column != "hv-max":
        return balloon.value_kib(column)
    if balloon.hypervisor_max_unlimited:
        return float("inf")
    return balloon.hypervisor_max_kib


@contextlib.contextmanager
def _keys_unbuffered(fd: int) -> Iterator[None]:
    """The terminal on FD in cbreak mode (keys arrive one by one, Ctrl-C still interrupts), restored after."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _keys_typed(fd: int) -> list[bytes]:
    """The keys typed on FD since the last look (never blocks); b"" when the terminal is gone."""
    keys = []
    while select.select([fd], [], [], 0)[0]:
        key = os.read(fd, 1)
        keys.append(key)
        if key == b"":
            break
    return keys


def run_top(
    xb: "Xbctl",
    view: View | None = None,
    *,
    batch: bool = False,
    frames: int | None = None,
    delay_s: float = DEFAULT_DELAY_S,
) -> None:
    """Show every domain's balloon until q or Ctrl-C (a terminal), until interrupted (a pipe),
    or until FRAMES frames were shown; BATCH: a plain frame every DELAY_S seconds."""
    view = view or View()
    try:
        if batch:
            _batch(xb, view, frames, delay_s)
        elif sys.stdout.isatty() and sys.stdin.isatty():
            _interactive(xb, view, frames)
        else:
            _tables(xb, view, frames)
    except KeyboardInterrupt:
        return  # Ctrl-C is how one leaves top: not an error


def _batch(xb: "Xbctl", view: View, frames: int | None, delay_s: float) -> None:
    import time

    from .output_top import batch_frame

    shown = 0
    while True:
        batch_frame(view.rows(xb.list_rows()), human=view.human)
        shown += 1
        if frames is not None and shown >= frames:
            return
        time.sleep(delay_s)


def _tables(xb: "Xbctl", view: View, frames: int | None) -> None:
    """In a pipe without -b: one plain table per change."""
    from .output_rich import print_domain_table

    rows = view.rows(xb.list_rows())
    shown = 0
    while True:
        print_domain_table(rows, human=view.human)
        sys.stdout.flush()
        shown += 1
        if frames is not None and shown >= frames:
            return
        while True:
            if xb.wait_for_any_change(1.0):
                new_rows = view.rows(xb.list_rows())
                if new_rows != rows:
                    rows = new_rows
                    break


def _interactive(xb: "Xbctl", view: View, frames: int | None) -> None:
    """On a terminal: redrawn in place on each change; s, r and q as xentop's keys."""
    from .output_top import live_top

    rows = view.rows(xb.list_rows())
    shown = 1
    fd = sys.stdin.fileno()
    with _keys_unbuffered(fd), live_top(rows, view) as redraw:
        while frames is None or shown < frames:
            keys = _keys_typed(fd)
            if any(key in QUIT_KEYS or key == b"" for key in keys):
                return
            rearranged = False
            for key in keys:
                if key in SORT_KEYS:
                    view.next_column()
                    rearranged = True
                elif key in REVERSE_KEYS:
                    view.reverse = not view.reverse
                    rearranged = True
            if rearranged:
                rows = view.rows(xb.list_rows())
                redraw(rows)
                continue
            if xb.wait_for_any_change(KEY_POLL_S):
                new_rows = view.rows(xb.list_rows())
                if new_rows != rows:
                    rows = new_rows
                    redraw(rows)
                    shown += 1
