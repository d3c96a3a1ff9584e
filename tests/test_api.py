"""The Python API (xbctl.api): what the Ansible modules and the exporter use."""

from __future__ import annotations

import pytest
from conftest import json_validator as validator

from xbctl.api import ExitStatus, Xbctl, XbctlError


@pytest.fixture
def api(xbctl):
    """The API on the test's simulated host (manual clock)."""
    with Xbctl("sim", str(xbctl.state_path)) as session:
        yield session


def test_read_gives_every_node_as_the_read_document(api, xbctl):
    result = api.read("web")
    assert (result.domain.id, result.domain.name) == (1, "web")
    assert result.nodes["target"].value_kib == 786432
    assert result.nodes["current"].source is not None and result.nodes["min"].source is None
    document = result.to_dict()
    validator().validate(document)
    assert document["nodes"] == xbctl("--json", "-d", "web", "-a").json()["nodes"]


def test_list_matches_the_cli_document(api, xbctl):
    result = api.list()
    validator().validate(result.to_dict())
    assert result.to_dict() == xbctl("--json", "list").json()
    assert [entry.domain.name for entry in result.domains] == ["Domain-0", "web", "db", "mail"]
    assert result.host_free_kib is not None and result.host_free_kib > 0


def test_a_write_has_one_result_type_from_the_engine_to_the_api_and_the_json(api, xbctl):
    """The API hands back the engine's own write result (the one the command line renders);
    its document is rendered from it by the CLI's code, never stored beside it or parsed back."""
    import xbctl.api as api_module
    import xbctl.operations as operations

    assert api_module.WriteResult is operations.WriteResult and api_module.WritesResult is operations.WritesResult
    assert api_module.WaitResult is operations.WaitOutcome
    plan = api.plan("web", {"target": "512M"})
    assert type(plan) is operations.WriteResult and not hasattr(plan, "document")
    cli = xbctl("--json", "--dry-run", "-d", "web", "target=512M").json()
    assert plan.to_dict() == cli
    plan.changes.clear()  # the document follows the result: nothing rendered ahead of time
    assert plan.to_dict()["changes"] == [] and cli["changes"]


def test_plan_writes_nothing_then_apply_writes(api, xbctl):
    before = xbctl.snapshot()
    plan = api.plan("web", {"target": "512M", "min": 262144})
    assert plan.dry_run and plan.changed
    assert [(c.node, c.old_kib, c.new_kib) for c in plan.changes] == [
        ("target", 786432, 524288),
        ("min", 131072, 262144),
    ]
    assert xbctl.snapshot() == before
    done = api.apply("web", {"target": "512M", "min": 262144})
    validator().validate(done.to_dict())
    assert not done.dry_run and done.changed and done.wait is None
    assert xbctl.value("target", "web") == 524288 and xbctl.value("min", "web") == 262144
    again = api.apply("web", {"target": "512M"})
    assert not again.changed  # the same value again changes nothing (it is listed as x -> x)
    assert [(c.old_kib, c.new_kib) for c in again.changes] == [(524288, 524288)]


@pytest.mark.parametrize(
    "domain, values, status, fragment",
    [
        ("web", {"target": "64M", "min": "256M"}, ExitStatus.REFUSED, "Operation not permitted"),
        ("web", {"target": "lots"}, ExitStatus.USAGE, "lots"),
        ("web", {"target": 1.5}, ExitStatus.USAGE, "not 1.5"),
        ("web", {"current": "512M"}, ExitStatus.REFUSED, "read-only"),
        ("web", {"colour": "1"}, ExitStatus.UNKNOWN, "colour"),
        ("nosuch", {"target": "512M"}, ExitStatus.UNKNOWN, "unknown domain"),
        ([1], {"target": "512M"}, ExitStatus.USAGE, "a name or id"),
    ],
)
def test_bad_requests_raise_the_cli_status_and_change_nothing(api, xbctl, domain, values, status, fragment):
    before = xbctl.snapshot()
    with pytest.raises(XbctlError) as raised:
        api.apply(domain, values)
    assert raised.value.status == status and fragment in raised.value.message
    assert xbctl.snapshot() == before


def test_apply_waits_until_current_reaches_target(tmp_path):
    from xbctl.api import Xbctl as Api

    state = str(tmp_path / "wall.json")
    from conftest import Xbctl as Cli

    cli = Cli(tmp_path / "wall.json")
    assert cli("sim", "reset", "--clock", "wall", "--rate", "200").status == 0
    seen = []
    with Api("sim", state) as api:
        result = api.apply("web", {"target": "700M"}, wait=True, timeout_s=30, on_progress=lambda c, t: seen.append(c))
    assert result.wait.reached and result.wait.current_kib == 700 * 1024
    assert seen[-1] == 700 * 1024 and len(seen) >= 2


def test_wait_reports_why_it_cannot_reach(api):
    outcome = api.wait("mail", 600 * 1024, timeout_s=5)
    assert not outcome.reached and "no balloon driver" in outcome.reason


def test_unknown_transport_is_a_usage_error():
    with pytest.raises(XbctlError) as raised:
        Xbctl("carrier-pigeon")
    assert raised.value.status == ExitStatus.USAGE


def test_apply_file_changes_every_domain_at_once_as_f_does(api, xbctl, tmp_path):
    path = tmp_path / "host.conf"
    path.write_text("[web]\nmachdep.xen.balloon.target = 512M\n[db]\nmachdep.xen.balloon.target = 1G\n")
    plan = api.apply_file(str(path), dry_run=True)
    assert plan.dry_run and plan.changed and xbctl.value("target", "web") == 786432
    done = api.apply_file(str(path))
    validator().validate(done.to_dict())
    assert done.to_dict()["kind"] == "writes"
    assert [(w.domain.name, [(c.node, c.new_kib) for c in w.changes]) for w in done.writes] == [
        ("web", [("target", 524288)]),
        ("db", [("target", 1048576)]),
    ]
    assert (xbctl.value("target", "web"), xbctl.value("target", "db")) == (524288, 1048576)
    assert not api.apply_file(str(path)).changed  # applied again: a no-op


def test_apply_file_refused_anywhere_writes_nothing(api, xbctl, tmp_path):
    path = tmp_path / "host.conf"
    path.write_text("[web]\nmachdep.xen.balloon.target = 512M\n[mail]\nmachdep.xen.balloon.target = 4G\n")
    before = xbctl.snapshot()
    with pytest.raises(XbctlError) as refused:
        api.apply_file(str(path))
    assert refused.value.status == ExitStatus.REFUSED and f"{path}:4:" in refused.value.message
    assert xbctl.snapshot() == before


def test_the_command_line_is_a_layer_over_the_api():
    """The command families call the API's engine (xbctl.api.Xbctl), never operations or a
    transport (their constants, such as the simulator's limits, are fine): one path for the
    CLI, the Ansible modules and the exporter."""
    import ast
    from pathlib import Path

    import xbctl.cli

    # main (the --wait stall default), the guest agent and the policy service run loops of their own.
    allowed = {"main.py", "agent.py", "policy.py"}
    offenders = []
    for source in sorted(Path(xbctl.cli.__file__).parent.glob("*.py")):
        if source.name in allowed:
            continue
        for node in ast.walk(ast.parse(source.read_text())):
            constants_only = isinstance(node, ast.ImportFrom) and all(alias.name.isupper() for alias in node.names)
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and (
                    node.module.startswith("operations")
                    or (node.module.startswith("transports") and not constants_only)
                )
            ):
                offenders.append(f"{source.name}:{node.lineno}: from {'.' * node.level}{node.module}")
    assert offenders == []
