"""`xbctl top`: the domain table, redrawn whenever a balloon moves.

Changes are found with a Xenstore watch on /local/domain (the simulator: its clock), never
by re-reading on a timer. On a terminal the table is redrawn in place until q or Ctrl-C;
in a pipe one table is printed per change, until interrupted.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from .api import Xbctl

KEY_POLL_S = 0.2  # how long one watch wait lasts before looking at the keyboard again
QUIT_KEYS = (b"q", b"Q")


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


def _quit_pressed(fd: int) -> bool:
    """True when q was typed (reads what is waiting on FD, never blocks)."""
    while select.select([fd], [], [], 0)[0]:
        key = os.read(fd, 1)
        if key in QUIT_KEYS or key == b"":
            return True
    return False


def run_top(xb: "Xbctl") -> None:
    """Show every domain's balloon until q or Ctrl-C (a terminal) or until interrupted (a pipe)."""
    rows = xb.list_rows()
    interactive = sys.stdout.isatty() and sys.stdin.isatty()
    try:
        if interactive:
            from .output_rich import live_table

            fd = sys.stdin.fileno()
            with _keys_unbuffered(fd), live_table(rows) as redraw:
                while not _quit_pressed(fd):
                    if xb.wait_for_any_change(KEY_POLL_S):
                        new_rows = xb.list_rows()
                        if new_rows != rows:
                            rows = new_rows
                            redraw(rows)
            return
        from .output_rich import print_domain_table

        print_domain_table(rows)
        sys.stdout.flush()
        while True:
            if xb.wait_for_any_change(1.0):
                new_rows = xb.list_rows()
                if new_rows != rows:
                    rows = new_rows
                    print_domain_table(rows)
                    sys.stdout.flush()
    except KeyboardInterrupt:
        return  # Ctrl-C is how one leaves top: not an error
