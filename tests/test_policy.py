"""Configuration files in sysctl's order, `xbctl policy`, and `xbctl policy --follow` over the real xenstored."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import assert_clean_failure
from pyxs import Client
from xen_fixtures import XenHost, lay_out_host

from xbctl.conf import configuration_files

GIB_KIB = 1024 * 1024


def write_conf(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------- the files and their order


def test_files_in_sysctl_order(tmp_path):
    root = tmp_path / "root"
    vendor_only = write_conf(root, "usr/lib/xbctl.d/20-vendor.conf", "")
    overridden = write_conf(root, "usr/lib/xbctl.d/50-both.conf", "")
    admin = write_conf(root, "etc/xbctl.d/50-both.conf", "")
    early = write_conf(root, "etc/xbctl.d/10-early.conf", "")
    main = write_conf(root, "etc/xbctl.conf", "")
    masked = write_conf(root, "usr/lib/xbctl.d/30-masked.conf", "min=1G\n")
    (root / "etc/xbctl.d/30-masked.conf").symlink_to(os.devnull)
    write_conf(root, "etc/xbctl.d/.hidden.conf", "")
    write_conf(root, "etc/xbctl.d/notes.txt", "")
    write_conf(root, "etc/xbctl.d/50-both.conf.dpkg-old", "")
    (root / "etc/xbctl.d/dir.conf").mkdir()
    files = configuration_files(str(root))
    # By file name across both directories, /etc's replacing /usr/lib's; xbctl.conf last.
    assert files == [str(early), str(vendor_only), str(root / "etc/xbctl.d/30-masked.conf"), str(admin), str(main)]
    assert str(overridden) not in files and str(masked) not in files


def test_conf_root_from_environment(tmp_path, monkeypatch):
    main = write_conf(tmp_path, "etc/xbctl.conf", "")
    monkeypatch.setenv("XBCTL_CONF_ROOT", str(tmp_path))
    assert configuration_files() == [str(main)]
    monkeypatch.setenv("XBCTL_CONF_ROOT", str(tmp_path / "nothing-here"))
    assert configuration_files() == []


def test_policy_applies_later_files_over_earlier(xbctl, tmp_path):
    root = tmp_path / "root"
    write_conf(root, "usr/lib/xbctl.d/50-site.conf", "[web]\ntarget = 900M\n")  # replaced by /etc's
    write_conf(root, "etc/xbctl.d/50-site.conf", "[web]\ntarget = 700M\nmin = 200M\n")
    write_conf(root, "etc/xbctl.d/60-db.conf", "[db]\nmin = 600M\n")
    write_conf(root, "etc/xbctl.conf", "[1]\ntarget = 640M\n")  # web by its id, read last
    env = {"XBCTL_CONF_ROOT": str(root)}
    outcome = xbctl("policy", env=env)
    assert outcome.status == 0, outcome
    assert outcome.stdout == ""
    assert xbctl.value("target", "web") == 640 * 1024
    assert xbctl.value("min", "web") == 200 * 1024
    assert xbctl.value("min", "db") == 600 * 1024
    # Which file set what: FILE:LINE on every change, in the order the lines apply.
    assert (
        f"web (1): machdep.xen.balloon.target: 786432 -> 716800 ({root}/etc/xbctl.d/50-site.conf:2)\n" in outcome.stderr
    )
    assert f"web (1): machdep.xen.balloon.target: 716800 -> 655360 ({root}/etc/xbctl.conf:2)\n" in outcome.stderr
    assert f"web (1): machdep.xen.balloon.min: 131072 -> 204800 ({root}/etc/xbctl.d/50-site.conf:3)\n" in outcome.stderr
    assert "900M" not in outcome.stderr and "921600" not in outcome.stderr
    # Applying it again changes nothing.
    before = xbctl.snapshot()
    again = xbctl("-q", "policy", env=env)
    assert again == type(again)(0, "", ""), again
    assert xbctl.snapshot() == before


def test_refusal_for_one_domain_does_not_stop_the_others(xbctl, tmp_path):
    root = tmp_path / "root"
    write_conf(root, "etc/xbctl.conf", "[db]\nmin = 9G\n[ghost]\ntarget = 1G\n[web]\ntarget = 600M\n")
    outcome = xbctl("policy", env={"XBCTL_CONF_ROOT": str(root)})
    assert outcome.status == 1, outcome
    assert (
        f"db (2): not applied: {root}/etc/xbctl.conf:2: machdep.xen.balloon.min: Operation not permitted"
        in outcome.stderr
    )
    assert f"[ghost] ({root}/etc/xbctl.conf:4): no such domain now; skipped" in outcome.stderr
    assert xbctl.value("target", "web") == 600 * 1024
    assert xbctl.value("min", "db") != 9 * GIB_KIB


@pytest.mark.parametrize(
    "text, status, fragment",
    [
        ("[web]\ntarget = lots\n", 2, "xbctl.conf:2: machdep.xen.balloon.target"),
        ("[web]\nbogus = 1\n", 4, "xbctl.conf:2: bogus: unknown node"),  # as -f: an unknown name is exit 4
        ("[web\ntarget = 1G\n", 2, "xbctl.conf:1"),
    ],
)
def test_a_file_that_does_not_parse_is_left_out_and_the_others_apply(xbctl, tmp_path, text, status, fragment):
    root = tmp_path / "root"
    write_conf(root, "etc/xbctl.d/10-good.conf", "[db]\nmin = 600M\n")
    bad = write_conf(root, "etc/xbctl.conf", text)
    outcome = xbctl("policy", env={"XBCTL_CONF_ROOT": str(root)})
    assert outcome.status == status, outcome
    assert f"xbctl policy: {root}/etc/{fragment}" in outcome.stderr and f"({bad} not applied)" in outcome.stderr
    assert outcome.stderr.endswith(
        "xbctl: 1 configuration file was not applied (see above); the other was applied\n"
        "xbctl: hint: correct the lines cited above; the files apply as a whole or not at all\n"
    ), outcome
    assert xbctl.value("min", "db") == 600 * 1024  # 10-good.conf applied
    assert (xbctl.value("target", "web"), xbctl.value("min", "web")) == (786432, 131072)  # xbctl.conf did not


def test_a_refused_file_is_left_out_for_that_domain_alone(xbctl, tmp_path):
    root = tmp_path / "root"
    every = write_conf(root, "etc/xbctl.d/10-every.conf", "[*]\nmin = 600M\n[web]\n-machdep.xen.balloon.colour = 1\n")
    write_conf(root, "etc/xbctl.d/20-mail.conf", "[mail]\ntarget = 400M\n")
    outcome = xbctl("policy", env={"XBCTL_CONF_ROOT": str(root)})
    assert outcome.status == 1, outcome
    # mail's max is 512 MiB: 10-every.conf is left out for mail, whose 20-mail.conf still applies.
    assert (
        f"mail (3): not applied: {every}:2: machdep.xen.balloon.min: Operation not permitted: "
        f"600 MiB (614400 KiB) is above max 512 MiB (524288 KiB); {every} left out for this domain"
    ) in outcome.stderr
    assert (
        f"web (1): ignored: {every}:4: machdep.xen.balloon.colour: unknown node" in outcome.stderr
    )  # "-": not a failure
    assert xbctl.value("target", "mail") == 400 * 1024 and xbctl.value("min", "mail") == 256 * 1024
    assert [xbctl.value("min", d) for d in ("web", "db")] == [600 * 1024, 600 * 1024]
    # mail counts as configured (its other file was written): the next pass leaves every domain alone.
    again = xbctl("policy", env={"XBCTL_CONF_ROOT": str(root)})
    assert again.status == 0 and "not applied" not in again.stderr, again


def test_follow_refused_on_the_simulator(xbctl, tmp_path):
    before = xbctl.snapshot()
    outcome = xbctl("policy", "--follow", "--transport", "sim", env={"XBCTL_CONF_ROOT": str(tmp_path)})
    assert_clean_failure(outcome, 2, "policy --follow watches Xenstore")
    assert xbctl.snapshot() == before


def test_policy_takes_no_domain_option(xbctl, tmp_path):
    outcome = xbctl("-d", "web", "policy", env={"XBCTL_CONF_ROOT": str(tmp_path)})
    assert_clean_failure(outcome, 2, "-d does not go with the policy command")


# ---------------------------------------------------------------- once in a domain's life (the simulator)

WEB_CONF = "[web]\ntarget = 700M\nmin = 200M\n[db]\nmin = 600M\n"


@pytest.fixture
def conf_env(tmp_path):
    """A configuration of the test's own: web's target and floor, db's floor."""
    write_conf(tmp_path / "conf", "etc/xbctl.conf", WEB_CONF)
    return {"XBCTL_CONF_ROOT": str(tmp_path / "conf")}


