"""Every command's --help lists exactly the options the command table says it takes, each with
its help text, and tab completion offers the same options after the command."""

from __future__ import annotations

import re

import pytest

from xbctl.cli import table
from xbctl.cli.table import ALL_COMMANDS, GLOBAL_OPTIONS, SYSCTL, TYPER_ONLY

HELP_OPTIONS = set(table.HELP_SPELLINGS)  # -h is --human; help is --help alone
# An option's entry in click's plain help: indented two blanks, its spellings (and metavar),
# then at least two blanks and its help, or its help alone on the next, deeper-indented line.
ENTRY = re.compile(r"^  (-\S.*?)(?: {2,}(\S.*))?$")


def words(command) -> list[str]:
    """What comes before --help to ask COMMAND's help (the sysctl form's is the program's)."""
    return [] if command is SYSCTL else command.name.split()


def takes(command) -> set[str]:
    """Every spelling of every option the table says COMMAND takes, help included."""
    spellings = {spelling for spelling, (canonical, _) in GLOBAL_OPTIONS.items() if canonical in command.accepts}
    spellings |= {spelling for option in command.options for spelling in option.spellings}
    return spellings | HELP_OPTIONS


def listed_options(help_text: str) -> dict[str, str]:
    """Option spelling -> its help text, for every entry under an options heading of HELP_TEXT."""
    listed: dict[str, str] = {}
    lines = help_text.splitlines()
    in_options = False
    for index, line in enumerate(lines):
        if line and not line.startswith(" "):
            in_options = line.rstrip(":").split(" (")[0] in ("Options", "Global options")
            continue
        match = ENTRY.match(line) if in_options else None
        if match is None:
            continue
        spellings, text = match.groups()
        if text is None and index + 1 < len(lines) and lines[index + 1].startswith("      "):
            text = lines[index + 1].strip()  # a long first column puts the help on the next line
        for spelling in spellings.split(", "):
            listed[spelling.split()[0]] = text or ""
    return listed


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=[c.name for c in ALL_COMMANDS])
def test_help_lists_every_option_the_command_takes(xbctl, command):
    outcome = xbctl(*words(command), "--help")
    assert (outcome.status, outcome.stderr) == (0, ""), outcome
    listed = listed_options(outcome.stdout)
    # The program's own help also has what Typer alone handles (--version, completion).
    expected = takes(command) | (TYPER_ONLY if command is SYSCTL else set())
    assert set(listed) == expected, (
        f"missing: {sorted(expected - set(listed))}, not taken: {sorted(set(listed) - expected)}",
        outcome.stdout,
    )
    blank = sorted(spelling for spelling, text in listed.items() if not text)
    assert not blank, f"options without a help text: {blank}"


def test_mem_set_help_lists_its_global_options_after_its_own(xbctl):
    text = xbctl("mem-set", "--help").stdout
    own, _, global_part = text.partition("\nGlobal options (before or after the command):\n")
    assert "  --help  Show this message and exit.\n" in own
    for line in ("  -h, --human ", "  --wait ", "  --dry-run ", "  --json ", "  -d, --domain NAME|ID "):
        assert line in global_part, (line, text)
    assert "  -a, --all " not in text and "-f, --file" not in text  # mem-set does not take them


def test_v_is_for_settings_files_and_system_only(xbctl):
    before = xbctl.snapshot()
    for args in (["-v", "-a"], ["-v", "-d", "web", "machdep.xen.balloon.target=600M"]):
        outcome = xbctl(*args)
        assert (outcome.status, outcome.stdout) == (2, ""), outcome
        assert outcome.stderr.startswith("xbctl: -v goes with -f and --system\n"), outcome
    outcome = xbctl("-d", "web", "target", "600M", "--verbose")
    assert (outcome.status, outcome.stdout) == (2, ""), outcome
    assert "--verbose" not in outcome.stderr and "-v does not go with the target command" in outcome.stderr
    assert xbctl.snapshot() == before


# ---------------------------------------------------------------- every entry of the command spec reaches help


def entries(help_text: str, heading: str) -> dict[str, str]:
    """First column -> its whole help (wrapped lines joined) under HEADING of HELP_TEXT."""
    found: dict[str, str] = {}
    current = None
    inside = False
    for line in help_text.splitlines():
        if line and not line.startswith(" "):
            inside = line.rstrip(":").split(" (")[0] == heading
            current = None
            continue
        if not line.strip():
            inside = False  # a section's list has no blank line: what follows is another paragraph
            continue
        if not inside:
            continue
        if line.startswith("  ") and not line.startswith("   "):
            first, _, text = line.strip().partition("  ")
            current = first
            found[current] = text.strip()
        elif current is not None:
            found[current] = f"{found[current]} {line.strip()}".strip()
    return found


def flat(text: str) -> str:
    return " ".join(text.split())


def usage_line(command) -> str:
    """The usage line the spec implies: the command's words, [OPTIONS], then its arguments as written."""
    words = ["xbctl", *(["sysctl"] if command is SYSCTL else command.name.split()), "[OPTIONS]"]
    for argument in command.arguments:
        words.append(argument.usage or f"[{argument.attribute}]...")
    return "Usage: " + " ".join(words)


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=[c.name for c in ALL_COMMANDS])
def test_every_spec_entry_reaches_the_command_help(xbctl, command):
    """Each option of the spec (its own and the global ones it takes) with its help text, each
    argument with its help, the usage line and the command's help, as the spec words them."""
    ask = ["sysctl"] if command is SYSCTL else command.name.split()
    outcome = xbctl(*ask, "--help")
    assert (outcome.status, outcome.stderr) == (0, ""), outcome
    text = outcome.stdout
    assert text.splitlines()[0] == usage_line(command), text
    assert flat(command.help) in flat(text), (command.help, text)
    own = entries(text, "Options")
    for option in command.options:
        first = next(key for key in own if option.name in key.replace(",", " ").split())
        for spelling in option.spellings:
            assert spelling in first.replace(",", " ").split(), (spelling, first)
        if option.metavar:
            assert first.split()[-1] == option.metavar, (option.name, first)
        assert flat(own[first]).startswith(flat(option.help)), (option.name, own[first])
    global_part = entries(text, "Global options")
    for option in table.GLOBALS:
        if option.name not in command.accepts:
            continue
        first = next(key for key in global_part if option.name in key.replace(",", " ").split())
        assert flat(global_part[first]).startswith(flat(option.help)), (option.name, global_part[first])
    arguments = entries(text, "Arguments")
    for argument in command.arguments:
        key = argument.usage or f"{argument.attribute}..."
        assert key in arguments, (key, arguments)
        assert flat(arguments[key]).startswith(flat(argument.help or "")), (key, arguments[key])


def test_program_help_lists_every_command_with_its_summary(xbctl):
    text = xbctl("--help").stdout
    commands = entries(text, "Commands")
    expected = [name for name in table.COMMANDS] + list(table.GROUPS)
    assert list(commands) == expected
    for name, command in table.COMMANDS.items():
        summary = command.summary or command.help  # click shows its first sentence, cut to fit
        shown = commands[name].removesuffix("...")
        assert flat(summary).startswith(flat(shown)), (name, shown, summary)
    for name, (group_help, _) in table.GROUPS.items():
        assert flat(group_help).startswith(commands[name].removesuffix("...")), name
    assert flat(table.PROGRAM_EPILOG) in flat(text)
