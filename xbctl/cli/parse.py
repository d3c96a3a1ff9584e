"""The lean command-line parser: argv -> Invocation, without Typer.

It understands everything a valid command line holds (options anywhere, clusters such as
-ne, --opt=value, -dweb, `--`, relative sizes such as -256M). Whatever else it meets
(help, version, completion, an unknown option, a missing argument, a bad choice) it hands
to Typer (HandToTyper), whose messages are the ones users know.
"""

from __future__ import annotations

import os

from .table import (
    COMMANDS,
    FLAG,
    GLOBAL_OPTIONS,
    GLOBALS,
    LOCAL_FLAGS,
    SIM_COMMANDS,
    SYSCTL,
    TYPER_ONLY,
    command_of,
    own_spellings,
)

# Global options with choices (--transport): a value not among them (given, or from the environment)
# is Typer's to refuse, naming the choices.
_CHOOSING = tuple(option for option in GLOBALS if option.choices and not option.typer_only)


class HandToTyper(Exception):
    """This command line needs Typer: for help, completion, or a usage error's exact words."""


class Invocation:
    """A parsed command line: the command, the global options given, its arguments."""

    __slots__ = ("command", "given", "values", "args", "local")

    def __init__(self, command, given, values, args, local):
        self.command = command  # a table.Command
        self.given = given  # canonical global options, in the order given
        self.values = values  # canonical option -> value (True for a flag); -f -> list of files
        self.args = args  # positional arguments
        self.local = local  # the command's own options: spelling -> value


def looks_negative(token: str) -> bool:
    """`-4`, `-256M`, `-0x10`: a relative size, never an option."""
    return len(token) > 1 and token[0] == "-" and (token[1].isdigit() or token[1] == ".")


def could_be_sysctl(word: str) -> bool:
    """WORD is a sysctl name, a subtree or an assignment (a dotless word is a typo'd command)."""
    return "." in word or "=" in word or word == "machdep"


def parse(argv: list[str]) -> Invocation:
    """ARGV as an Invocation; HandToTyper when only Typer can answer."""
    if os.environ.get("_XBCTL_COMPLETE"):
        raise HandToTyper()
    given: list[str] = []
    values: dict = {}
    positional: list[str] = []
    local_tokens: list[str] = []  # options not global: the command's own, checked below
    own: dict = {}  # once the command is known: its own options' spellings, which win over global ones
    index = 0
    while index < len(argv):
        token = argv[index]
        index += 1
        if token == "--":
            positional.extend(argv[index:])
            break
        if not token.startswith("-") or token == "-" or looks_negative(token):
            positional.append(token)
            own = own_spellings(command_of(positional))
            continue
        if token.startswith("--"):
            name, has_value, inline = token.partition("=")
            if name in TYPER_ONLY:
                raise HandToTyper()
            if name in LOCAL_FLAGS:
                if has_value:
                    raise HandToTyper()  # "option does not take a value"
                local_tokens.append(LOCAL_FLAGS[name])
                continue
            if name not in GLOBAL_OPTIONS:
                local_tokens.append(token)
                if name not in LOCAL_FLAGS and not has_value and index < len(argv) and not argv[index].startswith("--"):
                    local_tokens.append(argv[index])  # its value (a local option takes one)
                    index += 1
                continue
            canonical, takes_value = GLOBAL_OPTIONS[name]
            if takes_value:
                if not has_value:
                    if index >= len(argv):
                        raise HandToTyper()  # "option requires an argument"
                    inline = argv[index]
                    index += 1
                _set(given, values, canonical, inline)
            elif has_value:
                raise HandToTyper()  # "option does not take a value"
            else:
                _set(given, values, canonical, True)
            continue
        # Short options: -n, a cluster -ne, or one with its value attached (-dweb, -f FILE).
        position = 1
        while position < len(token):
            spelling = "-" + token[position]
            if spelling in own:  # the command's own short option (top -n 2 -d 0.5)
                canonical, takes_value = own[spelling]
                position += 1
                if not takes_value:
                    local_tokens.append(canonical)
                    continue
                value = token[position:]
                if not value:
                    if index >= len(argv):
                        raise HandToTyper()  # "option requires an argument"
                    value = argv[index]
                    index += 1
                local_tokens.append(f"{canonical}={value}")
                break
            if spelling in LOCAL_FLAGS:  # a command's own flag, such as list's -l
                local_tokens.append(LOCAL_FLAGS[spelling])
                position += 1
                continue
            if spelling in TYPER_ONLY or spelling not in GLOBAL_OPTIONS:
                raise HandToTyper()
            canonical, takes_value = GLOBAL_OPTIONS[spelling]
            position += 1
            if takes_value:
                value = token[position:]
                if not value:
                    if index >= len(argv):
                        raise HandToTyper()
                    value = argv[index]
                    index += 1
                _set(given, values, canonical, value)
                break
            _set(given, values, canonical, True)
    return _invocation(given, values, positional, local_tokens)


