"""Rich rendering for people (xbctl.output calls it): the domain table and the --wait progress bar.

With xbctl.output, the only module that imports rich; imported only when a table or bar is shown.
"""

from __future__ import annotations

import contextlib
import os
import sys
import textwrap
from typing import TYPE_CHECKING, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from .errors import printable as escaped
from .nodes import NODES, Balloon
from .units import format_mib, human_size

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


def print_domain_table(
    rows: list["DomainRow"], host_free_kib: int | None = None, host_note: str | None = None, human: bool = False
) -> None:
    """Print every domain's balloon as a table, memory in MiB as xl list does (HOST_NOTE
    heading the caption; HUMAN: sizes as -h shows them)."""
    console = _console()
    table = domain_table(rows, host_free_kib, width=console.width, host_note=host_note, human=human)
    console.print(table, overflow="ignore", crop=False)


# rich's HEAVY_HEAD box: a heavy frame around the header, light lines below.
_TOP, _HEAD, _RULE, _ROW, _BOTTOM = ("┏━┳┓", "┃┃┃", "┡━╇┩", "│││", "└─┴┘")
_STATE_STYLES = {"steady": "green", "moving": "yellow", "no driver": "dim", "unknown": "dim"}


def domain_table(
    rows: list["DomainRow"],
    host_free_kib: int | None = None,
    width: int = 80,
    host_note: str | None = None,
    human: bool = False,
    caption_note: str | None = None,
) -> Text:
    """Every domain's balloon as a table WIDTH columns wide at most, memory in MiB as xl list does.

    With the hypervisor, its maximum stands beside xen-max (static-max), marked `!` where
    the two disagree; the caption gives the host's free memory as `xl info` does, after
    HOST_NOTE (that the host is simulated) when there is one. Names
    are never cut; the balloon column wraps instead. Drawn line by line into one Text
    (rich's Table measures and renders every cell on its own: seconds for 1,000 domains).
    HUMAN (-h): sizes in the largest exact unit (768M, 1.5G); CAPTION_NOTE ends the caption (top's keys).
    """
    from .cells import balloon_state, hypervisor_max_text

    size_text, unit = (human_size, "") if human else (format_mib, " MiB")
    with_hypervisor = any(row.balloon and row.balloon.hypervisor_max_kib is not None for row in rows)
    caption = "sizes in K M G T (powers of 1024), exact" if human else "memory in MiB"
    caption += "; exact KiB with --json"
    if host_free_kib is not None:
        caption = f"host free memory {size_text(host_free_kib)}{unit}; " + caption
    if any(row.balloon and row.balloon.max_mismatch for row in rows):
        caption += "; ! the hypervisor's maximum disagrees with xen-max and target"
    if host_note:
        caption = f"{host_note}; {caption}"
    if caption_note:
        caption = f"{caption}; {caption_note}"
    headers = ["ID", "Name", *(node.key for node in NODES), *(["hv-max"] if with_hypervisor else []), "balloon"]
    cells: list[list[str]] = []
    states: list[tuple[str, str]] = []
    for row in rows:
        balloon = row.balloon
        if balloon is None:
            values = ["-"] * (len(NODES) + with_hypervisor)
            state, style = f"unreadable: {escaped(row.problem or '')}", "red"
        else:
            values = [size_text(balloon.value_kib(node.key)) for node in NODES]
            if with_hypervisor:
                values.append(hypervisor_max_text(balloon, size_text, " !"))
            state = escaped(balloon_state(balloon))
            style = "red" if balloon.diagnostic else _STATE_STYLES.get(state, "")
        cells.append([str(row.domain.id), printable(row.domain.name), *values])
        states.append((state, style))
    fixed = len(headers) - 1
    widths = [max([len(headers[i]), *(len(line[i]) for line in cells)]) for i in range(fixed)]
    # What is left of WIDTH for the balloon column (each column costs a blank either side and a rule).
    room = max(width - sum(widths) - 3 * len(headers) - 1, len("balloon"))
    state_width = min(room, max([len("balloon"), *(len(state) for state, _ in states)]))
    widths.append(state_width)

    text = Text()

    def rule(chars: str) -> None:
        left, line, cross, right = chars  # type: ignore[str-unpack]  # four box-drawing characters
        text.append(left + cross.join(line * (w + 2) for w in widths) + right + "\n")

    def cells_line(values: list[str], frame: str, style: str = "", last_style: str = "") -> None:
        left, middle, right = frame[0], frame[1], frame[2]
        text.append(left)
        for index, value in enumerate(values):
            right_aligned = index == 0 or 1 < index < fixed
            shown = value.rjust(widths[index]) if right_aligned else value.ljust(widths[index])
            text.append(" ")
            text.append(shown, style=last_style if index == fixed else style)
            text.append(" " + (middle if index < fixed else right))
        text.append("\n")

    rule(_TOP)
    cells_line(headers, _HEAD, style="bold", last_style="bold")
    rule(_RULE)
    for values, (state, style) in zip(cells, states):
        pieces = [state] if len(state) <= state_width else textwrap.wrap(state, state_width) or [""]
        cells_line([*values, pieces[0]], _ROW, last_style=style)
        for piece in pieces[1:]:  # the balloon column wraps; the others stay on the first line
            cells_line([""] * fixed + [piece], _ROW, last_style=style)
    rule(_BOTTOM)
    total = sum(widths) + 3 * len(widths) + 1
    text.append(caption.center(total).rstrip(), style="dim italic")
    return text


def print_capacity(capacity, human: bool = False) -> None:
    """The host's capacity (xbctl.capacity.HostCapacity) under the domain table, in MiB (HUMAN: as -h)."""
    _console().print(
        Text("".join(line + "\n" for line in capacity_lines(capacity, human)).rstrip("\n")),
        overflow="ignore",
        crop=False,
    )


def capacity_lines(capacity, human: bool = False) -> list[str]:
    """CAPACITY for people: the host's memory, then each sum and how far it overcommits the host;
    sizes in MiB, or as -h prints them when HUMAN."""

    def size(kib: int) -> str:
        return human_size(kib) if human else f"{format_mib(kib)} MiB"

    if capacity.total_kib is None:
        lines = ["host memory unknown: only the hypervisor reports it (Domain-0 with libxenctrl)"]
    else:
        lines = [f"host memory {size(capacity.total_kib)}, {size(capacity.free_kib)} free"]
    for what, sum_kib in (("targets", capacity.targets_kib), ("maxima (xen-max)", capacity.maxima_kib)):
        line = f"sum of {what} {size(sum_kib)}"
        over_kib = capacity.overcommit_kib(sum_kib)
        if over_kib is not None:
            share = f"{capacity.percent_of_total(sum_kib):g}% of the host"
            if over_kib > 0:
                line += f": {share}, overcommitted by {size(over_kib)}"
            else:
                line += f": {share}, {size(-over_kib)} to spare"
        lines.append(line)
    if capacity.left_out:
        lines.append(f"{capacity.left_out} unreadable domain{'s' if capacity.left_out > 1 else ''} not counted")
    return lines


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
