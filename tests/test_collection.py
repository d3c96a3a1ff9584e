"""The Ansible collection xbctl.xen: ansible-test sanity and units, and a playbook over three hosts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COLLECTION = ROOT / "ansible_collections" / "xbctl" / "xen"
PLAYBOOK = ROOT / "examples" / "fleet.yml"
ANSIBLE_BIN = Path(sys.executable).parent
# Every sanity test runs (about 25 s once its virtualenvs are cached); these are asserted by name.
SANITY_TESTS = ("validate-modules", "pylint", "pep8", "yamllint", "import", "ansible-doc", "compile", "runtime-metadata")

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


def ansible_test(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ANSIBLE_BIN / "ansible-test"), *args, "--python", f"{sys.version_info.major}.{sys.version_info.minor}"],
        cwd=COLLECTION, env=ansible_env(), capture_output=True, text=True, timeout=540, stdin=subprocess.DEVNULL,
    )


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
    assert re.search(r"\b5 passed\b", done.stdout), done.stdout[-2000:]


def test_galaxy_builds_an_installable_collection(tmp_path):
    env = ansible_env()
    built = subprocess.run(
        [str(ANSIBLE_BIN / "ansible-galaxy"), "collection", "build", str(COLLECTION), "--output-path", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert built.returncode == 0, built
    tarball = tmp_path / "xbctl-xen-0.1.0.tar.gz"
    installed = subprocess.run(
        [str(ANSIBLE_BIN / "ansible-galaxy"), "collection", "install", "--force", str(tarball), "-p", str(tmp_path / "c")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert installed.returncode == 0, installed
    assert (tmp_path / "c" / "ansible_collections" / "xbctl" / "xen" / "plugins" / "modules" / "balloon.py").exists()


# ---------------------------------------------------------------- a fleet of three hosts

RECAP = re.compile(r"^(\w+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def run_playbook(inventory: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run(
        [str(ANSIBLE_BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOK), *args],
        env=ansible_env(ANSIBLE_LOCAL_TEMP=str(inventory.parent / "tmp")),
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    recap = {host: dict(ok=int(ok), changed=int(ch), failed=int(fa)) for host, ok, ch, _u, fa in RECAP.findall(done.stdout)}
    return done, recap


@pytest.fixture
def fleet(tmp_path, xs):
    """Three hosts: alpha and bravo simulated (bravo asked for a refused target), xs1 a real xenstored."""
    from conftest import Xbctl

    sims = {}
    for host in ("alpha", "bravo"):
        sims[host] = Xbctl(tmp_path / f"{host}.json")
        assert sims[host]("sim", "reset", "--clock", "manual").status == 0
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
      sim_state: {sims['alpha'].state_path}
      web_target: 512M
    bravo:
      xbctl_transport: sim
      sim_state: {sims['bravo'].state_path}
      web_target: 64M
    xs1:
      xbctl_transport: xenstore
      web_target: 600M
      xbctl_env:
        XENSTORED_PATH: "{xs.socket_path}"
        XBCTL_XENSTORE_TIMEOUT: "10"
"""
    )
    return inventory, sims, xs


def test_fleet_playbook_check_change_idempotence_and_per_host_failure(fleet):
    inventory, sims, xs = fleet
    before = {host: tool.snapshot() for host, tool in sims.items()}
    xs_before = xs.listing()

    # check mode: says what would change, changes nothing anywhere
    done, recap = run_playbook(inventory, "--check", "--diff")
    assert done.returncode == 2, done.stdout  # one host failed
    assert recap["alpha"] == dict(ok=3, changed=1, failed=0), done.stdout
    assert recap["xs1"] == dict(ok=3, changed=1, failed=0), done.stdout
    assert recap["bravo"]["failed"] == 1 and recap["bravo"]["changed"] == 0, done.stdout
    assert "-machdep.xen.balloon.target: 786432\n+machdep.xen.balloon.target: 524288" in done.stdout
    assert "-machdep.xen.balloon.target: 786432\n+machdep.xen.balloon.target: 614400" in done.stdout
    assert {host: tool.snapshot() for host, tool in sims.items()} == before
    assert xs.listing() == xs_before

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

    # the second run changes nothing
    done, recap = run_playbook(inventory)
    assert recap["alpha"] == dict(ok=3, changed=0, failed=0), done.stdout
    assert recap["xs1"] == dict(ok=3, changed=0, failed=0), done.stdout
    assert recap["bravo"]["failed"] == 1, done.stdout
    assert sims["alpha"].value("target", "web") == 524288 and xs.dom(1, "memory/target") == "614400"
