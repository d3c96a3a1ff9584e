"""What xbctl prints: one Output object, chosen once per run (text on a terminal, text in a
pipe, or JSON), handed to every command. The only module that imports rich (lazily: the
domain table and the --wait progress bar). Everything printed is escaped: names, values and
diagnostics come from guests and files.
"""

from __future__ import annotations

import sys

from .errors import ExitStatus, XbctlError, printable

PROGRESS_LINE_S = 1.0  # plain --wait progress: at most one line per second
# Said (stderr, or the table's caption) when the simulator answers without being named:
# a stable phrase, for people and for scripts that grep stderr.
SIMULATED_HOST = "simulated host (no Xen here)"


class Output:
    """The one place that decides how results look; commands hand it what they found."""

    def __init__(self, *, as_json=False, quiet=False, values_only=False, equals=False, verbose=False, human=False):
        self.as_json = as_json
        self.human = human  # -h: sizes as 768M, 1.5G (never with -n, -e or --json: those stay KiB)
        self.quiet = quiet  # -q: nothing but errors (as NetBSD's sysctl -q)
        self.values_only = values_only
        self.equals = equals
        self.simulated_host = False  # the simulator answers without being named: text output says so
        self._simulated_said = False
        self.verbose = verbose  # -v: -f and --system show the settings that already held their values

    # ------------------------------------------------------------ messages (stderr)

    def say(self, message: str, prefix: str = "xbctl") -> None:
        """MESSAGE on stderr as one line `xbctl: MESSAGE`, unless -q."""
        if not self.quiet:
            say(message, prefix)

    def note(self, message: str) -> None:
        self.say(f"note: {message}")

    def simulated_note(self) -> None:
        """Once, in text output (not --json, which names its transport; not -q): a simulated
        host answered, though the simulator was not named."""
        if self.simulated_host and not self.as_json and not self._simulated_said:
            self._simulated_said = True
            self.note(SIMULATED_HOST)

    def warnings(self, warnings) -> None:
        """Each of WARNINGS once."""
        for warning in dict.fromkeys(warnings):
            self.say(f"warning: {warning}")

    def error(self, error: XbctlError, *, document: bool = True) -> int:
        """ERROR on stderr (and, with --json, as a document on stdout); its exit status."""
        say(error.message)
        if error.hint:
            say(f"hint: {error.hint}")
        if self.as_json and document:
            from .json_output import dump, error_document

            try:
                sys.stdout.write(dump(error_document(error)))
                sys.stdout.flush()
            except (XbctlError, OSError):
                pass  # stdout is what failed; the message above went to stderr
        return int(error.status)

    # ------------------------------------------------------------ results (stdout)

    def read(self, transport, domain, balloon, nodes, *, header: bool = False) -> None:
        """NODES of DOMAIN's BALLOON: `name = value`, -n values, -e name=value, or JSON.

        HEADER: with -e, a `[DOMAIN]` section header first, so -f restores this domain only.
        """
        self.warnings(balloon.warnings)
        if self.as_json:
            from .json_output import dump, read_document

            sys.stdout.write(dump(read_document(transport, domain, balloon, nodes)))
            return
        lines = self._node_lines(domain, balloon, nodes, header=header, name_domain=False)
        sys.stdout.write("\n".join(lines) + "\n")
        if not self.values_only:
            self._sources_note(balloon, nodes)

    def _sources_note(self, balloon, nodes) -> None:
        """Inside a Linux guest, which figures its own driver gave (on stderr: the lines stay sysctl's)."""
        from_driver = [
            node.key
            for node in nodes
            if (node.key == "current" and balloon.current_source == "sysfs")
            or (node.key == "target" and balloon.target_source == "sysfs")
        ]
        if not from_driver:
            return
        from .transports.linux_sysfs import balloon_dir

        others = [node.key for node in nodes if node.key not in from_driver]
        rest = f"; {', '.join(others)} from Xenstore" if others else ""
        self.note(f"{' and '.join(from_driver)} from this guest's balloon driver ({balloon_dir()}){rest}")

    def read_many(self, transport, readings, nodes) -> None:
        """NODES of every domain in READINGS ((domain, balloon or error) pairs): each line names
        its domain (`web: name = value`), -e writes one `[DOMAIN]` section each, -n values only.

        A domain that cannot be read gets a warning on stderr and no lines.
        """
        for domain, balloon in readings:
            if isinstance(balloon, XbctlError):
                self.say(f"warning: domain {domain.name} (id {domain.id}) skipped: {balloon.message}")
            else:
                self.warnings(balloon.warnings)
        readable = [(domain, balloon) for domain, balloon in readings if not isinstance(balloon, XbctlError)]
        if self.as_json:
            from .json_output import dump, reads_document

            sys.stdout.write(dump(reads_document(transport, readable, nodes)))
            return
        lines = []
        for domain, balloon in readable:
            lines.extend(self._node_lines(domain, balloon, nodes, header=True, name_domain=True))
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")

    def _node_lines(self, domain, balloon, nodes, *, header: bool, name_domain: bool) -> list[str]:
        lines = []
        if self.equals and not self.values_only and header:
            from .assignments import section_header, section_spec

            lines.append(section_header(section_spec(domain.id, domain.name)))
        prefix = f"{domain.name}: " if name_domain and not self.equals and not self.values_only else ""
        for node in nodes:
            value = self.size_text(balloon.value_kib(node.key))
            if self.values_only:
                lines.append(f"{value}")
            elif self.equals:
                lines.append(f"{node.sysctl_name}={value}")
            else:
                lines.append(f"{prefix}{node.sysctl_name} = {value}")
        return lines

    def size_text(self, kib: int) -> str:
        """KIB as a read or change line shows it: KiB, or with -h in the largest exact unit (1.5G)."""
        if not self.human:
            return f"{kib}"
        from .units import human_size

        return human_size(kib)

    def changes(self, results, *, name_domains: bool = False, files=None, settings: bool = False) -> None:
        """What writes did, sysctl-style (`name: old -> new`; `web: name: old -> new` with
        NAME_DOMAINS), at once: a wait may follow. With FILES (`--system`), each file is
        announced (`* Applying FILE ...`) with the changes its lines made under it.

        SETTINGS (-f, --system: a file describes a state): a node that already held its value
        is shown only with -v; one line on stderr counts them (the JSON document has them all)."""
        self.simulated_note()
        skipped: dict[str, None] = {}  # a line of a glob section is skipped once per domain: said once
        for result in results:
            self.warnings(result.warnings)
            skipped.update((error.message, None) for _name, error in result.skipped)
        for message in skipped:
            self.say(f"ignored: {message}")
        if self.quiet:
            return
        held = sum(c.old_kib == c.new_kib for r in results for c in r.changes) if settings else 0
        if self.as_json:
            self._unchanged(held, results)
            return
        by_file: dict[str, list[str]] = {path: [] for path in files or ()}
        for result in results:
            domain = f"{result.domain.name}: " if name_domains or files is not None else ""
            for change in result.changes:
                if settings and change.old_kib == change.new_kib and not self.verbose:
                    continue
                prefix = "" if self.values_only else f"{domain}{change.name}: "
                path = (change.origin or "").rpartition(":")[0] if files is not None else ""
                unchanged = " (unchanged)" if change.old_kib == change.new_kib and not self.values_only else ""
                old, new = self.size_text(change.old_kib), self.size_text(change.new_kib)
                by_file.setdefault(path, []).append(f"{prefix}{old} -> {new}{unchanged}")
        lines = []
        for path, changed in by_file.items():
            if files is not None:
                lines.append(f"* Applying {path} ...")
            lines.extend(changed)
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
        self._unchanged(held, results)
        if any(result.dry_run for result in results):
            self.say("dry run: nothing was written")

    def _unchanged(self, held: int, results) -> None:
        """The one line counting HELD settings that already held their values (-f, --system)."""
        if not held:
            return
        count = f"{held} setting{'' if held == 1 else 's'} unchanged"
        if not self.verbose and not self.as_json:
            count += f" (-v lists {'it' if held == 1 else 'them'})"
        changed = any(c.old_kib != c.new_kib for r in results for c in r.changes)
        self.note(count if changed else f"nothing changed: {count}")

    def written(self, result) -> bool:
        """The JSON document of a write (text was shown by changes()); True when one was printed."""
        if self.as_json:
            from .json_output import dump

            sys.stdout.write(dump(result.to_dict()))
        return self.as_json

    def written_many(self, results) -> None:
        """The JSON document of a write to several domains (text was shown by changes())."""
        if self.as_json:
            from .json_output import dump

            sys.stdout.write(dump(results.to_dict()))

    def domains(self, transport, rows, host_free_kib, *, long: bool = False, capacity=None) -> None:
        """Every domain's balloon: a table for people on a terminal, fixed columns for scripts
        (in a pipe, or with -n: then without the header line), or a document with --json.
        LONG: every node in KiB, and the driver, in fixed columns wherever stdout goes.
        CAPACITY (the host's memory and the domains' sums) is in the document and under the
        table, never in the fixed columns: scripts parse those, and --json has it."""
        self.warnings([w for row in rows if row.balloon for w in row.balloon.warnings])
        if self.as_json:
            from .json_output import dump, list_document

            document = dump(list_document(transport, rows, host_free_kib, capacity))
            # json.dumps escapes every control and non-ASCII character: nothing left to escape
            # (a list of 1,000 domains is half a megabyte of it).
            stream = sys.stdout.unescaped() if hasattr(sys.stdout, "unescaped") else sys.stdout
            stream.write(document)
            return
        if long or self.values_only or not sys.stdout.isatty():
            self.simulated_note()  # on stderr: the lines scripts parse stay as they are
            lines = domain_lines(rows, long=long, header=not self.values_only, human=self.human)
            sys.stdout.write("".join(line + "\n" for line in lines))
            return
        from .output_rich import print_domain_table

        print_domain_table(
            rows, host_free_kib, host_note=SIMULATED_HOST if self.simulated_host else None, human=self.human
        )
        if capacity is not None:
            from .output_rich import print_capacity

            print_capacity(capacity, human=self.human)

    def metrics(self, exposition: str) -> None:
        """Prometheus metrics in the text exposition format (for node_exporter's textfile collector)."""
        sys.stdout.write(exposition)

    def log(self, entries) -> None:
        """The simulated drivers' diagnostics."""
        if self.as_json:
            from .json_output import dump, log_document

            sys.stdout.write(dump(log_document(entries)))
            return
        for entry in entries:
            sys.stdout.write(f"[{entry['t']:12.3f}] {printable(entry['domain'])}: {printable(entry['message'])}\n")

    def progress(self, domain_name: str, target_kib: int):
        """A context yielding the function --wait calls with each balloon reading: a bar on a
        terminal, a line a second otherwise, nothing with -q."""
        if self.quiet:
            return _Silent()
        if sys.stderr.isatty() and not self.as_json:
            from .output_rich import progress_bar

            return progress_bar(domain_name, target_kib)
        return _ProgressLines(domain_name, target_kib)


