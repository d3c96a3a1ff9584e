"""Configuration files that someone other than root can change are not applied: by
`--system`, `policy` and `policy --follow`, each named with its owner and mode, the other
files still applied, the run's status 1. Real modes and owners (the suite runs as root;
files are given to user nobody with chown)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from pyxs import Client
from test_policy import Service, create_domain, wait_for_values, write_conf
from test_transport_choice import nobody  # noqa: F401  (the fixture: user nobody can run the installed xbctl)

GIB_KIB = 1024 * 1024
NOBODY = pwd.getpwnam("nobody").pw_uid
DAEMON = pwd.getpwnam("daemon").pw_uid
# The end of every run that left a file out, and its hint.
LEFT_OUT = "someone other than root can change"
HINT = "xbctl: hint: make each file and its directories root's and writable by root alone (chown root; chmod go-w)\n"


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests give files to other users: run them as root (as CI does)")


@pytest.fixture
def root(tmp_path) -> Path:
    """A configuration root: a vendor file for db, a main file for web's floor, and an
    administrator's file for web's target that each case makes unsafe its own way."""
    needs_root()
    conf = tmp_path / "root"
    write_conf(conf, "usr/lib/xbctl.d/10-vendor.conf", "[db]\ntarget = 1G\n")
    write_conf(conf, "etc/xbctl.d/50-web.conf", "[web]\ntarget = 700M\n")
    write_conf(conf, "etc/xbctl.conf", "[web]\nmin = 256M\n")
    for path in [conf, *conf.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)  # whatever the umask: the safe layout
    return conf


def run(xbctl, root: Path, *args: str):
    return xbctl(*args, env={"XBCTL_CONF_ROOT": str(root)})


def prefix(command: str) -> str:
    """How a run of COMMAND starts its message lines (the policy logs as a service)."""
    return "xbctl policy: " if command == "policy" else "xbctl: "


def link_to_a_file_anyone_can_write(root: Path) -> None:
    elsewhere = root / "srv"
    elsewhere.mkdir(mode=0o755)
    target = write_conf(elsewhere, "web.conf", "[web]\ntarget = 700M\n")
    target.chmod(0o666)
    (root / "etc/xbctl.d/50-web.conf").unlink()
    (root / "etc/xbctl.d/50-web.conf").symlink_to(target)


# (how the case spoils 50-web.conf, what names the culprit, with its owner and mode)
UNSAFE_WEB_FILE = [
    pytest.param(
        lambda root: (root / "etc/xbctl.d/50-web.conf").chmod(0o666),
        "{file}: not applied: writable by its group and every user (owner root, mode 0666)",
        id="file-0666",
    ),
    pytest.param(
        lambda root: (root / "etc/xbctl.d/50-web.conf").chmod(0o664),
        "{file}: not applied: writable by its group (owner root, mode 0664)",
        id="file-group-writable",
    ),
    pytest.param(
        lambda root: (root / "etc/xbctl.d/50-web.conf").chmod(0o646),
        "{file}: not applied: writable by every user (owner root, mode 0646)",
        id="file-world-writable",
    ),
    pytest.param(
        lambda root: os.chown(root / "etc/xbctl.d/50-web.conf", NOBODY, -1),
        "{file}: not applied: not owned by root (owner nobody, mode 0644)",
        id="file-of-nobody",
    ),
    pytest.param(
        lambda root: (root / "etc/xbctl.d").chmod(0o777),
        "{file}: not applied: its directory {root}/etc/xbctl.d is writable by its group and every user "
        "(owner root, mode 0777)",
        id="directory-0777",
    ),
    pytest.param(
        lambda root: (root / "etc/xbctl.d").chmod(0o1777),
        "{file}: not applied: its directory {root}/etc/xbctl.d is writable by its group and every user "
        "(owner root, mode 1777)",
        id="directory-sticky-1777",
    ),
    pytest.param(
        lambda root: os.chown(root / "etc/xbctl.d", NOBODY, -1),
        "{file}: not applied: its directory {root}/etc/xbctl.d is not owned by root (owner nobody, mode 0755)",
        id="directory-of-nobody",
    ),
    pytest.param(
        link_to_a_file_anyone_can_write,
        "{file}: not applied: the file it links to {root}/srv/web.conf is writable by its group and every "
        "user (owner root, mode 0666)",
        id="link-to-a-file-0666",
    ),
]


@pytest.mark.parametrize("command", ["--system", "policy"])
@pytest.mark.parametrize("spoil, message", UNSAFE_WEB_FILE)
def test_a_file_someone_else_can_change_is_named_and_left_out_and_the_others_apply(
    xbctl, root, command, spoil, message
):
    spoil(root)
    outcome = run(xbctl, root, command)
    assert outcome.status == 1, outcome
    line = prefix(command) + message.format(file=root / "etc/xbctl.d/50-web.conf", root=root)
    assert line + "\n" in outcome.stderr, outcome.stderr
    assert outcome.stderr.endswith(
        f"xbctl: 1 configuration file was not applied: {LEFT_OUT} it (see above); the other 2 were applied\n" + HINT
    ), outcome.stderr
    assert "Traceback" not in outcome.stderr
    # The two other files applied; the target in the file left out did not.
    assert xbctl.value("target", "db") == GIB_KIB
    assert xbctl.value("min", "web") == 256 * 1024
    assert xbctl.value("target", "web") == 768 * 1024


@pytest.mark.parametrize("command", ["--system", "policy"])
def test_an_unsafe_directory_above_leaves_out_every_file_below_it(xbctl, root, command):
    os.chown(root / "etc", NOBODY, -1)
    outcome = run(xbctl, root, command)
    assert outcome.status == 1, outcome
    start = prefix(command)
    assert (
        f"{start}{root}/etc/xbctl.d/50-web.conf: not applied: the directory {root}/etc above it is not owned by root "
        "(owner nobody, mode 0755)\n"
        f"{start}{root}/etc/xbctl.conf: not applied: its directory {root}/etc is not owned by root "
        "(owner nobody, mode 0755)\n"
    ) in outcome.stderr, outcome.stderr
    assert "2 configuration files were not applied" in outcome.stderr and "the other was applied" in outcome.stderr
    assert xbctl.value("target", "db") == GIB_KIB  # /usr/lib is not under etc
    assert (xbctl.value("target", "web"), xbctl.value("min", "web")) == (768 * 1024, 128 * 1024)


@pytest.mark.parametrize("command", ["--system", "policy"])
def test_a_configuration_root_anyone_can_write_leaves_out_everything(xbctl, root, command):
    root.chmod(0o777)
    before = xbctl.snapshot()
    outcome = run(xbctl, root, command)
    assert outcome.status == 1, outcome
    for relative in ("usr/lib/xbctl.d/10-vendor.conf", "etc/xbctl.d/50-web.conf", "etc/xbctl.conf"):
        assert (
            f"{prefix(command)}{root}/{relative}: not applied: the directory {root} above it is writable by its "
            "group and every user (owner root, mode 0777)\n"
        ) in outcome.stderr, outcome.stderr
    assert f"xbctl: 3 configuration files were not applied: {LEFT_OUT} them (see above)\n" in outcome.stderr
    assert "no configuration files under" not in outcome.stderr  # there are: they were left out
    assert xbctl.snapshot() == before


@pytest.mark.parametrize("command", ["--system", "policy"])
def test_a_file_left_out_is_not_even_read(xbctl, root, command):
    """Its lines could otherwise stop the others: a malformed one would be exit 2 for the whole run."""
    evil = root / "etc/xbctl.d/50-web.conf"
    evil.write_text("[web]\ntarget = lots\nbogus = 1\n")
    evil.chmod(0o666)
    outcome = run(xbctl, root, command)
    assert outcome.status == 1, outcome
    assert "lots" not in outcome.stderr and "bogus" not in outcome.stderr
    assert xbctl.value("target", "db") == GIB_KIB


def test_a_mask_in_a_directory_anyone_can_write_is_left_out_and_the_vendor_file_stays_out(xbctl, root):
    """The administrator's file of that name (a mask here) is what was meant: the vendor file it
    replaces does not come back in its place."""
    write_conf(root, "usr/lib/xbctl.d/50-web.conf", "[web]\ntarget = 600M\n").chmod(0o644)
    (root / "etc/xbctl.d/50-web.conf").unlink()
    (root / "etc/xbctl.d/50-web.conf").symlink_to(os.devnull)
    assert run(xbctl, root, "--system").status == 0  # a mask where only root writes: nothing, quietly
    (root / "etc/xbctl.d").chmod(0o777)
    outcome = run(xbctl, root, "--system")
    assert outcome.status == 1, outcome
    assert (
        f"xbctl: {root}/etc/xbctl.d/50-web.conf: not applied: its directory {root}/etc/xbctl.d is writable by "
        "its group and every user (owner root, mode 0777)\n"
    ) in outcome.stderr
    assert xbctl.value("target", "web") == 768 * 1024  # neither 600M nor anything else


def test_system_dry_run_json_and_quiet_still_name_the_file_and_fail(xbctl, root):
    evil = root / "etc/xbctl.d/50-web.conf"
    evil.chmod(0o666)
    named = f"xbctl: {evil}: not applied: writable by its group and every user (owner root, mode 0666)\n"
    before = xbctl.snapshot()
    dry = run(xbctl, root, "--dry-run", "--system")
    assert dry.status == 1 and named in dry.stderr, dry
    assert "the other 2 were checked" in dry.stderr
    assert xbctl.snapshot() == before
    document = run(xbctl, root, "--json", "--system")
    assert document.status == 1 and named in document.stderr, document
    written = json.loads(document.stdout)  # one document: what applied (no error document after it)
    assert [d["domain"]["name"] for d in written["domains"]] == ["db", "web"]
    assert all(
        change["origin"].startswith((f"{root}/usr/lib/", f"{root}/etc/xbctl.conf"))
        for d in written["domains"]
        for change in d["changes"]
    )
    quiet = run(xbctl, root, "-q", "--system")
    assert quiet.status == 1 and quiet.stdout == "" and quiet.stderr.startswith(named), quiet


def test_policy_dry_run_names_the_file_and_fails(xbctl, root):
    evil = root / "etc/xbctl.d/50-web.conf"
    os.chown(evil, NOBODY, -1)
    before = xbctl.snapshot()
    outcome = run(xbctl, root, "--dry-run", "policy")
    assert outcome.status == 1, outcome
    assert f"xbctl policy: {evil}: not applied: not owned by root (owner nobody, mode 0644)\n" in outcome.stderr
    assert "db (2): machdep.xen.balloon.target: 1572864 -> 1048576" in outcome.stdout
    assert "700" not in outcome.stdout and "716800" not in outcome.stdout
    assert xbctl.snapshot() == before


def test_the_safe_layout_applies_quietly(xbctl, root):
    """The control case: the same files, root's and 0644 in 0755 directories, apply with status 0."""
    for command in ("--system", "policy"):
        outcome = run(xbctl, root, command)
        assert outcome.status == 0 and "not applied" not in outcome.stderr, outcome
    assert xbctl.value("target", "web") == 700 * 1024


