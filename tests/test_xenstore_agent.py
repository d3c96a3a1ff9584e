"""The guest agent behind Xenstore, and --wait driven by its watches."""

from __future__ import annotations

import signal
import subprocess

import pytest
from conftest import assert_clean_failure
from pyxs import Client
from xen_fixtures import GUEST_ID, GuestBus, XenHost, xbctl_command

WEB = "/local/domain/1"
MAIL = f"/local/domain/{GUEST_ID}"


def start_agent(host: XenHost, *args: str, domain_path: str = WEB, env: dict | None = None) -> subprocess.Popen:
    """The agent in the background, once it has announced itself in Xenstore."""
    agent = host.popen(*args, env=env)
    host.wait_for(
        lambda: agent.poll() is not None or host.exists(f"{domain_path}/control/feature-balloon"),
        "the agent to publish control/feature-balloon",
    )
    assert agent.poll() is None, agent.communicate()
    return agent


def stop_agent(agent: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
    agent.send_signal(sig)
    try:
        stdout, stderr = agent.communicate(timeout=30)
    finally:
        agent.kill()
    return agent.returncode, stdout, stderr


@pytest.fixture
def web_agent(xs):
    agent = start_agent(xs, "-d", "web", "agent", "--rate", "500", "--used", "600M")
    yield agent
    agent.kill()
    agent.wait(timeout=10)


def test_agent_publishes_what_the_host_cannot_ask(xs, web_agent):
    assert xs.read(f"{WEB}/control/feature-balloon") == "1"
    assert xs.read(f"{WEB}/data/balloon/current") == "786432"
    assert xs.read(f"{WEB}/data/balloon/max") == "1048576"
    assert xs.read(f"{WEB}/data/balloon/min") == str((1024 + 256) * 4)  # freemin + 256 pages
    document = xs("-d", "web", "--json", "-a").json()
    assert document["nodes"]["current"]["source"] == "guest"
    assert document["nodes"]["min"]["value_kib"] == 5120


def test_wait_returns_once_current_reaches_target(xs, web_agent):
    outcome = xs.process("-d", "web", "--wait", "target", "700M", timeout=60)
    assert outcome.status == 0, outcome
    assert outcome.stdout == "machdep.xen.balloon.target: 786432 -> 716800\n"
    assert outcome.stderr.endswith("xbctl: web: current 716800 KiB, target 716800 KiB\n")
    assert xs("-d", "web", "-n", "current").stdout == "716800\n"
    assert xs.read(f"{WEB}/data/balloon/current") == "716800"
    # Growing back, through mem-set, with --json.
    grown = xs.process("--json", "--wait", "mem-set", "web", "1024", timeout=60)
    assert grown.status == 0, grown
    assert grown.json()["wait"] == {"reached": True, "current_kib": 1048576, "target_kib": 1048576, "reason": None}


def test_unreachable_shrink_ends_with_exit_5_and_the_drivers_reason(xs, web_agent):
    outcome = xs.process("-d", "web", "--wait", "target", "300M", timeout=60)
    assert outcome.status == 5, outcome
    assert "WARNING: balloon could not reach target 307200 (current " in outcome.stderr
    assert "Traceback" not in outcome.stderr
    # As NetBSD does, the driver fed its current reservation back into memory/target.
    current = xs.read(f"{WEB}/data/balloon/current")
    xs.wait_for(lambda: xs.read(f"{WEB}/memory/target") == current, "the driver's feedback")
    assert int(current) > 307200
    # A new, reachable target clears the complaint and is reached.
    again = xs.process("-d", "web", "--wait", "target", "700M", timeout=60)
    assert again.status == 0, again
    assert not xs.exists(f"{WEB}/data/balloon/diagnostic")


def test_host_short_of_memory_ends_with_the_drivers_reason(xs):
    agent = start_agent(xs, "-d", "web", "agent", "--rate", "500", "--host-free", "64M")
    try:
        outcome = xs.process("-d", "web", "--wait", "target", "1G", timeout=60)
        published = xs.read(f"{WEB}/data/balloon/current")  # a stopped agent withdraws it
    finally:
        stop_agent(agent)
    assert outcome.status == 5, outcome
    assert "increase reservation incomplete: was 512, returned 0" in outcome.stderr
    assert published == str(786432 + 65536)


def test_target_written_by_the_c_client_is_followed(xs, web_agent):
    xs.write(f"{WEB}/memory/target", "720896")
    xs.wait_for(lambda: xs.read(f"{WEB}/data/balloon/current") == "720896", "the agent to follow")
    assert xs("-d", "web", "-n", "current").stdout == "720896\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_agent_stops_cleanly_on_a_signal(xs, sig):
    agent = start_agent(xs, "-d", "web", "agent")
    status, stdout, stderr = stop_agent(agent, sig)
    assert status == 0, stderr
    assert stdout == ""
    assert stderr.endswith("xbctl agent: domain web: stopped at current 786432 KiB\n"), stderr
    assert "Traceback" not in stderr
    assert not xs.exists(f"{WEB}/control/feature-balloon")  # nothing acts on target any more
    # its data/balloon stays, so the host still reads a driver that published its balloon
    warned = xs("-d", "web", "target", "700M")
    assert warned.status == 0 and "warning" not in warned.stderr, warned


def test_agent_ends_with_exit_3_when_the_daemon_dies(private_xs: XenHost):
    agent = start_agent(private_xs, "-d", "web", "agent")
    private_xs.daemon.kill()
    stdout, stderr = agent.communicate(timeout=30)
    assert agent.returncode == 3, stderr
    assert f"xbctl: Xenstore at {private_xs.socket_path}: connection lost" in stderr
    assert "Traceback" not in stderr


def test_agent_ends_with_exit_4_when_its_domain_is_destroyed(xs):
    agent = start_agent(xs, "-d", "web", "agent")
    xs.rm(WEB)
    stdout, stderr = agent.communicate(timeout=30)
    assert agent.returncode == 4, stderr
    assert "gone" in stderr and "Traceback" not in stderr
    assert not xs.exists(WEB)  # and it did not bring the domain back


def test_agent_refuses_unknown_domains_and_the_simulator(xs):
    before = xs.listing()
    assert_clean_failure(xs.process("-d", "../../tool", "agent", timeout=30), 4, "unknown domain")
    assert_clean_failure(xs.process("--transport", "sim", "-d", "web", "agent", timeout=30), 2, "Xenstore")
    assert xs.listing() == before


def test_agent_inside_the_guest_over_its_xenbus_device(xs):
    xs.guest_bus.flush()
    agent = start_agent(xs, "agent", "--rate", "500", "--boot-size", "1G", domain_path=MAIL, env=xs.guest_env())
    try:
        assert xs.read(f"{MAIL}/data/balloon/max") == "1048576"
        assert xs.read(f"{MAIL}/data/balloon/current") == "524288"
        # The host raises the ceiling and the target together, and waits for the guest.
        outcome = xs.process("-d", "mail", "--wait", "-w", "xen-max=768M", "target=700M", timeout=60)
        assert outcome.status == 0, outcome
        assert xs.read(f"{MAIL}/data/balloon/current") == "716800"
        # The guest may not write memory/target, so it cannot feed back; its reason still reaches the host.
        stuck = xs.process("-d", "mail", "--wait", "target", "100M", timeout=60)
        assert stuck.status == 5, stuck
        assert "WARNING: balloon could not reach target 102400" in stuck.stderr
    finally:
        status, _, stderr = stop_agent(agent)
    assert status == 0, stderr
    assert "cannot feed current back into memory/target" in stderr
    assert "Permission denied (EACCES)" in stderr


def test_guest_agent_over_quota_gets_a_named_error(xs_tools, tmp_path):
    from xen_fixtures import OTHER_DOMAINS, lay_out_host
    from xenharness import Xenstored

    # Domain 3 owns control/ and data/ already: two more nodes and its quota is spent.
    quota = Xenstored(xs_tools, tmp_path / "quota", extra_domains=OTHER_DOMAINS, extra_args=("--entry-nb", "4"))
    with quota:
        with Client(unix_socket_path=str(quota.socket_path)) as client:
            client.introduce_domain(GUEST_ID, 0x1000 + GUEST_ID, 10 + GUEST_ID)
            lay_out_host(client)
        bus = GuestBus(quota, GUEST_ID)
        try:
            host = XenHost(quota, bus)
            outcome = host.guest("agent", timeout=60)
        finally:
            bus.close()
    assert outcome.status == 1, outcome
    assert outcome.stderr.endswith("xbctl: /local/domain/3: No space left on device (ENOSPC)\n"), outcome
    assert "Traceback" not in outcome.stderr and "errno 0" not in outcome.stderr


def test_wait_on_a_terminal_shows_the_progress_bar(xs, web_agent):
    import os
    import pty
    import select

    master, slave = pty.openpty()
    waiting = subprocess.Popen(
        [xbctl_command(), "-d", "web", "--wait", "target", "700M"],
        env=xs.process_env({"COLUMNS": "120", "TERM": "xterm"}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    screen = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, "no output from --wait on a terminal within 30 s"
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        assert waiting.wait(timeout=30) == 0
    finally:
        waiting.kill()
        os.close(master)
    text = screen.decode(errors="replace")
    assert "web: current" in text and "target 716800 KiB" in text and "100%" in text, text
    assert "Traceback" not in text
    assert waiting.stdout.read() == "machdep.xen.balloon.target: 786432 -> 716800\n"
