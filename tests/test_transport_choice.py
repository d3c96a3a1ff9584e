"""Which transport answers, and saying so: never the simulator in a Xen machine's place; the
simulated host named as such when it answers unasked; Xenstore and the hypervisor refused to a
user who is not root, with the advice to be root.

On-Xen and non-root runs go through the real paths (/sys/hypervisor/type, /proc/xen,
/var/run/xenstored/socket, /dev/xen/privcmd) in a private mount namespace (tests/xen_machine.py),
against the real xenstored, the real libxenctrl and the real kernel's permission checks.
"""

from __future__ import annotations

import functools
import os
import re
import select
import shutil
import stat
import subprocess
import sys
import time

import pytest
from xen_machine import DEFAULT_SOCKET, SHOWN, needs_root, run_on

WEB = "/local/domain/1"
NO_XENSTORE = f"xbctl: Xenstore at {DEFAULT_SOCKET}: no such socket, and no xenbus device\n"
ON_XEN_HINT = (
    "xbctl: hint: this is a Xen machine, so xbctl answers from its simulator only when told "
    "(--transport sim); on Domain-0, is xenstored running?\n"
)
NOTE = "xbctl: note: simulated host (no Xen here)\n"
# Nothing names a transport or a Xenstore: xbctl chooses.
UNNAMED = {"XBCTL_TRANSPORT": None, "XENSTORED_PATH": None, "XENSTORED_RUNDIR": None}


def refused(path: str) -> str:
    return f"xbctl: {path}: Permission denied: Xenstore and the hypervisor are root's; run xbctl as root (sudo xbctl ...)\n"


# ---------------------------------------------------------------- on Xen, no Xenstore: exit 3


COMMANDS = [
    ["-a"],
    ["-n", "target"],
    ["-A", "-e"],
    ["-d", "web", "target", "600M"],
    ["-w", "-d", "web", "machdep.xen.balloon.min=256M"],
    ["mem-set", "web", "512"],
    ["mem-max", "web", "2G"],
    ["--dry-run", "mem-set", "web", "512"],
    ["--system"],
    ["policy"],
    ["list"],
    ["list", "--long"],
    ["list", "--format", "prometheus"],
    ["top"],
    ["exporter", "--listen", "127.0.0.1:0"],
    ["sim", "advance", "1"],
]