def sim_record(xbctl) -> dict:
    """The simulator's record of configured domains (beside its state file), by domain id."""
    path = xbctl.state_path.with_name(xbctl.state_path.name + ".configured.json")
    return json.loads(path.read_text())["domains"]


def test_policy_configures_a_domain_once_in_its_life_on_the_simulator(xbctl, conf_env):
    first = xbctl("policy", env=conf_env)
    assert first.status == 0, first
    assert (xbctl.value("target", "web"), xbctl.value("min", "db")) == (700 * 1024, 600 * 1024)
    # An administrator's change by hand stays: a second pass leaves configured domains alone.
    assert xbctl("-q", "-d", "web", "target", "650M").status == 0
    assert xbctl("-q", "-d", "db", "min", "500M").status == 0
    before = xbctl.snapshot()
    again = xbctl("policy", env=conf_env)
    assert (again.status, again.stdout) == (0, ""), again
    assert xbctl.snapshot() == before
    assert sorted(sim_record(xbctl)) == ["0", "1", "2", "3"]  # with or without settings
    assert "web (1): configured at " in again.stderr and "; left alone" in again.stderr
    assert "left alone: 4 domain(s) configured earlier" in again.stderr
    assert "->" not in again.stderr
    assert xbctl.snapshot() == before
    # `sim reset` destroys every domain and creates it again, with the same ids: new domains.
    assert xbctl("sim", "reset", "--clock", "manual").status == 0
    assert xbctl.value("target", "web") == 768 * 1024
    reborn = xbctl("policy", env=conf_env)
    assert reborn.status == 0, reborn
    assert "web (1): machdep.xen.balloon.target: 786432 -> 716800" in reborn.stderr
    assert (xbctl.value("target", "web"), xbctl.value("min", "db")) == (700 * 1024, 600 * 1024)


