"""The Debian package: built with dpkg-buildpackage (debhelper, dh-python/pybuild) from a copy of
the tree, checked with lintian, resolved by apt against this Debian's archive (apt-get install
--simulate), unpacked into a throwaway root (dpkg -x), and run from there on Debian's own Python
and its own python3-typer (0.7 on Debian 12): xbctl -a, --help, a usage error, man -l on its page,
a bash completion, systemd-analyze verify on its unit, and the exporter on Debian's own
python3-prometheus-client (0.16), scraped."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Debian's own tools with Debian's own Python (the one the package's /usr/bin/xbctl names),
# never a virtualenv's or pyenv's python3 that happens to come first on PATH.
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BUILD_TOOLS = ("dpkg-buildpackage", "dh", "dh_python3", "lintian", "systemd-analyze", "man")
UNIT = "lib/systemd/system/xbctl-policy.service"
# The monitoring kit's units: shipped, never enabled by the package.
MONITORING_UNITS = ("xbctl-exporter.service", "xbctl-textfile.service", "xbctl-textfile.timer")
NODE_EXPORTER_OLDEST = "1.5"  # Debian 12's prometheus-node-exporter, suggested for the textfile timer
DEBIAN_PYTHON = "/usr/bin/python3"
DEBIAN_SITE = "/usr/lib/python3/dist-packages"
PROMETHEUS_CLIENT_OLDEST = "0.16"  # Debian 12's python3-prometheus-client, recommended by the package


def debian_env(**extra: str) -> dict[str, str]:
    # PYTHONNOUSERSITE: Debian's Python sees Debian's packages only, never a Typer under ~/.local.
    return {
        "HOME": os.environ.get("HOME", "/root"),
        "PATH": DEBIAN_PATH,
        "LANG": "C.UTF-8",
        "PYTHONNOUSERSITE": "1",
        **extra,
    }


def installed_env(installed: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment to run the unpacked package with Debian's Python, on the simulator."""
    return debian_env(
        PYTHONPATH=str(installed / DEBIAN_SITE.lstrip("/")),
        XBCTL_TRANSPORT="sim",
        XBCTL_SIM_STATE=str(tmp_path / "sim.json"),
        COLUMNS="100",
        **extra,
    )


def run(argv: list[str], *, env: dict, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def copy_tree(destination: Path) -> Path:
    """The project's files (tracked, or new and not ignored) copied to DESTINATION."""
    files = run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], env={**os.environ}, cwd=ROOT
    ).stdout.split("\0")
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
        "./usr/share/man/man5/xbctl.conf.5.gz",
        "./usr/share/bash-completion/completions/xbctl",
        "./usr/share/zsh/vendor-completions/_xbctl",
        "./usr/share/fish/vendor_completions.d/xbctl.fish",
        "./etc/xbctl.conf",
        f"./{UNIT}",
        # The configuration directories, as procps ships /etc/sysctl.d and /usr/lib/sysctl.d.
        "./etc/xbctl.d/",
        "./usr/lib/xbctl.d/",
        # Examples where Debian keeps them, the monitoring kit's among them.
        "./usr/share/doc/xbctl/examples/xbctl.conf",
        "./usr/share/doc/xbctl/examples/fleet.yml",
        "./usr/share/doc/xbctl/examples/xbctl.rules.yml",
        "./usr/share/doc/xbctl/examples/xbctl-dashboard.json",
        *(f"./lib/systemd/system/{unit}" for unit in MONITORING_UNITS),
    ):
        assert f" {path}\n" in listing, (path, listing)
    assert "tests/" not in listing and ".pyc" not in listing
    control = run(["dpkg-deb", "-f", str(deb), "Depends"], env=debian_env()).stdout
    # What Debian 12 has: python3-typer 0.7, python3-click 8.1, python3-rich 13.3.
    depends = [item.strip() for item in control.split(",")]
    for needed in ("python3-typer (>= 0.7)", "python3-click (>= 8.0)", "python3-rich", "python3-shellingham"):
        assert needed in depends, (needed, control)
    # The exporter's library, which Debian 12 has (0.16) and apt installs unless told not to.
    recommends = run(["dpkg-deb", "-f", str(deb), "Recommends"], env=debian_env()).stdout.strip()
    assert recommends == f"python3-prometheus-client (>= {PROMETHEUS_CLIENT_OLDEST})", recommends
    candidate = run(["apt-cache", "policy", "python3-prometheus-client"], env=debian_env()).stdout
    version = re.search(r"Candidate: (\S+)", candidate).group(1)
    assert (
        run(["dpkg", "--compare-versions", version, "ge", PROMETHEUS_CLIENT_OLDEST], env=debian_env()).returncode == 0
    )
    conffiles = run(["dpkg-deb", "-I", str(deb), "conffiles"], env=debian_env()).stdout
    assert conffiles.split() == ["/etc/xbctl.conf"], conffiles
    # What the optional parts need: libxenctrl (the hypervisor), node_exporter (the textfile
    # timer; Debian 12 has 1.5, which reads /var/lib/prometheus/node-exporter), xenstored.
    suggests = [
        item.strip() for item in run(["dpkg-deb", "-f", str(deb), "Suggests"], env=debian_env()).stdout.split(",")
    ]
    assert suggests == [
        "libxenmisc4.17",
        f"prometheus-node-exporter (>= {NODE_EXPORTER_OLDEST})",
        "xen-utils-4.17 | xen-utils",
    ], suggests
    candidate = run(["apt-cache", "policy", "prometheus-node-exporter"], env=debian_env()).stdout
    version = re.search(r"Candidate: (\S+)", candidate).group(1)
    assert run(["dpkg", "--compare-versions", version, "ge", NODE_EXPORTER_OLDEST], env=debian_env()).returncode == 0
    for package in ("libxenmisc4.17", "xen-utils-4.17"):
        assert "Candidate: (none)" not in run(["apt-cache", "policy", package], env=debian_env()).stdout, package