def _set(given: list[str], values: dict, canonical: str, value) -> None:
    if canonical == "-f":  # files apply in order, as one change
        values.setdefault("-f", []).append(value)
    elif canonical in values and value is not True and values[canonical] != value:
        from ..errors import usage_error

        raise usage_error(f"{canonical} given twice ({values[canonical]!r} and {value!r})", hint="give it once")
    else:
        values[canonical] = value
    if canonical not in given:
        given.append(canonical)


def _invocation(given: list[str], values: dict, positional: list[str], local_tokens: list[str]) -> Invocation:
    """Find the command in POSITIONAL and check its arguments and own options."""
    for option in _CHOOSING:
        value = values.get(option.name, (os.environ.get(option.envvar) or None) if option.envvar else None)
        if value is not None and value not in option.choices:
            raise HandToTyper()  # Typer names the choices
    if not positional or positional[0] not in COMMANDS and positional[0] != "sim":
        if positional and not could_be_sysctl(positional[0]):
            raise HandToTyper()  # no such command (Typer's group says so, with suggestions)
        command, args = SYSCTL, positional
    elif positional[0] == "sim":
        if len(positional) < 2 or positional[1] not in SIM_COMMANDS:
            raise HandToTyper()
        command, args = SIM_COMMANDS[positional[1]], positional[2:]
    else:
        command, args = COMMANDS[positional[0]], positional[1:]
    if len(args) < command.min_args or (command.max_args is not None and len(args) > command.max_args):
        raise HandToTyper()  # missing or extra argument
    if command is SYSCTL and any(looks_negative(arg) for arg in args):
        raise HandToTyper()  # -4 in the sysctl form: no such option
    local: dict = {}
    index = 0
    while index < len(local_tokens):
        token = local_tokens[index]
        index += 1
        name, has_value, value = token.partition("=")
        if name not in command.local_options:
            raise HandToTyper()  # no such option
        choices = command.local_options[name]
        if choices == FLAG:
            if has_value:
                raise HandToTyper()  # "option does not take a value"
            local[name] = True
            continue
        if not has_value:
            if index >= len(local_tokens):
                raise HandToTyper()
            value = local_tokens[index]
            index += 1
        if choices is not None and value not in choices:
            raise HandToTyper()
        local[name] = value
    return Invocation(command, given, values, args, local)


def hoist(args: list[str], arity: dict[str, bool]) -> list[str]:
    """For Typer: move the global options (ARITY: spelling -> takes a value) found after the command
    in front of it (not the command's own: top's -n and -d), and put `--` before a relative size
    such as -256M."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if token == "--":
            rest.extend(args[index - 1 :])
            break
        if looks_negative(token):
            rest.append(token)
            continue
        name = token.split("=", 1)[0] if token.startswith("--") else token[:2]
        own = own_spellings(command_of([word for word in rest if not word.startswith("-")]))
        if token.startswith("-") and name in own:
            rest.append(token)
            inline_value = ("=" in token) if token.startswith("--") else len(token) > 2
            if own[name][1] and not inline_value and index < len(args):
                rest.append(args[index])
                index += 1
            continue
        if token.startswith("-") and name in arity:
            front.append(token)
            inline_value = ("=" in token) if token.startswith("--") else len(token) > 2
            if arity[name] and not inline_value and index < len(args):
                front.append(args[index])
                index += 1
            continue
        if (
            token.startswith("-")
            and not token.startswith("--")
            and len(token) > 2
            and all(f"-{flag}" in arity and not arity[f"-{flag}"] for flag in token[1:])
        ):
            front.append(token)  # a cluster of flags such as -ne
            continue
        rest.append(token)
    # A relative size such as -256M must reach the command as a value, not an option.
    for position, token in enumerate(rest):
        if token == "--":
            break
        if looks_negative(token) and position > 0:
            rest.insert(position, "--")
            break
    return front + rest
