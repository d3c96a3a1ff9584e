"""Unit tests of xbctl.xen.balloon and balloon_info, on a fresh simulated host each."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible.module_utils.testing import patch_module_args
from ansible_collections.xbctl.xen.plugins.modules import balloon, balloon_info


def run(module, args, capsys):
    """Run MODULE with ARGS; its JSON result and whether it failed."""
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            module.main()
    return json.loads(capsys.readouterr().out), exit_info.value.code != 0


@pytest.fixture
def sim(tmp_path):
    return {"transport": "sim", "sim_state": str(tmp_path / "host.json")}


def test_set_target_changes_then_is_idempotent(sim, capsys):
    first, failed = run(balloon, dict(domain="web", target="512M", _ansible_diff=True, **sim), capsys)
    assert not failed and first["changed"] is True
    assert first["write"]["changes"] == [
        {"node": "target", "name": "machdep.xen.balloon.target", "old_kib": 786432, "new_kib": 524288}
    ]
    assert first["diff"] == {
        "before": "machdep.xen.balloon.target: 786432\n",
        "after": "machdep.xen.balloon.target: 524288\n",
    }
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
