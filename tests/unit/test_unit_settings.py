"""The settings-file grammar (xbctl/assignments.py): `name=value`, `name?=value`, FILE:LINE."""

from __future__ import annotations

import pytest

from xbctl.assignments import MAX_SETTINGS_BYTES, Assignment, parse_assignment, read_settings_file
from xbctl.errors import ExitStatus, XbctlError


def test_command_line_assignments():
    assert parse_assignment("target=512M") == Assignment("target", "512M", False, None)
    assert parse_assignment("min?=4K") == Assignment("min", "4K", True, None)
    # on the command line blanks are part of the name or value (the shell split the words)
    assert parse_assignment("target =1") == Assignment("target ", "1", False, None)
    for text, says in (("target", "is not an assignment"), ("=512M", "missing name")):
        with pytest.raises(XbctlError) as caught:
            parse_assignment(text)
        assert caught.value.status == ExitStatus.USAGE and says in caught.value.message


def test_a_settings_file(tmp_path):
    path = tmp_path / "balloon.conf"
    path.write_bytes(
        b"\xef\xbb\xbf# a comment\n"
        b"\n"
        b"machdep.xen.balloon.target = 3G   # trailing comment\r\n"
        b"\tmachdep.xen.balloon.min ?= 4K\n"
        b"   \n"
    )
    assert read_settings_file(str(path)) == [
        Assignment("machdep.xen.balloon.target", "3G", False, f"{path}:3"),
        Assignment("machdep.xen.balloon.min", "4K", True, f"{path}:4"),
    ]


@pytest.mark.parametrize(
    "content, says",
    [
        (b"# ok\ntarget\n", ":2: 'target' is not an assignment"),
        (b"target=1\n=2\n", ":2: '=2': missing name"),
        (b"target=1\x0b\n", ":1: unexpected character U+000B"),
        ("target=５\n".encode(), ":1: unexpected character U+FF15"),
        (b"target=\xff\n", "not a UTF-8 text file"),
        (b"target=" + b"1" * 2000 + b"\n", ":1: line too long"),
        (b"[web\ntarget=1\n", ":1: '[web' is neither a section nor an assignment"),
        (b"target=1\n[ ]\n", ":2: empty section name"),
    ],
)
def test_bad_settings_files_cite_the_line(tmp_path, content, says):
    path = tmp_path / "bad.conf"
    path.write_bytes(content)
    with pytest.raises(XbctlError) as caught:
        read_settings_file(str(path))
    assert caught.value.status == ExitStatus.USAGE
    assert says in caught.value.message, caught.value.message


def test_sections_name_the_domain_of_the_lines_after_them(tmp_path):
    path = tmp_path / "host.conf"
    path.write_text("target=1G\n[ web ]  # the web server\ntarget=2G\n\n[7]\nmin ?= 4K\n[web]\ntarget=3G\n")
    assert read_settings_file(str(path)) == [
        Assignment("target", "1G", False, f"{path}:1", None),
        Assignment("target", "2G", False, f"{path}:3", "web"),
        Assignment("min", "4K", True, f"{path}:6", "7"),
        Assignment("target", "3G", False, f"{path}:8", "web"),
    ]


def test_too_large_or_missing_files(tmp_path):
    big = tmp_path / "big.conf"
    big.write_bytes(b"#" * (MAX_SETTINGS_BYTES + 1))
    with pytest.raises(XbctlError, match="larger than"):
        read_settings_file(str(big))
    with pytest.raises(XbctlError, match="No such file"):
        read_settings_file(str(tmp_path / "missing.conf"))