@pytest.fixture
def conf_root(tmp_path):
    """A configuration of the test's own (--system and policy read it), never /etc."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "xbctl.conf").write_text("[web]\nmachdep.xen.balloon.target = 700M\n")
    return {"XBCTL_CONF_ROOT": str(tmp_path)}


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_on_xen_without_xenstore_every_command_fails_and_the_simulator_stays_out(xbctl, conf_root, args):
    before = xbctl.snapshot()
    outcome = run_on(args, {**xbctl.env, **UNNAMED, **conf_root}, xen="sysfs", timeout=30)
    assert outcome == type(outcome)(3, "", NO_XENSTORE + ON_XEN_HINT)
    assert xbctl.snapshot() == before  # the simulated host was neither read as the host nor changed


@pytest.mark.parametrize("how", ["--transport sim", "XBCTL_TRANSPORT=sim"])
def test_on_xen_only_a_named_simulator_answers(xbctl, how):
    document = run_on(["--json", "mem-set", "web", "512"], {**xbctl.env, **UNNAMED}, xen="sysfs")
    assert document.status == 3 and document.stderr == NO_XENSTORE + ON_XEN_HINT, document
    assert document.json()["error"]["message"] == NO_XENSTORE[len("xbctl: ") :].strip()
    named = ["--transport", "sim"] if how.startswith("--") else []
    env = {**xbctl.env, **UNNAMED, **({} if named else {"XBCTL_TRANSPORT": "sim"})}
    outcome = run_on([*named, "mem-set", "web", "512"], env, xen="sysfs")
    assert outcome == type(outcome)(0, "machdep.xen.balloon.target: 786432 -> 524288\n", "")  # asked for: no note
    assert xbctl.value("target", "web") == 512 * 1024


def test_xenfs_alone_says_xen_too(xbctl):
    # An older kernel or a container without /sys/hypervisor: xenfs's /proc/xen still says it.
    before = xbctl.snapshot()
    outcome = run_on(["mem-set", "web", "512"], {**xbctl.env, **UNNAMED}, xen="xenfs")
    assert outcome == type(outcome)(3, "", NO_XENSTORE + ON_XEN_HINT)
    assert xbctl.snapshot() == before


def test_off_xen_the_unnamed_simulator_answers_and_says_so(xbctl):
    outcome = run_on(["mem-set", "web", "512"], {**xbctl.env, **UNNAMED}, xen=None)
    assert outcome == type(outcome)(0, "machdep.xen.balloon.target: 786432 -> 524288\n", NOTE)
    assert xbctl.value("target", "web") == 512 * 1024


# ---------------------------------------------------------------- off Xen: the simulated host says so


@pytest.fixture
def off_xen():
    """This machine as it is must not be Xen nor have a Xenstore: then the default is the simulator."""
    try:
        with open("/sys/hypervisor/type") as kind:
            xen = kind.read().strip() == "xen"
    except OSError:
        xen = False
    there = [
        path
        for path in ("/proc/xen/capabilities", DEFAULT_SOCKET, "/dev/xen/xenbus", "/proc/xen/xenbus")
        if os.path.lexists(path)
    ]
    if xen or there:
        pytest.skip("this machine is Xen or has a Xenstore: the default is not the simulator here")


@pytest.mark.parametrize(
    ("args", "stdout", "stderr"),
    [
        (["mem-set", "web", "512"], "machdep.xen.balloon.target: 786432 -> 524288\n", ""),
        (["-d", "web", "machdep.xen.balloon.min=256M"], "machdep.xen.balloon.min: 131072 -> 262144\n", ""),
        (["-n", "-d", "web", "target", "600M"], "786432 -> 614400\n", ""),
        (
            ["-d", "web", "--dry-run", "target", "600M"],
            "machdep.xen.balloon.target: 786432 -> 614400\n",
            "xbctl: dry run: nothing was written\n",
        ),
    ],
    ids=["mem-set", "assignment", "-n", "dry-run"],
)
def test_a_write_on_the_unnamed_simulator_says_it_is_simulated(xbctl, off_xen, args, stdout, stderr):
    outcome = xbctl(*args, env=UNNAMED)
    assert (outcome.status, outcome.stdout, outcome.stderr) == (0, stdout, NOTE + stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["-q", "mem-set", "web", "512"],
        ["--json", "mem-set", "web", "512"],
        ["--transport", "sim", "mem-set", "web", "512"],
        ["--json", "list"],
        ["--json", "-a"],
        ["-n", "target"],
        ["-d", "web", "min"],
    ],
    ids=" ".join,
)
def test_no_note_with_q_json_a_named_simulator_or_a_single_read(xbctl, off_xen, args):
    assert xbctl("mem-set", "web", "600", env=UNNAMED).stderr == NOTE  # unnamed, text: the note
    outcome = xbctl(*args, env=UNNAMED)
    assert (outcome.status, outcome.stderr) == (0, ""), outcome
    if "mem-set" not in args:
        assert outcome.stdout == xbctl(*args).stdout  # as with the simulator named (XBCTL_TRANSPORT=sim)
    if "--json" in args:
        assert outcome.json()["transport"] == "sim"  # the document names its transport


@pytest.mark.parametrize(
    "args",
    [["-a"], ["-a", "-n"], ["-a", "-e"], ["-A"], ["-A", "-e"], ["list"], ["list", "-n"], ["list", "--long"]],
    ids=" ".join,
)
def test_a_and_list_on_the_unnamed_simulator_say_so_and_print_the_same(xbctl, off_xen, args):
    unnamed = xbctl(*args, env=UNNAMED)
    named = xbctl(*args)
    assert (unnamed.status, named.status, named.stderr) == (0, 0, "")
    assert unnamed.stdout == named.stdout  # what scripts parse does not change
    assert unnamed.stderr == NOTE


def test_top_on_the_unnamed_simulator_says_so_and_frames_the_same(xbctl, off_xen):
    unnamed = xbctl("top", "-b", "-n", "1", env=UNNAMED)
    named = xbctl("top", "-b", "-n", "1")
    assert (unnamed.status, named.status, named.stderr) == (0, 0, "")
    assert unnamed.stdout.splitlines()[1:] == named.stdout.splitlines()[1:]  # the frames (but their times)
    assert unnamed.stderr == NOTE


def test_policy_on_the_unnamed_simulator_says_so(xbctl, off_xen, conf_root):
    outcome = xbctl("policy", env={**UNNAMED, **conf_root})
    assert outcome.status == 0 and outcome.stderr.startswith("xbctl policy: note: simulated host (no Xen here)\n")
    assert "web (1): machdep.xen.balloon.target: 786432 -> 716800" in outcome.stderr
    assert "simulated host" not in xbctl("policy", env=conf_root).stderr


def _list_on_a_terminal(xbctl, env: dict) -> str:
    """`xbctl list` on a pseudo-terminal 140 columns wide: what the terminal shows."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    merged = {k: v for k, v in {**os.environ, **xbctl.env, **env, "TERM": "xterm"}.items() if v is not None}
    merged.pop("COLUMNS", None)
    process = subprocess.Popen([shutil.which("xbctl"), "list"], stdin=slave, stdout=slave, stderr=slave, env=merged)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if select.select([master], [], [], 1)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: xbctl is done
                break
            if not chunk:
                break
            shown += chunk
    os.close(master)
    assert process.wait(timeout=10) == 0
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", shown.decode())


