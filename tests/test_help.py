"""Every command's --help lists exactly the options the command table says it takes, each with
its help text, and tab completion offers the same options after the command."""

from __future__ import annotations

import re

import pytest

from xbctl.cli.table import ALL_COMMANDS, GLOBAL_OPTIONS, LOCAL_FLAGS, SYSCTL, TYPER_ONLY

HELP_OPTIONS = {"-h", "--help"}
# An option's entry in click's plain help: indented two blanks, its spellings (and metavar),
# then at least two blanks and its help, or its help alone on the next, deeper-indented line.
ENTRY = re.compile(r"^  (-\S.*?)(?: {2,}(\S.*))?$")


def words(command) -> list[str]:
    """What comes before --help to ask COMMAND's help (the sysctl form's is the program's)."""
    return [] if command is SYSCTL else command.name.split()


def takes(command) -> set[str]:
    """Every spelling of every option the table says COMMAND takes, help included."""
    spellings = {spelling for spelling, (canonical, _) in GLOBAL_OPTIONS.items() if canonical in command.accepts}
    spellings |= set(command.local_options)
    spellings |= {alias for alias, canonical in LOCAL_FLAGS.items() if canonical in command.local_options}
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
    assert "  -h, --help  Show this message and exit.\n" in own
    for line in ("  --wait ", "  --dry-run ", "  --json ", "  -d, --domain NAME|ID "):
        assert line in global_part, (line, text)
    assert "  -a, --all " not in text and "-f, --file" not in text  # mem-set does not take them


def test_v_is_for_settings_files_and_system_only(xbctl):
    before = xbctl.snapshot()
    for args in (["-v", "-a"], ["-v", "-d", "web", f"machdep.xen.balloon.target=600M"]):
        outcome = xbctl(*args)
        assert (outcome.status, outcome.stdout) == (2, ""), outcome
        assert outcome.stderr.startswith("xbctl: -v goes with -f and --system\n"), outcome
    outcome = xbctl("-d", "web", "target", "600M", "--verbose")
    assert (outcome.status, outcome.stdout) == (2, ""), outcome
    assert "--verbose" not in outcome.stderr and "-v does not go with the target command" in outcome.stderr
    assert xbctl.snapshot() == before