def test_policy_dry_run_shows_the_plan_and_writes_nothing_on_the_simulator(xbctl, conf_env):
    before = xbctl.snapshot()
    dry = xbctl("--dry-run", "policy", env=conf_env)
    conf = conf_env["XBCTL_CONF_ROOT"] + "/etc/xbctl.conf"
    assert dry.status == 0, dry
    assert dry.stdout == (
        f"web (1): machdep.xen.balloon.target: 786432 -> 716800 ({conf}:2)\n"
        f"web (1): machdep.xen.balloon.min: 131072 -> 204800 ({conf}:3)\n"
        f"db (2): machdep.xen.balloon.min: 524288 -> 614400 ({conf}:5)\n"
    )
    assert "dry run: nothing was written" in dry.stderr
    assert xbctl.snapshot() == before
    assert not xbctl.state_path.with_name("sim.json.configured.json").exists()  # nor recorded
    # What a real pass then does is what the dry run said.
    assert xbctl("-q", "policy", env=conf_env).status == 0
    assert xbctl("-q", "-d", "web", "target", "650M").status == 0
    # Configured domains are left alone: nothing to show, unless --reapply asks.
    assert xbctl("--dry-run", "policy", env=conf_env).stdout == ""
    forced = xbctl("--dry-run", "policy", "--reapply", "web", env=conf_env)
    assert forced.stdout == f"web (1): machdep.xen.balloon.target: 665600 -> 716800 ({conf}:2)\n", forced
    assert xbctl.value("target", "web") == 650 * 1024


def test_reapply_applies_again_to_the_domains_named_only(xbctl, conf_env):
    assert xbctl("-q", "policy", env=conf_env).status == 0
    assert xbctl("-q", "-d", "web", "target", "650M").status == 0
    assert xbctl("-q", "-d", "db", "min", "500M").status == 0
    web = xbctl("policy", "--reapply", "web", env=conf_env)
    assert web.status == 0, web
    assert "web (1): machdep.xen.balloon.target: 665600 -> 716800" in web.stderr
    assert (xbctl.value("target", "web"), xbctl.value("min", "db")) == (700 * 1024, 500 * 1024)
    # Without names: every domain, configured earlier or not.
    assert xbctl("-q", "-d", "web", "target", "650M").status == 0
    every = xbctl("policy", "--reapply", env=conf_env)
    assert every.status == 0, every
    assert (xbctl.value("target", "web"), xbctl.value("min", "db")) == (700 * 1024, 600 * 1024)


@pytest.mark.parametrize(
    "args, status, says",
    [
        (["policy", "web"], 2, "policy takes domains only with --reapply, got 'web'"),
        (["policy", "--reapply", "web", "nosuch"], 4, "domain 'nosuch': unknown domain"),
        (["policy", "--reapply", ""], 2, "empty domain name"),
        (["--dry-run", "policy", "--follow"], 2, "policy --follow is the service; it takes no --dry-run"),
        (["policy", "--follow", "--reapply"], 2, "policy --follow is the service; it takes no --reapply"),
    ],
)
def test_policy_bad_use_changes_nothing(xbctl, conf_env, args, status, says):
    before = xbctl.snapshot()
    assert_clean_failure(xbctl(*args, env=conf_env), status, says)
    assert xbctl.snapshot() == before
    assert not xbctl.state_path.with_name("sim.json.configured.json").exists()


def test_record_is_replaced_whole_or_not_at_all(xbctl, conf_env, monkeypatch):
    import xbctl.configured as configured

    assert xbctl("-q", "policy", env=conf_env).status == 0
    record = xbctl.state_path.with_name("sim.json.configured.json")
    kept = record.read_text()
    renamed = []
    replace = os.replace

    def crash(source, target):  # the record's writer fails before its temporary takes the record's place
        if Path(target) != record:
            return replace(source, target)
        renamed.append(target)
        raise OSError(28, "No space left on device")

    assert xbctl("sim", "reset", "--clock", "manual").status == 0  # every domain new: all recorded anew
    left = record.with_name(f".{record.name}.999999.tmp")  # a writer killed before its rename
    left.write_text("{")
    monkeypatch.setattr(configured.os, "replace", crash)
    outcome = xbctl("policy", env=conf_env)
    assert_clean_failure_after_log(
        outcome, 3, f"the record of configured domains {record}: cannot write it: No space left on device"
    )
    assert renamed == [record]
    assert record.read_text() == kept  # the old record, whole
    assert sorted(p.name for p in record.parent.iterdir() if p.name.endswith(".tmp")) == []


