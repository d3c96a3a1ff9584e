"""The Ansible collection xbctl.xen: ansible-test sanity and units, and a playbook over three hosts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COLLECTION = ROOT / "ansible_collections" / "xbctl" / "xen"
PLAYBOOK = ROOT / "examples" / "fleet.yml"
ANSIBLE_BIN = Path(sys.executable).parent
# Every sanity test runs (about 25 s once its virtualenvs are cached); these are asserted by name.
SANITY_TESTS = (
    "validate-modules",
    "pylint",
    "pep8",
    "yamllint",
    "import",
    "ansible-doc",
    "compile",
    "runtime-metadata",
)

GET_PIP_STAND_IN = '''"""Stand-in for get-pip.py (its host is unreachable here): ensurepip, then pip install the arguments."""
import os
import subprocess
import sys

env = dict(os.environ)
env.pop("PIP_CONFIG_FILE", None)  # ensurepip sets it to /dev/null; the package index is in the machine's pip config
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], env=env)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]  # get-pip's own options
subprocess.check_call([sys.executable, "-m", "pip", "install", *args], env=env)
'''


def ansible_env(**extra: str) -> dict:
    """The environment for ansible tools: this venv first, no colour, the collection on its path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "XBCTL_", "XENSTORED_"))}
    env.update(
        PATH=f"{ANSIBLE_BIN}{os.pathsep}{env.get('PATH', '')}",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_COLLECTIONS_PATH=str(ROOT),
        ANSIBLE_HOST_KEY_CHECKING="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        **extra,
    )
    return env


