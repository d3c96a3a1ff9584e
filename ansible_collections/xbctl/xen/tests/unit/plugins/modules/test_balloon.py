"""Unit tests of xbctl.xen.balloon and balloon_info, on a fresh simulated host each."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat

import pytest

from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args
from ansible_collections.xbctl.xen.plugins.modules import balloon, balloon_info


def run(module, args, capsys):
    """Run MODULE with ARGS; its JSON result (warnings as their messages) and whether it failed."""
    ansible_warnings._global_warnings.clear()  # pylint: disable=protected-access  # one process, many runs
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            module.main()
    result = json.loads(capsys.readouterr().out)
    if "warnings" in result:
        result["warnings"] = [w["event"]["msg"] if isinstance(w, dict) else w for w in result["warnings"]]
    return result, exit_info.value.code != 0


@pytest.fixture
def sim(tmp_path):
    return {"transport": "sim", "sim_state": str(tmp_path / "host.json")}


def test_set_target_changes_then_is_idempotent(sim, capsys):
    first, failed = run(balloon, dict(domain="web", target="512M", _ansible_diff=True, **sim), capsys)
    assert not failed and first["changed"] is True
    assert first["write"]["changes"] == [
        {"node": "target", "name": "machdep.xen.balloon.target", "old_kib": 786432, "new_kib": 524288}
    ]
    assert first["diff"] == [{
        "before_header": "domain web",
        "after_header": "domain web",
        "before": "machdep.xen.balloon.target: 786432\n",
        "after": "machdep.xen.balloon.target: 524288\n",
    }]
    second, failed = run(balloon, dict(domain="web", target="512M", **sim), capsys)
    assert not failed and second["changed"] is False
    assert second["write"]["changes"] == []


def test_check_mode_plans_and_writes_nothing(sim, capsys):
    planned, failed = run(balloon, dict(domain="web", target="512M", _ansible_check_mode=True, **sim), capsys)
    assert not failed and planned["changed"] is True and planned["write"]["dry_run"] is True
    read, dummy = run(balloon_info, dict(domain="web", **sim), capsys)
    assert read["read"]["nodes"]["target"]["value_kib"] == 786432


def test_refused_value_fails_with_xbctl_message_and_changes_nothing(sim, capsys):
    result, failed = run(balloon, dict(domain="web", target="64M", min="256M", **sim), capsys)
    assert failed and result["exit_status"] == 1
    assert result["msg"].startswith("xbctl: machdep.xen.balloon.target: Operation not permitted")
    read, dummy = run(balloon_info, dict(domain="web", **sim), capsys)
    assert read["read"]["nodes"]["target"]["value_kib"] == 786432
    assert read["read"]["nodes"]["min"]["value_kib"] == 131072


def test_unknown_domain_and_malformed_size_fail(sim, capsys):
    result, failed = run(balloon, dict(domain="nosuch", target="512M", **sim), capsys)
    assert failed and result["exit_status"] == 4
    result, failed = run(balloon, dict(domain="web", target="lots", **sim), capsys)
    assert failed and result["exit_status"] == 2


def test_info_lists_every_domain(sim, capsys):
    result, failed = run(balloon_info, dict(**sim), capsys)
    assert not failed and result["changed"] is False
    assert [d["name"] for d in result["domains"]] == ["Domain-0", "web", "db", "mail"]


# ---------------------------------------------------------------- persisting (persist, sysctl_file, apply, state)


@pytest.fixture
def conf_root(tmp_path, monkeypatch):
    """A configuration root of the test's own (XBCTL_CONF_ROOT), under a umask that would let
    the group write: the module's files and directories must not inherit it."""
    root = tmp_path / "root"
    root.mkdir(mode=0o755)
    monkeypatch.setenv("XBCTL_CONF_ROOT", str(root))
    old_umask = os.umask(0o002)
    yield root
    os.umask(old_umask)


def test_persist_writes_the_domain_section_and_applies_then_is_idempotent(sim, conf_root, capsys):
    args = dict(domain="web", target="512M", min="256M", persist=True, **sim)
    first, failed = run(balloon, dict(args, _ansible_diff=True), capsys)
    path = conf_root / "etc" / "xbctl.d" / "ansible.conf"
    assert not failed and first["changed"] is True and first["file_changed"] is True, first
    assert first["sysctl_file"] == str(path)
    assert path.read_text() == "[web]\nmachdep.xen.balloon.target=512M\nmachdep.xen.balloon.min=256M\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and path.stat().st_uid == os.geteuid()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o755
    assert first["diff"][0] == {"before_header": str(path), "after_header": str(path), "before": "",
                                "after": path.read_text()}
    assert first["diff"][1]["after"] == "machdep.xen.balloon.target: 524288\nmachdep.xen.balloon.min: 262144\n"
    assert "warnings" not in first, first["warnings"]
    read, dummy = run(balloon_info, dict(domain="web", **sim), capsys)
    assert read["read"]["nodes"]["target"]["value_kib"] == 524288
    # the same size in KiB is the same setting: nothing changes, in the file or the domain
    again, failed = run(balloon, dict(args, target="524288"), capsys)
    assert not failed and again["changed"] is False and again["file_changed"] is False, again
    assert path.read_text() == "[web]\nmachdep.xen.balloon.target=512M\nmachdep.xen.balloon.min=256M\n"


