"""Tab completion, driven through the shipped scripts inside real bash, zsh and fish."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_help import takes, words

from xbctl.cli import table
from xbctl.cli.table import ALL_COMMANDS, SYSCTL, TYPER_ONLY
from xbctl.completion import SCRIPT_FILES, SHELLS, completion_script

ROOT = Path(__file__).resolve().parent.parent
COMPLETIONS = ROOT / "completions"
SIM_DOMAINS = ["Domain-0", "web", "db", "mail", "0", "1", "2", "3"]
# Generous: a completion takes ~0.2 s (0.5 s when the transport hangs); this only catches hangs.
HANG_DEADLINE_S = 20


def need(program: str) -> None:
    if shutil.which(program) is None:
        pytest.fail(f"{program} is not installed (tests/run installs it)")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment with a private simulator and a private home."""
    home = tmp_path / "home"
    home.mkdir()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("XBCTL_", "XENSTORED_", "_XBCTL"))}
    full.update(
        HOME=str(home),
        XBCTL_SIM_STATE=str(tmp_path / "state" / "sim.json"),
        XBCTL_TRANSPORT="sim",
        NO_COLOR="1",
    )
    full.pop("XDG_DATA_HOME", None)
    full.pop("XDG_CONFIG_HOME", None)
    return full


def bash_words(line: str) -> list[str]:
    """COMP_WORDS as bash builds it: split at blanks, and '=' is a word of its own."""
    words = re.findall(r"[^\s=]+|=", line)
    if not line or line[-1].isspace():
        words.append("")
    return words


def bash_complete(line: str, env: dict[str, str]) -> tuple[list[str], subprocess.CompletedProcess]:
    """COMPREPLY after calling the function the shipped script registers for xbctl, as bash does."""
    need("bash")
    words = bash_words(line)
    script = "\n".join(
        [
            f"source {COMPLETIONS / SCRIPT_FILES['bash']}",
            "spec=$(complete -p xbctl) || exit 9",
            "func=${spec#*-F }; func=${func%% *}",
            f"COMP_LINE={_sh(line)}; COMP_POINT=${{#COMP_LINE}}",
            "COMP_WORDS=(" + " ".join(_sh(w) for w in words) + ")",
            f"COMP_CWORD={len(words) - 1}",
            'COMPREPLY=(); "$func" xbctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"',
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_DEADLINE_S,
    )
    assert done.returncode == 0, done
    return [line for line in done.stdout.splitlines() if line], done


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def fish_complete(line: str, env: dict[str, str]) -> tuple[list[str], subprocess.CompletedProcess]:
    """The values fish offers for LINE with the shipped script sourced (descriptions dropped)."""
    need("fish")
    script = f"source {COMPLETIONS / SCRIPT_FILES['fish']}; complete -C {_sh(line)}"
    done = subprocess.run(
        ["fish", "--no-config", "-c", script], env=env, capture_output=True, text=True, timeout=HANG_DEADLINE_S
    )
    assert done.returncode == 0, done
    return [entry.split("\t")[0] for entry in done.stdout.splitlines()], done


# compadd is wrapped to report the matches the completion system adds (after matching).
# (No comments inside: an interactive zsh -f does not take them.)
ZSH_SETUP = r"""
PS1='' RPS1='' PROMPT_EOL_MARK=''
fpath=(%(fpath)s $fpath)
autoload -Uz compinit && compinit -u -D
compadd() {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi
  local -a __matches
  builtin compadd -O __matches "$@"
  local __match; for __match in $__matches; do printf '<%%s>%%s\n' MATCH "$__match"; done
  builtin compadd "$@"
}
__xbctl_test_done() { printf '<%%s>\n' DONE }
comppostfuncs=(__xbctl_test_done)
printf '<%%s>\n' READY
"""


def _read_until(fd: int, marker: bytes) -> str:
    buffer = b""
    end = time.monotonic() + HANG_DEADLINE_S
    while marker not in buffer:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"zsh did not print {marker!r}: {buffer!r}")
        readable, _, _ = select.select([fd], [], [], left)
        if readable:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"zsh went away: {buffer!r}")
            buffer += chunk
    return buffer.decode(errors="replace")