def test_the_table_on_a_terminal_is_captioned_simulated(xbctl, off_xen):
    unnamed = _list_on_a_terminal(xbctl, UNNAMED)
    assert "simulated host (no Xen here); host free memory 2048 MiB; memory in MiB" in unnamed, unnamed
    assert unnamed.count("simulated host") == 1  # the caption; no note besides
    assert "simulated host" not in _list_on_a_terminal(xbctl, {})


# ---------------------------------------------------------------- Permission denied: be root


@functools.cache
def _nobody_can_run_xbctl() -> bool:
    done = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", shutil.which("xbctl"), "--version"],
        capture_output=True,
        text=True,
    )
    return done.returncode == 0


def _closed_ancestors(*paths: str) -> list[tuple[str, int]]:
    """The directories above PATHS that other users may not search, with their modes."""
    closed = {}
    for path in paths:
        directory = os.path.dirname(os.path.abspath(path))
        while True:
            mode = os.stat(directory).st_mode
            if not mode & stat.S_IXOTH:
                closed[directory] = stat.S_IMODE(mode)
            parent = os.path.dirname(directory)
            if parent == directory:
                break
            directory = parent
    return sorted(closed.items())


@pytest.fixture
def nobody():
    """User nobody, able to run the installed xbctl: a checkout in a directory only root may
    enter (CI's clone in a mktemp -d) is opened for searching (o+x) during the test, then closed."""
    needs_root()
    closed = _closed_ancestors(shutil.which("xbctl"), os.path.realpath(sys.executable), __file__)
    for directory, mode in closed:
        os.chmod(directory, mode | stat.S_IXOTH)
    try:
        assert _nobody_can_run_xbctl(), "user nobody cannot run the installed xbctl"
        yield "nobody"
    finally:
        for directory, mode in closed:
            os.chmod(directory, mode)