def assert_clean_failure_after_log(outcome, status: int, fragment: str) -> None:
    """OUTCOME (a policy run, which logs on stderr) failed with STATUS, saying FRAGMENT as `xbctl: ...`."""
    assert outcome.status == status, outcome
    assert outcome.stdout == "" and "Traceback" not in outcome.stderr, outcome
    assert f"xbctl: {fragment}" in outcome.stderr, outcome


def test_an_unwritable_record_fails_before_anything_is_written(xs, tmp_path):
    root = tmp_path / "conf"
    write_conf(root, "etc/xbctl.conf", "[web]\ntarget = 700M\n")
    (tmp_path / "a-file").write_text("")
    env = {"XBCTL_CONF_ROOT": str(root), "XBCTL_RUNTIME_DIR": str(tmp_path / "a-file" / "xbctl")}
    before = xs.listing()
    assert_clean_failure(
        xs.process("policy", env=env), 3, "a-file/xbctl/configured.json: cannot write it: Not a directory"
    )
    assert_clean_failure(xs.process("policy", "--follow", env=env, timeout=30), 3, "cannot write it: Not a directory")
    assert xs.listing() == before
    # A dry run writes no record, so it needs none.
    dry = xs.process("--dry-run", "policy", env=env)
    assert dry.status == 0 and dry.stdout.startswith("web (1): machdep.xen.balloon.target: 786432 -> 716800"), dry


def test_policy_help_lists_its_options(xbctl):
    shown = xbctl("policy", "--help")
    assert shown.status == 0 and shown.stdout.startswith("Usage: xbctl policy [OPTIONS] [DOMAIN]...\n"), shown
    for option in ("--follow", "--reapply", "--dry-run"):
        assert option in shown.stdout, (option, shown.stdout)
    assert "left alone" in shown.stdout
    top = xbctl("--help").stdout
    assert "with --system or policy" in " ".join(top.split())


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"format": "something else"}',
        '{"format": "xbctl-configured-domains", "version": 99, "domains": {}}',
    ],
)
def test_a_damaged_record_changes_nothing(xbctl, conf_env, text):
    record = xbctl.state_path.with_name("sim.json.configured.json")
    record.write_text(text)
    before = xbctl.snapshot()
    for args in (["policy"], ["--dry-run", "policy"], ["policy", "--reapply"]):
        assert_clean_failure(xbctl(*args, env=conf_env), 3, f"the record of configured domains {record}", "remove it")
    assert xbctl.snapshot() == before
    assert record.read_text() == text


# ---------------------------------------------------------------- --follow over the real xenstored

APP_CONF = """\
# the floor and target of app, wherever it runs
[app]
machdep.xen.balloon.target = 512M
machdep.xen.balloon.min = 256M
[web]
min = 200M
"""


class Service:
    """`xbctl policy --follow` running against a XenHost, its stderr lines collected."""

    def __init__(self, host: XenHost, conf_root: Path, env: dict | None = None) -> None:
        self.host = host
        self.process = host.popen("policy", "--follow", env={"XBCTL_CONF_ROOT": str(conf_root), **(env or {})})
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for_line(self, fragment: str, after: int = 0, timeout_s: float = 20.0) -> int:
        """The number of lines read once one after AFTER holds FRAGMENT."""
        deadline = time.monotonic() + timeout_s
        while True:
            for index, line in enumerate(self.lines[after:], start=after):
                if fragment in line:
                    return index + 1
            assert self.process.poll() is None, ("the service ended", self.lines)
            assert time.monotonic() < deadline, (f"no line with {fragment!r}", self.lines)
            time.sleep(0.02)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=20)
        finally:
            self.process.kill()
        self.reader.join(timeout=5)
        return status


@pytest.fixture
def service(private_xs, tmp_path):
    root = tmp_path / "conf"
    write_conf(root, "etc/xbctl.conf", APP_CONF)
    running = Service(private_xs, root)
    running.conf_root = root
    running.conf_path = root / "etc/xbctl.conf"
    running.wait_for_line("following @introduceDomain")
    yield running
    running.stop()


def restart(service: Service) -> Service:
    """Stop SERVICE (SIGTERM, exit 0) and start it again on the same configuration and record."""
    assert service.stop() == 0
    again = Service(service.host, service.conf_root)
    again.conf_root, again.conf_path = service.conf_root, service.conf_path
    again.wait_for_line("following @introduceDomain")
    return again


