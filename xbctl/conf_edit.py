"""A domain's lines in a configuration file, set or removed, and the file written as xbctl requires.

What makes a setting survive (the Ansible module `xbctl.xen.balloon` with `persist`): the
line `NAME=VALUE` under the domain's `[DOMAIN]` section of a file in /etc/xbctl.d, which
`xbctl --system` and the policy service read (xbctl.conf). Only the domain's own lines
change: comments, other sections and lines outside any section stay as they are.
"""

from __future__ import annotations

import os
import tempfile

from .assignments import BLANKS, read_settings_file
from .errors import XbctlError, usage_error

DEFAULT_FILE = "etc/xbctl.d/ansible.conf"  # under the configuration root (XBCTL_CONF_ROOT, or /)
FILE_MODE = 0o644  # root's alone to change (xbctl.conf); anyone may read what a balloon is set to
DIRECTORY_MODE = 0o755


def default_file() -> str:
    """The file settings persist in unless one is named: /etc/xbctl.d/ansible.conf (under XBCTL_CONF_ROOT)."""
    from .conf import configuration_root

    return os.path.join(configuration_root(), DEFAULT_FILE)


def check_section_name(domain: str) -> str:
    """DOMAIN, refused (exit 2) unless `[DOMAIN]` reads back as that same domain."""
    if (
        not domain
        or domain != domain.strip(BLANKS)
        or any(not (" " <= c <= "~" or c == "\t") for c in domain)
        or "#" in domain
        or "]" in domain
    ):
        raise usage_error(
            f"{domain!r}: no settings file section can name this domain",
            hint="name it by a plain ASCII name (no '#', no ']', no blanks at either end) or by its id",
        )
    return domain


def check_values(values: dict) -> None:
    """Refuse (exit 2) any of VALUES ({key: size text}) that is no size xbctl reads for its node."""
    from .nodes import find_node
    from .operations import request_for

    for key, value in values.items():
        request_for(find_node(key), value)


def _line_parts(line: str) -> tuple[str, str]:
    """LINE's content (what xbctl reads: no comment, no blanks around it) and its comment ('#...')."""
    body, hash_, comment = line.removesuffix("\r").partition("#")
    return body.strip(BLANKS), hash_ + comment


def _node_of(content: str):
    """The node a `name=value` (or `name?=value`) line sets, or None (not a known node's line)."""
    from .nodes import find_node

    name = content.partition("=")[0].strip(BLANKS).removesuffix("?").rstrip(BLANKS)
    try:
        return find_node(name)
    except XbctlError:
        return None


def _same_size(node, old_text: str, new_text: str) -> bool:
    """Whether OLD_TEXT (a file's value) means NEW_TEXT for NODE: the same KiB, both absolute or
    both the same change (`524288` is `512M`)."""
    from .units import parse_size

    relative = node.key == "target"
    try:
        old, new = parse_size(old_text, allow_relative=relative), parse_size(new_text, allow_relative=relative)
    except XbctlError:
        return False
    return (old.kib, old.relative) == (new.kib, new.relative)


def edit_settings(text: str, domain: str, values: dict) -> str:
    """TEXT (a settings file) with DOMAIN's line for each node of VALUES ({key: size text, or
    None to remove it}) set to that value, as `-e` writes it (`machdep.xen.balloon.target=512M`).

    The first line setting a node in any `[DOMAIN]` section is rewritten in place (its comment
    kept; left as it is when it already means that size); later ones for the same node go, as
    they would override it. A node without a line gets one at the end of the domain's last
    section, or in a new section at the end of the file. A section left empty goes too.
    """
    from .nodes import find_node

    nodes = {key: find_node(key) for key in values}
    lines = text.split("\n")
    ends_in_newline = text.endswith("\n") or not text
    if lines and lines[-1] == "":
        lines.pop()
    section: str | None = None
    seen: set[str] = set()
    out: list[str] = []
    last_of_section: int | None = None  # index in OUT after the domain's last section's last line
    headers: list[int] = []  # indexes in OUT of the domain's section headers
    for line in lines:
        content, comment = _line_parts(line)
        if content.startswith("[") and content.endswith("]"):
            section = content[1:-1].strip(BLANKS)
            if section == domain:
                headers.append(len(out))
                last_of_section = len(out) + 1
            out.append(line)
            continue
        node = _node_of(content) if section == domain and "=" in content else None
        if node is None or node.key not in values:
            out.append(line)
            if section == domain and content:
                last_of_section = len(out)
            continue
        value = values[node.key]
        if node.key in seen or value is None:
            seen.add(node.key)
            continue  # removed, or a later line that would override the first
        seen.add(node.key)
        optional = content.partition("=")[0].rstrip(BLANKS).endswith("?")
        old_value = content.partition("=")[2].strip(BLANKS)
        if optional or not _same_size(node, old_value, value):
            line = f"{node.sysctl_name}={value}" + (f" {comment}" if comment else "")
        out.append(line)
        last_of_section = len(out)
    missing = [
        f"{nodes[key].sysctl_name}={value}" for key, value in values.items() if value is not None and key not in seen
    ]
    if missing:
        if last_of_section is None:
            if out and out[-1].strip(BLANKS):
                out.append("")
            out += [f"[{domain}]", *missing]
        else:
            out[last_of_section:last_of_section] = missing
    out = _without_empty_sections(out, domain)
    return "\n".join(out) + ("\n" if out and ends_in_newline else "")


