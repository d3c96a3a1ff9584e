"""The Debian package: built with dpkg-buildpackage (debhelper, dh-python/pybuild) from a copy of
the tree, checked with lintian, unpacked into a throwaway root (dpkg -x), and run from there:
xbctl -a, man -l on its page, a bash completion, and systemd-analyze verify on its unit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Debian's own tools with Debian's own Python (the one the package's /usr/bin/xbctl names),
# never a virtualenv's or pyenv's python3 that happens to come first on PATH.
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BUILD_TOOLS = ("dpkg-buildpackage", "dh", "dh_python3", "lintian", "systemd-analyze", "man")
UNIT = "lib/systemd/system/xbctl-policy.service"


def debian_env(**extra: str) -> dict[str, str]:
    return {"HOME": os.environ.get("HOME", "/root"), "PATH": DEBIAN_PATH, "LANG": "C.UTF-8", **extra}


def run(argv: list[str], *, env: dict, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def copy_tree(destination: Path) -> Path:
    """The project's files (tracked, or new and not ignored) copied to DESTINATION."""
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                env={**os.environ}, cwd=ROOT).stdout.split("\0")
    for name in files:
        if not name or name.startswith(".venv/") or not (ROOT / name).is_file():
            continue
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination / name)
    return destination


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The directory holding the .deb, built from a copy of the tree (the tree stays as it is)."""
    missing = [tool for tool in BUILD_TOOLS if shutil.which(tool, path=DEBIAN_PATH) is None]
    assert not missing, f"{missing} not installed: tests/run installs the package build tools"
    out = tmp_path_factory.mktemp("deb")
    source = copy_tree(out / "xbctl")
    done = run(["dpkg-buildpackage", "-us", "-uc", "-b"], env=debian_env(), cwd=source, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def deb(built) -> Path:
    found = sorted(built.glob("xbctl_*_all.deb"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def installed(deb, tmp_path_factory) -> Path:
    """The package unpacked into a throwaway root."""
    root = tmp_path_factory.mktemp("root")
    done = run(["dpkg", "-x", str(deb), str(root)], env=debian_env())
    assert done.returncode == 0, done
    return root


def test_package_puts_each_file_where_its_tool_looks(deb):
    listing = run(["dpkg-deb", "-c", str(deb)], env=debian_env()).stdout
    for path in (
        "./usr/bin/xbctl",
        "./usr/lib/python3/dist-packages/xbctl/cli/main.py",
        "./usr/lib/python3/dist-packages/xbctl/schema.json",
        "./usr/share/man/man8/xbctl.8.gz",
        "./usr/share/bash-completion/completions/xbctl",
        "./usr/share/zsh/vendor-completions/_xbctl",
        "./usr/share/fish/vendor_completions.d/xbctl.fish",
        "./etc/xbctl.conf",
        f"./{UNIT}",
    ):
        assert f" {path}\n" in listing, (path, listing)
    assert "tests/" not in listing and ".pyc" not in listing
    control = run(["dpkg-deb", "-f", str(deb), "Depends"], env=debian_env()).stdout
    assert "python3-rich" in control and "python3-typer (>= 0.26)" in control, control
    conffiles = run(["dpkg-deb", "-I", str(deb), "conffiles"], env=debian_env()).stdout
    assert conffiles.split() == ["/etc/xbctl.conf"], conffiles


def test_lintian_is_clean(built):
    changes = sorted(built.glob("xbctl_*.changes"))
    assert len(changes) == 1, changes
    # Warnings and errors fail; every override is explained in debian/xbctl.lintian-overrides.
    done = run(["lintian", "--fail-on", "error,warning", "--display-info", str(changes[0])], env=debian_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [line for line in done.stdout.splitlines() if line.startswith(("E:", "W:"))], done.stdout


def test_installed_xbctl_runs_on_debians_python(installed, tmp_path):
    # /usr/bin/xbctl as installed: its #! names Debian's /usr/bin/python3; the lean command
    # line needs neither Typer nor rich.
    script = installed / "usr/bin/xbctl"
    assert script.read_text().startswith("#!/usr/bin/python3\n")
    env = debian_env(PYTHONPATH=str(installed / "usr/lib/python3/dist-packages"),
                     XBCTL_SIM_STATE=str(tmp_path / "sim.json"), XBCTL_TRANSPORT="sim")
    done = run([str(script), "-a"], env=env)
    assert done.returncode == 0, done
    assert done.stdout.splitlines() == [
        "machdep.xen.balloon.current = 4194304",
        "machdep.xen.balloon.target = 4194304",
        "machdep.xen.balloon.min = 1048576",
        "machdep.xen.balloon.max = 4194304",
        "machdep.xen.balloon.xen-max = 4194304",
    ]
    where = run(["/usr/bin/python3", "-c", "import xbctl; print(xbctl.__file__)"], env=env, cwd=tmp_path)
    assert where.stdout.startswith(str(installed)), where
    # The example configuration is commented out: the policy applies nothing from it.
    policy = run([str(script), "policy"], env={**env, "XBCTL_CONF_ROOT": str(installed)})
    assert policy.returncode == 0, policy
    assert f"applying 1 configuration file(s): {installed}/etc/xbctl.conf" in policy.stderr
    assert "->" not in policy.stderr


def test_installed_man_page_renders(installed):
    page = installed / "usr/share/man/man8/xbctl.8.gz"
    done = run(["man", "-l", str(page)], env=debian_env(MANPAGER="cat", MANWIDTH="80", MAN_KEEP_FORMATTING=""))
    assert done.returncode == 0, done
    text = done.stdout
    assert "XBCTL(8)" in text and "policy [--follow]" in text, text[:2000]
    assert "/etc/xbctl.conf" in text and "xbctl-policy.service" in text


def test_installed_bash_completion_completes(installed, tmp_path):
    # The installed completion file, calling the installed xbctl (with this test run's Python,
    # which has the Typer the package depends on: Debian 12's python3-typer is 0.7).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "xbctl"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {installed}/usr/bin/xbctl "$@"\n')
    wrapper.chmod(0o755)
    completion = installed / "usr/share/bash-completion/completions/xbctl"
    script = "\n".join([
        f"source {completion}",
        "COMP_LINE='xbctl mem-'; COMP_POINT=${#COMP_LINE}",
        "COMP_WORDS=(xbctl mem-); COMP_CWORD=1",
        'COMPREPLY=(); _xbctl_completion xbctl mem- xbctl',
        'printf "%s\\n" "${COMPREPLY[@]}"',
        "COMP_LINE='xbctl pol'; COMP_POINT=${#COMP_LINE}",
        "COMP_WORDS=(xbctl pol); COMP_CWORD=1",
        'COMPREPLY=(); _xbctl_completion xbctl pol xbctl',
        'printf "%s\\n" "${COMPREPLY[@]}"',
    ])
    env = debian_env(PATH=f"{bin_dir}:{DEBIAN_PATH}", PYTHONPATH=str(installed / "usr/lib/python3/dist-packages"),
                     XBCTL_SIM_STATE=str(tmp_path / "sim.json"), XBCTL_TRANSPORT="sim", HOME=str(tmp_path))
    done = run(["bash", "--norc", "--noprofile", "-c", script], env=env, timeout=60)
    assert done.returncode == 0, done
    assert done.stdout.split() == ["mem-set", "mem-max", "policy"], done


def test_unit_passes_systemd_analyze_verify(installed, tmp_path):
    unit_text = (installed / UNIT).read_text()
    assert "\nExecStart=/usr/bin/xbctl policy --follow\n" in unit_text
    # verify checks that ExecStart's program exists and that man:xbctl(8) resolves: point both
    # into the throwaway root (--root would look for systemd's own units there too).
    checked = tmp_path / "xbctl-policy.service"
    checked.write_text(unit_text.replace("/usr/bin/xbctl", f"{installed}/usr/bin/xbctl"))
    env = debian_env(MANPATH=str(installed / "usr/share/man"), SYSTEMD_LOG_LEVEL="notice")
    done = run(["systemd-analyze", "verify", str(checked)], env=env, cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done
    # The check can fail: a misspelt setting is reported.
    broken = tmp_path / "broken" / "xbctl-policy.service"
    broken.parent.mkdir()
    broken.write_text(checked.read_text().replace("Type=exec", "Type=exec-ish"))
    refused = run(["systemd-analyze", "verify", str(broken)], env=env, cwd=tmp_path)
    assert "Failed to parse service type" in refused.stderr, refused
    exposure = run(["systemd-analyze", "security", "--offline=yes", str(checked)], env=env, cwd=tmp_path)
    assert "Overall exposure level for xbctl-policy.service: 1." in exposure.stdout, exposure.stdout[-500:]


def test_readme_first_command_works_with_debians_python(tmp_path):
    # The README's first command, as written, in a copy of the tree, with Debian 12's own
    # Python (which refuses a plain `pip install .`) and a home of its own.
    readme = (ROOT / "README.md").read_text()
    line = next(text.strip() for text in readme.splitlines() if text.startswith("    python3 -m venv "))
    source = copy_tree(tmp_path / "xbctl")
    home = tmp_path / "home"
    home.mkdir()
    refused = run(["python3", "-m", "pip", "install", "--dry-run", "."], env=debian_env(HOME=str(home)), cwd=source)
    assert refused.returncode != 0 and "externally-managed-environment" in refused.stderr, refused
    done = run(["bash", "-c", line], env=debian_env(HOME=str(home), XBCTL_TRANSPORT="sim"), cwd=source, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.splitlines()[-5:] == [
        "machdep.xen.balloon.current = 4194304",
        "machdep.xen.balloon.target = 4194304",
        "machdep.xen.balloon.min = 1048576",
        "machdep.xen.balloon.max = 4194304",
        "machdep.xen.balloon.xen-max = 4194304",
    ], done.stdout[-2000:]
    assert (home / ".venvs/xbctl/bin/xbctl").exists()
