"""The man page: it renders, lints clean, and documents exactly what the program has."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.main import get_command

from xbctl.cli import app, table
from xbctl.errors import ExitStatus
from xbctl.nodes import NODES

ROOT = Path(__file__).resolve().parent.parent
MAN_PAGE = ROOT / "man" / "xbctl.8"
SOURCE = MAN_PAGE.read_text()


def need(program: str) -> None:
    if shutil.which(program) is None:
        pytest.fail(f"{program} is not installed (tests/run installs it)")


def commands(group, path=()):
    """(path, command) for every visible command, depth first."""
    for name in group.list_commands(None):
        command = group.get_command(None, name)
        if command is None or command.hidden:
            continue
        yield (*path, name), command
        if hasattr(command, "list_commands"):
            yield from commands(command, (*path, name))


def option_strings() -> set[str]:
    """Every option string of the program and its commands."""
    root = get_command(app)
    found = set(table.HELP_SPELLINGS)  # every command's help option (the root's context settings)
    for command in [root, *(command for _, command in commands(root))]:
        for param in command.params:
            if getattr(param, "param_type_name", "") == "option" and not param.hidden:
                found.update(param.opts)
                found.update(param.secondary_opts)
    return found


def documented_flags() -> set[str]:
    """Option strings the page marks up with Fl (Fl \\-json is --json)."""
    flags = set()
    for line in SOURCE.splitlines():
        if not line.startswith("."):
            continue
        words = line.replace("\\-", "-").split()
        for index, word in enumerate(words[:-1]):
            if word == "Fl":
                flags.add("-" + words[index + 1].rstrip(",;."))
    return flags


def section(title: str) -> str:
    """The source of section TITLE (.Sh TITLE) up to the next .Sh."""
    match = re.search(rf"^\.Sh {re.escape(title)}\n(.*?)(?=^\.Sh |\Z)", SOURCE, re.S | re.M)
    assert match, f"no section {title}"
    return match.group(1)


def test_every_option_is_documented():
    missing = sorted(option_strings() - documented_flags())
    assert not missing, f"options missing from man/xbctl.8: {missing}"


def test_no_documented_option_is_gone():
    stale = sorted(documented_flags() - option_strings())
    assert not stale, f"man/xbctl.8 documents options the program does not have: {stale}"


def spec_spellings() -> set[str]:
    """Every spelling of every option in the command spec, global or a command's own, help included."""
    options = [*table.GLOBALS, *(option for command in table.ALL_COMMANDS for option in command.options)]
    return {spelling for option in options for spelling in option.spellings} | set(table.HELP_SPELLINGS)


def test_every_option_in_the_spec_is_documented():
    missing = sorted(spec_spellings() - documented_flags())
    assert not missing, f"options of the command spec missing from man/xbctl.8: {missing}"
    stale = sorted(documented_flags() - spec_spellings())
    assert not stale, f"man/xbctl.8 documents options the command spec does not have: {stale}"


# ---------------------------------------------------------------- the SYNOPSIS against the command spec

MACROS = {"Op", "Oo", "Oc", "Fl", "Ar", "Cm", "Ns", "Nm", "EOL"}  # EOL: where a macro line ends


def synopsis_forms() -> list[list[str]]:
    """The SYNOPSIS's forms, one per .Nm: the words of their macro lines (\\- read as -), each
    line ended by EOL (an option's value is on its line: `.Op Fl q` then `.Cm policy` is a flag)."""
    forms: list[list[str]] = []
    for line in section("SYNOPSIS").splitlines():
        words = line.replace("\\-", "-").lstrip(".").split()
        if words == ["Nm"]:
            forms.append([])
        else:
            forms[-1].extend([*words, "EOL"])
    return forms