def _without_empty_sections(lines: list[str], domain: str) -> list[str]:
    """LINES without the `[DOMAIN]` headers that no longer head any line but blank ones."""
    kept: list[str] = []
    pending: list[str] | None = None  # a DOMAIN header and the blank lines after it, held back
    for line in lines:
        content, comment = _line_parts(line)
        is_header = content.startswith("[") and content.endswith("]")
        if pending is not None:
            if not content and not comment:
                pending.append(line)
                continue
            if not is_header:
                kept += pending
            pending = None
        if is_header and content[1:-1].strip(BLANKS) == domain and not comment:
            pending = [line]
            continue
        kept.append(line)
    while kept and not kept[-1].strip(BLANKS) and pending is not None:
        kept.pop()  # the blank line that separated the section dropped at the end
    return kept


def read_text(path: str) -> str:
    """PATH's text, or "" when it does not exist (a new file)."""
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise usage_error(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None


def write_configuration_file(path: str, text: str) -> None:
    """Replace PATH by TEXT atomically, as a file only its owner (root, running as root) can
    change: mode 0644 (an existing file's read bits kept), new directories 0755. TEXT is read
    back with xbctl's own parser first: a file xbctl would refuse is never put in place."""
    real = os.path.realpath(path)
    if real == os.devnull:
        raise usage_error(f"{path}: masked (a link to {os.devnull}); nothing written")
    directory = os.path.dirname(real)
    _make_directories(directory)
    try:
        mode = os.stat(real).st_mode & 0o755  # never a group or other write bit
    except FileNotFoundError:
        mode = FILE_MODE
    # A name starting with a dot: xbctl never reads it, so a run meanwhile sees the old file or the new.
    descriptor, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), mode)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        try:
            read_settings_file(temporary)
        except XbctlError as exc:
            raise XbctlError(exc.message.replace(temporary, path), status=exc.status, hint=exc.hint) from None
        os.replace(temporary, real)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)  # the rename itself survives a crash
    finally:
        os.close(directory_fd)


def _make_directories(directory: str) -> None:
    """DIRECTORY and any missing parent, each 0755 whatever the umask (xbctl ignores files in a
    directory others can write to)."""
    if os.path.isdir(directory):
        return
    _make_directories(os.path.dirname(directory))
    try:
        os.mkdir(directory)
    except FileExistsError:
        return
    except OSError as exc:
        raise usage_error(f"{directory}: {exc.strerror}") from None
    os.chmod(directory, DIRECTORY_MODE)


def why_not_applied(path: str) -> str | None:
    """Why `xbctl --system` and the policy service will not apply PATH, or None when they will."""
    from .conf import checked_configuration_files, configuration_root

    files, unsafe = checked_configuration_files()
    real = os.path.realpath(path)
    if any(os.path.realpath(f) == real for f in files):
        return None
    for problem in unsafe:
        if os.path.realpath(problem.path) == real:
            return problem.message
    root = configuration_root()
    return (
        f"{path}: not read by xbctl --system or the policy service, which read "
        f"{os.path.join(root, 'etc/xbctl.d')}/*.conf and {os.path.join(root, 'etc/xbctl.conf')}"
    )
