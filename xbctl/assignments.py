"""`name=value` assignments, from the command line or a settings file (`-f`)."""

from __future__ import annotations

from .errors import XbctlError, usage_error

BLANKS = " \t"  # the only blanks a settings file may put around names and values
SHOWN_CHARS = 80  # how much of a line a message quotes
MAX_LINE_CHARS = 1024  # a name=value line outside its comment; real ones are under 60


class Assignment:
    """NAME=VALUE; OPTIONAL for `name?=value`; ORIGIN is FILE:LINE for messages."""

    __slots__ = ("name", "value", "optional", "origin")

    def __init__(self, name: str, value: str, optional: bool = False, origin: str | None = None) -> None:
        self.name, self.value, self.optional, self.origin = name, value, optional, origin

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Assignment) and (self.name, self.value, self.optional, self.origin) == (
            other.name,
            other.value,
            other.optional,
            other.origin,
        )

    def __repr__(self) -> str:
        return f"Assignment({self.name!r}, {self.value!r}, optional={self.optional}, origin={self.origin!r})"


def _shown(text: str) -> str:
    """TEXT quoted for a message, cut short (a settings line may be a megabyte long)."""
    return repr(text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "...")


def parse_assignment(text: str, origin: str | None = None) -> Assignment:
    """TEXT (`name=value` or `name?=value`) as an assignment."""
    name, sep, value = text.partition("=")
    if not sep:
        raise usage_error(f"{_shown(text)} is not an assignment", hint="write name=value")
    if origin is not None:  # settings files may space out the '=' (and '?=')
        name, value = name.strip(BLANKS), value.strip(BLANKS)
    optional = name.endswith("?")
    name = name.removesuffix("?")
    if origin is not None:
        name = name.rstrip(BLANKS)
    if not name:
        raise usage_error(f"{_shown(text)}: missing name before '='")
    return Assignment(name, value, optional, origin)


# A settings file holds a handful of lines; anything this large is the wrong file
# (or /dev/zero), refused after reading at most this much plus one byte.
MAX_SETTINGS_BYTES = 1024 * 1024


def read_settings_file(path: str) -> list[Assignment]:
    """The assignments in settings file PATH: `#` comments and blank lines are skipped.

    Lines end at "\n" only (a "\r" before it, from a CRLF file, is dropped); only
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
    # split("\n"), not splitlines(): \v, \f, \x1c-\x1e, U+0085, U+2028 and U+2029
    # are not line ends here, so one physical line is always one numbered line.
    for number, line in enumerate(text.split("\n"), start=1):
        origin = f"{path}:{number}"
        content = line.removesuffix("\r").split("#", 1)[0].strip(BLANKS)
        if not content:
            continue
        if len(content) > MAX_LINE_CHARS:
            raise usage_error(
                f"{origin}: line too long ({len(content)} characters, at most {MAX_LINE_CHARS} "
                "outside a comment)"
            )
        odd = next((c for c in content if not (" " <= c <= "~" or c == "\t")), None)
        if odd is not None:
            raise usage_error(
                f"{origin}: unexpected character U+{ord(odd):04X} in {_shown(content)}",
                hint="names and values are plain ASCII; only spaces and tabs may surround them",
            )
        try:
            assignments.append(parse_assignment(content, origin))
        except XbctlError as exc:
            raise exc.with_prefix(origin) from None
    return assignments
