"""Settings files for many domains: section headers that read back, grouping and resolving sections."""

from __future__ import annotations

import pytest

from xbctl.assignments import read_settings_file, section_header, section_spec
from xbctl.errors import ExitStatus, XbctlError
from xbctl.operations import requests_by_domain, resolve_groups
from xbctl.transports.sim import SimTransport


@pytest.mark.parametrize(
    "name, header",
    [
        ("web", "[web]"),
        ("my web", "[my web]"),
        ("web ", "[4]"),  # blanks at either end are trimmed when read back
        (" web", "[4]"),
        ("7", "[4]"),  # all digits would read back as an id
        ("a#b", "[4]"),  # '#' starts a comment
        ("a;b", "[4]"),  # so does ';', as in sysctl.d
        ("web-*", "[4]"),  # a glob would match other names too
        ("web?", "[4]"),
        ("[x]", "[4]"),
        ("caf\u00e9", "[4]"),  # a settings file is ASCII outside comments
        ("", "[4]"),
    ],
)
def test_a_header_names_the_domain_so_that_it_reads_back_as_itself(tmp_path, name, header):
    assert section_header(section_spec(4, name)) == header
    path = tmp_path / "f.conf"
    path.write_text(f"{header}\nmachdep.xen.balloon.target=1G\n")
    assert read_settings_file(str(path))[0].domain == header[1:-1]


def host(tmp_path) -> SimTransport:
    transport = SimTransport(str(tmp_path / "sim.json"))
    transport.reset(clock="manual", steps_per_second=50, host_free_kib=2 * 1024 * 1024, position=None)
    return transport


def groups_of(tmp_path, text: str):
    path = tmp_path / "host.conf"
    path.write_text(text)
    return requests_by_domain(read_settings_file(str(path)))


def test_sections_naming_one_domain_merge_and_the_origin_is_the_first_header(tmp_path):
    groups = groups_of(
        tmp_path,
        "[web]\nmachdep.xen.balloon.target=1G\n[db]\nmachdep.xen.balloon.min=1G\n[1]\nmachdep.xen.balloon.min=200M\n",
    )
    resolved, notes = resolve_groups(host(tmp_path), groups)
    assert notes == []
    assert [(g.domain.name, len(g.requests), g.origin.rsplit(":", 1)[1]) for g in resolved] == [
        ("web", 2, "1"),
        ("db", 1, "3"),
    ]


def test_an_unknown_domain_is_an_error_or_with_skip_unknown_a_note(tmp_path):
    groups = groups_of(tmp_path, "[web]\nmachdep.xen.balloon.target=1G\n[gone]\nmachdep.xen.balloon.target=1G\n")
    with pytest.raises(XbctlError) as caught:
        resolve_groups(host(tmp_path), groups)
    assert caught.value.status == ExitStatus.UNKNOWN and ":3: domain 'gone': unknown domain" in caught.value.message
    resolved, notes = resolve_groups(host(tmp_path), groups, skip_unknown=True)
    assert [g.domain.name for g in resolved] == ["web"]
    assert len(notes) == 1 and ":3: domain 'gone': unknown domain; its lines are skipped" in notes[0]
