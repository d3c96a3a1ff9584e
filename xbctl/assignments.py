"""`name=value` assignments, from the command line or a settings file (`-f`)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import XbctlError, usage_error


@dataclass(frozen=True)
class Assignment:
    """NAME=VALUE; OPTIONAL for `name?=value`; ORIGIN is FILE:LINE for messages."""

    name: str
    value: str
    optional: bool = False
    origin: str | None = None


def parse_assignment(text: str, origin: str | None = None) -> Assignment:
    """TEXT (`name=value` or `name?=value`) as an assignment."""
    name, sep, value = text.partition("=")
    if not sep:
        raise usage_error(f"{text!r} is not an assignment", hint="write name=value")
    optional = name.endswith("?")
    name = name.removesuffix("?")
    if origin is not None:  # settings files may space out the '='
        name, value = name.strip(), value.strip()
    if not name:
        raise usage_error(f"{text!r}: missing name before '='")
    return Assignment(name, value, optional, origin)


def read_settings_file(path: str) -> list[Assignment]:
    """The assignments in settings file PATH: `#` comments and blank lines are skipped."""
    try:
        with open(path, encoding="utf-8", errors="strict") as file:
            lines = file.read().splitlines()
    except UnicodeDecodeError:
        raise usage_error(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise usage_error(f"{path}: {exc.strerror}") from None
    assignments = []
    for number, line in enumerate(lines, start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        origin = f"{path}:{number}"
        try:
            assignments.append(parse_assignment(content, origin))
        except XbctlError as exc:
            raise exc.with_prefix(origin) from None
    return assignments