def create_domain(
    client: Client,
    domid: int,
    name: str | None,
    static_max_kib: int = GIB_KIB,
    uuid: str | None = None,
    start_time: str | None = None,
) -> None:
    """DOMID's nodes as libxl writes them before it introduces the domain (NAME None: not yet);
    with UUID, its `vm` link to /vm/UUID holding uuid, name and START_TIME."""
    base = f"/local/domain/{domid}"
    client.mkdir(base.encode())
    client.set_perms(base.encode(), [b"n0", f"r{domid}".encode()])
    nodes = [
        ("domid", str(domid)),
        ("memory/static-max", str(static_max_kib)),
        ("memory/target", str(static_max_kib)),
        ("memory/videoram", "-1"),
    ]
    if name is not None:
        nodes.insert(0, ("name", name))
    if uuid is not None:
        vm = f"/vm/{uuid}"
        nodes.insert(0, ("vm", vm))
        client.mkdir(vm.encode())
        client.set_perms(vm.encode(), [b"n0", f"r{domid}".encode()])
        for rel, value in (("uuid", uuid), ("name", name or ""), ("start_time", start_time or "")):
            client.write(f"{vm}/{rel}".encode(), value.encode())
    for rel, value in nodes:
        client.write(f"{base}/{rel}".encode(), value.encode())


def destroy_domain(client: Client, domid: int, uuid: str | None = None) -> None:
    """What libxl does when a domain is destroyed: its trees go, then xenstored releases it."""
    client.delete(f"/local/domain/{domid}".encode())
    if uuid is not None:
        client.delete(f"/vm/{uuid}".encode())
    release_domain(client, domid)


def runtime_record(host: XenHost) -> dict:
    """The record of configured domains in the host's runtime directory, by domain id."""
    return json.loads((host.runtime_dir / "configured.json").read_text())["domains"]


def release_domain(client: Client, domid: int) -> None:
    """XS_RELEASE, as the toolstack sends it when a domain is destroyed (fires @releaseDomain)."""
    client.SU = True  # pyxs asks /proc/xen/capabilities, absent here; a socket client is privileged
    client.release_domain(domid)


def wait_for_values(host: XenHost, domid: int, expected: dict[str, str], timeout_s: float) -> float:
    """Seconds until DOMID's nodes hold EXPECTED (read with the C client); fails after TIMEOUT_S."""
    started = time.monotonic()
    while True:
        found = {
            rel: host.read(f"/local/domain/{domid}/{rel}") if host.exists(f"/local/domain/{domid}/{rel}") else None
            for rel in expected
        }
        elapsed = time.monotonic() - started
        if found == expected:
            return elapsed
        assert elapsed < timeout_s, (found, expected)
        time.sleep(0.01)


APPLIED = {"memory/target": str(512 * 1024), "memory/dynamic-min": str(256 * 1024)}


def test_follow_applies_at_start_and_to_a_domain_introduced_later(private_xs, service):
    # At start: web, which exists.
    assert private_xs.dom(1, "memory/dynamic-min") == str(200 * 1024)
    assert any(
        "[app] (" in line and "no such domain now; its settings apply when it appears" in line for line in service.lines
    ), service.lines
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        create_domain(client, 6, "app")
        assert not private_xs.exists("/local/domain/6/memory/dynamic-min")
        client.introduce_domain(6, 0x1006, 16)
    # Within a second of @introduceDomain (the bound), as the C client reads it.
    assert wait_for_values(private_xs, 6, APPLIED, timeout_s=5.0) < 1.0
    service.wait_for_line("app (6): machdep.xen.balloon.target: 1048576 -> 524288")
    # A reboot: the domain goes and comes back with the xl-config target again.
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        # libxl's order: the domain's tree goes (devices_destroy_cb), then the domain dies
        # and xenstored fires @releaseDomain.
        assert runtime_record(private_xs)["6"]["name"] == "app"
        client.delete(b"/local/domain/6")
        release_domain(client, 6)
        service.wait_for_line("domain 6 is gone")
        assert "6" not in runtime_record(private_xs)  # released: out of the record
        create_domain(client, 6, "app")  # the same id again: it must count as a new domain
        client.introduce_domain(6, 0x1006, 16)
    assert wait_for_values(private_xs, 6, APPLIED, timeout_s=5.0) < 1.0
    assert service.stop() == 0
    assert "Traceback" not in "".join(service.lines)


def test_follow_waits_for_a_name_that_comes_after_the_introduction(private_xs, service):
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        create_domain(client, 8, None)  # introduced before its name is written
        client.introduce_domain(8, 0x1008, 18)
        time.sleep(0.3)
        assert not private_xs.exists("/local/domain/8/memory/dynamic-min")
        client.write(b"/local/domain/8/name", b"app")
    assert wait_for_values(private_xs, 8, APPLIED, timeout_s=5.0) < 1.0
    # A domain whose name matches no section is left alone.
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        create_domain(client, 9, "other")
        client.introduce_domain(9, 0x1009, 19)
    service.wait_for_line("other (9): no settings for it")
    assert not private_xs.exists("/local/domain/9/memory/dynamic-min")
    assert private_xs.dom(9, "memory/target") == str(GIB_KIB)