# ---------------------------------------------------------------- list for scripts

NAME_COLUMN = 40  # as wide as xl list's; a longer name widens its line, never wraps
ID_COLUMN = 5
MIB_COLUMN = 8
KIB_COLUMN = 12


def plain_field(text: str) -> str:
    """TEXT as one blank-free field: control characters and blanks escaped (\\x20), so a
    name from a guest can neither split a line nor shift the columns after it."""
    shown = printable(text).replace(" ", "\\x20")
    return shown or "''"


def domain_lines(rows, *, long: bool = False, header: bool = True, human: bool = False) -> list[str]:
    """The list as xl list lays it out: a header line, then one line per domain in fixed,
    right-aligned columns (MiB, or KiB when LONG, with the driver column), never wrapped.

    Every column but the last is one blank-free field; the last (balloon) is free text.
    HUMAN (-h): every size in the largest exact unit (768M, 1.5G), as the parser reads them back.
    """
    from .cells import UNLIMITED, balloon_state, hypervisor_max_text
    from .nodes import NODES
    from .units import whole_mib

    with_hypervisor = any(row.balloon and row.balloon.hypervisor_max_kib is not None for row in rows)
    keys = [node.key for node in NODES] + (["hv-max"] if with_hypervisor else [])
    width = KIB_COLUMN if long else MIB_COLUMN
    # Whole MiB, rounded down, as xl list prints Mem: a number a script can compare.
    shown = str if long else whole_mib
    if human:
        from .units import human_size

        shown = human_size
    # hv-max holds `unlimited` (9 characters) on most Domain-0s: its column fits it.
    widths = [width] * len(NODES) + ([max(width, len(UNLIMITED) + 1)] if with_hypervisor else [])
    lines = []
    if header:
        columns = [f"{'Name':<{NAME_COLUMN}}", f"{'ID':>{ID_COLUMN}}", *(f"{key:>{w}}" for key, w in zip(keys, widths))]
        lines.append(" ".join([*columns, *(["driver "] if long else []), "balloon"]))
    for row in rows:
        balloon = row.balloon
        if balloon is None:
            values = ["-"] * len(keys)
            driver, state = "-", f"unreadable: {row.problem or ''}"
        else:
            values = [shown(balloon.value_kib(node.key)) for node in NODES]
            if with_hypervisor:
                values.append(hypervisor_max_text(balloon, shown))
            driver = {True: "yes", False: "no", None: "unknown"}[balloon.has_driver]
            state = balloon_state(balloon)
        columns = [
            f"{plain_field(row.domain.name):<{NAME_COLUMN}}",
            f"{row.domain.id:>{ID_COLUMN}}",
            *(f"{value:>{w}}" for value, w in zip(values, widths)),
        ]
        if long:
            columns.append(f"{driver:<7}")
        columns.append(printable(state))
        lines.append(" ".join(columns))
    return lines