# ---------------------------------------------------------------- the service


def test_follow_names_the_file_it_leaves_out_and_applies_the_others(private_xs, tmp_path):
    needs_root()
    conf = tmp_path / "conf"
    write_conf(conf, "etc/xbctl.conf", "[app]\ntarget = 512M\nmin = 256M\n")
    evil = write_conf(conf, "etc/xbctl.d/90-evil.conf", "[app]\ntarget = 900M\n")
    evil.chmod(0o666)
    service = Service(private_xs, conf)
    try:
        service.wait_for_line(f"{evil}: not applied: writable by its group and every user (owner root, mode 0666)")
        service.wait_for_line(f"applying {conf}/etc/xbctl.conf to the domains not configured yet")
        service.wait_for_line("following @introduceDomain")
        with Client(unix_socket_path=str(private_xs.socket_path)) as client:
            create_domain(client, 6, "app")
            client.introduce_domain(6, 0x1006, 16)
        wait_for_values(
            private_xs, 6, {"memory/target": str(512 * 1024), "memory/dynamic-min": str(256 * 1024)}, timeout_s=10.0
        )
    finally:
        assert service.stop() == 0
    assert "921600" not in "".join(service.lines)


# ---------------------------------------------------------------- a user's own configuration


def as_nobody(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", shutil.which("xbctl"), *args],
        env={**os.environ, "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_user_trusts_root_and_itself_and_no_one_else(nobody):  # noqa: F811  (the fixture imported above)
    """Run by nobody on its own XBCTL_CONF_ROOT: its own files and root's apply; another user's do not."""
    home = Path(tempfile.mkdtemp(prefix="xbctl-nobody-", dir="/tmp"))  # /tmp: nobody can reach it
    try:
        conf = home / "conf"
        own = write_conf(conf, "etc/xbctl.d/10-own.conf", "[web]\ntarget = 700M\n")
        roots = write_conf(conf, "etc/xbctl.d/20-root.conf", "[web]\nmin = 256M\n")
        other = write_conf(conf, "etc/xbctl.d/30-other.conf", "[db]\ntarget = 1G\n")
        for path in [home, *home.rglob("*")]:
            os.chown(path, NOBODY, -1)
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        os.chown(roots, 0, -1)
        os.chown(other, DAEMON, -1)
        env = {"XBCTL_CONF_ROOT": str(conf), "XBCTL_TRANSPORT": "sim", "XBCTL_SIM_STATE": str(home / "sim.json")}
        done = as_nobody(["--system"], env)
        assert done.returncode == 1, done
        assert done.stderr.startswith(
            f"xbctl: {other}: not applied: not owned by root or nobody (who runs xbctl) (owner daemon, mode 0644)\n"
        ), done.stderr
        assert done.stdout == (
            f"* Applying {own} ...\nweb: machdep.xen.balloon.target: 786432 -> 716800\n"
            f"* Applying {roots} ...\nweb: machdep.xen.balloon.min: 131072 -> 262144\n"
        ), done.stdout
        read = as_nobody(["-d", "db", "-n", "target"], env)
        assert read.stdout == "1572864\n", read
    finally:
        shutil.rmtree(home)
