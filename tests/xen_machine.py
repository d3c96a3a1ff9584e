"""The installed xbctl on a machine that is Xen, or is not, seen through the real paths.

xbctl tells a Xen machine by /sys/hypervisor/type and xenfs's /proc/xen/capabilities, finds
Xenstore at /var/run/xenstored/socket or /dev/xen/xenbus, and libxencall opens the hypervisor
at /dev/xen/privcmd. `run_on` runs xbctl in a private mount namespace (`unshare -m`: root)
where those paths hold what a test asks for, and nothing of the test machine's own: a tmpfs
on /sys (or /sys/hypervisor), /proc (or /proc/xen) and /var/run, an overlay on /dev. A user
other than root (setpriv) reaches the test's files through bind mounts under /var/run.
Nothing leaves the namespace.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import Outcome

# Where run_on shows a test's directories (SHOW=) inside the namespace, to any user.
SHOWN = "/var/run/xbctl-test"
DEFAULT_SOCKET = "/var/run/xenstored/socket"


def needs_root() -> None:
    """Skip unless root: unshare -m and mounts need it."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a private mount namespace (unshare -m) with mounts in it")


def run_on(
    args: list[str],
    env: dict[str, str | None],
    *,
    xen: str | None = None,
    xenstored_socket: os.PathLike | str | None = None,
    xenstored_dir_mode: int = 0o755,
    privcmd: bool = False,
    show: dict[str, os.PathLike | str] | None = None,
    user: str | None = None,
    timeout: float = 60,
) -> Outcome:
    """The installed xbctl ARGS (environment ENV over os.environ, None removes) on a machine where:

    XEN "sysfs": /sys/hypervisor/type says xen; "xenfs": /proc/xen/capabilities is there;
    None: neither. XENSTORED_SOCKET: that socket at /var/run/xenstored/socket (its directory
    XENSTORED_DIR_MODE), else no Xenstore there. PRIVCMD: /dev/xen/privcmd is there, root's
    (0600). SHOW: {NAME: directory} shown at SHOWN/NAME (a bind mount: what
    lies above it, a cache only root may enter, does not hide it). USER: run as this user (group nogroup).
    """
    needs_root()
    steps = ["set -e"]
    if xen == "sysfs":
        steps += [
            "if [ -d /sys/hypervisor ]; then mount -t tmpfs -o mode=0755 xbctl-test /sys/hypervisor;"
            " else mount -t tmpfs -o mode=0755 xbctl-test /sys; mkdir /sys/hypervisor; fi",
            "echo xen > /sys/hypervisor/type",
        ]
    elif xen is None or xen == "xenfs":
        steps.append("if [ -d /sys/hypervisor ]; then mount -t tmpfs -o mode=0755 xbctl-test /sys/hypervisor; fi")
    else:
        raise ValueError(xen)
    if xen == "xenfs":
        steps += [
            "if [ -d /proc/xen ]; then mount -t tmpfs -o mode=0755 xbctl-test /proc/xen;"
            " else mount -t tmpfs -o mode=0755 xbctl-test /proc; mkdir /proc/xen; fi",
            ": > /proc/xen/capabilities",
        ]
    else:
        steps.append("if [ -d /proc/xen ]; then mount -t tmpfs -o mode=0755 xbctl-test /proc/xen; fi")
    # A fresh /var/run: no xenstored of the machine's own shows through.
    steps.append("mount -t tmpfs -o mode=0755 xbctl-test /var/run")
    if xenstored_socket is not None:
        steps += [
            "mkdir /var/run/xenstored",
            f"chmod {xenstored_dir_mode:o} /var/run/xenstored",
            f": > {DEFAULT_SOCKET}",
            f"mount --bind {shlex.quote(str(xenstored_socket))} {DEFAULT_SOCKET}",
        ]
    for name, directory in (show or {}).items():
        steps += [f"mkdir -p {SHOWN}/{name}", f"mount --bind {shlex.quote(str(directory))} {SHOWN}/{name}"]
    scratch = Path(tempfile.mkdtemp(prefix="xbctl-dev-"))  # root's (0700): the overlay's upper layer
    if privcmd:
        steps += [
            f"mount -t tmpfs -o mode=0700 xbctl-test {scratch}",
            f"mkdir {scratch}/upper {scratch}/work",
            f"mount -t overlay xbctl-test -o lowerdir=/dev,upperdir={scratch}/upper,workdir={scratch}/work /dev",
            "mkdir -p /dev/xen",
            "rm -f /dev/xen/xenbus",
            ": > /dev/xen/privcmd",
            "chmod 0600 /dev/xen/privcmd",
        ]
    else:
        steps.append("if [ -d /dev/xen ]; then mount -t tmpfs -o mode=0755 xbctl-test /dev/xen; fi")
    become = f"setpriv --reuid={user} --regid=nogroup --clear-groups " if user else ""
    steps.append(f'exec {become}"$@"')
    full_env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    argv = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "\n".join(steps),
        "sh",
        shutil.which("xbctl") or "xbctl",
        *args,
    ]
    try:
        done = subprocess.run(
            argv, env=full_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    finally:
        scratch.rmdir()
    return Outcome(done.returncode, done.stdout, done.stderr)
