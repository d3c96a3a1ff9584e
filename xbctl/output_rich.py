"""Rich rendering for people (xbctl.output calls it): the domain table and the --wait progress bar.

With xbctl.output, the only module that imports rich; imported only when a table or bar is shown.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .errors import printable as escaped
from .nodes import NODES, Balloon
from .units import format_mib

if TYPE_CHECKING:
    from .operations import DomainRow


def _console(stderr: bool = False) -> Console:
    # The CLI escapes what it prints; rich's own colour codes must pass, and every
    # untrusted string in what rich shows goes through printable() here instead.
    stream = sys.stderr if stderr else sys.stdout
    file = stream.unescaped() if hasattr(stream, "unescaped") else stream
    # rich already honours NO_COLOR and only colours a terminal; say so explicitly anyway.
    return Console(file=file, no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False)


def printable(text: str) -> str:
    """TEXT with control characters and blanks at either end made visible (names are untrusted)."""
    shown = escaped(text)
    return repr(shown) if shown != shown.strip() or not shown else shown


def print_domain_table(rows: list["DomainRow"], host_free_kib: int | None = None) -> None:
    """Print every domain's balloon as a table, memory in MiB as xl list does."""
    _console().print(domain_table(rows, host_free_kib))


def domain_table(rows: list["DomainRow"], host_free_kib: int | None = None) -> Table:
    """Every domain's balloon as a rich table, memory in MiB as xl list does.

    With the hypervisor, its maximum stands beside xen-max (static-max), marked `!` where
    the two disagree; the caption gives the host's free memory as `xl info` does.
    """
    with_hypervisor = any(row.balloon and row.balloon.hypervisor_max_kib is not None for row in rows)
    caption = "memory in MiB; exact KiB with --json"
    if host_free_kib is not None:
        caption = f"host free memory {format_mib(host_free_kib)} MiB; " + caption
    if any(row.balloon and row.balloon.max_mismatch for row in rows):
        caption += "; ! the hypervisor's maximum disagrees with xen-max and target"
    table = Table(title=None, caption=caption)
    table.add_column("ID", justify="right")
    # Names are identities: never cut short; the balloon column wraps instead.
    table.add_column("Name", min_width=max((len(printable(row.domain.name)) for row in rows), default=4))
    for node in NODES:
        table.add_column(node.key, justify="right")
        if node.key == "xen-max" and with_hypervisor:
            table.add_column("hv-max", justify="right")
    table.add_column("balloon")
    for row in rows:
        balloon = row.balloon
        if balloon is None:
            values = ["-"] * (len(NODES) + with_hypervisor)
            state = Text(f"unreadable: {printable(row.problem or '')}", style="red")
        else:
            values = [format_mib(balloon.value_kib(node.key)) for node in NODES]
            if with_hypervisor:
                hv_max = balloon.hypervisor_max_kib
                shown = "-" if hv_max is None else format_mib(hv_max) + (" !" if balloon.max_mismatch else "")
                values.append(shown)
            state = _state(balloon)
        table.add_row(str(row.domain.id), printable(row.domain.name), *values, state)
    return table


@contextlib.contextmanager
def live_table(rows: list["DomainRow"]) -> Iterator[Callable[[list["DomainRow"]], None]]:
    """The domain table redrawn in place on the terminal; yields the function that redraws it."""
    from rich.live import Live

    with Live(domain_table(rows), console=_console(), auto_refresh=False, screen=False) as live:

        def update(new_rows: list["DomainRow"]) -> None:
            live.update(domain_table(new_rows), refresh=True)

        yield update


def _state(balloon: Balloon) -> Text:
    from .output import balloon_state

    state = balloon_state(balloon)
    if balloon.has_driver is False or state == "unknown":
        return Text(state, style="dim")
    if balloon.diagnostic:
        return Text(f"driver: {printable(balloon.diagnostic)}", style="red")
    return Text(state, style="yellow" if state == "moving" else "green")


@contextlib.contextmanager
def progress_bar(domain_name: str, target_kib: int) -> Iterator[Callable[[Balloon], None]]:
    """A progress bar on stderr; yields the function that reports each new balloon reading."""
    start: list[int] = []
    with Progress(
        # The name is a field, not part of the format: braces or [markup] in it stay text.
        TextColumn("{task.fields[name]}: current", markup=False),
        TextColumn("{task.fields[current]} KiB"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn(f"target {target_kib} KiB"),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=False,
    ) as progress:
        task = progress.add_task("balloon", total=1.0, current="?", name=printable(domain_name))

        def update(balloon: Balloon) -> None:
            if not start:
                start.append(balloon.current_kib)
            distance = abs(target_kib - start[0])
            done = 1.0 if distance == 0 else 1 - abs(target_kib - balloon.current_kib) / distance
            progress.update(task, completed=max(0.0, done), current=balloon.current_kib)

        yield update