def test_restart_leaves_a_domain_changed_by_hand(private_xs, service):
    # web got its floor when the service started; then an administrator changed it by hand.
    assert private_xs.dom(1, "memory/dynamic-min") == str(200 * 1024)
    private_xs.write("/local/domain/1/memory/dynamic-min", str(300 * 1024))
    # A package upgrade restarts the service: web is not configured again.
    service = restart(service)
    assert private_xs.dom(1, "memory/dynamic-min") == str(300 * 1024)
    assert sorted(runtime_record(private_xs)) == ["0", "1", "2", "3", "4", "5"]  # with settings or without
    assert any("web (1): configured at " in line and "left alone" in line for line in service.lines), service.lines
    assert not any("->" in line for line in service.lines), service.lines
    # It still configures the domains that appear.
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        create_domain(client, 6, "app")
        client.introduce_domain(6, 0x1006, 16)
    wait_for_values(private_xs, 6, APPLIED, timeout_s=5.0)
    assert service.stop() == 0


def test_sighup_rereads_the_configuration_and_leaves_configured_domains(private_xs, service):
    assert private_xs.dom(1, "memory/dynamic-min") == str(200 * 1024)
    private_xs.write("/local/domain/1/memory/dynamic-min", str(250 * 1024))  # by hand
    seen = len(service.lines)
    service.conf_path.write_text(APP_CONF.replace("min = 200M", "min = 300M").replace("256M", "320M"))
    service.process.send_signal(signal.SIGHUP)
    seen = service.wait_for_line("configuration re-read", after=seen)
    seen = service.wait_for_line("following @introduceDomain", after=seen)
    assert private_xs.dom(1, "memory/dynamic-min") == str(250 * 1024)  # web: left alone
    # A file that does not parse now is logged with FILE:LINE; the version read before stays in force.
    service.conf_path.write_text("[app]\nmin = lots\n")
    service.process.send_signal(signal.SIGHUP)
    service.wait_for_line(f"{service.conf_path}:2: machdep.xen.balloon.min: invalid size 'lots'", after=seen)
    service.wait_for_line(
        f"{service.conf_path}: does not parse now; the version read before stays in force", after=seen
    )
    # A domain that appears gets the settings re-read.
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        create_domain(client, 6, "app")
        client.introduce_domain(6, 0x1006, 16)
    wait_for_values(private_xs, 6, {**APPLIED, "memory/dynamic-min": str(320 * 1024)}, timeout_s=5.0)
    assert private_xs.dom(1, "memory/dynamic-min") == str(250 * 1024)
    assert service.stop() == 0


def test_xenstored_restart_leaves_a_domain_changed_by_hand(private_xs, service):
    assert private_xs.dom(1, "memory/dynamic-min") == str(200 * 1024)
    # The service is held still while xenstored dies, comes back and the toolstack refills
    # it (with web's floor as the administrator set it): only then does it find out.
    service.process.send_signal(signal.SIGSTOP)
    seen = len(service.lines)
    try:
        private_xs.daemon.kill()
        private_xs.daemon.start()
        with Client(unix_socket_path=str(private_xs.socket_path)) as client:
            lay_out_host(client)  # the restarted daemon's store is empty until the toolstack refills it
            client.write(b"/local/domain/1/memory/dynamic-min", str(250 * 1024).encode())
    finally:
        service.process.send_signal(signal.SIGCONT)
    seen = service.wait_for_line("trying again in 0.1 s", after=seen)
    assert ": connection lost" in service.lines[seen - 1], service.lines  # with its reason or without
    seen = service.wait_for_line("following @introduceDomain", after=seen)  # reconnected
    assert private_xs.dom(1, "memory/dynamic-min") == str(250 * 1024)
    assert not any("->" in line for line in service.lines[seen:]), service.lines
    # It follows new domains again.
    follows_a_new_domain_then_stops(private_xs, service)


def follows_a_new_domain_then_stops(private_xs, service) -> None:
    """The service configures a domain introduced now (app, id 6), then stops cleanly."""
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        create_domain(client, 6, "app")
        client.introduce_domain(6, 0x1006, 16)
    wait_for_values(private_xs, 6, APPLIED, timeout_s=5.0)
    assert service.stop() == 0
    assert "Traceback" not in "".join(service.lines)


def test_xenstored_that_goes_away_does_not_end_the_service(private_xs, service):
    seen = len(service.lines)
    private_xs.daemon.kill()
    # "connection lost" alone when the daemon's end closed, "connection lost (Connection reset
    # by peer)" when it was reset: which one depends on where the service was when it died.
    seen = service.wait_for_line("trying again in 0.1 s", after=seen)
    assert ": connection lost" in service.lines[seen - 1], service.lines
    time.sleep(0.5)  # a while without a daemon: the service keeps trying
    assert service.process.poll() is None
    private_xs.daemon.start()
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        lay_out_host(client)
    service.wait_for_line("following @introduceDomain", after=seen)
    follows_a_new_domain_then_stops(private_xs, service)