class _Silent:
    def __enter__(self):
        return lambda balloon: None

    def __exit__(self, *exc):
        return False


class _ProgressLines:
    """Plain progress lines: the first, one a second at most, and the last."""

    def __init__(self, domain_name: str, target_kib: int) -> None:
        self.domain_name = domain_name
        self.target_kib = target_kib
        self.shown_kib = None
        self.shown_at = 0.0

    def __enter__(self):
        return self.report

    def __exit__(self, *exc):
        return False

    def report(self, balloon) -> None:
        import time

        current_kib = balloon.current_kib
        if self.shown_kib == current_kib:
            return
        if (
            self.shown_kib is not None
            and current_kib != self.target_kib
            and time.monotonic() - self.shown_at < PROGRESS_LINE_S
        ):
            return
        self.shown_kib, self.shown_at = current_kib, time.monotonic()
        say(f"{self.domain_name}: current {current_kib} KiB, target {self.target_kib} KiB")
        sys.stderr.flush()


def say(message: str, prefix: str = "xbctl") -> None:
    """MESSAGE on stderr as one line `xbctl: MESSAGE`, every control character escaped
    (newlines too: a name or diagnostic from a guest cannot start a line of its own)."""
    sys.stderr.write(f"{prefix}: {printable(message)}\n")


