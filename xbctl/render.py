"""Rich rendering for people: the domain table and the --wait progress bar.

The only module that imports rich; it is imported only by the commands that need it.
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


def print_domain_table(rows: list["DomainRow"]) -> None:
    """Print every domain's balloon as a table, memory in MiB as xl list does."""
    _console().print(domain_table(rows))


def domain_table(rows: list["DomainRow"]) -> Table:
    """Every domain's balloon as a rich table, memory in MiB as xl list does."""
    table = Table(title=None, caption="memory in MiB; exact KiB with --json")
    table.add_column("ID", justify="right")
    table.add_column("Name")
    for node in NODES:
        table.add_column(node.key, justify="right")
    table.add_column("balloon")
    for row in rows:
        balloon = row.balloon
        if balloon is None:
            values = ["-"] * len(NODES)
            state = Text(f"unreadable: {printable(row.problem or '')}", style="red")
        else:
            values = [format_mib(balloon.value_kib(node.key)) for node in NODES]
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
    if not balloon.has_driver:
        return Text("no driver", style="dim")
    if balloon.diagnostic:
        return Text(f"driver: {printable(balloon.diagnostic)}", style="red")
    if balloon.current_kib != balloon.target_kib:
        return Text("moving", style="yellow")
    return Text("steady", style="green")


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
