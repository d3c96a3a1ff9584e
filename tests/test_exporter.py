"""Prometheus metrics: `xbctl list --format prometheus` and `xbctl exporter --listen`."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import time
import urllib.request

import pytest
from conftest import assert_clean_failure
from xenharness import ensure_promtool

FIVE = ("current", "target", "min", "max", "xen_max")


@pytest.fixture(scope="module")
def promtool():
    """Debian's promtool, unpacked into the test cache."""
    return ensure_promtool()


def lint(promtool, text: str) -> None:
    """Fail unless `promtool check metrics` accepts TEXT without a word."""
    done = subprocess.run([str(promtool), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", (done, text)


def samples(text: str) -> dict[tuple[str, str], float]:
    """{(metric, domain): value} of the per-domain samples in TEXT."""
    found = {}
    for name, domain, value in re.findall(r'^(\w+)\{domain="([^"]*)"[^}]*\} (\S+)$', text, re.M):
        found.setdefault((name, domain), float(value))
    return found


def test_textfile_output_is_clean_and_in_bytes(xbctl, promtool):
    xbctl("-d", "web", "target", "512M")
    outcome = xbctl("list", "--format", "prometheus")
    assert outcome.status == 0 and outcome.stderr == "", outcome
    lint(promtool, outcome.stdout)
    values = samples(outcome.stdout)
    for domain in ("Domain-0", "web", "db", "mail"):
        for key in FIVE:
            assert (f"xen_balloon_{key}_bytes", domain) in values
    assert values[("xen_balloon_target_bytes", "web")] == 512 * 1024 * 1024
    assert values[("xen_balloon_current_bytes", "web")] == 768 * 1024 * 1024
    assert 'xen_balloon_driver_state{domain="mail",xen_balloon_driver_state="no_driver"} 1.0' in outcome.stdout
    assert 'xen_balloon_driver_state{domain="web",xen_balloon_driver_state="moving"} 1.0' in outcome.stdout
    assert re.search(r"^xen_balloon_host_free_bytes \d", outcome.stdout, re.M)
    assert 'xen_balloon_scrape_error{error=""} 0.0' in outcome.stdout
    assert "\nxen_balloon_up 1.0\n" in outcome.stdout
    version = __import__("xbctl").__version__
    python = __import__("platform").python_version()
    assert f'xen_balloon_build_info{{python="{python}",transport="sim",version="{version}"}} 1.0' in outcome.stdout


def test_domain_ids_are_on_the_info_series_alone(xbctl):
    # A guest's reboot gives it a new id: a label that changes mints new series, so values
    # are keyed by name and one info series maps names to ids.
    page = xbctl("list", "--format", "prometheus").stdout
    for domid, domain in enumerate(("Domain-0", "web", "db", "mail")):
        assert f'xen_balloon_domain_info{{domain="{domain}",domid="{domid}"}} 1.0' in page, page
    series = [line for line in page.splitlines() if line and not line.startswith("#")]
    assert len(series) > 40 and [line for line in series if "domid=" in line] == [
        line for line in series if line.startswith("xen_balloon_domain_info{")
    ], page


def test_a_name_two_domains_hold_is_exported_once(xs, promtool):
    # A domain renamed away while its successor starts: Prometheus refuses a page with two
    # samples of one series, so the values under that name are the newer domain's.
    for rel, value in (
        ("name", "web"),
        ("domid", "7"),
        ("memory/static-max", "2097152"),
        ("memory/target", "1048576"),
        ("memory/videoram", "0"),
    ):
        xs.write(f"/local/domain/7/{rel}", value)
    outcome = xs("list", "--format", "prometheus")
    assert outcome.status == 0, outcome
    lint(promtool, outcome.stdout)
    assert 'xen_balloon_domain_info{domain="web",domid="1"} 1.0' in outcome.stdout
    assert 'xen_balloon_domain_info{domain="web",domid="7"} 1.0' in outcome.stdout
    assert samples(outcome.stdout)[("xen_balloon_target_bytes", "web")] == 1024 * 1024 * 1024
    assert len(re.findall(r'^xen_balloon_target_bytes\{domain="web"\}', outcome.stdout, re.M)) == 1
    assert "xbctl: warning: domain web (1): a newer domain has that name; not exported\n" in outcome.stderr, outcome


def test_list_and_exporter_serve_the_same_page(xbctl, exporter_on):
    port, process = exporter_on(sim_popen(xbctl))
    served = scrape(port, process)
    printed = xbctl("list", "--format", "prometheus").stdout
    assert printed == served and "xen_balloon_target_bytes{" in printed


def test_output_replaces_the_file_whole(xbctl, tmp_path, promtool):
    textfiles = tmp_path / "node-exporter"
    textfiles.mkdir()
    target = textfiles / "xbctl.prom"
    target.write_text("old page\n")
    os.chmod(target, 0o600)
    before = target.stat().st_ino
    outcome = xbctl("list", "--format", "prometheus", "--output", str(target))
    assert (outcome.status, outcome.stdout, outcome.stderr) == (0, "", ""), outcome
    assert target.read_text() == xbctl("list", "--format", "prometheus").stdout
    lint(promtool, target.read_text())
    # A new file renamed over the old one (node_exporter never reads half a page), readable by
    # node_exporter's own user, and nothing else left in its directory.
    assert target.stat().st_ino != before and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(path.name for path in textfiles.iterdir()) == ["xbctl.prom"]


def test_output_says_down_when_xenstore_is_gone(xbctl, tmp_path):
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "xbctl.prom"
    target.write_text('xen_balloon_up 1.0\nxen_balloon_target_bytes{domain="web"} 1.0\n')
    outcome = xbctl.process(
        "list",
        "--format",
        "prometheus",
        "--output",
        str(target),
        timeout=30,
        env={"XBCTL_TRANSPORT": "xenstore", "XENSTORED_PATH": "/nonexistent/socket"},
    )
    assert_clean_failure(outcome, 3, "Xenstore at /nonexistent/socket")
    page = target.read_text()
    assert "\nxen_balloon_up 0.0\n" in page and 'xen_balloon_scrape_error{error="unavailable"} 1.0' in page, page
    assert "xen_balloon_target_bytes{" not in page
    assert sorted(path.name for path in target.parent.iterdir()) == ["xbctl.prom"]


@pytest.mark.parametrize("where", ["missing/xbctl.prom", "file/xbctl.prom", "directory"])
def test_output_that_cannot_be_written_fails_clearly(xbctl, tmp_path, where):
    out = tmp_path / "out"
    out.mkdir()
    (out / "file").write_text("kept\n")
    (out / "directory").mkdir()
    (out / "directory" / "inside").write_text("kept\n")
    before = sorted((str(path), path.stat().st_mtime_ns) for path in out.rglob("*"))
    outcome = xbctl("list", "--format", "prometheus", "--output", str(out / where))
    assert_clean_failure(outcome, 1, f"--output {out / where}: ", "/var/lib/prometheus/node-exporter")
    assert sorted((str(path), path.stat().st_mtime_ns) for path in out.rglob("*")) == before


def test_output_goes_with_the_prometheus_format_only(xbctl, tmp_path):
    before = xbctl.snapshot()
    assert_clean_failure(
        xbctl("list", "--output", str(tmp_path / "x.prom")), 2, "--output goes with --format prometheus"
    )
    assert not (tmp_path / "x.prom").exists() and xbctl.snapshot() == before


def test_bad_format_fails_clearly(xbctl):
    before = xbctl.snapshot()
    assert_clean_failure(xbctl("list", "--format", "openmetrics"), 2, "--format 'openmetrics': unknown format")
    both = xbctl("--json", "list", "--format", "prometheus")
    assert both.status == 2 and "give one" in both.stderr and '"kind": "error"' in both.stdout, both
    assert xbctl.snapshot() == before


@pytest.mark.parametrize("listen", ["9749", "localhost:", ":9749", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http"])
def test_bad_listen_fails_clearly(xbctl, listen):
    assert_clean_failure(xbctl.process("exporter", "--listen", listen, timeout=30), 2, "not HOST:PORT")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int, process: subprocess.Popen, path: str = "/metrics") -> str:
    """The exporter's page, once it answers (bounded: 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, process.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                assert response.status == 200
                return response.read().decode()
        except OSError:
            assert time.monotonic() < deadline, "the exporter never answered"
            time.sleep(0.05)


@pytest.fixture
def exporter_on():
    """Start `xbctl exporter` with a runner's popen on a free loopback port; stop it after."""
    started = []

    def start(popen) -> tuple[int, subprocess.Popen]:
        port = free_port()
        process = popen("exporter", "--listen", f"127.0.0.1:{port}")
        started.append(process)
        return port, process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(2)
            process.communicate(timeout=20)


def sim_popen(xbctl):
    import shutil

    env = xbctl.process_env()
    return lambda *args: subprocess.Popen(
        [shutil.which("xbctl"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_exporter_serves_every_domain_and_follows_changes(xbctl, promtool, exporter_on):
    port, process = exporter_on(sim_popen(xbctl))
    page = scrape(port, process)
    lint(promtool, page)
    values = samples(page)
    for domain in ("Domain-0", "web", "db", "mail"):
        for key in FIVE:
            assert (f"xen_balloon_{key}_bytes", domain) in values
    assert values[("xen_balloon_target_bytes", "web")] == 768 * 1024 * 1024
    assert xbctl("-d", "web", "target", "600M").status == 0
    assert samples(scrape(port, process))[("xen_balloon_target_bytes", "web")] == 600 * 1024 * 1024
    # only the balloon's metrics: no process or Python metrics of the exporter itself
    assert all(line.startswith(("# ", "xen_balloon_")) for line in page.splitlines() if line)
    process.send_signal(2)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0 and out == "", (out, err)
    assert err == f"xbctl: serving metrics at http://127.0.0.1:{port}/metrics\n"


def test_garbage_domain_is_an_error_metric_not_a_failed_scrape(xs, promtool, exporter_on):
    xs.write("/local/domain/1/memory/target", "garbage")
    port, process = exporter_on(xs.popen)
    page = scrape(port, process)
    lint(promtool, page)
    values = samples(page)
    assert not any(domain == "web" for (name, domain) in values if name.endswith("_bytes"))
    for domain in ("Domain-0", "db"):
        for key in FIVE:
            assert (f"xen_balloon_{key}_bytes", domain) in values
    # The label is a word from a fixed set, never the message with the guest's garbage in it.
    assert 'xen_balloon_domain_read_error{domain="web",error="malformed"} 1.0' in page, page
    assert 'xen_balloon_domain_read_error{domain="db",error=""} 0.0' in page
    assert 'xen_balloon_domain_info{domain="web",domid="1"} 1.0' in page
    assert "garbage" not in page
    assert "xen_balloon_host_free_bytes" not in page  # Xenstore does not know it
    assert 'xen_balloon_scrape_error{error=""} 0.0' in page
    process.send_signal(2)
    _out, err = process.communicate(timeout=20)
    assert "xbctl: warning: domain web (1) unreadable: " in err and "'garbage'" in err, err


def test_a_domain_without_balloon_nodes_is_missing(xs, promtool):
    xs.rm("/local/domain/2/memory")
    outcome = xs("list", "--format", "prometheus")
    assert outcome.status == 0, outcome
    lint(promtool, outcome.stdout)
    assert 'xen_balloon_domain_read_error{domain="db",error="missing"} 1.0' in outcome.stdout
    assert 'xen_balloon_domain_read_error{domain="web",error=""} 0.0' in outcome.stdout
    assert "xbctl: warning: domain db (2) unreadable: " in outcome.stderr, outcome


def test_lost_xenstore_is_a_scrape_error_metric(private_xs, promtool, exporter_on):
    port, process = exporter_on(private_xs.popen)
    assert "xen_balloon_target_bytes" in scrape(port, process)
    private_xs.daemon.stop()
    page = scrape(port, process)
    lint(promtool, page)
    assert 'xen_balloon_scrape_error{error="unavailable"} 1.0' in page, page
    assert "\nxen_balloon_up 0.0\n" in page and "\nxen_balloon_build_info{" in page
    assert "xen_balloon_target_bytes{" not in page


@pytest.mark.parametrize("args", [["exporter", "--listen", "127.0.0.1:9"], ["list", "--format", "prometheus"], ["top"]])
def test_unreachable_xenstore_fails_at_start_not_per_scrape(xbctl, args):
    outcome = xbctl.process(
        *args, env={"XBCTL_TRANSPORT": "xenstore", "XENSTORED_PATH": "/nonexistent/socket"}, timeout=30
    )
    assert_clean_failure(outcome, 3, "Xenstore at /nonexistent/socket")


def test_port_in_use_fails_clearly(xbctl):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        outcome = xbctl.process("exporter", "--listen", f"127.0.0.1:{taken.getsockname()[1]}", timeout=30)
    assert_clean_failure(outcome, 3, "Address already in use")


def test_without_prometheus_client_the_commands_say_what_to_install(xbctl, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "prometheus_client", None)  # as if not installed
    assert_clean_failure(xbctl("list", "--format", "prometheus"), 3, "prometheus_client", "xbctl[exporter]")
    assert_clean_failure(xbctl("exporter", "--listen", "127.0.0.1:9"), 3, "prometheus_client", "xbctl[exporter]")
