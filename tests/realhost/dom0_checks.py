"""What Domain-0 runs on the real host (tests/realhost): observations for every check, as JSON.

    python dom0_checks.py CONFIG.json

Runs as root in Domain-0 once Xen's services are up (dom0-start-xen.sh), with the Python of
the test suite's venv (for pyxs, the tests' independent Xenstore client), and drives the
installed ``xbctl`` (CONFIG's ``xbctl``: a venv on the host, seen here over 9p), Debian's
``xl`` and ``xenstore-*`` clients, a Linux PV guest built from the same kernel (its /init,
guest-init.sh, reports its balloon driver's figures in Xenstore under
``data/realhost/balloon``) and Xen's own domain dump (``xl debug-keys q``, ``xl dmesg``).

It judges nothing: every step records what it ran and what it saw (commands with status,
output and timings, Xenstore listings, ``xl list``, the dump's pages per domain, the guest's
reports) in ``results.json`` in the boot's read-write share, saved after each step, so a
step that fails or a boot that ends early still leaves the steps before it.  The pytest
module tests/test_real_host.py asserts on them, one test per check.  A step that raises is
recorded under ``errors`` with its traceback and the next step runs.

CONFIG's ``mode`` is ``checks`` (the test suite) or ``bench`` (tests/benchmark.py: timings).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from pathlib import Path

XL = "/usr/lib/xen-4.17/bin/xl"
SOCKET = "/var/run/xenstored/socket"
MIB = 1024
GUEST = "guest"
#: The guest as xl creates it: 256 MiB, growing to 512 MiB at most.
GUEST_MEMORY_MIB, GUEST_MAXMEM_MIB = 256, 512
#: What the policy service's configuration sets for the guest (a section naming it).
POLICY_SETTINGS_MIB = {"xen-max": 448, "target": 224, "min": 160}
CONF_ROOT = "/run/realhost-conf"
NOBODY = 65534


class Recorder:
    """The results document, saved after every step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.results: dict = {"steps": {}, "errors": {}, "order": [], "started": time.time()}
        self.t0 = time.monotonic()

    def save(self) -> None:
        self.results["elapsed_s"] = round(time.monotonic() - self.t0, 3)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def step(self, name: str):
        """Record the dict the body fills as step NAME; a failure as its traceback."""
        record: dict = {}
        started = time.monotonic()
        self.results["order"].append(name)
        print(f"dom0-checks: {name} ...", flush=True)
        try:
            yield record
        except Exception:
            self.results["errors"][name] = traceback.format_exc()
            print(self.results["errors"][name], file=sys.stderr, flush=True)
        finally:
            record["step_seconds"] = round(time.monotonic() - started, 3)
            self.results["steps"][name] = record
            self.save()


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XBCTL_")}
    env.update(NO_COLOR="1", LC_ALL="C.UTF-8")
    for name in ("XENSTORED_PATH", "XENSTORED_RUNDIR", "COLUMNS"):
        env.pop(name, None)
    return env