# ---------------------------------------------------------------- the standard streams


class MessageStream:
    """Standard error for xbctl: control characters escaped, newlines and tabs kept."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text, keep_layout=True))
        return len(text)

    def unescaped(self):
        """The stream itself, for rich's progress bar (which escapes what it shows)."""
        return self._stream

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class DataStream:
    """Standard output for xbctl: control characters escaped (newlines and tabs kept), and a write
    that fails (full disk, closed descriptor) an XbctlError with a plain message, never a
    traceback; after a write to a balloon, its own exit status ("written, output lost")."""

    def __init__(self, stream, *, escape: bool = True) -> None:
        self._stream = stream
        self._escape = escape
        self.written = False  # a balloon write has happened: a failure now is not "not written"

    def _failed(self, exc: OSError) -> XbctlError:
        import errno

        if exc.errno == errno.EPIPE:
            raise BrokenPipeError(exc.errno, exc.strerror) from None  # the quiet path
        if self.written:
            return XbctlError(
                f"the write was made, but its output could not be written: {exc.strerror or exc}",
                status=ExitStatus.WRITTEN_OUTPUT_FAILED,
                errno_name=errno.errorcode.get(exc.errno or 0),
            )
        return XbctlError(
            f"cannot write to standard output: {exc.strerror or exc}",
            status=ExitStatus.REFUSED,
            errno_name=errno.errorcode.get(exc.errno or 0),
        )

    def write(self, text: str) -> int:
        if self._stream is None:  # started with >&-
            import errno

            raise self._failed(OSError(errno.EBADF, "it is closed"))
        try:
            self._stream.write(printable(text, keep_layout=True) if self._escape else text)
        except OSError as exc:
            raise self._failed(exc) from None
        return len(text)

    def unescaped(self) -> "DataStream":
        """This output without escaping, for rich's table (which escapes what it shows)."""
        raw = DataStream(self._stream, escape=False)
        raw.written = self.written
        return raw

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            raise self._failed(exc) from None

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def note_written() -> None:
    """Record that a balloon write happened, for the exit status if output fails later."""
    if isinstance(sys.stdout, DataStream):
        sys.stdout.written = True