def ensure_get_pip_stand_in() -> None:
    """ansible-test bootstraps pip in its venvs with get-pip.py, cached here under pip's version."""
    import ansible_test

    source = (Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
    version = re.search(r"pip='([\d.]+)'", source).group(1)
    cache = Path.home() / ".ansible" / "test" / "cache" / f"get_pip_{version.replace('.', '_')}.py"
    if not cache.exists() or cache.read_text() != GET_PIP_STAND_IN:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(GET_PIP_STAND_IN)


def run_ansible(tool: str, *args: str, cwd: Path | None = None, timeout: int = 300, env: dict | None = None):
    """Ansible's TOOL (this venv's) with ARGS, its output captured; stdin closed."""
    return subprocess.run(
        [str(ANSIBLE_BIN / tool), *args],
        cwd=cwd,
        env=env if env is not None else ansible_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def ansible_test(*args: str) -> subprocess.CompletedProcess:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return run_ansible("ansible-test", *args, "--python", python, cwd=COLLECTION, timeout=540)


@pytest.fixture(scope="module")
def sanity() -> subprocess.CompletedProcess:
    """One ansible-test sanity run per session (its venvs are cached under ~/.ansible/test)."""
    ensure_get_pip_stand_in()
    return ansible_test("sanity")


@pytest.mark.parametrize("test_name", SANITY_TESTS)
def test_sanity(sanity, test_name):
    assert sanity.returncode == 0, sanity.stdout[-4000:] + sanity.stderr[-4000:]
    assert f'Running sanity test "{test_name}"' in sanity.stdout + sanity.stderr


def test_units():
    done = ansible_test("units")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert re.search(r"\b18 passed\b", done.stdout), done.stdout[-2000:]


def test_galaxy_builds_an_installable_collection(tmp_path):
    built = run_ansible(
        "ansible-galaxy", "collection", "build", str(COLLECTION), "--output-path", str(tmp_path), timeout=120
    )
    assert built.returncode == 0, built
    assert "WARNING" not in built.stdout + built.stderr, built
    tarball = tmp_path / "xbctl-xen-0.1.0.tar.gz"
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        assert tar.extractfile("LICENSE").read() == (ROOT / "LICENSE").read_bytes()
        assert json.load(tar.extractfile("MANIFEST.json"))["collection_info"]["license"] == ["BSD-2-Clause"]
    assert "CHANGELOG.rst" in names and "tests/output" not in " ".join(names), names
    installed = run_ansible(
        "ansible-galaxy", "collection", "install", "--force", str(tarball), "-p", str(tmp_path / "c"), timeout=120
    )
    assert installed.returncode == 0, installed
    assert (tmp_path / "c" / "ansible_collections" / "xbctl" / "xen" / "plugins" / "modules" / "balloon.py").exists()


def license_terms(text: str) -> str:
    """The words of a BSD licence from its first condition on, whitespace aside."""
    return " ".join(text[text.index("Redistribution and use") :].split())


def test_one_license_named_alike_everywhere():
    spdx = "BSD-2-Clause"
    top = (ROOT / "LICENSE").read_text()
    assert top.startswith("BSD 2-Clause License\n\nCopyright (c) 2026 xbctl developers\n"), top[:200]
    # the collection ships its own copy (ansible-test allows no link out of the collection)
    assert (COLLECTION / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    galaxy = (COLLECTION / "galaxy.yml").read_text()
    assert re.findall(r"^license:\n((?:  - .*\n)+)", galaxy, re.M) == [f"  - {spdx}\n"], galaxy
    assert "license_file" not in galaxy
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == {"text": spdx}
    copyright_text = (ROOT / "debian" / "copyright").read_text()
    paragraphs = [p for p in copyright_text.split("\n\n") if "License:" in p]
    assert [re.search(r"^License: (.*)$", p, re.M).group(1) for p in paragraphs] == [spdx, spdx], paragraphs
    standalone = paragraphs[-1].split("\n", 1)[1]
    body = "\n".join("" if line == " ." else line[1:] for line in standalone.splitlines())
    assert license_terms(body) == license_terms(top)
    modules = sorted((COLLECTION / "plugins" / "modules").glob("*.py"))
    assert [m.name for m in modules] == ["balloon.py", "balloon_info.py"]
    for module in modules:
        header = module.read_text().split("DOCUMENTATION", 1)[0]
        assert f"# SPDX-License-Identifier: {spdx}\n" in header, module
        assert "# BSD 2-Clause License (see LICENSE or https://opensource.org/licenses/BSD-2-Clause)" in header, module


# ---------------------------------------------------------------- a fleet of three hosts

RECAP = re.compile(r"^(\w+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def run_playbook(inventory: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = ansible_env(ANSIBLE_LOCAL_TEMP=str(inventory.parent / "tmp"))
    done = run_ansible("ansible-playbook", "-i", str(inventory), str(PLAYBOOK), *args, env=env)
    recap = {
        host: dict(ok=int(ok), changed=int(ch), failed=int(fa)) for host, ok, ch, _u, fa in RECAP.findall(done.stdout)
    }
    return done, recap


@pytest.fixture
def fleet(tmp_path, xs):
    """Three hosts: alpha and bravo simulated (bravo asked for a refused target), xs1 a real
    xenstored; each with a configuration root of its own (XBCTL_CONF_ROOT) for what persists."""
    from conftest import Xbctl

    sims = {}
    for host in ("alpha", "bravo"):
        sims[host] = Xbctl(tmp_path / f"{host}.json")
        assert sims[host]("sim", "reset", "--clock", "manual").status == 0
    roots = {host: tmp_path / f"conf-{host}" for host in ("alpha", "bravo", "xs1")}
    for root in roots.values():
        root.mkdir(mode=0o755)
    inventory = tmp_path / "hosts.yml"
    python = sys.executable
    inventory.write_text(
        f"""all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: {python}
  hosts:
    alpha:
      xbctl_transport: sim
      sim_state: {sims["alpha"].state_path}
      web_target: 512M
      xbctl_env:
        XBCTL_CONF_ROOT: "{roots["alpha"]}"
    bravo:
      xbctl_transport: sim
      sim_state: {sims["bravo"].state_path}
      web_target: 64M
      xbctl_env:
        XBCTL_CONF_ROOT: "{roots["bravo"]}"
    xs1:
      xbctl_transport: xenstore
      web_target: 600M
      xbctl_env:
        XENSTORED_PATH: "{xs.socket_path}"
        XBCTL_XENSTORE_TIMEOUT: "10"
        XBCTL_CONF_ROOT: "{roots["xs1"]}"
"""
    )
    return inventory, sims, xs, roots


def persisted(root: Path) -> Path:
    return root / "etc" / "xbctl.d" / "ansible.conf"


def test_fleet_playbook_check_change_idempotence_and_per_host_failure(fleet):
    inventory, sims, xs, roots = fleet
    before = {host: tool.snapshot() for host, tool in sims.items()}
    xs_before = xs.listing()

    # check mode: says what would change, in the domain and in the file, and changes nothing anywhere
    done, recap = run_playbook(inventory, "--check", "--diff")
    assert done.returncode == 2, done.stdout  # one host failed
    assert recap["alpha"] == dict(ok=3, changed=1, failed=0), done.stdout
    assert recap["xs1"] == dict(ok=3, changed=1, failed=0), done.stdout
    assert recap["bravo"]["failed"] == 1 and recap["bravo"]["changed"] == 0, done.stdout
    assert "-machdep.xen.balloon.target: 786432\n+machdep.xen.balloon.target: 524288" in done.stdout
    assert "-machdep.xen.balloon.target: 786432\n+machdep.xen.balloon.target: 614400" in done.stdout
    assert (
        f"+++ after: {persisted(roots['alpha'])}\n@@ -0,0 +1,2 @@\n+[web]\n+machdep.xen.balloon.target=512M"
        in done.stdout
    )
    assert (
        f"+++ after: {persisted(roots['xs1'])}\n@@ -0,0 +1,2 @@\n+[web]\n+machdep.xen.balloon.target=600M"
        in done.stdout
    )
    assert {host: tool.snapshot() for host, tool in sims.items()} == before
    assert xs.listing() == xs_before
    assert [list(root.iterdir()) for root in roots.values()] == [[], [], []]

    # the first run changes what it should; the refused host fails alone, with xbctl's message
    done, recap = run_playbook(inventory)
    assert done.returncode == 2, done.stdout
    assert recap["alpha"] == dict(ok=3, changed=1, failed=0), done.stdout
    assert recap["xs1"] == dict(ok=3, changed=1, failed=0), done.stdout
    assert recap["bravo"]["failed"] == 1, done.stdout
    assert "xbctl: machdep.xen.balloon.target: Operation not permitted" in done.stdout
    assert sims["alpha"].value("target", "web") == 524288
    assert xs.dom(1, "memory/target") == "614400"
    assert sims["bravo"].snapshot() == before["bravo"]
    assert "web on alpha: target 524288 KiB" in done.stdout and "web on xs1: target 614400 KiB" in done.stdout
    assert persisted(roots["alpha"]).read_text() == "[web]\nmachdep.xen.balloon.target=512M\n"
    assert persisted(roots["xs1"]).read_text() == "[web]\nmachdep.xen.balloon.target=600M\n"
    assert list(roots["bravo"].iterdir()) == []  # refused: not kept either
    assert "[WARNING]" not in done.stdout + done.stderr

    # the second run changes nothing
    done, recap = run_playbook(inventory)
    assert recap["alpha"] == dict(ok=3, changed=0, failed=0), done.stdout
    assert recap["xs1"] == dict(ok=3, changed=0, failed=0), done.stdout
    assert recap["bravo"]["failed"] == 1, done.stdout
    assert sims["alpha"].value("target", "web") == 524288 and xs.dom(1, "memory/target") == "614400"

    # what persisted is what xbctl applies to the domains created again: `--system` on alpha,
    # the policy service's pass on xs1
    from pyxs import Client
    from xen_fixtures import lay_out_host

    assert sims["alpha"]("sim", "reset", "--clock", "manual").status == 0
    assert sims["alpha"].value("target", "web") == 786432
    applied = sims["alpha"].process("--system", env={"XBCTL_CONF_ROOT": str(roots["alpha"])})
    assert applied.status == 0, applied
    assert f"* Applying {persisted(roots['alpha'])} ..." in applied.stdout, applied
    assert "web: machdep.xen.balloon.target: 786432 -> 524288" in applied.stdout, applied
    assert sims["alpha"].value("target", "web") == 524288
    with Client(unix_socket_path=str(xs.socket_path)) as client:
        lay_out_host(client)
    assert xs.dom(1, "memory/target") == "786432"
    configured = xs.process("policy", env={"XBCTL_CONF_ROOT": str(roots["xs1"])})
    assert configured.status == 0, configured
    assert xs.dom(1, "memory/target") == "614400"


def test_the_documented_fleet_playbook_is_the_example_and_lints_in_the_production_profile():
    fleets = (ROOT / "docs" / "fleets.md").read_text()
    shown = re.search(
        r"A fleet playbook \(\[`examples/fleet.yml`\]\(\.\./examples/fleet.yml\)\):\n\n```yaml\n(.*?)```", fleets, re.S
    )
    assert shown, "docs/fleets.md shows no fleet playbook"
    assert shown.group(1) == PLAYBOOK.read_text()
    assert "[examples/fleet.yml](examples/fleet.yml)" in (ROOT / "README.md").read_text()
    done = run_ansible("ansible-lint", "--offline", "--nocolor", "--profile", "production", str(PLAYBOOK), cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Profile 'production' was required, and it passed." in done.stdout + done.stderr


def test_fleets_doc_names_every_option_of_the_modules():
    """docs/fleets.md and the modules' DOCUMENTATION in step: every option documented is named there."""
    fleets = (ROOT / "docs" / "fleets.md").read_text()
    for module in ("xbctl.xen.balloon", "xbctl.xen.balloon_info"):
        done = run_ansible("ansible-doc", "--json", module, timeout=120)
        assert done.returncode == 0, done.stderr
        options = json.loads(done.stdout)[module]["doc"]["options"]
        missing = [name for name in options if f"`{name}`" not in fleets]
        assert not missing, f"{module}: options not in docs/fleets.md: {missing}"


def test_the_collection_lints():
    done = run_ansible("ansible-lint", "--offline", "--nocolor", cwd=COLLECTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Passed: 0 failure\(s\), 0 warning\(s\)", done.stdout + done.stderr), done.stdout + done.stderr