def run(argv: list[str], *, env: dict | None = None, timeout: float = 300, stdin: str | None = None) -> dict:
    """Run ARGV; what it did (never raises for a failure or a time-out)."""
    started = time.monotonic()
    record = {"argv": argv, "started": started}
    try:
        done = subprocess.run(
            argv,
            env=env or base_env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
        record.update(status=done.returncode, stdout=done.stdout, stderr=done.stderr)
    except subprocess.TimeoutExpired as exc:
        record.update(
            status=None, stdout=_text(exc.stdout), stderr=_text(exc.stderr) + f"\n[timed out after {timeout} s]"
        )
    record["ended"] = time.monotonic()
    record["seconds"] = round(record["ended"] - started, 3)
    return record


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def xl(*args: str, timeout: float = 120) -> dict:
    return run([XL, *args], timeout=timeout)


def xl_list() -> dict[int, dict]:
    """`xl list`, by domain id: name, mem (MiB), vcpus, state."""
    done = xl("list")
    domains = {}
    for line in done["stdout"].splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5 and fields[-5].isdigit():
            name = " ".join(fields[:-5])
            domid, mem, vcpus, state = int(fields[-5]), int(fields[-4]), int(fields[-3]), fields[-2]
            domains[domid] = {"name": name, "mem_mib": mem, "vcpus": vcpus, "state": state}
    return {"raw": done["stdout"], "domains": domains}


_DOMAIN_LINE = re.compile(r"General information for domain (\d+):")
_PAGES_LINE = re.compile(r"nr_pages=(\d+) .*max_pages=(\d+)")


def xen_dump() -> dict:
    """Xen's own domain dump ('q' debug key, read back with xl dmesg): pages per domain."""
    for _attempt in range(5):
        # Each read clears the ring (dmesg -c): what follows the key is this dump alone.
        keys = xl("debug-keys", "q")
        text = xl("dmesg", "-c")["stdout"]
        domains: dict[str, dict] = {}
        current = None
        for line in text.splitlines():
            found = _DOMAIN_LINE.search(line)
            if found:
                current = found.group(1)
                continue
            pages = _PAGES_LINE.search(line)
            if pages and current is not None and current not in domains:
                domains[current] = {"nr_pages": int(pages.group(1)), "max_pages": int(pages.group(2))}
        if domains and keys["status"] == 0:
            return {"domains": domains}
        time.sleep(0.5)
    raise RuntimeError(f"no domain in Xen's dump:\n{text[-2000:]}")


def xs_ls(path: str) -> str:
    return run(["xenstore-ls", "-fp", path])["stdout"]


def xs_read(path: str) -> str | None:
    done = run(["xenstore-read", path])
    return done["stdout"].strip() if done["status"] == 0 else None


def domid_of(name: str) -> int | None:
    done = xl("domid", name)
    return int(done["stdout"]) if done["status"] == 0 and done["stdout"].strip().isdigit() else None


def snapshot() -> dict:
    """Everything a refused command must leave alone: the whole Xenstore tree with
    permissions, `xl list` and Xen's own pages for every domain."""
    listing = xl_list()
    return {
        "xenstore": xs_ls("/"),
        "xl_list": listing["domains"],
        "dump": xen_dump()["domains"],
    }


class GuestReports:
    """The guest's own reports (data/realhost/balloon = "CURRENT_KB TARGET_KB SEQ"), each
    stamped with Domain-0's monotonic clock when its Xenstore watch fired."""

    def __init__(self, domid: int) -> None:
        from pyxs import Client

        self.domid = domid
        self.path = f"/local/domain/{domid}/data/realhost/balloon".encode()
        self.reports: list[dict] = []
        self.changed = threading.Condition()
        self.reader = Client(unix_socket_path=SOCKET)
        self.reader.connect()
        self.watcher = Client(unix_socket_path=SOCKET)
        self.watcher.connect()
        self.monitor = self.watcher.monitor()
        self.monitor.watch(self.path, b"realhost")
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        from pyxs.exceptions import PyXSError

        with contextlib.suppress(Exception):  # the connection closes at the end, or xenstored is stopped
            for _path, _token in self.monitor.wait():
                stamp = time.monotonic()
                try:
                    value = self.reader.read(self.path)
                except PyXSError:
                    continue  # not written yet (the event a watch fires when it is set)
                current_kb, target_kb, seq = (int(v) for v in value.decode().split())
                with self.changed:
                    if not self.reports or self.reports[-1]["seq"] != seq:
                        self.reports.append({"t": stamp, "current_kb": current_kb, "target_kb": target_kb, "seq": seq})
                    self.changed.notify_all()

    def latest(self) -> dict | None:
        with self.changed:
            return dict(self.reports[-1]) if self.reports else None

    def wait_for(self, predicate, timeout_s: float) -> dict | None:
        """The first report (from now on or already there) for which PREDICATE holds, or None."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                if self.reports and predicate(self.reports[-1]):
                    return dict(self.reports[-1])
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(min(left, 1.0))

    def since(self, t: float) -> list[dict]:
        with self.changed:
            return [dict(r) for r in self.reports if r["t"] >= t]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.watcher.close()
        with contextlib.suppress(Exception):
            self.reader.close()


def sysfs_probe(domid: int) -> str | None:
    """What the guest's probe of its driver's sysfs saw (data/realhost/sysfs, read raw)."""
    from pyxs import Client
    from pyxs.exceptions import PyXSError

    with Client(unix_socket_path=SOCKET) as client:
        try:
            return client.read(f"/local/domain/{domid}/data/realhost/sysfs".encode()).decode()
        except PyXSError:
            return None


def write_target_again(domid: int) -> str | None:
    """memory/target written again with what it holds, in one transaction (so never over a
    newer value): the guest's driver, whose target the probe changed, reads it again (a watch
    fires on every write). The value written."""
    from pyxs import Client

    path = f"/local/domain/{domid}/memory/target".encode()
    with Client(unix_socket_path=SOCKET) as client:
        for _attempt in range(20):
            client.transaction()
            value = client.read(path)
            client.write(path, value)
            if client.commit():
                return value.decode()
    raise RuntimeError("memory/target kept changing")


def wait_until(predicate, timeout_s: float, interval_s: float = 0.5):
    """PREDICATE's first true value within TIMEOUT_S, else None."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval_s)


