"""Prometheus metrics: `xbctl list --format prometheus` and `xbctl exporter --listen`."""

from __future__ import annotations

import re
import socket
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
    for name, domain, value in re.findall(r'^(\w+)\{domain="([^"]*)",domid="\d+"[^}]*\} (\S+)$', text, re.M):
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
    assert 'xen_balloon_driver_state{domain="mail",domid="3",xen_balloon_driver_state="no_driver"} 1.0' in outcome.stdout
    assert 'xen_balloon_driver_state{domain="web",domid="1",xen_balloon_driver_state="moving"} 1.0' in outcome.stdout
    assert re.search(r"^xen_balloon_host_free_bytes \d", outcome.stdout, re.M)
    assert 'xen_balloon_scrape_error{error=""} 0.0' in outcome.stdout


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
    import os
    import shutil

    env = {k: v for k, v in {**os.environ, **xbctl.env}.items() if v is not None}
    return lambda *args: subprocess.Popen(
        [shutil.which("xbctl"), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True,
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
    assert 'xen_balloon_domain_read_error{domain="web",domid="1",error="malformed"} 1.0' in page, page
    assert 'xen_balloon_domain_read_error{domain="db",domid="2",error=""} 0.0' in page
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
    assert 'xen_balloon_domain_read_error{domain="db",domid="2",error="missing"} 1.0' in outcome.stdout
    assert 'xen_balloon_domain_read_error{domain="web",domid="1",error=""} 0.0' in outcome.stdout
    assert "xbctl: warning: domain db (2) unreadable: " in outcome.stderr, outcome


def test_lost_xenstore_is_a_scrape_error_metric(private_xs, promtool, exporter_on):
    port, process = exporter_on(private_xs.popen)
    assert "xen_balloon_target_bytes" in scrape(port, process)
    private_xs.daemon.stop()
    page = scrape(port, process)
    lint(promtool, page)
    assert 'xen_balloon_scrape_error{error="unavailable"} 1.0' in page, page
    assert "xen_balloon_target_bytes{" not in page


@pytest.mark.parametrize("args", [["exporter", "--listen", "127.0.0.1:9"], ["list", "--format", "prometheus"], ["top"]])
def test_unreachable_xenstore_fails_at_start_not_per_scrape(xbctl, args):
    outcome = xbctl.process(*args, env={"XBCTL_TRANSPORT": "xenstore", "XENSTORED_PATH": "/nonexistent/socket"}, timeout=30)
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