def test_backoff_starts_again_from_its_smallest_step_after_each_reconnection(private_xs, service):
    # Three times: xenstored dies and stays away long enough for the waits to grow, then
    # comes back. Each loss after a working connection waits the smallest step first.
    for restart in range(3):
        seen = len(service.lines)
        private_xs.daemon.kill()
        seen = service.wait_for_line("trying again in", after=seen)
        assert service.lines[seen - 1].rstrip().endswith("trying again in 0.1 s"), (restart, service.lines)
        service.wait_for_line("trying again in 0.4 s", after=seen)  # the waits grew while it was away
        private_xs.daemon.start()
        with Client(unix_socket_path=str(private_xs.socket_path)) as client:
            lay_out_host(client)
        service.wait_for_line("following @introduceDomain", after=seen)
    waits = [line.rsplit("trying again in ", 1)[1].strip() for line in service.lines if "trying again in" in line]
    assert waits.count("0.1 s") == 3, waits
    assert service.stop() == 0
    assert "Traceback" not in "".join(service.lines)


APP_UUID = "6a6a6a6a-0000-4000-8000-000000000006"


def test_a_domain_created_again_with_its_id_is_configured_again(private_xs, service):
    # app as xl creates it with uuid= in its configuration: the same uuid every time.
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        create_domain(client, 6, "app", uuid=APP_UUID, start_time="1700000000.25")
        client.introduce_domain(6, 0x1006, 16)
    wait_for_values(private_xs, 6, APPLIED, timeout_s=5.0)
    private_xs.write("/local/domain/1/memory/dynamic-min", str(250 * 1024))  # web, by hand
    # While the service is down, app is destroyed and created again with the same id and uuid.
    assert service.stop() == 0
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        destroy_domain(client, 6, APP_UUID)
        create_domain(client, 6, "app", uuid=APP_UUID, start_time="1700000600.50")
        client.introduce_domain(6, 0x1006, 16)
    assert private_xs.dom(6, "memory/target") == str(GIB_KIB)
    service = restart(service)
    assert private_xs.dom(6, "memory/target") == str(512 * 1024)  # a new domain: configured
    assert private_xs.dom(1, "memory/dynamic-min") == str(250 * 1024)  # web: still left alone
    assert runtime_record(private_xs)["6"]["instance"] == {"vm": f"/vm/{APP_UUID}", "start_time": "1700000600.50"}
    # Again while the service is held still, so that it sees the domain there at both events.
    service.process.send_signal(signal.SIGSTOP)
    seen = len(service.lines)
    try:
        with Client(unix_socket_path=str(private_xs.socket_path)) as client:
            destroy_domain(client, 6, APP_UUID)
            create_domain(client, 6, "app", uuid=APP_UUID, start_time="1700001200.75")
            client.introduce_domain(6, 0x1006, 16)
    finally:
        service.process.send_signal(signal.SIGCONT)
    wait_for_values(private_xs, 6, APPLIED, timeout_s=5.0)
    service.wait_for_line("domain 6 is gone and created again", after=seen)
    assert private_xs.dom(1, "memory/dynamic-min") == str(250 * 1024)
    assert service.stop() == 0


def test_policy_dry_run_and_reapply_over_xenstore(xs, tmp_path):
    root = tmp_path / "conf"
    conf = write_conf(root, "etc/xbctl.conf", WEB_CONF)
    env = {"XBCTL_CONF_ROOT": str(root)}
    before = xs.listing()
    dry = xs.process("--dry-run", "policy", env=env)
    assert dry.status == 0, dry
    assert dry.stdout == (
        f"web (1): machdep.xen.balloon.target: 786432 -> 716800 ({conf}:2)\n"
        f"web (1): machdep.xen.balloon.min: 262144 -> 204800 ({conf}:3)\n"
        f"db (2): machdep.xen.balloon.min: 524288 -> 614400 ({conf}:5)\n"
    )
    assert "dry run: nothing was written" in dry.stderr
    assert xs.listing() == before  # Debian's xenstore-ls: not one node written
    assert not (xs.runtime_dir / "configured.json").exists()
    # One pass configures every domain; a change by hand then stays through further passes.
    assert xs.process("-q", "policy", env=env).status == 0
    with Client(unix_socket_path=str(xs.socket_path)) as client:
        client.write(b"/local/domain/1/memory/target", str(650 * 1024).encode())
        client.write(b"/local/domain/2/memory/dynamic-min", str(500 * 1024).encode())
    again = xs.process("policy", env=env)
    assert (again.status, again.stdout) == (0, ""), again
    assert (xs.dom(1, "memory/target"), xs.dom(2, "memory/dynamic-min")) == (str(650 * 1024), str(500 * 1024))
    assert xs.process("--dry-run", "policy", env=env).stdout == ""
    # --reapply web: web alone gets its settings back; --dry-run first says so.
    before = xs.listing()
    forced = xs.process("--dry-run", "policy", "--reapply", "web", env=env)
    assert forced.stdout == f"web (1): machdep.xen.balloon.target: 665600 -> 716800 ({conf}:2)\n", forced
    assert xs.listing() == before
    web = xs.process("policy", "--reapply", "web", env=env)
    assert web.status == 0, web
    with Client(unix_socket_path=str(xs.socket_path)) as client:  # pyxs, as another reader
        assert client.read(b"/local/domain/1/memory/target") == str(700 * 1024).encode()
        assert client.read(b"/local/domain/2/memory/dynamic-min") == str(500 * 1024).encode()