def test_package_enables_the_policy_service_alone(deb):
    # dh_installsystemd's maintainer scripts: the policy service is enabled and started on
    # install; the exporter and the timer only if the administrator enabled them; the textfile
    # service (the timer's) is never started by the package.
    postinst = run(["dpkg-deb", "-I", str(deb), "postinst"], env=debian_env()).stdout
    blocks = postinst.split("# End automatically added section")
    enabling = [block for block in blocks if "deb-systemd-helper enable" in block]
    assert len(enabling) == 3, postinst
    for block in enabling:
        unit = re.search(r"deb-systemd-helper enable '([^']+)'", block).group(1)
        guarded = f"deb-systemd-helper debian-installed '{unit}'" in block
        assert guarded == (unit != "xbctl-policy.service"), (unit, block)
    assert "xbctl-textfile.service" not in postinst
    started = re.findall(r"deb-systemd-invoke \$_dh_action (.*) >/dev/null", postinst)
    assert sorted(started) == ["'xbctl-exporter.service' 'xbctl-textfile.timer'", "'xbctl-policy.service'"], started


def test_lintian_is_clean(built):
    changes = sorted(built.glob("xbctl_*.changes"))
    assert len(changes) == 1, changes
    # Warnings and errors fail; every override is explained in debian/xbctl.lintian-overrides.
    done = run(["lintian", "--fail-on", "error,warning", "--display-info", str(changes[0])], env=debian_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [line for line in done.stdout.splitlines() if line.startswith(("E:", "W:"))], done.stdout


def test_apt_installs_the_package_on_this_debian(deb, tmp_path):
    # apt resolves every Depends against this Debian's archive and what is installed (Debian 12:
    # python3-typer 0.7, python3-click 8.1, python3-rich 13.3); --simulate needs no root.
    done = run(["apt-get", "install", "--simulate", "--no-install-recommends", str(deb)], env=debian_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("Inst xbctl ") for line in lines), done.stdout[-3000:]
    assert not [line for line in lines if line.startswith("Remv ")], done.stdout[-3000:]
    # The check can fail: the same package asking for a Typer newer than Debian's is refused.
    newer = installed_typer_version().split(".")
    demanding = rebuilt_with_depends(deb, tmp_path, f"python3-typer (>= {int(newer[0])}.{int(newer[1]) + 1})")
    refused = run(["apt-get", "install", "--simulate", "--no-install-recommends", str(demanding)], env=debian_env())
    assert refused.returncode != 0 and "python3-typer (>=" in refused.stdout + refused.stderr, refused


def installed_typer_version() -> str:
    """The upstream version of Debian's python3-typer on this machine (0.7.0 on Debian 12)."""
    return installed_version("python3-typer")


def installed_version(package: str) -> str:
    """The upstream version of Debian's PACKAGE installed on this machine."""
    done = run(["dpkg-query", "-W", "-f", "${Version}", package], env=debian_env())
    assert done.returncode == 0, f"{package} is not installed (tests/run installs it): {done.stderr}"
    return done.stdout.split(":")[-1].split("-")[0]


def rebuilt_with_depends(deb: Path, tmp_path: Path, typer_depends: str) -> Path:
    """A copy of DEB whose python3-typer dependency is TYPER_DEPENDS."""
    tree = tmp_path / "tree"
    assert run(["dpkg-deb", "-R", str(deb), str(tree)], env=debian_env()).returncode == 0
    control = tree / "DEBIAN" / "control"
    text = control.read_text()
    assert "python3-typer (>= 0.7)" in text, text
    control.write_text(text.replace("python3-typer (>= 0.7)", typer_depends))
    rebuilt = tmp_path / deb.name
    done = run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(rebuilt)], env=debian_env())
    assert done.returncode == 0, done
    return rebuilt