class Form:
    """One SYNOPSIS form, read: its command words, the options before and after them, its arguments."""

    def __init__(self, words: list[str]) -> None:
        self.commands: list[str] = []  # the alternatives of its Cm (current | target ...), or none
        self.before: list[str] = []  # options before the command (global options)
        self.options: dict[str, str | None] = {}  # options after the command -> their value as written
        self.arguments: list[tuple[str, bool, bool]] = []  # (name, optional, many)
        self.any_options = False  # [options]: the global options it takes
        index = 0
        while index < len(words):
            word = words[index]
            index += 1
            if word == "Cm" and not self.commands and not self.options:
                alternatives = " ".join(self._take(words, index)).split(" | ")
                index += len(self._take(words, index))
                self.commands = alternatives
            elif word == "Fl":
                spelling = "-" + words[index]
                index += 1
                value = self._take(words, index, values=True)
                index += len(value)
                written = "".join(w for w in value if w not in MACROS) or None
                if self.commands:
                    self.options[spelling] = written
                else:
                    self.before.append(spelling)
            elif word == "Ar":
                names = self._take(words, index)
                index += len(names)
                if names == ["options"]:
                    self.any_options = True
                    continue
                optional = index - len(names) >= 2 and words[index - len(names) - 2] == "Op"
                for name in names:
                    if name == "...":
                        self.arguments[-1] = (self.arguments[-1][0], self.arguments[-1][1], True)
                    else:
                        self.arguments.append((name, optional, False))

    @staticmethod
    def _take(words: list[str], index: int, values: bool = False) -> list[str]:
        """The words from INDEX up to the next macro; with VALUES, an option's value: an Ar or Cm
        and its words, joined by Ns to the next (host : Ns Ar port)."""
        taken: list[str] = []
        for word in words[index:]:
            if values and not taken:
                if word not in ("Ar", "Cm"):
                    break  # a flag: no value
            elif word in MACROS and not (values and (word == "Ns" or taken[-1] == "Ns")):
                break
            taken.append(word)
        return taken


def test_synopsis_forms_are_read():
    """The reader below sees what the page says (a check of the check)."""
    forms = [Form(words) for words in synopsis_forms()]
    listing = next(form for form in forms if form.commands == ["list"])
    assert listing.options == {"-l": None, "--format": "prometheus", "--output": "file"}
    assert listing.arguments == [("domain", True, True)] and listing.any_options
    exporter = next(form for form in forms if form.commands == ["exporter"])
    assert exporter.options == {
        "--listen": "host:port",
        "--max-requests": "n",
        "--max-connections": "n",
        "--client-timeout": "seconds",
    }
    agent = next(form for form in forms if form.commands == ["agent"])
    assert agent.before == ["-d"] and not agent.any_options


def test_synopsis_matches_the_command_spec():
    forms = [Form(words) for words in synopsis_forms()]
    for command in table.ALL_COMMANDS:
        if command is table.SYSCTL:
            continue
        own = [form for form in forms if command.name in form.commands]
        assert own, f"{command.name!r} has no form in the SYNOPSIS"
        shown_options: set[str] = set()
        shown_arguments: set[str] = set()
        for form in own:
            for spelling in form.before:
                assert table.GLOBAL_OPTIONS[spelling][0] in command.accepts, (command.name, spelling)
            for spelling, written in form.options.items():
                option = next((o for o in command.options if spelling in o.spellings), None)
                assert option is not None, f"SYNOPSIS: {command.name} has no option {spelling}"
                if option.kind == table.CHOICE:
                    expected = "|".join(option.choices)
                else:
                    expected = option.metavar.lower() if option.takes_value else None
                assert written == expected, (command.name, spelling, written, expected)
                shown_options.add(option.name)
            arguments = [(a.metavar.lower(), not a.required, a.many) for a in command.arguments]
            for argument in form.arguments:
                assert argument in arguments, (command.name, argument, arguments)
                shown_arguments.add(argument[0])
            required = [name for name, optional, _ in arguments if not optional]
            assert [name for name, _, _ in form.arguments if name in required] == required, (
                command.name,
                form.arguments,
            )
        assert shown_options == {option.name for option in command.options}, (command.name, shown_options)
        assert shown_arguments == {a.metavar.lower() for a in command.arguments}, (command.name, shown_arguments)
    named = {name for form in forms for name in form.commands}
    assert named == {command.name for command in table.ALL_COMMANDS} - {table.SYSCTL.name}, named
    # The sysctl form's lines show the global options it takes; the last, Typer's own.
    for form in forms:
        if not form.commands and form.before and not set(form.before) <= table.TYPER_ONLY:
            assert {table.GLOBAL_OPTIONS[s][0] for s in form.before} <= table.SYSCTL.accepts, form.before
    assert set(forms[-1].before) == table.TYPER_ONLY - set(table.HELP_SPELLINGS)