def test_follow_with_a_file_that_does_not_parse_applies_the_others_and_runs_on(private_xs, tmp_path):
    root = tmp_path / "conf"
    bad = write_conf(root, "etc/xbctl.d/10-bad.conf", "[web]\nmin = 1 G\n[db]\nmin = 900M\n")
    write_conf(root, "etc/xbctl.d/20-unknown.conf", "[db]\nbogus = 1\n")  # exit 4 would have ended it
    write_conf(root, "etc/xbctl.conf", "[web]\nmin = 200M\n")
    service = Service(private_xs, root)
    try:
        service.wait_for_line("following @introduceDomain")
        log = "".join(service.lines)
        assert f"xbctl policy: {bad}:2: machdep.xen.balloon.min: invalid size '1 G'" in log, log
        assert f"{root}/etc/xbctl.d/20-unknown.conf:2: bogus: unknown node" in log, log
        assert private_xs.dom(1, "memory/dynamic-min") == str(200 * 1024)  # xbctl.conf applied
        assert not private_xs.exists("/local/domain/2/memory/dynamic-min")  # 10-bad.conf did not
        assert service.process.poll() is None
    finally:
        assert service.stop() == 0


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_follow_is_ready_for_systemd_once_the_running_domains_are_configured(private_xs, tmp_path, abstract):
    root = tmp_path / "conf"
    write_conf(root, "etc/xbctl.d/50-guests.conf", "[web]\nmin = 200M\n[d*]\nmin = 600M\n[mail]\ntarget = 400M\n")
    expected = {
        (1, "memory/dynamic-min"): str(200 * 1024),
        (2, "memory/dynamic-min"): str(600 * 1024),
        (3, "memory/target"): str(400 * 1024),
    }
    before = {
        key: private_xs.read(f"/local/domain/{key[0]}/{key[1]}")
        if private_xs.exists(f"/local/domain/{key[0]}/{key[1]}")
        else None
        for key in expected
    }
    assert all(before[key] != value for key, value in expected.items()), before  # the pass has work to do
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        if abstract:  # sd_notify's "@name": a name in the abstract namespace, no file
            name = f"@xbctl-test-notify-{os.getpid()}-{id(listener)}"
            listener.bind("\0" + name[1:])
        else:
            name = str(tmp_path / "notify")
            listener.bind(name)
        listener.settimeout(60)  # a bound on a hang only: the assertions are about order, not time
        service = Service(private_xs, root, env={"NOTIFY_SOCKET": name})
        try:
            before_ready = []
            while True:
                states = listener.recv(4096).decode().split("\n")
                if "READY=1" in states:
                    service.process.send_signal(signal.SIGSTOP)  # held still while Xenstore is read
                    break
                before_ready.append(states)
            try:
                # Xenstore as READY arrives: the first pass has configured the running domains.
                at_ready = {
                    key: private_xs.read(f"/local/domain/{key[0]}/{key[1]}")
                    if private_xs.exists(f"/local/domain/{key[0]}/{key[1]}")
                    else None
                    for key in expected
                }
            finally:
                service.process.send_signal(signal.SIGCONT)
            assert at_ready == expected
            assert before_ready == [], before_ready
            assert [s for s in states if s.startswith("STATUS=")] == [
                "STATUS=6 domain(s) configured in the last pass; following @introduceDomain with 1 configuration file(s)"
            ], states
            service.wait_for_line("following @introduceDomain")
            assert not any("NOTIFY_SOCKET" in line for line in service.lines), service.lines
            assert service.stop() == 0
            assert listener.recv(4096).decode().split("\n") == ["STOPPING=1", "STATUS=stopping"]
        finally:
            service.stop()


def test_journal_lines_carry_priorities(private_xs, tmp_path):
    # Under systemd, stderr is the journal's stream: JOURNAL_STREAM names its device and inode.
    root = tmp_path / "conf"
    write_conf(root, "etc/xbctl.conf", APP_CONF)
    log_path = tmp_path / "journal"
    with open(log_path, "w") as log:
        status = os.fstat(log.fileno())
        done = subprocess.run(
            [private_xs_command(), "policy"],
            env=private_xs.process_env(
                {"XBCTL_CONF_ROOT": str(root), "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
            ),
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=60,
        )
    lines = log_path.read_text().splitlines()
    assert done.returncode == 0, lines
    assert f"<5>web (1): machdep.xen.balloon.min: 262144 -> 204800 ({root}/etc/xbctl.conf:6)" in lines, lines
    assert all(line[:3] in ("<3>", "<4>", "<5>", "<6>", "<7>") for line in lines), lines


def private_xs_command() -> str:
    from xen_fixtures import xbctl_command

    return xbctl_command()