def test_installed_xbctl_runs_on_debians_python(installed, tmp_path):
    # /usr/bin/xbctl as installed: its #! names Debian's /usr/bin/python3; the lean command
    # line needs neither Typer nor rich.
    script = installed / "usr/bin/xbctl"
    assert script.read_text().startswith("#!/usr/bin/python3\n")
    env = debian_env(
        PYTHONPATH=str(installed / "usr/lib/python3/dist-packages"),
        XBCTL_SIM_STATE=str(tmp_path / "sim.json"),
        XBCTL_TRANSPORT="sim",
    )
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


def test_installed_exporter_serves_on_debians_prometheus_client(installed, tmp_path):
    # Debian 12's python3-prometheus-client is 0.16, whose start_http_server returned nothing:
    # the exporter from the unpacked package, on Debian's Python and that library, scraped.
    env = installed_env(installed, tmp_path)
    probe = "import importlib.metadata as m, prometheus_client as p; print(m.version('prometheus_client'), p.__file__)"
    version, where = run([DEBIAN_PYTHON, "-c", probe], env=env, cwd=tmp_path).stdout.split()
    assert where.startswith(DEBIAN_SITE + "/") and version == installed_version("python3-prometheus-client"), where
    with socket.socket() as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        port = probe_port.getsockname()[1]
    with subprocess.Popen(
        [str(installed / "usr/bin/xbctl"), "exporter", "--listen", f"127.0.0.1:{port}"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            said = process.stderr.readline()  # bounded: printed once listening, or the process ends
            assert said == f"xbctl: serving metrics at http://127.0.0.1:{port}/metrics\n", (said, process.stderr.read())
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
                page = response.read().decode()
        finally:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
    assert 'xen_balloon_target_bytes{domain="Domain-0"} 4.294967296e+09' in page, page
    assert 'xen_balloon_domain_info{domain="Domain-0",domid="0"} 1.0' in page, page
    assert "\nxen_balloon_up 1.0\n" in page, page
    assert 'xen_balloon_scrape_error{error=""} 0.0' in page, page
    assert (process.returncode, out, err) == (0, "", ""), (process.returncode, out, err)


# Help and usage errors: Typer's work. Each comes out of the unpacked package on Debian's own
# Typer exactly as out of this tree on the pinned Typer the tests run with.
TYPER_LINES = [
    ["--help"],
    ["mem-set", "--help"],
    ["list", "--help"],
    ["sim", "reset", "--help"],
    ["-Z"],
    ["mem-set", "web"],
    ["list", "--bogus"],
    ["--transport", "bogus", "-a"],
    ["sim", "reset", "--clock", "x"],
]


def test_installed_help_and_usage_errors_on_debians_typer(installed, tmp_path):
    env = installed_env(installed, tmp_path)
    # Typer 0.2x carries its own click (typer._click; no `click` need be installed beside it).
    probe = (
        "import typer\ntry:\n    from typer import _click as click\nexcept ImportError:\n    import click\n"
        "print(typer.__version__, typer.__file__, getattr(click, '__version__', 'bundled'))"
    )
    typer_version, typer_file, click_version = run([DEBIAN_PYTHON, "-c", probe], env=env, cwd=tmp_path).stdout.split()
    assert typer_file.startswith(DEBIAN_SITE + "/") and typer_version == installed_typer_version(), typer_file
    script = str(installed / "usr/bin/xbctl")
    help_text = run([script, "--help"], env=env)
    assert help_text.returncode == 0 and help_text.stderr == "", help_text
    assert help_text.stdout.startswith("Usage: xbctl [OPTIONS] COMMAND [ARGS]...\n"), help_text.stdout[:500]
    assert "\nCommands:\n  current " in help_text.stdout and "╭" not in help_text.stdout, help_text.stdout
    mem_set = run([script, "mem-set", "--help"], env=env)
    assert mem_set.returncode == 0 and mem_set.stdout.startswith("Usage: xbctl mem-set [OPTIONS] DOMAIN SIZE\n"), (
        mem_set
    )
    unknown = run([script, "-Z"], env=env)
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (
        2,
        "",
        "xbctl: no such option: -Z\nxbctl: hint: see 'xbctl --help'\n",
    ), unknown
    # The same words as the pinned Typer's, from this tree (the test run's Python).
    pinned = run([sys.executable, "-c", probe], env={**os.environ}, cwd=tmp_path).stdout.split()[0]
    tree_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XBCTL_TRANSPORT": "sim",
        "XBCTL_SIM_STATE": str(tmp_path / "tree-sim.json"),
        "COLUMNS": "100",
    }
    for args in TYPER_LINES:
        debian = run([script, *args], env=env)
        tree = run([sys.executable, "-m", "xbctl", *args], env=tree_env, cwd=tmp_path)
        assert debian.returncode in (0, 2) and (debian.stdout or debian.stderr), (args, debian)
        versions = f"Debian's Typer {typer_version} (click {click_version}), pinned Typer {pinned}"
        assert (debian.returncode, debian.stdout, debian.stderr) == (tree.returncode, tree.stdout, tree.stderr), (
            args,
            versions,
            debian,
            tree,
        )


def test_installed_man_page_renders(installed):
    page = installed / "usr/share/man/man8/xbctl.8.gz"
    done = run(["man", "-l", str(page)], env=debian_env(MANPAGER="cat", MANWIDTH="80", MAN_KEEP_FORMATTING=""))
    assert done.returncode == 0, done
    text = done.stdout
    assert "XBCTL(8)" in text and "policy [--follow]" in text, text[:2000]
    assert "/etc/xbctl.conf" in text and "xbctl-policy.service" in text


def test_installed_bash_completion_completes(installed, tmp_path):
    # The installed completion file, calling the installed xbctl (its #! is Debian's Python, with
    # Debian's own Typer: 0.7 on Debian 12), first on PATH as after apt install.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "xbctl").symlink_to(installed / "usr/bin/xbctl")
    completion = installed / "usr/share/bash-completion/completions/xbctl"
    script = "\n".join(
        [
            f"source {completion}",
            "COMP_LINE='xbctl mem-'; COMP_POINT=${#COMP_LINE}",
            "COMP_WORDS=(xbctl mem-); COMP_CWORD=1",
            "COMPREPLY=(); _xbctl_completion xbctl mem- xbctl",
            'printf "%s\\n" "${COMPREPLY[@]}"',
            "COMP_LINE='xbctl pol'; COMP_POINT=${#COMP_LINE}",
            "COMP_WORDS=(xbctl pol); COMP_CWORD=1",
            "COMPREPLY=(); _xbctl_completion xbctl pol xbctl",
            'printf "%s\\n" "${COMPREPLY[@]}"',
            "COMP_LINE='xbctl -d w'; COMP_POINT=${#COMP_LINE}",  # a domain: click resolves the option
            "COMP_WORDS=(xbctl -d w); COMP_CWORD=2",
            "COMPREPLY=(); _xbctl_completion xbctl w -d",
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    env = installed_env(installed, tmp_path, PATH=f"{bin_dir}:{DEBIAN_PATH}", HOME=str(tmp_path))
    done = run(["bash", "--norc", "--noprofile", "-c", script], env=env, timeout=60)
    assert done.returncode == 0, done
    assert done.stdout.split() == ["mem-set", "mem-max", "policy", "web"], done


def test_unit_passes_systemd_analyze_verify(installed, tmp_path):
    unit_text = (installed / UNIT).read_text()
    assert "\nExecStart=/usr/bin/xbctl policy --follow\n" in unit_text
    # systemd waits for READY=1 (sent once the running domains are configured) before xendomains.
    assert "\nType=notify\n" in unit_text and "\nBefore=xendomains.service\n" in unit_text
    # The record of configured domains (/run/xbctl) outlives a restart (a package upgrade), not a reboot.
    assert "\nRuntimeDirectory=xbctl\n" in unit_text and "\nRuntimeDirectoryPreserve=yes\n" in unit_text
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
    broken.write_text(checked.read_text().replace("Type=notify", "Type=notify-ish"))
    refused = run(["systemd-analyze", "verify", str(broken)], env=env, cwd=tmp_path)
    assert "Failed to parse service type" in refused.stderr, refused
    exposure = run(["systemd-analyze", "security", "--offline=yes", str(checked)], env=env, cwd=tmp_path)
    assert "Overall exposure level for xbctl-policy.service: 1." in exposure.stdout, exposure.stdout[-500:]


def test_monitoring_units_pass_systemd_analyze_verify(installed, tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    for unit in MONITORING_UNITS:
        text = (installed / "lib/systemd/system" / unit).read_text()
        (units / unit).write_text(text.replace("/usr/bin/xbctl", f"{installed}/usr/bin/xbctl"))
    exporter, textfile, timer = ((units / unit).read_text() for unit in MONITORING_UNITS)
    assert "\nExecStart=/" in exporter and " exporter --listen ${XBCTL_EXPORTER_LISTEN}\n" in exporter
    assert "\nEnvironment=XBCTL_EXPORTER_LISTEN=127.0.0.1:9749\n" in exporter
    # Written whole into Debian's node_exporter textfile directory, the one directory writable.
    textfile_dir = "/var/lib/prometheus/node-exporter"
    assert f" list --format prometheus --output {textfile_dir}/xbctl.prom\n" in textfile
    assert f"\nReadWritePaths={textfile_dir}\n" in textfile and "\nProtectSystem=strict\n" in textfile
    assert "\nOnUnitActiveSec=30s\n" in timer and "\nWantedBy=timers.target\n" in timer
    env = debian_env(MANPATH=str(installed / "usr/share/man"), SYSTEMD_LOG_LEVEL="notice")
    for unit in MONITORING_UNITS:
        done = run(["systemd-analyze", "verify", str(units / unit)], env=env, cwd=units)
        assert done.returncode == 0 and done.stderr == "", (unit, done)
    # Hardened as the policy service: the exporter needs a network, the textfile service does not.
    for unit, level in (("xbctl-exporter.service", "2."), ("xbctl-textfile.service", "1.")):
        exposure = run(["systemd-analyze", "security", "--offline=yes", str(units / unit)], env=env, cwd=units)
        assert f"Overall exposure level for {unit}: {level}" in exposure.stdout, exposure.stdout[-500:]
    # The check can fail: a timer naming no time is refused.
    (units / "xbctl-textfile.timer").write_text(timer.replace("OnUnitActiveSec=30s", "OnUnitActiveSec=soon"))
    refused = run(["systemd-analyze", "verify", str(units / "xbctl-textfile.timer")], env=env, cwd=units)
    assert "Failed to parse timer value" in refused.stderr, refused


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
