"""Every --json document matches the JSON Schema shipped in the package (xbctl/schema.json)."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest

from xbctl.errors import ExitStatus
from xbctl.json_output import SCHEMA_VERSION
from xbctl.nodes import NODES


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(resources.files("xbctl").joinpath("schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def valid(validator, outcome, kind: str, status: int = 0) -> dict:
    """OUTCOME's stdout: one JSON document of KIND, valid against the schema, after exit STATUS."""
    assert outcome.status == status, outcome
    document = json.loads(outcome.stdout)
    errors = sorted(validator.iter_errors(document), key=str)
    assert not errors, (document, [e.message for e in errors])
    assert document["kind"] == kind and document["schema_version"] == SCHEMA_VERSION
    return document


def test_schema_follows_the_node_table_and_exit_statuses(validator):
    defs = validator.schema["$defs"]
    assert defs["node_key"]["enum"] == [node.key for node in NODES]
    assert list(defs["nodes"]["properties"]) == [node.key for node in NODES]
    assert defs["error"]["properties"]["error"]["properties"]["exit_status"]["enum"] == [
        int(s) for s in ExitStatus if s != ExitStatus.OK
    ]
    assert validator.schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


def test_reads(xbctl, validator):
    document = valid(validator, xbctl("--json", "-a"), "read")
    assert list(document["nodes"]) == [node.key for node in NODES]
    assert document["nodes"]["current"]["source"]
    valid(validator, xbctl("--json", "-d", "web", "machdep.xen.balloon.target"), "read")
    valid(validator, xbctl("--json", "-d", "2", "xen-max"), "read")
    valid(validator, xbctl("max", "--json"), "read")


def test_writes(xbctl, validator, tmp_path):
    document = valid(validator, xbctl("--json", "-d", "web", "target", "512M"), "write")
    assert document["changes"] == [
        {"node": "target", "name": "machdep.xen.balloon.target", "old_kib": 786432, "new_kib": 524288}
    ]
    assert document["wait"] is None and document["dry_run"] is False
    valid(validator, xbctl("--json", "--dry-run", "-w", "machdep.xen.balloon.min=256M"), "write")
    valid(validator, xbctl("--json", "mem-set", "db", "1024"), "write")
    valid(validator, xbctl("--json", "mem-max", "web", "1G"), "write")
    # mail says it has no balloon driver: the write lands, and the document says nothing will act on it
    document = valid(validator, xbctl("--json", "-d", "mail", "target", "256M"), "write")
    assert document["changes"] == [
        {"node": "target", "name": "machdep.xen.balloon.target", "old_kib": 524288, "new_kib": 262144}
    ]
    assert document["warnings"] == [
        "domain mail says it has no balloon driver (control/feature-balloon = 0): nothing in it will act on target"
    ]
    settings = tmp_path / "balloon.conf"
    settings.write_text("# comment\nmachdep.xen.balloon.target = 3G\nmachdep.xen.balloon.min ?= 4K\n")
    document = valid(validator, xbctl("--json", "-f", str(settings)), "write")
    assert document["ignored"] and document["ignored"][0]["name"]


def test_write_with_wait(xbctl, validator):
    # Manual clock: nothing moves, so --wait ends at its timeout without reaching the target.
    document = valid(
        validator,
        xbctl("--json", "--wait", "--timeout", "0.2", "-d", "web", "target", "512M"),
        "write",
        status=ExitStatus.NOT_REACHED,
    )
    assert document["wait"]["reached"] is False and document["wait"]["reason"]


def test_list_and_log(xbctl, validator):
    document = valid(validator, xbctl("--json", "list"), "list")
    assert [d["name"] for d in document["domains"]] == ["Domain-0", "web", "db", "mail"]
    assert xbctl("-d", "web", "target", "+512M").status == 1  # above max: nothing logged, but try a stuck one
    # web's processes hold 384 MiB and its free-page reserve 4 MiB: 300 MiB cannot be reached
    assert xbctl("-d", "web", "target", "300M").status == 0
    assert xbctl("sim", "advance", "60").status == 0
    stuck = {"domain": "web", "message": "WARNING: balloon could not reach target 307200 (current 397312)"}
    for args in ((), ("-d", "web")):
        document = valid(validator, xbctl("--json", "sim", "log", *args), "log")
        assert [{k: e[k] for k in ("domain", "message")} for e in document["entries"]] == [stuck], document
        assert all(isinstance(e["t"], (int, float)) for e in document["entries"])
    assert valid(validator, xbctl("--json", "sim", "log", "-d", "db"), "log")["entries"] == []


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (("-d", "web", "target", "64M"), ExitStatus.REFUSED),
        (("-w", "machdep.xen.balloon.current=1G"), ExitStatus.REFUSED),
        (("target", "1_000"), ExitStatus.USAGE),
        (("--no-such-option",), ExitStatus.USAGE),
        (("-d", "nosuch", "-a"), ExitStatus.UNKNOWN),
        (("kern.maxproc",), ExitStatus.UNKNOWN),
    ],
)
def test_errors(xbctl, validator, args, status):
    outcome = xbctl("--json", *args)
    document = valid(validator, outcome, "error", status=status)
    assert document["error"]["exit_status"] == status
    assert outcome.stderr.startswith("xbctl: ") and document["error"]["message"] in outcome.stderr


def test_unavailable_transport_error(xbctl, validator, tmp_path):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{")
    outcome = xbctl("--json", "-a", env={"XBCTL_SIM_STATE": str(corrupt)})
    document = valid(validator, outcome, "error", status=ExitStatus.UNAVAILABLE)
    assert "corrupt" in document["error"]["message"]


def test_schema_is_shipped_as_package_data():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert "schema.json" in project["tool"]["setuptools"]["package-data"]["xbctl"]
