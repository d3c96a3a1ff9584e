"""A host of thousands of domains over the real xenstored: /local/domain's listing is longer
than Xenstore's 4,096-byte payload, so xbctl reads it with XS_DIRECTORY_PART as libxenstore
does (on E2BIG from XS_DIRECTORY; each part carries the node's generation, and a change
between two parts starts the listing over). Every command works there.

The large host (4,006 domains, ids up to 32751) is laid out once for the session in a
xenstored of its own (large_host in xen_fixtures.py); a test that changes it puts it back.
The 4,096-byte boundary itself is tested on a private xenstored with a listing of exactly
4,096 bytes and one of 4,097.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.request

import pytest
from conftest import Outcome
from pyxs import Client
from test_policy import Service, create_domain, destroy_domain, write_conf
from xen_fixtures import (
    LAYOUT,
    MIB,
    XenHost,
    large_host_domids,
    lay_out_many_domains,
    many_domain,
)

TARGET = "machdep.xen.balloon.target"
DOMIDS = sorted([*LAYOUT, *large_host_domids()])
NAMES = {domid: LAYOUT[domid][0] if domid in LAYOUT else many_domain(domid)[0] for domid in DOMIDS}
LAST = DOMIDS[-1]  # 32751: the highest id Xen hands out


def plain(outcome: Outcome) -> Outcome:
    """OUTCOME less the hypervisor layer's note (no libxenctrl on a test machine)."""
    kept = "".join(
        line for line in outcome.stderr.splitlines(True) if not line.startswith("xbctl: note: hypervisor not used")
    )
    return Outcome(outcome.status, outcome.stdout, kept)


def test_a_domain_is_found_by_name_and_by_id_among_thousands(large_host):
    assert plain(large_host.process("-n", "-d", "guest32751", TARGET)) == Outcome(0, f"{many_domain(LAST)[2]}\n", "")
    assert plain(large_host.process("-n", "-d", "web", TARGET)) == Outcome(0, "786432\n", "")
    assert large_host.process("-n", "-d", "32751", TARGET).stdout == f"{many_domain(LAST)[2]}\n"


def test_list_shows_every_domain(large_host):
    # What the tests here rest on: the listing is several times Xenstore's payload.
    assert large_host.daemon.xs_list("/local/domain") == [str(domid) for domid in DOMIDS]
    assert sum(len(str(domid)) + 1 for domid in DOMIDS) > 5 * 4096 and LAST == 32751 and len(DOMIDS) == 4006
    table = plain(large_host.process("list"))
    assert table.status == 0 and table.stderr == "", table
    rows = table.stdout.splitlines()[1:]
    assert len(rows) == len(DOMIDS)
    assert [int(row.split()[1]) for row in rows] == DOMIDS
    assert rows[-1].split()[0] == "guest32751"
    document = large_host.process("--json", "list").json()
    assert [entry["id"] for entry in document["domains"]] == DOMIDS
    assert {entry["id"]: entry["name"] for entry in document["domains"]} == NAMES


def test_all_domains_read_export_and_apply_back(large_host, tmp_path):
    targets = large_host.process("-A", "-n", TARGET)
    assert targets.status == 0, targets
    expected = [str(LAYOUT[d][2]) if d in LAYOUT else str(many_domain(d)[2]) for d in DOMIDS]
    assert targets.stdout.splitlines() == expected
    exported = plain(large_host.process("-A", "-e"))
    assert exported.status == 0 and exported.stderr == "", exported
    assert exported.stdout.count("\n[") + exported.stdout.startswith("[") == len(DOMIDS)
    export = tmp_path / "export.conf"
    export.write_text(exported.stdout)
    unchanged = large_host.process("-f", str(export))
    assert unchanged.status == 0 and unchanged.stdout == "" and "nothing changed" in unchanged.stderr, unchanged
    # Every guest's target 4 MiB lower, as one change; then the export puts every one back.
    change = tmp_path / "change.conf"
    change.write_text("".join(f"[{domid}]\n{TARGET}=-4M\n" for domid in large_host_domids()))
    try:
        changed = plain(large_host.process("-q", "-f", str(change)))
        assert changed == Outcome(0, "", ""), changed
        for domid in (10, 1009, 29752, LAST):
            assert large_host.dom(domid, "memory/target") == str(many_domain(domid)[2] - 4 * MIB)
    finally:
        restored = plain(large_host.process("-q", "-f", str(export)))
    assert restored == Outcome(0, "", ""), restored
    assert large_host.process("-A", "-e").stdout == exported.stdout


