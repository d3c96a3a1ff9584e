"""`name=value` assignments, from the command line or a settings file (`-f`)."""

from __future__ import annotations

from .errors import XbctlError, usage_error

BLANKS = " \t"  # the only blanks a settings file may put around names and values
COMMENT_CHARS = "#;"  # sysctl.d(5)'s two comment characters; either starts a comment anywhere
ALL_DOMAINS = "*"  # the section for every domain: the glob that matches every name
GLOB_CHARS = "*?["  # a section holding one of these is a shell glob over domain names
SHOWN_CHARS = 80  # how much of a line a message quotes
MAX_LINE_CHARS = 1024  # a name=value line outside its comment; real ones are under 60


class Assignment:
    """NAME=VALUE; OPTIONAL for `name?=value`; ORIGIN is FILE:LINE for messages.

    DOMAIN is the domain (name or id, looked up like -d) of the `[DOMAIN]` section the
    line stands in, or None outside any section (then -d's domain, or our own);
    SECTION_ORIGIN is the FILE:LINE of that section's header.
    """

    __slots__ = ("name", "value", "optional", "origin", "domain", "section_origin")

    def __init__(
        self,
        name: str,
        value: str,
        optional: bool = False,
        origin: str | None = None,
        domain: str | None = None,
    ) -> None:
        self.name, self.value, self.optional, self.origin, self.domain = name, value, optional, origin, domain
        self.section_origin: str | None = None

    def _fields(self) -> tuple:
        return (self.name, self.value, self.optional, self.origin, self.domain)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Assignment) and self._fields() == other._fields()

    def __repr__(self) -> str:
        return (
            f"Assignment({self.name!r}, {self.value!r}, optional={self.optional}, "
            f"origin={self.origin!r}, domain={self.domain!r})"
        )


def _shown(text: str) -> str:
    """TEXT quoted for a message, cut short (a settings line may be a megabyte long)."""
    return repr(text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "...")


def parse_assignment(text: str, origin: str | None = None) -> Assignment:
    """TEXT (`name=value` or `name?=value`; in a file also sysctl.d's `-name=value`) as an assignment."""
    name, sep, value = text.partition("=")
    if not sep:
        raise usage_error(f"{_shown(text)} is not an assignment", hint="write name=value")
    if origin is not None:  # settings files may space out the '=' (and '?=')
        name, value = name.strip(BLANKS), value.strip(BLANKS)
    optional = name.endswith("?")
    name = name.removesuffix("?")
    if origin is not None:
        name = name.rstrip(BLANKS)
        if name.startswith("-"):  # sysctl.d(5): "-" before a name ignores this line's failure, as ?= does
            optional, name = True, name[1:].lstrip(BLANKS)
    if not name:
        raise usage_error(f"{_shown(text)}: missing name before '='")
    return Assignment(name, value, optional, origin)


# A settings file holds a handful of lines; anything this large is the wrong file
# (or /dev/zero), refused after reading at most this much plus one byte.
MAX_SETTINGS_BYTES = 1024 * 1024


