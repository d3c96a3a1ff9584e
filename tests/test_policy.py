"""Configuration files in sysctl's order, `xbctl policy`, and `xbctl policy --follow` over the real xenstored."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pyxs import Client

from conftest import assert_clean_failure
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
    assert files == [
        str(early), str(vendor_only), str(root / "etc/xbctl.d/30-masked.conf"), str(admin), str(main)
    ]
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
    assert f"web (1): machdep.xen.balloon.target: 786432 -> 716800 ({root}/etc/xbctl.d/50-site.conf:2)\n" in outcome.stderr
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
    assert f"db (2): not applied: {root}/etc/xbctl.conf:2: machdep.xen.balloon.min: Operation not permitted" in outcome.stderr
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
def test_malformed_configuration_changes_nothing(xbctl, tmp_path, text, status, fragment):
    root = tmp_path / "root"
    write_conf(root, "etc/xbctl.d/10-good.conf", "[db]\nmin = 600M\n")
    write_conf(root, "etc/xbctl.conf", text)
    before = xbctl.snapshot()
    outcome = xbctl("policy", env={"XBCTL_CONF_ROOT": str(root)})
    assert_clean_failure(outcome, status, fragment)
    assert xbctl.snapshot() == before


def test_follow_refused_on_the_simulator(xbctl, tmp_path):
    before = xbctl.snapshot()
    outcome = xbctl("policy", "--follow", "--transport", "sim", env={"XBCTL_CONF_ROOT": str(tmp_path)})
    assert_clean_failure(outcome, 2, "policy --follow watches Xenstore")
    assert xbctl.snapshot() == before


def test_policy_takes_no_domain_option(xbctl, tmp_path):
    outcome = xbctl("-d", "web", "policy", env={"XBCTL_CONF_ROOT": str(tmp_path)})
    assert_clean_failure(outcome, 2, "-d does not go with the policy command")


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

    def __init__(self, host: XenHost, conf_root: Path) -> None:
        self.host = host
        self.process = host.popen("policy", "--follow", env={"XBCTL_CONF_ROOT": str(conf_root)})
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
    running.conf_path = root / "etc/xbctl.conf"
    running.wait_for_line("following @introduceDomain")
    yield running
    running.stop()


def create_domain(client: Client, domid: int, name: str | None, static_max_kib: int = GIB_KIB) -> None:
    """DOMID's nodes as libxl writes them before it introduces the domain (NAME None: not yet)."""
    base = f"/local/domain/{domid}"
    client.mkdir(base.encode())
    client.set_perms(base.encode(), [b"n0", f"r{domid}".encode()])
    nodes = [("domid", str(domid)), ("memory/static-max", str(static_max_kib)),
             ("memory/target", str(static_max_kib)), ("memory/videoram", "-1")]
    if name is not None:
        nodes.insert(0, ("name", name))
    for rel, value in nodes:
        client.write(f"{base}/{rel}".encode(), value.encode())


def release_domain(client: Client, domid: int) -> None:
    """XS_RELEASE, as the toolstack sends it when a domain is destroyed (fires @releaseDomain)."""
    client.SU = True  # pyxs asks /proc/xen/capabilities, absent here; a socket client is privileged
    client.release_domain(domid)


def wait_for_values(host: XenHost, domid: int, expected: dict[str, str], timeout_s: float) -> float:
    """Seconds until DOMID's nodes hold EXPECTED (read with the C client); fails after TIMEOUT_S."""
    started = time.monotonic()
    while True:
        found = {rel: host.read(f"/local/domain/{domid}/{rel}") if host.exists(f"/local/domain/{domid}/{rel}") else None
                 for rel in expected}
        elapsed = time.monotonic() - started
        if found == expected:
            return elapsed
        assert elapsed < timeout_s, (found, expected)
        time.sleep(0.01)


APPLIED = {"memory/target": str(512 * 1024), "memory/dynamic-min": str(256 * 1024)}