def documented_commands() -> set[str]:
    """Command words the page marks up with Cm (.Cm sim reset | advance | log gives four)."""
    words = set()
    for line in SOURCE.splitlines():
        tokens = line.split()
        for index, token in enumerate(tokens):
            if token in (".Cm", "Cm"):
                for word in tokens[index + 1 :]:
                    if re.fullmatch(r"[A-Z][a-z]|Cm|Ar|Op", word):
                        break
                    if word != "|":
                        words.add(word.rstrip(",;."))
    return words


def test_every_command_is_documented():
    documented = documented_commands()
    for path, _command in commands(get_command(app)):
        assert set(path) <= documented, f"command {' '.join(path)!r} missing from man/xbctl.8"


def test_node_list_matches_the_node_table():
    listed = re.findall(r"^\.It Va (machdep\.xen\.balloon\.\S+)\n(.*?)(?=^\.It |^\.El)", SOURCE, re.S | re.M)
    assert [name for name, _ in listed] == [node.sysctl_name for node in NODES]
    for (name, text), node in zip(listed, NODES):
        assert text.startswith(node.access + ".\n"), (name, node.access, text[:60])


def test_exit_statuses_match_the_program():
    statuses = re.findall(r"^\.It (\d+)$", section("EXIT STATUS"), re.M)
    assert statuses == [str(int(status)) for status in ExitStatus]


def test_environment_lists_every_variable_the_program_reads():
    read = set()
    for source in (ROOT / "xbctl").glob("*.py"):
        read.update(
            re.findall(r"(?<![A-Z_])(XBCTL_[A-Z_]+|XENSTORED_[A-Z]+|NO_COLOR|XDG_STATE_HOME)", source.read_text())
        )
    documented = set(re.findall(r"^\.It Ev (\S+)", section("ENVIRONMENT"), re.M))
    assert read <= documented, sorted(read - documented)


def test_see_also():
    see_also = section("SEE ALSO")
    for page in ("xl 1", "sysctl 8", "balloon 4", "xenstore 1"):
        assert f".Xr {page}" in see_also, page