def test_persist_edits_only_the_domain_lines_of_an_existing_file(sim, conf_root, capsys):
    path = conf_root / "50-guests.conf"
    path.write_text("# guests\n[web]\ntarget = 700M  # by hand\nmin=128M\n\n[db]\ntarget = 1G\n[web]\ntarget=600M\n")
    path.chmod(0o664)
    result, failed = run(balloon, dict(domain="web", target="512M", xen_max="1G", persist=True, apply=False,
                                       sysctl_file=str(path), **sim), capsys)
    assert not failed and result["changed"] is True, result
    assert path.read_text() == (
        "# guests\n[web]\nmachdep.xen.balloon.target=512M # by hand\nmin=128M\n\n[db]\ntarget = 1G\n"
        "[web]\nmachdep.xen.balloon.xen-max=1G\n"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the group's write bit gone
    # a file xbctl --system does not read is said so
    assert any("not read by xbctl --system" in w for w in result["warnings"]), result
    read, dummy = run(balloon_info, dict(domain="web", **sim), capsys)
    assert read["read"]["nodes"]["target"]["value_kib"] == 786432  # apply=false: the domain left alone


def test_check_mode_shows_the_file_and_writes_nothing(sim, conf_root, capsys):
    args = dict(domain="web", target="512M", persist=True, _ansible_check_mode=True, _ansible_diff=True, **sim)
    planned, failed = run(balloon, args, capsys)
    assert not failed and planned["changed"] is True and planned["file_changed"] is True
    assert planned["diff"][0]["after"] == "[web]\nmachdep.xen.balloon.target=512M\n"
    assert not (conf_root / "etc").exists()
    read, dummy = run(balloon_info, dict(domain="web", **sim), capsys)
    assert read["read"]["nodes"]["target"]["value_kib"] == 786432


def test_absent_removes_the_lines_and_leaves_the_domain(sim, conf_root, capsys):
    run(balloon, dict(domain="web", target="512M", min="256M", persist=True, **sim), capsys)
    path = conf_root / "etc" / "xbctl.d" / "ansible.conf"
    result, failed = run(balloon, dict(domain="web", target="x", state="absent", persist=True, **sim), capsys)
    assert not failed and result["changed"] is True and "write" not in result
    assert path.read_text() == "[web]\nmachdep.xen.balloon.min=256M\n"
    result, failed = run(balloon, dict(domain="web", min="x", state="absent", persist=True, **sim), capsys)
    assert not failed and result["changed"] is True and path.read_text() == ""
    again, failed = run(balloon, dict(domain="web", min="x", state="absent", persist=True, **sim), capsys)
    assert not failed and again["changed"] is False
    read, dummy = run(balloon_info, dict(domain="web", **sim), capsys)
    assert read["read"]["nodes"]["target"]["value_kib"] == 524288


@pytest.mark.parametrize(
    "args, status, words",
    [
        (dict(domain="web", target="x", state="absent"), 2, "needs persist=true"),
        (dict(domain="web", target="512M", apply=False), 2, "would change nothing"),
        (dict(domain="web#1", target="512M", persist=True), 2, "no settings file section can name"),
        (dict(domain="web", target="lots", persist=True), 2, "machdep.xen.balloon.target"),
        (dict(domain="web", target="lots", persist=True, apply=False), 2, "machdep.xen.balloon.target"),
        (dict(domain="web", target="64M", min="256M", persist=True), 1, "Operation not permitted"),
        (dict(domain="web", target="512M", wait=True, timeout=0), 2, "timeout must be a positive"),
    ],
)
def test_bad_input_fails_clearly_and_changes_nothing(sim, conf_root, capsys, args, status, words):
    result, failed = run(balloon, dict(args, **sim), capsys)
    assert failed and result["exit_status"] == status and words in result["msg"], result
    assert not (conf_root / "etc").exists()
    read, dummy = run(balloon_info, dict(domain="web", **sim), capsys)
    assert read["read"]["nodes"]["target"]["value_kib"] == 786432


def test_xbctl_warnings_become_ansible_warnings(sim, conf_root, capsys):
    result, failed = run(balloon, dict(domain="mail", target="400M", **sim), capsys)
    assert not failed and result["changed"] is True
    assert result["warnings"] == [
        "xbctl: domain mail says it has no balloon driver (control/feature-balloon = 0): "
        "nothing in it will act on target"
    ]
    (conf_root / "etc" / "xbctl.d").mkdir(parents=True)
    (conf_root / "etc" / "xbctl.d").chmod(0o775)
    result, failed = run(balloon, dict(domain="web", min="256M", persist=True, **sim), capsys)
    assert not failed and result["changed"] is True
    assert result["warnings"] == [
        "xbctl: %s/etc/xbctl.d/ansible.conf: not applied: its directory %s/etc/xbctl.d is writable by its group "
        "(owner root, mode 0775)" % (conf_root, conf_root)
    ]


def test_an_unnamed_transport_that_is_the_simulator_is_a_warning(tmp_path, monkeypatch, capsys):
    # No Xen on the machines the suite runs on: unnamed, the simulator answers, and says so.
    monkeypatch.setenv("XBCTL_SIM_STATE", str(tmp_path / "host.json"))
    monkeypatch.delenv("XBCTL_TRANSPORT", raising=False)
    result, failed = run(balloon, dict(domain="web", target="512M"), capsys)
    assert not failed and result["changed"] is True
    assert result["warnings"] == ["xbctl: simulated host (no Xen here): no real domain is changed"]