def zsh_complete(line: str, env: dict[str, str]) -> tuple[list[str], str]:
    """The matches zsh's completion system adds when TAB is pressed after LINE.

    An interactive zsh on a pty, compinit loading the shipped _xbctl from $fpath (as installed);
    compadd is wrapped only to report what it adds.
    """
    need("zsh")
    master, slave = pty.openpty()
    shell = subprocess.Popen(
        ["zsh", "-f", "-i"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": "xterm"},
        start_new_session=True,
    )
    os.close(slave)
    try:
        os.write(master, (ZSH_SETUP % {"fpath": COMPLETIONS}).encode())
        _read_until(master, b"<READY>")
        os.write(master, line.encode() + b"\t")
        screen = _read_until(master, b"<DONE>")
    finally:
        shell.kill()
        shell.wait()
        os.close(master)
    return re.findall(r"<MATCH>([^\r\n]*)", screen), screen


SHELL_COMPLETERS = {"bash": bash_complete, "zsh": zsh_complete, "fish": fish_complete}


# ---------------------------------------------------------------- the scripts are generated from the app


@pytest.mark.parametrize("shell", SHELLS)
def test_checked_in_scripts_are_what_the_app_generates(shell, env):
    shipped = (COMPLETIONS / SCRIPT_FILES[shell]).read_text()
    assert shipped == completion_script(shell), (
        f"regenerate: xbctl --show-completion {shell} > completions/{SCRIPT_FILES[shell]}"
    )
    shown = subprocess.run(["xbctl", "--show-completion", shell], env=env, capture_output=True, text=True, timeout=60)
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, shipped, "")