def read_settings_file(path: str) -> list[Assignment]:
    """The assignments in settings file PATH: `#` and `;` comments and blank lines are skipped.

    A line `[DOMAIN]` starts a section: the assignments after it (to the next section)
    are DOMAIN's; those before any section have no domain. Lines end at "\n" only (a "\r" before it, from a CRLF file, is dropped); only
    spaces and tabs count as blanks; any other control or non-ASCII character
    outside a comment is an error citing FILE:LINE.
    """
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_SETTINGS_BYTES + 1)
    except OSError as exc:
        raise usage_error(f"{path}: {exc.strerror}") from None
    if len(raw) > MAX_SETTINGS_BYTES:
        raise usage_error(
            f"{path}: larger than {MAX_SETTINGS_BYTES} bytes; not a settings file",
            hint="a settings file holds name=value lines, one per node",
        )
    try:
        text = raw.decode("utf-8", errors="strict").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise usage_error(f"{path}: not a UTF-8 text file") from None
    assignments = []
    domain: str | None = None
    section_origin: str | None = None
    # split("\n"), not splitlines(): \v, \f, \x1c-\x1e, U+0085, U+2028 and U+2029
    # are not line ends here, so one physical line is always one numbered line.
    for number, line in enumerate(text.split("\n"), start=1):
        origin = f"{path}:{number}"
        content = _uncommented(line.removesuffix("\r")).strip(BLANKS)
        if not content:
            continue
        if len(content) > MAX_LINE_CHARS:
            raise usage_error(
                f"{origin}: line too long ({len(content)} characters, at most {MAX_LINE_CHARS} outside a comment)"
            )
        odd = next((c for c in content if not (" " <= c <= "~" or c == "\t")), None)
        if odd is not None:
            raise usage_error(
                f"{origin}: unexpected character U+{ord(odd):04X} in {_shown(content)}",
                hint="names and values are plain ASCII; only spaces and tabs may surround them",
            )
        if content.startswith("["):
            domain, section_origin = _section_domain(content, origin), origin
            continue
        try:
            assignment = parse_assignment(content, origin)
        except XbctlError as exc:
            raise exc.at(origin) from None
        assignment.domain, assignment.section_origin = domain, section_origin
        assignments.append(assignment)
    return assignments


def _uncommented(line: str) -> str:
    """LINE up to its first comment character."""
    cut = min((index for index in map(line.find, COMMENT_CHARS) if index >= 0), default=len(line))
    return line[:cut]


def is_glob_section(spec: str | None) -> bool:
    """True when section SPEC is a shell glob over domain names ([*], [web-*])."""
    return spec is not None and any(c in spec for c in GLOB_CHARS)


def section_rank(spec: str | None) -> int:
    """How a section's lines rank: [*] first, then globs, then a domain's name or id (and the
    lines before any section); a later rank overrides an earlier one."""
    if spec == ALL_DOMAINS:
        return 0
    return 1 if is_glob_section(spec) else 2


def in_precedence_order(assignments: list[Assignment]) -> list[Assignment]:
    """ASSIGNMENTS in the order they apply: [*] lines, then glob sections', then the lines of
    sections naming a domain, each kind in file order (so the most specific wins)."""
    return sorted(assignments, key=lambda assignment: section_rank(assignment.domain))


def glob_matches(spec: str, name: str) -> bool:
    """True when glob section SPEC matches domain NAME (fnmatch's shell rules, case counts)."""
    from fnmatch import fnmatchcase

    return fnmatchcase(name, spec)


def origin_file(origin: str | None) -> str:
    """The FILE of a FILE:LINE origin ("" for none)."""
    return (origin or "").rpartition(":")[0]


def cited_file(error: "XbctlError", files: list[str]) -> str | None:
    """The file among FILES of the settings line ERROR is about, or None."""
    path = origin_file(error.origin)
    return path if path in files else None


def _section_domain(content: str, origin: str) -> str:
    """The domain a `[DOMAIN]` section header at ORIGIN names."""
    if not content.endswith("]"):
        raise usage_error(
            f"{origin}: {_shown(content)} is neither a section nor an assignment",
            hint="a section is [DOMAIN] alone on its line",
        )
    domain = content[1:-1].strip(BLANKS)
    if not domain:
        raise usage_error(f"{origin}: empty section name", hint="write [DOMAIN] with a domain name or id")
    return domain


def section_header(domain_name: str) -> str:
    """The line that starts DOMAIN_NAME's section in a settings file (as -e writes it)."""
    return f"[{domain_name}]"


def section_spec(domain_id: int, domain_name: str) -> str:
    """What a `[DOMAIN]` header calls a domain so that -f finds it again: its name (names
    outlive ids, which change when a guest restarts) when the name reads back as itself,
    else its id (a name that is all digits, or that holds a comment or glob character, blanks
    at either end, or characters a settings file refuses)."""
    name = domain_name
    plain = all(" " <= c <= "~" for c in name) and not any(c in name for c in COMMENT_CHARS + GLOB_CHARS)
    if not name or not plain or name != name.strip(BLANKS) or (name.isascii() and name.isdigit()):
        return str(domain_id)
    return name