def test_follow_applies_at_start_and_to_a_domain_introduced_later(private_xs, service):
    # At start: web, which exists.
    assert private_xs.dom(1, "memory/dynamic-min") == str(200 * 1024)
    assert any("[app] (" in line and "no such domain now; its settings apply when it appears" in line
               for line in service.lines), service.lines
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
        client.delete(b"/local/domain/6")
        release_domain(client, 6)
        service.wait_for_line("domain 6 is gone")
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


def test_sighup_rereads_the_configuration(private_xs, service):
    assert private_xs.dom(1, "memory/dynamic-min") == str(200 * 1024)
    seen = len(service.lines)
    service.conf_path.write_text(APP_CONF.replace("min = 200M", "min = 300M"))
    service.process.send_signal(signal.SIGHUP)
    seen = service.wait_for_line("configuration re-read", after=seen)
    assert wait_for_values(private_xs, 1, {"memory/dynamic-min": str(300 * 1024)}, timeout_s=5.0) < 5.0
    # A configuration that does not parse is refused; the one before stays in force.
    service.conf_path.write_text("[web]\nmin = lots\n")
    service.process.send_signal(signal.SIGHUP)
    service.wait_for_line("configuration not re-read, the previous one stays", after=seen)
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        create_domain(client, 6, "app")
        client.introduce_domain(6, 0x1006, 16)
    assert wait_for_values(private_xs, 6, APPLIED, timeout_s=5.0) < 1.0
    assert service.stop() == 0


def test_xenstored_restart_does_not_end_the_service(private_xs, service):
    seen = len(service.lines)
    private_xs.daemon.kill()
    seen = service.wait_for_line("connection lost; trying again in 0.1 s", after=seen)
    time.sleep(0.5)  # a while without a daemon: the service keeps trying
    assert service.process.poll() is None
    private_xs.daemon.start()
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        lay_out_host(client)  # the restarted daemon's store is empty until the toolstack refills it
    # Reconnected: it applies again (web's floor) and follows new domains.
    assert wait_for_values(private_xs, 1, {"memory/dynamic-min": str(200 * 1024)}, timeout_s=15.0) < 15.0
    service.wait_for_line("following @introduceDomain", after=seen)
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        create_domain(client, 6, "app")
        client.introduce_domain(6, 0x1006, 16)
    assert wait_for_values(private_xs, 6, APPLIED, timeout_s=5.0) < 1.0
    assert service.stop() == 0
    assert "Traceback" not in "".join(service.lines)


def test_follow_with_a_malformed_configuration_exits_2(private_xs, tmp_path):
    root = tmp_path / "conf"
    write_conf(root, "etc/xbctl.conf", "[web]\nmin = 1 G\n")
    before = private_xs.listing()
    outcome = private_xs.process("policy", "--follow", env={"XBCTL_CONF_ROOT": str(root)}, timeout=30)
    assert_clean_failure(outcome, 2, "xbctl.conf:2")
    assert private_xs.listing() == before


def test_journal_lines_carry_priorities(private_xs, tmp_path):
    # Under systemd, stderr is the journal's stream: JOURNAL_STREAM names its device and inode.
    root = tmp_path / "conf"
    write_conf(root, "etc/xbctl.conf", APP_CONF)
    log_path = tmp_path / "journal"
    with open(log_path, "w") as log:
        status = os.fstat(log.fileno())
        done = subprocess.run(
            [private_xs_command(), "policy"],
            env=private_xs.process_env({"XBCTL_CONF_ROOT": str(root),
                                        "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}),
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, timeout=60,
        )
    lines = log_path.read_text().splitlines()
    assert done.returncode == 0, lines
    assert f"<5>web (1): machdep.xen.balloon.min: 262144 -> 204800 ({root}/etc/xbctl.conf:6)" in lines, lines
    assert all(line[:3] in ("<3>", "<4>", "<5>", "<6>", "<7>") for line in lines), lines


def private_xs_command() -> str:
    from xen_fixtures import xbctl_command

    return xbctl_command()
