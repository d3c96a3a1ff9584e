"""The configuration files, found in sysctl's order: what `xbctl --system` and `xbctl policy` apply.

    /usr/lib/xbctl.d/*.conf   the vendor's (a package's) files
    /etc/xbctl.d/*.conf       the administrator's: one overrides the vendor file of the same name
    /etc/xbctl.conf           read last, so it overrides every file in xbctl.d

As systemd-sysctl and procps's `sysctl --system` do: the files of both directories are
read in the order of their names (whichever directory each comes from), a name in /etc
replacing the same name in /usr/lib (a link to /dev/null there masks the vendor's file);
/etc/xbctl.conf comes after them all, as /etc/sysctl.conf does (procps reads it last;
Debian links it as /etc/sysctl.d/99-sysctl.conf for systemd-sysctl). Only regular files
(or links to one, or to /dev/null) whose names end in `.conf` and do not start with a dot
count. XBCTL_CONF_ROOT=DIR puts etc/ and usr/lib/ under DIR (tests, containers).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .assignments import Assignment

CONF_ROOT_VARIABLE = "XBCTL_CONF_ROOT"
MAIN_FILE = "etc/xbctl.conf"
# Lowest precedence first: a later directory's file replaces an earlier one's of the same name.
DROP_IN_DIRS = ("usr/lib/xbctl.d", "etc/xbctl.d")


def configuration_root() -> str:
    """Where etc/ and usr/lib/ are: $XBCTL_CONF_ROOT, or /."""
    return os.environ.get(CONF_ROOT_VARIABLE) or "/"


def configuration_files(root: str | None = None) -> list[str]:
    """The configuration files under ROOT (default configuration_root()), in the order they apply."""
    root = configuration_root() if root is None else root
    chosen: dict[str, str] = {}  # file name -> path; /etc's replaces /usr/lib's
    for directory in DROP_IN_DIRS:
        path = os.path.join(root, directory)
        try:
            names = os.listdir(path)
        except OSError:
            continue  # a missing (or unreadable) directory holds no configuration
        for name in names:
            if name.startswith(".") or not name.endswith(".conf"):
                continue
            candidate = os.path.join(path, name)
            if _is_configuration(candidate):
                chosen[name] = candidate
    files = [chosen[name] for name in sorted(chosen)]
    main = os.path.join(root, MAIN_FILE)
    if _is_configuration(main):
        files.append(main)
    return files


def _is_configuration(path: str) -> bool:
    # A directory named x.conf is not a file; /dev/null (a mask) reads as an empty one.
    return os.path.isfile(path) or os.path.realpath(path) == os.devnull


def read_configuration(paths: list[str]) -> list[Assignment]:
    """Every assignment of PATHS in order, each with its FILE:LINE origin and [DOMAIN] section."""
    from .assignments import read_settings_file

    assignments: list[Assignment] = []
    for path in paths:
        if os.path.realpath(path) == os.devnull:
            continue  # a masked vendor file
        assignments.extend(read_settings_file(path))
    return assignments
