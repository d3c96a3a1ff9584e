"""Every shell command in the README runs in a test: the tour here, line for line; the
install command in tests/test_package.py (with Debian 12's own Python); the test command
is what .ci/run runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
MAX_LINES = 200


def code_lines() -> list[str]:
    """The README's indented code lines (four blanks), without the indent."""
    return [line[4:] for line in README.splitlines() if line.startswith("    ") and line.strip()]


def tour() -> list[tuple[str, list[str]]]:
    """The tour: each `$ command` with the lines it prints."""
    steps: list[tuple[str, list[str]]] = []
    for line in code_lines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return steps


def test_the_readme_is_short():
    assert len(README.splitlines()) <= MAX_LINES


def test_every_command_is_one_this_file_accounts_for():
    commands = [
        line for line in code_lines() if not line.startswith("$ ") and not any(line in printed for _, printed in tour())
    ]
    assert commands == [
        # tests/test_package.py::test_readme_first_command_works_with_debians_python runs it as written
        "python3 -m venv ~/.venvs/xbctl && ~/.venvs/xbctl/bin/pip install . && ~/.venvs/xbctl/bin/xbctl -a",
        # test_the_path_line_puts_the_venv_first below
        'export PATH="$HOME/.venvs/xbctl/bin:$PATH" && echo \'export PATH="$HOME/.venvs/xbctl/bin:$PATH"\' >> ~/.profile',
        # .ci/run runs it (test_ci_runs_the_readmes_test_command)
        "bash tests/run",
    ]


def test_ci_runs_the_readmes_test_command():
    assert (ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1] == "bash tests/run"


def test_the_path_line_puts_the_venv_first(tmp_path):
    line = next(line for line in code_lines() if line.startswith("export PATH="))
    home = tmp_path / "home"
    (home / ".venvs/xbctl/bin").mkdir(parents=True)
    os.symlink(shutil.which("xbctl"), home / ".venvs/xbctl/bin/xbctl")
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "XBCTL_TRANSPORT": "sim",
        "XBCTL_SIM_STATE": str(tmp_path / "sim.json"),
    }
    now = subprocess.run(["bash", "-c", f"{line} && command -v xbctl"], env=env, capture_output=True, text=True)
    assert (now.returncode, now.stdout) == (0, f"{home}/.venvs/xbctl/bin/xbctl\n"), now
    later = subprocess.run(["bash", "-c", ". ~/.profile && xbctl -n target"], env=env, capture_output=True, text=True)
    assert (later.returncode, later.stdout) == (0, "4194304\n"), later


def test_the_tour_prints_what_the_readme_shows(tmp_path):
    steps = tour()
    assert len(steps) <= 11
    env = {**os.environ, "XBCTL_TRANSPORT": "sim", "XBCTL_SIM_STATE": str(tmp_path / "sim.json")}
    env.pop("XENSTORED_PATH", None)
    for command, printed in steps:
        done = subprocess.run(
            ["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert (done.stdout + done.stderr).splitlines() == printed, (command, done)