def test_system_applies_to_domains_found_among_thousands(large_host, tmp_path):
    (tmp_path / "etc/xbctl.d").mkdir(parents=True)
    first, last = many_domain(10), many_domain(LAST)
    write_conf(
        tmp_path,
        "etc/xbctl.conf",
        f"[guest10]\n{TARGET} = {first[2] - 8 * MIB}\n[guest32751]\n{TARGET} = {last[2] - 8 * MIB}\n",
    )
    try:
        outcome = large_host.process("--system", env={"XBCTL_CONF_ROOT": str(tmp_path)})
        assert outcome.status == 0, outcome
        assert f"guest32751: {TARGET}: {last[2]} -> {last[2] - 8 * MIB}" in outcome.stdout
        assert large_host.dom(LAST, "memory/target") == str(last[2] - 8 * MIB)
        assert large_host.dom(10, "memory/target") == str(first[2] - 8 * MIB)
    finally:
        large_host.write(f"/local/domain/{LAST}/memory/target", str(last[2]))
        large_host.write("/local/domain/10/memory/target", str(first[2]))


def test_policy_follow_configures_a_domain_that_comes_to_a_large_host(large_host, tmp_path):
    root = tmp_path / "conf"
    write_conf(root, "etc/xbctl.conf", f"[late]\n{TARGET} = 512M\n")
    newcomer = 29000
    service = Service(large_host, root)
    try:
        service.wait_for_line("following @introduceDomain", timeout_s=120)
        with Client(unix_socket_path=str(large_host.socket_path)) as client:
            create_domain(client, newcomer, "late")
            client.introduce_domain(newcomer, 0x1000 + newcomer, 20)
        large_host.wait_for(lambda: large_host.dom(newcomer, "memory/target") == str(512 * 1024), "late configured")
        assert service.stop() == 0
    finally:
        service.stop()
        with Client(unix_socket_path=str(large_host.socket_path)) as client:
            destroy_domain(client, newcomer)
    record = json.loads((large_host.runtime_dir / "configured.json").read_text())["domains"]
    assert len(record) == len(DOMIDS) + 1  # every domain seen at start, and the newcomer
    assert "Traceback" not in "".join(service.lines)


def test_prometheus_text_and_exporter_cover_every_domain(large_host):
    text = plain(large_host.process("list", "--format", "prometheus"))
    assert text.status == 0 and text.stderr == "", text
    # Values are keyed by name; the info series maps each name to its id.
    named = set(re.findall(r'^xen_balloon_target_bytes\{domain="([^"]*)"\}', text.stdout, re.M))
    ids = dict(re.findall(r'^xen_balloon_domain_info\{domain="([^"]*)",domid="(\d+)"\}', text.stdout, re.M))
    assert named == set(ids) and len(named) == len(DOMIDS)
    listed = set(map(int, ids.values()))
    assert listed == set(DOMIDS)
    with socket_port() as port:
        process = large_host.popen("exporter", "--listen", f"127.0.0.1:{port}")
        try:
            page = scrape(port, process)
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=60)
    scraped = set(map(int, re.findall(r'^xen_balloon_domain_info\{domain="[^"]*",domid="(\d+)"\}', page, re.M)))
    assert set(re.findall(r'^xen_balloon_target_bytes\{domain="([^"]*)"\}', page, re.M)) == named
    assert scraped == set(DOMIDS)


