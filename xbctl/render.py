"""Rich rendering for people: the domain table and the --wait progress bar.

The only module that imports rich; it is imported only by the commands that need it.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .nodes import NODES, Balloon
from .units import format_mib

if TYPE_CHECKING:
    from .operations import DomainRow


def _console(stderr: bool = False) -> Console:
    # rich already honours NO_COLOR and only colours a terminal; say so explicitly anyway.
    return Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False)


def printable(text: str) -> str:
    """TEXT with control characters and blanks at either end made visible (names are untrusted)."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return repr(shown) if shown != shown.strip() or not shown else shown


def print_domain_table(rows: list["DomainRow"]) -> None:
    """Print every domain's balloon as a table, memory in MiB as xl list does."""
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
    _console().print(table)


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
        TextColumn(f"{domain_name}: current"),
        TextColumn("{task.fields[current]} KiB"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn(f"target {target_kib} KiB"),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=False,
    ) as progress:
        task = progress.add_task("balloon", total=1.0, current="?")

        def update(balloon: Balloon) -> None:
            if not start:
                start.append(balloon.current_kib)
            distance = abs(target_kib - start[0])
            done = 1.0 if distance == 0 else 1 - abs(target_kib - balloon.current_kib) / distance
            progress.update(task, completed=max(0.0, done), current=balloon.current_kib)

        yield update
