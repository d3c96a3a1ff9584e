"""How `xbctl top` looks: batch frames for scripts (plain, as `list` in a pipe) and the live
table on a terminal, with the sort and the keys in its caption. Rich is imported only for the latter.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    from .operations import DomainRow
    from .top import View

KEYS_HELP = "s: sort column, r: reverse, q: quit"


def frame_time(seconds: float) -> str:
    """SECONDS since the epoch as a batch frame's time: UTC, ISO 8601, milliseconds (fixed width)."""
    import time

    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((seconds - whole) * 1000):03d}Z"


def batch_frame(rows: list["DomainRow"], *, human: bool = False) -> None:
    """One frame of `top -b`: `# TIME`, then the list's plain lines, header included, flushed."""
    import time

    from .output import domain_lines

    lines = [f"# {frame_time(time.time())}", *domain_lines(rows, human=human)]
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


@contextlib.contextmanager
def live_top(rows: list["DomainRow"], view: "View") -> Iterator[Callable[[list["DomainRow"]], None]]:
    """The domain table redrawn in place, its caption saying how it is sorted and which keys
    work; yields the function that redraws it (reading VIEW again each time)."""
    from rich.live import Live

    from .output_rich import _console, domain_table

    console = _console()

    def table(shown: list["DomainRow"]):
        note = f"{view.describe()}; {KEYS_HELP}"
        return domain_table(shown, width=console.width, human=view.human, caption_note=note)

    with Live(table(rows), console=console, auto_refresh=False, screen=False) as live:

        def update(new_rows: list["DomainRow"]) -> None:
            live.update(table(new_rows), refresh=True)

        yield update