@pytest.mark.parametrize(
    ("directory_mode", "xen"), [(0o755, "sysfs"), (0o700, None)], ids=["socket-0600-on-xen", "directory-0700-off-xen"]
)
def test_xenstores_socket_refused_to_a_user_says_run_as_root(xs, nobody, directory_mode, xen):
    # xenstored makes its socket 0600 (root's); a directory only root may enter hides it from
    # a user's stat(), which must not pass for "no Xenstore here, simulate".
    assert os.stat(xs.socket_path).st_mode & 0o777 == 0o600
    env = {**xs.env, **UNNAMED, "XBCTL_SIM_STATE": None}
    where = {"xen": xen, "xenstored_socket": xs.socket_path, "xenstored_dir_mode": directory_mode}
    for args in (["mem-set", "web", "600"], ["-a"], ["list"]):
        outcome = run_on(args, env, user=nobody, **where)
        assert outcome == type(outcome)(3, "", refused(DEFAULT_SOCKET)), args
    document = run_on(["--json", "-d", "web", "target"], env, user=nobody, **where)
    assert document.status == 3
    assert document.json()["error"] == {
        "message": refused(DEFAULT_SOCKET)[len("xbctl: ") :].strip(),
        "hint": None,
        "errno": "EACCES",
        "exit_status": 3,
    }
    assert xs.read(f"{WEB}/memory/target") == "786432"
    as_root = run_on(["-n", "-d", "web", "target"], {**env, "XBCTL_LIBXENCTRL": ""}, **where)
    assert (as_root.status, as_root.stdout) == (0, "786432\n"), as_root  # the same socket serves root


def test_privcmd_refused_to_a_user_says_run_as_root(private_xs, xs_tools, nobody):
    # A socket anyone may use (an administrator's chmod), and Debian's libxenctrl whose
    # libxencall opens /dev/xen/privcmd as on a Xen host: root's, 0600.
    os.chmod(private_xs.socket_path, 0o666)
    env = {
        **private_xs.env,
        **UNNAMED,
        "XBCTL_SIM_STATE": None,
        "LD_LIBRARY_PATH": f"{SHOWN}/clientlib:{SHOWN}/lib",
        "XBCTL_LIBXENCTRL": f"{SHOWN}/lib/{xs_tools.libxenctrl.name}",
    }
    where = {
        "xen": "sysfs",
        "xenstored_socket": private_xs.socket_path,
        "privcmd": True,
        "show": {"clientlib": xs_tools.client_lib_dir, "lib": xs_tools.lib_dir},
    }
    for args in (["mem-set", "web", "600"], ["-d", "web", "target"], ["list"], ["-A"]):
        outcome = run_on(args, env, user=nobody, **where)
        assert outcome == type(outcome)(3, "", refused("/dev/xen/privcmd")), args
    assert private_xs.read(f"{WEB}/memory/target") == "786432"
    # Without a privcmd device the same user gets as far as a hypercall (the rig, with no table,
    # answers ENODEV): the library loads for them, and what refused them above was privcmd.
    without_privcmd = run_on(["-n", "-d", "web", "target"], env, user=nobody, **{**where, "privcmd": False})
    assert (without_privcmd.status, without_privcmd.stdout) == (0, "786432\n"), without_privcmd
    assert "xc_domain_getinfolist(1) failed: No such device" in without_privcmd.stderr


def test_xenbus_device_refused_to_a_user_says_run_as_root(xs, nobody):
    # Inside a guest Xenstore is the xenbus device (here a pseudo-terminal relayed onto guest
    # mail's ring, owned by root, 0620): a user who may not open it is told to be root.
    device = xs.guest_bus.path
    assert not os.stat(device).st_mode & 0o006
    outcome = run_on(["-a"], {**xs.guest_env(), **UNNAMED, "XENSTORED_PATH": device}, xen="sysfs", user=nobody)
    assert outcome == type(outcome)(3, "", refused(device))