def test_top_shows_a_large_host_and_redraws_on_a_change(large_host):
    process = large_host.popen("top")
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(process.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: "guest32751" in "".join(seen), process, "the first table")
        tables = "".join(seen).count("memory in MiB")
        large_host.write(f"/local/domain/{LAST}/memory/target", str(300 * 1024))
        wait_until(lambda: "".join(seen).count("memory in MiB") > tables, process, "a redraw")
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        large_host.write(f"/local/domain/{LAST}/memory/target", str(many_domain(LAST)[2]))
    reader.join(timeout=10)
    assert plain(Outcome(process.returncode, "", err)) == Outcome(0, "", ""), err
    assert set(map(int, re.findall(r"^│\s*(\d+) │", "".join(seen), re.M))) == set(DOMIDS)


def wait_until(predicate, process: subprocess.Popen, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert process.poll() is None, f"ended before {what}"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.05)


class socket_port:
    """A free loopback port."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def __exit__(self, *exc) -> None:
        pass


def scrape(port: int, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
                return response.read().decode()
        except OSError:
            assert time.monotonic() < deadline, "the exporter never answered"
            time.sleep(0.05)


# ---------------------------------------------------------------- the 4,096-byte boundary


def listing_of(size: int) -> list[int]:
    """Domain ids beside LAYOUT's (ids 0-5: 12 bytes) making /local/domain's listing SIZE bytes:
    4-digit ids (5 bytes each) from 1000 on, and one 3-digit id (4 bytes) when needed."""
    rest = size - sum(len(str(domid)) + 1 for domid in LAYOUT)
    fours, threes = next((n, (rest - 5 * n) // 4) for n in range(rest // 5, -1, -1) if (rest - 5 * n) % 4 == 0)
    return [*range(100, 100 + threes), *range(1000, 1000 + fours)]


def traced(host: XenHost, mark: int) -> list[str]:
    """The requests and replies xenstored traced since byte MARK of its trace, one per line."""
    return host.daemon.trace_path.read_bytes()[mark:].decode(errors="replace").splitlines()


@pytest.mark.parametrize("size, parts", [(4096, False), (4097, True)])
def test_a_listing_of_4096_bytes_comes_whole_and_one_byte_more_in_parts(private_xs, size, parts):
    domids = listing_of(size)
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        lay_out_many_domains(client, domids=domids)
    assert sum(len(name) + 1 for name in private_xs.daemon.xs_list("/local/domain")) == size
    mark = private_xs.daemon.trace_path.stat().st_size
    outcome = private_xs.process("--json", "list")
    assert outcome.status == 0, outcome
    assert [entry["id"] for entry in outcome.json()["domains"]] == sorted([*LAYOUT, *domids])
    lines = [line for line in traced(private_xs, mark) if "(/local/domain " in line or "E2BIG" in line]
    if parts:  # XS_DIRECTORY refused (E2BIG), then XS_DIRECTORY_PART from offset 0 on
        assert [line.split(" ", 4)[4] for line in lines[:3]] == [
            "DIRECTORY (/local/domain )",
            "ERROR (E2BIG )",
            "DIRECTORY_PART (/local/domain 0 )",
        ], lines
        assert len(lines) == 4 and "DIRECTORY_PART (/local/domain 40" in lines[3], lines
    else:  # one reply of exactly 4,096 bytes
        assert [line.split(" ", 4)[4] for line in lines] == ["DIRECTORY (/local/domain )"], lines


def test_a_directory_changed_between_two_parts_is_listed_again(private_xs, monkeypatch):
    from xbctl.transports.xenstore import wire

    domids = listing_of(4097)
    with Client(unix_socket_path=str(private_xs.socket_path)) as client:
        lay_out_many_domains(client, domids=domids)
    original = wire.WireClient._part
    parts = []

    def part_then_destroy(self, body):
        parts.append(body.partition(b"\0")[0])
        if len(parts) == 1:  # after the first part: a domain listed in it is destroyed
            private_xs.rm("/local/domain/1000")
        return original(self, body)

    monkeypatch.setattr(wire.WireClient, "_part", part_then_destroy)
    outcome = private_xs("--json", "list")
    assert outcome.status == 0, outcome
    remaining = sorted([*LAYOUT, *domids[1:]]) if domids[0] == 1000 else None
    assert [entry["id"] for entry in outcome.json()["domains"]] == remaining
    assert len(set(parts)) == 2 and len(parts) >= 3, parts  # another generation: listed again from 0