class Host:
    """Domain-0's view: the xbctl under test, the guest's configuration, the processes started."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.out = Path(config["out"])
        self.xbctl = config["xbctl"]
        self.processes: list[subprocess.Popen] = []

    def x(self, *args: str, env: dict | None = None, timeout: float = 300) -> dict:
        """The installed xbctl ARGS, as root in Domain-0."""
        return run([self.xbctl, *args], env={**base_env(), **(env or {})}, timeout=timeout)

    def guest_config(self) -> Path:
        path = Path("/run/realhost-guest.cfg")
        path.write_text(
            f'name = "{GUEST}"\ntype = "pv"\nkernel = "{self.config["kernel"]}"\n'
            f'ramdisk = "{self.config["ramdisk"]}"\nmemory = {GUEST_MEMORY_MIB}\nmaxmem = {GUEST_MAXMEM_MIB}\n'
            f'vcpus = 1\nextra = "console=hvc0 quiet"\non_poweroff = "destroy"\non_crash = "destroy"\n'
        )
        return path

    def create_guest(self, record: dict) -> tuple[int, GuestReports]:
        """xl create the guest; its id and its reports, once it has reported."""
        created = xl("create", str(self.guest_config()), timeout=300)
        record["xl_create"] = created
        if created["status"] != 0:
            raise RuntimeError(f"xl create failed: {created['stderr']}")
        domid = domid_of(GUEST)
        record["domid"] = domid
        reports = GuestReports(domid)
        first = reports.wait_for(lambda r: True, 300)
        record["first_report"] = first
        if first is None:
            log = Path(f"/var/log/xen/console/guest-{GUEST}.log")
            raise RuntimeError(f"the guest never reported; its console:\n{log.read_text() if log.exists() else ''}")
        # Its sysfs probe came first (guest-init.sh); then the host's target again, for its driver.
        record["sysfs_probe"] = sysfs_probe(domid)
        record["target_again"] = write_target_again(domid)
        return domid, reports

    def start(self, argv: list[str], log_name: str, env: dict | None = None) -> subprocess.Popen:
        """A background process, stdout and stderr into LOG_NAME in the share."""
        log = open(self.out / log_name, "w")
        process = subprocess.Popen(
            argv,
            env={**base_env(), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen, timeout_s: float = 60) -> int | None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return process.returncode

    def log(self, log_name: str) -> str:
        with contextlib.suppress(OSError):
            return (self.out / log_name).read_text(errors="replace")
        return ""


def memory_nodes(domid: int) -> dict[str, str | None]:
    base = f"/local/domain/{domid}/memory"
    return {name: xs_read(f"{base}/{name}") for name in ("target", "static-max", "dynamic-min", "videoram")}


def capabilities(pid: int) -> dict[str, str]:
    """The Cap* and NoNewPrivs lines of /proc/PID/status."""
    status = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in status.splitlines() if line.startswith(("Cap", "NoNewPrivs", "Uid")))


def policy_applied(domid: int):
    """The guest's memory nodes once the policy's settings are all there."""
    want = {
        "target": POLICY_SETTINGS_MIB["target"] * MIB,
        "static-max": POLICY_SETTINGS_MIB["xen-max"] * MIB,
        "dynamic-min": POLICY_SETTINGS_MIB["min"] * MIB,
    }
    nodes = memory_nodes(domid)
    return nodes if all(nodes.get(k) == str(v) for k, v in want.items()) else None


def open_ancestors(path: str) -> None:
    """Let others traverse every directory above PATH (a copy-up in Domain-0's overlay only)."""
    for parent in Path(path).resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o005)