def test_show_completion_refuses_an_unknown_shell(env):
    shown = subprocess.run(["xbctl", "--show-completion", "tcsh"], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 2 and shown.stdout == ""
    assert "xbctl: no completion for shell 'tcsh'" in shown.stderr


@pytest.mark.parametrize(
    ("shell", "installed", "rc_file"),
    [
        ("bash", ".local/share/bash-completion/completions/xbctl", None),
        ("zsh", ".zfunc/_xbctl", ".zshrc"),
        ("fish", ".config/fish/completions/xbctl.fish", None),
    ],
)
def test_install_completion_for_the_calling_shell(shell, installed, rc_file, env):
    need(shell)
    home = Path(env["HOME"])
    # '; true' keeps the shell alive as xbctl's parent (no exec of the last command).
    flags = {"bash": ["--norc", "--noprofile"], "zsh": ["-f"], "fish": ["--no-config"]}[shell]
    done = subprocess.run(
        [shell, *flags, "-c", "xbctl --install-completion; true"],
        env={**env, "SHELL": "/bin/false"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == "", done
    assert f"{shell} completion installed in {home / installed}" in done.stdout
    assert (home / installed).read_text() == completion_script(shell)
    if rc_file:
        assert "fpath+=~/.zfunc" in (home / rc_file).read_text()


# ---------------------------------------------------------------- what the shells offer


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("line", ["xbctl mem-set ", "xbctl mem-max ", "xbctl -d ", "xbctl list ", "xbctl list web "])
def test_domains_are_offered(shell, line, env):
    offered, _ = SHELL_COMPLETERS[shell](line, env)
    assert sorted(offered) == sorted(SIM_DOMAINS)


@pytest.mark.parametrize("shell", SHELLS)
def test_sysctl_name_completes_to_the_target_node(shell, env):
    offered, _ = SHELL_COMPLETERS[shell]("xbctl machdep.xen.balloon.t", env)
    assert sorted(offered) == ["machdep.xen.balloon.target", "machdep.xen.balloon.target="]


@pytest.mark.parametrize("shell", SHELLS)
def test_first_word_offers_commands_and_names(shell, env):
    offered, _ = SHELL_COMPLETERS[shell]("xbctl m", env)
    assert {"mem-set", "mem-max", "min", "max", "machdep.xen.balloon.current"} <= set(offered)
    # name= only for writable nodes
    assert "machdep.xen.balloon.xen-max=" in offered and "machdep.xen.balloon.max=" not in offered
    assert "machdep.xen.balloon.current=" not in offered


@pytest.mark.parametrize("shell", SHELLS)
def test_domains_follow_the_transport_named_on_the_line(shell, env, tmp_path):
    from conftest import Xbctl

    guest = Xbctl(tmp_path / "guest" / "sim.json")
    assert guest("sim", "reset", "--position", "web").status == 0
    offered, _ = SHELL_COMPLETERS[shell](f"xbctl --sim-state {guest.state_path} mem-set ", env)
    assert sorted(offered) == ["1", "web"]  # a guest sees only itself


def test_domains_follow_the_environment(env, tmp_path):
    from conftest import Xbctl

    guest = Xbctl(tmp_path / "guest" / "sim.json")
    assert guest("sim", "reset", "--position", "db").status == 0
    offered, _ = bash_complete("xbctl -d ", {**env, "XBCTL_SIM_STATE": str(guest.state_path)})
    assert sorted(offered) == ["2", "db"]


def test_bash_completes_values_after_equals_and_option_equals(env):
    # bash splits 'name=512' into three words; only the part after '=' is replaced.
    offered, _ = bash_complete("xbctl machdep.xen.balloon.target=512", env)
    assert offered == ["512", "512K", "512M", "512G", "512T"]
    offered, _ = bash_complete("xbctl --domain=w", env)
    assert offered == ["web"]
    # right after '=', readline completes the empty text after it: values without '='
    offered, _ = bash_complete("xbctl --transport=", env)
    assert sorted(offered) == ["sim", "xenstore"]
    offered, _ = bash_complete("xbctl --domain=", env)
    assert sorted(offered) == ["0", "1", "2", "3", "Domain-0", "db", "mail", "web"]


@pytest.mark.parametrize("shell", SHELLS)
def test_unit_suffixes_for_sizes(shell, env):
    offered, _ = SHELL_COMPLETERS[shell]("xbctl mem-set web 512", env)
    assert sorted(offered) == ["512", "512G", "512K", "512M", "512T"]
    offered, _ = SHELL_COMPLETERS[shell]("xbctl target +1.5G", env)
    assert offered == ["+1.5G"]
    offered, _ = SHELL_COMPLETERS[shell]("xbctl min -4", env)
    assert offered == []  # relative changes are for target only


@pytest.mark.parametrize("shell", SHELLS)
def test_options_and_choices(shell, env):
    offered, _ = SHELL_COMPLETERS[shell]("xbctl --tr", env)
    assert offered == ["--transport"]
    offered, _ = SHELL_COMPLETERS[shell]("xbctl --transport ", env)
    assert sorted(offered) == ["sim", "xenstore"]
    offered, _ = SHELL_COMPLETERS[shell]("xbctl mem-set web 512 --wa", env)
    assert offered == ["--wait"]  # global options may follow the command


@pytest.mark.parametrize("shell", SHELLS)
def test_policy_options_and_domains(shell, env):
    offered, _ = SHELL_COMPLETERS[shell]("xbctl policy --", env)
    assert {"--follow", "--reapply", "--dry-run"} <= set(offered), offered
    offered, _ = SHELL_COMPLETERS[shell]("xbctl policy --re", env)
    assert offered == ["--reapply"]
    offered, _ = SHELL_COMPLETERS[shell]("xbctl policy --dr", env)
    assert offered == ["--dry-run"]  # a global option, after the command
    offered, _ = SHELL_COMPLETERS[shell]("xbctl policy --reapply ", env)
    assert sorted(offered) == sorted(SIM_DOMAINS)


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=[c.name for c in ALL_COMMANDS])
def test_after_each_command_the_options_it_takes_are_offered(command, env):
    """The same options as the command's --help lists (tests/test_help.py), from the table."""
    offered, done = bash_complete(" ".join(["xbctl", *words(command), "-"]), env)
    expected = takes(command) | (TYPER_ONLY if command is SYSCTL else set())
    assert set(offered) == expected, (sorted(expected - set(offered)), sorted(set(offered) - expected))
    assert len(offered) == len(set(offered)), offered  # each once


def test_bash_settings_file_completes_file_names(env, tmp_path):
    (tmp_path / "balloon.conf").write_text("target=1G\n")
    offered, _ = bash_complete(f"xbctl -f {tmp_path}/ball", env)
    assert offered == [f"{tmp_path}/balloon.conf"]


# ---------------------------------------------------------------- unreachable transports: quick and silent


def _unreachable_envs(env: dict[str, str], tmp_path: Path):
    corrupt = tmp_path / "corrupt" / "sim.json"
    corrupt.parent.mkdir()
    corrupt.write_text('{"schema": 1, "tor')
    yield (
        "missing xenstored socket",
        {**env, "XBCTL_TRANSPORT": "xenstore", "XENSTORED_PATH": str(tmp_path / "no" / "socket")},
    )
    yield "corrupt simulator state", {**env, "XBCTL_SIM_STATE": str(corrupt)}


@pytest.mark.parametrize("shell", SHELLS)
def test_unreachable_transport_completes_nothing_quickly_and_silently(shell, env, tmp_path):
    for what, broken in _unreachable_envs(env, tmp_path):
        started = time.monotonic()
        offered, done = SHELL_COMPLETERS[shell]("xbctl mem-set ", broken)
        elapsed_s = time.monotonic() - started
        assert offered == [], what
        if shell == "zsh":
            assert "xbctl:" not in done and "Traceback" not in done, (what, done)
        else:
            assert done.stderr == "", (what, done)
        # Measured ~0.2 s (bash, fish) and ~0.4 s (zsh, including starting an interactive zsh).
        assert elapsed_s < 5, (what, elapsed_s)
    corrupt = tmp_path / "corrupt" / "sim.json"
    assert corrupt.read_text() == '{"schema": 1, "tor'  # left for the next real command to report


def test_hung_xenstored_is_cut_off_by_the_deadline(env, tmp_path):
    import socket

    path = tmp_path / "hung.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(8)  # accepts connections into the backlog and never answers
    try:
        started = time.monotonic()
        offered, done = bash_complete("xbctl -d ", {**env, "XBCTL_TRANSPORT": "xenstore", "XENSTORED_PATH": str(path)})
        elapsed_s = time.monotonic() - started
    finally:
        listener.close()
    assert offered == [] and done.stderr == ""
    assert elapsed_s < 3, elapsed_s  # the lookup deadline is 0.4 s; measured ~0.5 s in all


def test_completion_of_a_reachable_simulator_is_fast(env):
    started = time.monotonic()
    offered, _ = bash_complete("xbctl mem-set ", env)
    elapsed_s = time.monotonic() - started
    assert offered
    assert elapsed_s < 5, elapsed_s  # a hang guard only; measured ~0.2 s


def test_completion_chooses_the_transport_as_the_commands_do(env, tmp_path):
    """A Xenstore named in the environment (even a wrong one) means Xenstore, for both."""
    from conftest import Xbctl

    Xbctl(Path(env["XBCTL_SIM_STATE"]))("sim", "reset")  # a simulator that would answer
    chosen = {k: v for k, v in env.items() if k != "XBCTL_TRANSPORT"}
    chosen["XENSTORED_RUNDIR"] = str(tmp_path / "nonexistent")
    offered, _ = bash_complete("xbctl -d ", chosen)
    assert offered == []
    command = subprocess.run(["xbctl", "-d", "web", "target"], env=chosen, capture_output=True, text=True)
    assert command.returncode == 3, command


# ---------------------------------------------------------------- every value in the command spec, by its kind


def _value_lines():
    """(id, the line before the value, the spec entry) for every option value and argument in the spec."""
    for option in table.GLOBALS:
        if option.takes_value:
            yield f"xbctl {option.name}", "xbctl " + option.name + " ", option
    for command in ALL_COMMANDS:
        words = ["xbctl", *(["sysctl"] if command is SYSCTL else command.name.split())]
        for option in command.options:
            if option.takes_value:
                yield f"{' '.join(words)} {option.name}", " ".join([*words, option.name]) + " ", option
        before: list[str] = []
        for argument in command.arguments:
            sample = {table.DOMAIN: "web", table.NAME: "machdep.xen.balloon.current"}.get(argument.kind, "1")
            if command is SYSCTL:  # the first name is the program's first word: its second is the argument's
                before = [sample]
            yield (
                f"{' '.join(words)} {argument.metavar or argument.attribute}",
                " ".join([*words, *before]) + " ",
                argument,
            )
            before.append(sample)


def _expected(entry, tmp_path: Path) -> tuple[str, list[str]]:
    """What to type for ENTRY's value, and what completion must then offer, by the spec's kind."""
    kind = entry.kind
    if kind == table.DOMAIN:
        return "", sorted(SIM_DOMAINS)
    if kind in (table.SIZE, table.SIZE_MIB):
        if getattr(entry, "signed", False):
            return "+1.5G", ["+1.5G"]
        return "512", ["512", "512G", "512K", "512M", "512T"]
    if kind == table.NAME:
        return "machdep.xen.balloon.t", ["machdep.xen.balloon.target", "machdep.xen.balloon.target="]
    if kind == table.FILE:
        (tmp_path / "balloon.conf").write_text("target=1G\n")
        return f"{tmp_path}/ball", [f"{tmp_path}/balloon.conf"]
    if kind == table.CHOICE:
        return "", sorted(entry.choices)
    if kind == table.SHELL:
        return "", sorted(SHELLS)
    assert kind in (table.SECONDS, table.NUMBER, table.ADDRESS), kind
    return "", []  # nothing to offer (and not the shell's file names)


VALUE_LINES = list(_value_lines())


@pytest.mark.parametrize(
    "line, entry", [(line, entry) for _, line, entry in VALUE_LINES], ids=[name for name, _, _ in VALUE_LINES]
)
def test_every_value_in_the_spec_completes_by_its_kind(line, entry, env, tmp_path):
    """Each option value and argument of the command spec completes as its kind says (bash)."""
    typed, expected = _expected(entry, tmp_path)
    offered, done = bash_complete(line + typed, env)
    assert sorted(offered) == expected, (line + typed, entry.kind, offered)
    assert done.stderr == ""


def test_value_kinds_cover_the_spec():
    """The spec uses every kind it declares, and no other (a new kind needs its answer in _expected)."""
    used = {entry.kind for _, _, entry in VALUE_LINES}
    assert used == table.KINDS, (sorted(used - table.KINDS), sorted(table.KINDS - used))


@pytest.mark.parametrize("shell", SHELLS)
def test_top_sort_offers_the_columns_and_its_own_options_win(shell, env):
    offered, _ = SHELL_COMPLETERS[shell]("xbctl top --sort ", env)
    assert sorted(offered) == sorted(table.TOP_COLUMNS)
    offered, _ = SHELL_COMPLETERS[shell]("xbctl top --sort x", env)
    assert offered == ["xen-max"]
    # After top, -d is its delay (seconds: nothing to offer), not the global -d's domains.
    offered, _ = SHELL_COMPLETERS[shell]("xbctl top -d ", env)
    assert not set(offered) & set(SIM_DOMAINS), offered
    offered, _ = SHELL_COMPLETERS[shell]("xbctl top --filter ", env)
    assert set(SIM_DOMAINS) <= set(offered), offered