@pytest.mark.parametrize("page", ["xbctl.8", "xbctl.conf.5"])
def test_mandoc_lint_is_clean_above_style(page):
    need("mandoc")
    done = subprocess.run(
        ["mandoc", "-Tlint", "-Wwarning", str(ROOT / "man" / page)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_man_renders_the_page():
    text = rendered()
    assert text.startswith("XBCTL(8)")
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "ENVIRONMENT", "FILES", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert f"\n{heading}\n" in text, heading
    assert "xbctl mem-set web 512 --wait" in text


def rendered() -> str:
    """The page as man(1) shows it at 80 columns, without overstrike."""
    need("man")
    done = subprocess.run(
        ["man", "-l", str(MAN_PAGE)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"},
    )
    assert done.returncode == 0, done
    return re.sub(r".\x08", "", done.stdout)  # overstrike bold and underline


def rendered_examples() -> list[str]:
    """The example command lines as rendered, "$ " and indent removed."""
    text = rendered()
    examples = text[text.index("\nEXAMPLES\n") : text.index("\nSEE ALSO\n")]
    return [line.strip()[2:] for line in examples.splitlines() if line.strip().startswith("$ ")]


def test_json_section_quotes_each_field_on_its_own():
    flat = " ".join(rendered().split())
    assert "“domain” (“id”, “name”)" in flat
    assert "“source” (“hypervisor”, “guest”, “target”, “driver”, “sysfs”)" in flat


def test_jq_example_renders_as_a_command_that_works_when_pasted():
    lines = [line for line in rendered_examples() if "jq" in line]
    assert lines == ["""xbctl --json list | jq -r '.domains[] | "\\(.name) \\(.nodes.target.value_kib)"'"""]


def test_exit_status_1_lists_the_xenstore_refusals():
    from xbctl.transports.xenstore.transport import REFUSING_ERRORS

    text = rendered()
    status_1 = " ".join(text[text.index("\nEXIT STATUS\n") :].split("\n     2 ")[0].split())
    for name in REFUSING_ERRORS:
        assert name in status_1, (name, status_1)


def test_save_and_restore_example_works_on_the_simulator(tmp_path):
    save, restore = [line for line in rendered_examples() if "web.conf" in line]
    env = {
        **os.environ,
        "XBCTL_TRANSPORT": "sim",
        "XBCTL_SIM_STATE": str(tmp_path / "sim.json"),
        "NO_COLOR": "1",
    }
    xbctl = shutil.which("xbctl")
    assert xbctl, "xbctl is not installed"

    def sh(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    assert sh("xbctl sim reset").returncode == 0
    assert sh("xbctl -d web -q min 64M").returncode == 0
    saved = sh(save)
    assert (saved.returncode, saved.stderr) == (0, ""), saved
    assert sh("xbctl -d web -q target 600M && xbctl -d web -q min 100M").returncode == 0
    restored = sh(restore)
    assert (restored.returncode, restored.stderr) == (0, ""), restored
    after = sh("xbctl -d web -n machdep.xen.balloon.target machdep.xen.balloon.min")
    assert after.stdout == "786432\n65536\n", after


# ---------------------------------------------------------------- xbctl.conf(5)

CONF_PAGE = ROOT / "man" / "xbctl.conf.5"
CONF_SOURCE = CONF_PAGE.read_text()


def test_conf_page_names_the_directories_and_order_the_program_reads():
    from xbctl.conf import DROP_IN_DIRS, MAIN_FILE

    files = re.findall(r"^\.It Pa (\S+)$", CONF_SOURCE[CONF_SOURCE.index(".Sh FILES") :], re.M)
    assert "/" + MAIN_FILE in files
    for directory in DROP_IN_DIRS:
        assert f"/{directory}/*.conf" in files
    order = CONF_SOURCE[CONF_SOURCE.index(".Ss Files and their order") : CONF_SOURCE.index(".Ss The policy service")]
    # /usr/lib's before /etc's (a later directory's file replaces an earlier one's), the main file last
    assert order.index(f"/{DROP_IN_DIRS[0]}") < order.index(f"/{DROP_IN_DIRS[1]}") < order.index("/" + MAIN_FILE)


def test_conf_page_environment_is_what_the_configuration_code_reads():
    read = set()
    for name in ("conf.py", "configured.py", "policy_service.py"):
        read.update(re.findall(r"(?<![A-Z_])(XBCTL_[A-Z_]+)", (ROOT / "xbctl" / name).read_text()))
    read.discard("XBCTL_SIM_STATE")  # the simulator's, documented in xbctl(8)
    documented = set(re.findall(r"^\.It Ev (\S+)", CONF_SOURCE, re.M))
    assert read <= documented, sorted(read - documented)


def test_conf_page_documents_every_policy_option():
    from xbctl.cli.table import COMMANDS

    policy = COMMANDS["policy"]
    text = CONF_SOURCE.replace("\\-", "-")
    for option in policy.local_options:
        assert option in text, option
    assert "--dry-run" in text


def test_conf_page_example_applies(tmp_path):
    """The EXAMPLES file, as written, is a configuration --system applies."""
    example = CONF_SOURCE[CONF_SOURCE.index(".Sh EXAMPLES") :]
    start = ".Bd -literal -offset indent\n"
    body = example[example.index(start) + len(start) : example.index(".Ed")]
    lines = body.splitlines()
    assert lines[0].startswith("# /etc/xbctl.d/")
    path = tmp_path / lines[0][2:].lstrip("/")
    path.parent.mkdir(parents=True)
    path.write_text(body)
    env = {
        **os.environ,
        "XBCTL_CONF_ROOT": str(tmp_path),
        "XBCTL_TRANSPORT": "sim",
        "XBCTL_SIM_STATE": str(tmp_path / "sim.json"),
    }
    done = subprocess.run([shutil.which("xbctl"), "--system"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "web: machdep.xen.balloon.min: 131072 -> 262144" in done.stdout
    assert "db: machdep.xen.balloon.target: 1572864 -> 1048576" in done.stdout