def scrape(port: int, timeout_s: float = 120) -> dict:
    """GET /metrics from the exporter, retrying until it listens."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            started = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as answer:
                return {"status": answer.status, "text": answer.read().decode(), "seconds": time.monotonic() - started}
        except OSError as exc:
            last = repr(exc)
            time.sleep(1)
    return {"status": None, "error": last}


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------


def checks(config: dict, rec: Recorder) -> None:
    host = Host(config)
    rec.results["facts"] = {
        "uname": run(["uname", "-r"])["stdout"].strip(),
        "xl_info": xl("info")["stdout"],
        "xbctl_version": host.x("--version")["stdout"].strip(),
    }
    rec.save()
    policy = exporter = reports = None
    domid = None

    with rec.step("policy_start") as r:
        conf = Path(CONF_ROOT, "etc", "xbctl.d")
        conf.mkdir(parents=True, exist_ok=True)
        lines = [f"[{GUEST}]"] + [f"machdep.xen.balloon.{k} = {v}M" for k, v in POLICY_SETTINGS_MIB.items()]
        (conf / "50-guest.conf").write_text("\n".join(lines) + "\n")
        r["conf"] = (conf / "50-guest.conf").read_text()
        argv = [
            "sh",
            str(Path(config["rig"]) / "as-unit.sh"),
            "--keep",
            str(Path(config["venv"]).resolve()),
            "--runtime-directory",
            "xbctl",
            "--",
            host.xbctl,
            "policy",
            "--follow",
        ]
        r["argv"] = argv
        policy = host.start(argv, "policy.log", env={"XBCTL_CONF_ROOT": CONF_ROOT})
        # It has started once it says it follows (or has applied once): then read its capabilities.
        r["ready"] = bool(
            wait_until(lambda: "follow" in host.log("policy.log").lower() or policy.poll() is not None, 180)
        )
        r["running"] = policy.poll() is None
        r["capabilities"] = capabilities(policy.pid) if r["running"] else None
        r["mounts"] = Path(f"/proc/{policy.pid}/mountinfo").read_text() if r["running"] else None
        r["log"] = host.log("policy.log")

    with rec.step("exporter_start") as r:
        port = int(config["exporter_port"])
        exporter = host.start([host.xbctl, "exporter", "--listen", f"127.0.0.1:{port}"], "exporter.log")
        r["argv"] = exporter.args

    with rec.step("guest_create") as r:
        domid, reports = host.create_guest(r)
        r["xl_list"] = xl_list()
    rec.results["guest_domid"] = domid
    rec.save()
    if reports is None:
        return  # nothing below has a guest to work on

    with rec.step("policy_first") as r:
        r["domid"] = domid
        r["nodes"] = wait_until(lambda: policy_applied(domid), 180) or memory_nodes(domid)
        r["dump"] = xen_dump()["domains"]
        r["report"] = reports.wait_for(lambda rep: rep["current_kb"] == POLICY_SETTINGS_MIB["target"] * MIB, 180)
        r["log"] = host.log("policy.log")
        r["capabilities"] = capabilities(policy.pid) if policy.poll() is None else None

    with rec.step("list") as r:
        r["xl_before"] = xl_list()
        r["dump_before"] = xen_dump()["domains"]
        r["current_dom0"] = host.x("current")
        r["current_guest"] = host.x("-d", GUEST, "current")
        r["list_pipe"] = host.x("list")
        r["list_json"] = host.x("--json", "list")
        r["xl_after"] = xl_list()
        r["dump_after"] = xen_dump()["domains"]

    with rec.step("exporter") as r:
        r["scrape"] = scrape(int(config["exporter_port"]))
        r["xl"] = xl_list()
        r["dump"] = xen_dump()["domains"]

    for name, size_mib in (("mem_set_shrink", 192), ("mem_set_grow", 384)):
        with rec.step(name) as r:
            r["size_mib"] = size_mib
            r["before"] = reports.latest()
            started = time.monotonic()
            r["command"] = host.x("mem-set", GUEST, str(size_mib), "--wait", "--timeout", "240")
            r["xl_at_exit"] = xl_list()  # what --wait returned on, before anything else runs
            r["reports"] = reports.since(started)
            r["reached"] = reports.wait_for(lambda rep, s=size_mib: rep["current_kb"] == s * MIB, 60)
            r["nodes"] = memory_nodes(domid)
            r["xl"] = xl_list()
            r["dump"] = xen_dump()["domains"]

    with rec.step("mem_max") as r:
        r["xl_mem_max"] = xl("mem-max", GUEST, "464")
        r["after_xl"] = {"nodes": memory_nodes(domid), "dump": xen_dump()["domains"]}
        r["xbctl_mem_max"] = host.x("mem-max", GUEST, "480")
        r["after_xbctl"] = {"nodes": memory_nodes(domid), "dump": xen_dump()["domains"]}
        r["target_kib"] = int(memory_nodes(domid)["target"] or 0)

    with rec.step("refusals") as r:
        r["before"] = snapshot()
        r["nodes_before"] = memory_nodes(domid)
        r["cases"] = {}
        for case, args in (
            ("target_below_min", ("-d", GUEST, "target", "100M")),
            ("target_above_max", ("mem-set", GUEST, "500")),
            ("xen_max_below_target", ("mem-max", GUEST, "300")),
        ):
            outcome = host.x(*args)
            r["cases"][case] = {"command": outcome, "after": snapshot()}

    with rec.step("export_apply") as r:
        r["before"] = snapshot()
        exported = host.x("-A", "-e")
        r["export"] = exported
        settings = Path("/run/realhost-all.conf")
        settings.write_text(exported["stdout"])
        r["apply"] = host.x("-f", str(settings))
        r["after"] = snapshot()

    with rec.step("parity") as r:
        r.update(parity_sequence(domid))

    if exporter is not None:
        with rec.step("exporter_stop") as r:
            r["status"] = host.stop(exporter)
            r["log"] = host.log("exporter.log")

    with rec.step("policy_again") as r:
        reports.close()
        r["old_domid"] = domid
        r["destroy"] = xl("destroy", GUEST)
        r["gone"] = bool(wait_until(lambda: xs_read(f"/local/domain/{domid}/name") is None, 60))
        # Xen hands out ids in turn (xl.conf's domid_policy "xen"), and xl 4.17 reads no domid=
        # from a domain's configuration: the new guest has a new id.
        domid, reports = host.create_guest(r)
        r["new_domid"] = domid
        r["nodes"] = wait_until(lambda: policy_applied(domid), 180) or memory_nodes(domid)
        r["dump"] = xen_dump()["domains"]
        r["log"] = host.log("policy.log")
        r["capabilities"] = capabilities(policy.pid) if policy.poll() is None else None
    rec.results["guest_domid_again"] = domid

    with rec.step("non_root") as r:
        for path in (host.xbctl, os.path.realpath(sys.executable), os.path.realpath(config["venv"] + "/bin/python")):
            open_ancestors(path)
        r["command"] = run(
            [
                "setpriv",
                f"--reuid={NOBODY}",
                f"--regid={NOBODY}",
                "--clear-groups",
                "--",
                "env",
                "HOME=/tmp",
                host.xbctl,
                "-d",
                GUEST,
                "target",
                "300M",
            ]
        )
        r["nodes_after"] = memory_nodes(domid)

    with rec.step("policy_stop") as r:
        r["status"] = host.stop(policy)
        r["log"] = host.log("policy.log")

    with rec.step("xenstored_stopped") as r:
        reports.close()
        r["nodes_before"] = memory_nodes(domid)
        r["dump_before"] = xen_dump()["domains"]
        pid = int(Path("/var/run/xenstored.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        r["dead"] = bool(wait_until(lambda: not Path(f"/proc/{pid}").exists(), 30, 0.2))
        r["socket_left"] = os.path.exists(SOCKET)
        r["stale_socket"] = host.x("mem-set", GUEST, "300") if r["socket_left"] else None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET)
        # Without the socket, xbctl talks through /dev/xen/xenbus, which a Domain-0 always has.
        r["no_socket"] = host.x("mem-set", GUEST, "300")
        # No Xenstore to reach at all (no socket, no xenbus device) on a machine that is Xen.
        r["no_xenstore"] = run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                'mount -t tmpfs tmpfs /dev/xen && mount -t tmpfs tmpfs /proc/xen && exec "$@"',
                "hide-xenbus",
                host.xbctl,
                "mem-set",
                GUEST,
                "300",
            ]
        )
        r["hypervisor_type"] = Path("/sys/hypervisor/type").read_text().strip()
        r["dump_after"] = xen_dump()["domains"]


PARITY_STEPS = (
    ("mem-max", "496"),
    ("mem-set", "300"),
    ("mem-set", "500"),  # above static-max: refused
    ("mem-max", "200"),  # below the target: refused
    ("mem-set", "160"),  # the maximum drops below what the paused guest holds
    ("mem-max", "512"),
    ("mem-set", "256"),
)


def parity_sequence(domid: int) -> dict:
    """xl mem-set/mem-max on the paused guest (its driver cannot move, so only xl and Xen
    change anything), the figures after each: the same sequence runs on the test rig."""
    record: dict = {"domid": domid}
    record["pause"] = xl("pause", GUEST)
    try:
        record["start"] = {
            "nodes": memory_nodes(domid),
            "dump": xen_dump()["domains"][str(domid)],
            "xl": xl_list()["domains"].get(domid),
            "uuid": xs_read(f"/local/domain/{domid}/vm"),
        }
        steps = []
        for command, size in PARITY_STEPS:
            done = xl(command, str(domid), size)
            steps.append(
                {
                    "command": command,
                    "size": size,
                    "status": done["status"],
                    "stderr": done["stderr"],
                    "nodes": memory_nodes(domid),
                    "dump": xen_dump()["domains"][str(domid)],
                    "xl": xl_list()["domains"].get(domid),
                }
            )
        record["steps"] = steps
    finally:
        record["unpause"] = xl("unpause", GUEST)
    return record


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


def bench(config: dict, rec: Recorder) -> None:
    """Timings for tests/benchmark.py: xbctl list against xl list, xbctl -n current against
    xenstore-read, interleaved; --wait's latency against the guest's own report."""
    host = Host(config)
    runs = int(config.get("runs", 5))
    with rec.step("guest_create") as r:
        domid, reports = host.create_guest(r)
    with rec.step("timings") as r:
        host.x("current")  # Domain-0's nodes filled, caches warm
        commands = {
            "xl list": [XL, "list"],
            "xbctl list": [host.xbctl, "list"],
            "xenstore-read": ["xenstore-read", f"/local/domain/{domid}/memory/target"],
            "xbctl -n current": [host.xbctl, "-d", GUEST, "-n", "current"],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                done = run(argv)
                if done["status"] != 0:
                    raise RuntimeError(f"{name} failed: {done}")
                samples[name].append(done["seconds"])
        r["samples"] = samples
    with rec.step("wait_latency") as r:
        waits = []
        for size_mib in (192, 320, 224, 288)[: max(2, min(4, runs))]:
            started = time.monotonic()
            done = host.x("mem-set", GUEST, str(size_mib), "--wait", "--timeout", "240")
            # The guest's report may reach Domain-0 after xbctl saw the hypervisor's figure.
            reports.wait_for(lambda rep, s=size_mib: rep["current_kb"] == s * MIB, 60)
            reached = [rep for rep in reports.since(started) if rep["current_kb"] == size_mib * MIB]
            waits.append(
                {
                    "size_mib": size_mib,
                    "status": done["status"],
                    "command_s": done["seconds"],
                    "guest_reached_s": round(reached[0]["t"] - started, 3) if reached else None,
                    "exit_after_guest_s": round(done["ended"] - reached[0]["t"], 3) if reached else None,
                }
            )
        r["waits"] = waits
    reports.close()


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    rec = Recorder(Path(config["out"]) / "results.json")
    rec.results["mode"] = config["mode"]
    rec.save()
    try:
        (checks if config["mode"] == "checks" else bench)(config, rec)
    except Exception:
        rec.results["errors"]["program"] = traceback.format_exc()
        print(rec.results["errors"]["program"], file=sys.stderr, flush=True)
    rec.results["finished"] = True
    rec.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
