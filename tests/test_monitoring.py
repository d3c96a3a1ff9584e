"""The monitoring kit (monitoring/): the alert rules under `promtool check rules` and `promtool test
rules`, and the Grafana dashboard, whose every query names only metrics and labels a real scrape of
`xbctl exporter` serves; the textfile timer's page read by Debian's own node_exporter."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from xenharness import ensure_node_exporter, ensure_promtool

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "monitoring" / "xbctl.rules.yml"
RULE_TESTS = ROOT / "tests" / "promtool" / "xbctl.rules.test.yml"
DASHBOARD = ROOT / "monitoring" / "xbctl-dashboard.json"
# Labels Prometheus itself puts on every scraped series.
TARGET_LABELS = {"job", "instance"}
# What the rules may name beside xbctl's: Prometheus' own up, node_exporter's textfile mtime.
FOREIGN = {"up": {"job", "instance"}, "node_textfile_mtime_seconds": {"job", "instance", "file"}}
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
}


@pytest.fixture(scope="module")
def promtool() -> Path:
    return ensure_promtool()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str, process: subprocess.Popen) -> str:
    """URL's page once it answers (bounded: 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, process.communicate()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.read().decode()
        except OSError:
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.05)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)


def scrape_once(argv: list[str], port: int, env: dict | None = None) -> str:
    """Start the server ARGV (listening on PORT), scrape its /metrics once, stop it."""
    process = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        return get(f"http://127.0.0.1:{port}/metrics", process)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict[str, set[str]]:
    """{metric: its label names} of a real scrape of `xbctl exporter` (on the simulated host)."""
    env = {
        **os.environ,
        "XBCTL_TRANSPORT": "sim",
        "XBCTL_SIM_STATE": str(tmp_path_factory.mktemp("sim") / "state.json"),
    }
    port = free_port()
    page = scrape_once([shutil.which("xbctl"), "exporter", "--listen", f"127.0.0.1:{port}"], port, env)
    metrics: dict[str, set[str]] = {}
    for line in page.splitlines():
        if line and not line.startswith("#"):
            name, _, labels = re.match(r"(\w+)(\{(.*)\})? ", line).groups()
            metrics.setdefault(name, set()).update(re.findall(r'(\w+)="', labels or ""))
    assert len(metrics) >= 12 and "xen_balloon_up" in metrics, metrics
    return metrics


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """Every metric EXPR (PromQL) names, with the label names its matchers use."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, regular expressions
    found = []
    for name, matchers in re.findall(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}", expr):
        if name in KEYWORDS:  # `... unless on(x) {__name__="..."}` is not a metric named unless
            name = ""
        found.append((name, set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))))
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    bare = re.sub(r"(?<![\w:])\d[\w.]*", " ", bare)  # numbers and durations
    for name in re.findall(r"[A-Za-z_:][\w:]*(?!\s*\()(?![\w:])", bare):
        if name not in KEYWORDS and not any(name == known for known, _ in found):
            found.append((name, set()))
    return [(name, labels) for name, labels in found if name]


def unserved(expr: str, served: dict[str, set[str]], foreign: dict[str, set[str]] | None = None) -> list[str]:
    """What EXPR names that the exporter does not serve: metrics, or labels of its metrics."""
    known = {**served, **(foreign or {})}
    wrong = []
    for name, labels in selectors(expr):
        if name not in known:
            wrong.append(f"metric {name}")
        elif labels - known[name] - TARGET_LABELS - {"__name__"}:
            wrong.append(f"{name} labels {sorted(labels - known[name] - TARGET_LABELS)}")
    return wrong


def test_the_expression_check_can_fail(served):
    # The checks below are only as good as this one: it must catch a metric or a label that
    # does not exist, in selectors, bare names and arithmetic.
    assert unserved('xen_balloon_target_bytes{domain="web",domid="1"}', served) == [
        "xen_balloon_target_bytes labels ['domid']"
    ]
    assert unserved("sum by (domain) (xen_balloon_target_byte) / on(domain) xen_balloon_max_bytes", served) == [
        "metric xen_balloon_target_byte"
    ]
    assert unserved("rate(xen_balloon_bogus[5m]) > 0 and up == 0", served, FOREIGN) == ["metric xen_balloon_bogus"]
    assert (
        unserved(
            'max_over_time(xen_balloon_up{instance=~"$instance"}[1h:5m]) unless xen_balloon_scrape_error == 1', served
        )
        == []
    )
    assert unserved('xen_balloon_domain_info{domain=~"$domain",domid!="0"}', served) == []


# ---------------------------------------------------------------- alert rules


def test_rules_pass_promtool_check(promtool):
    done = subprocess.run([str(promtool), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "SUCCESS: 7 rules found" in done.stdout, done
    assert done.stderr == "", done


def test_rules_pass_their_promtool_tests(promtool, tmp_path):
    done = subprocess.run(
        [str(promtool), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
    # The tests can fail: the same tests against rules whose driver alert ignores what the
    # driver says (`or` for `unless`) fail.
    rules = tmp_path / "monitoring" / "xbctl.rules.yml"
    rules.parent.mkdir()
    text = RULES.read_text()
    assert text.count("unless on(job, instance, domain)") == 1
    rules.write_text(text.replace("unless on(job, instance, domain)", "or on(job, instance, domain)"))
    tests = tmp_path / "tests" / "promtool" / RULE_TESTS.name
    tests.parent.mkdir(parents=True)
    tests.write_text(RULE_TESTS.read_text())
    broken = subprocess.run([str(promtool), "test", "rules", str(tests)], capture_output=True, text=True, timeout=120)
    assert broken.returncode != 0 and "alertname: XenBalloonDriverNotAnswering" in broken.stderr, broken


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_rules_name_what_the_exporter_serves(served):
    names = [rule["alert"] for rule in rules()]
    # What the kit promises: a balloon stuck below target, a driver that does not answer, the
    # host overcommitted, the exporter (or its textfile) down.
    for needed in (
        "XenBalloonStuckBelowTarget",
        "XenBalloonDriverNotAnswering",
        "XenHostMemoryOvercommitted",
        "XbctlExporterDown",
        "XbctlTextfileStale",
        "XenBalloonScrapeFailing",
    ):
        assert needed in names, names
    for rule in rules():
        assert unserved(rule["expr"], served, FOREIGN) == [], (rule["alert"], rule["expr"])
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"], rule


def test_rule_tests_feed_series_the_exporter_serves(served):
    # The promtool cases' input series have the metric names and labels a real scrape has (plus
    # Prometheus' job and instance): tests that pass on series the exporter never serves prove nothing.
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    series = [item["series"] for case in cases for item in case["input_series"]]
    assert len(series) > 20
    for text in series:
        name, labels = selectors(text)[0]
        known = {**served, **FOREIGN}
        assert name in known and labels == known[name] | TARGET_LABELS, (text, known.get(name))
    tested = {test["alertname"] for case in cases for test in case["alert_rule_test"] if test["exp_alerts"]}
    assert tested == {rule["alert"] for rule in rules()}, tested


# ---------------------------------------------------------------- the dashboard


def dashboard_expressions() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template variable queries."""
    board = json.loads(DASHBOARD.read_text())
    found = [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            found.append(inner.group(1) if inner else query)
    return found


def test_dashboard_queries_use_only_what_the_exporter_serves(served):
    expressions = dashboard_expressions()
    assert len(expressions) >= 15, expressions
    for expr in expressions:
        assert unserved(expr, served) == [], expr
    used = {name for expr in expressions for name, _labels in selectors(expr)}
    # Every metric the exporter serves has a place on the dashboard.
    assert used == set(served), set(served) ^ used


def test_dashboard_queries_parse(promtool, tmp_path):
    # promtool parses each query as a recording rule, Grafana's variables given plain values.
    board = json.loads(DASHBOARD.read_text())
    defined = {variable["name"] for variable in board["templating"]["list"]}
    expressions = dashboard_expressions()
    for expr in expressions:
        assert set(re.findall(r"\$\{?(\w+)", expr)) <= defined, expr
    recorded = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{number}", "expr": re.sub(r"\$\{?\w+\}?", ".*", expr)}
                    for number, expr in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(recorded))
    done = subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and f"SUCCESS: {len(expressions)} rules found" in done.stdout, done
    # The check can fail: a query with a parenthesis missing is refused.
    recorded["groups"][0]["rules"][0]["expr"] += ")"
    path.write_text(yaml.safe_dump(recorded))
    broken = subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0, broken


def test_dashboard_is_grafana_json():
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "xbctl-balloons" and board["title"] and board["schemaVersion"] >= 36
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    # Every panel reads the data source the user picks, never one named on the author's machine.
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"] and target["expr"], panel["title"]


# ---------------------------------------------------------------- node_exporter's textfile collector


def test_node_exporter_reads_the_textfile(xbctl, tmp_path):
    # Debian's node_exporter (1.5 on Debian 12) reads what xbctl-textfile.service writes: its
    # textfile collector is stricter than promtool on some points (no clash with its own metrics).
    directory = tmp_path / "node-exporter"
    directory.mkdir()
    outcome = xbctl("list", "--format", "prometheus", "--output", str(directory / "xbctl.prom"))
    assert outcome.status == 0, outcome
    port = free_port()
    node_exporter = [
        str(ensure_node_exporter()),
        "--collector.disable-defaults",
        "--collector.textfile",
        f"--collector.textfile.directory={directory}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    page = scrape_once(node_exporter, port)
    assert "\nnode_textfile_scrape_error 0\n" in page, page
    assert "\nxen_balloon_up 1\n" in page and 'xen_balloon_target_bytes{domain="web"} 8.05306368e+08' in page, page
    # The stale-textfile alert's selector matches the series node_exporter reports for the file.
    mtime = re.search(r'^node_textfile_mtime_seconds\{file="([^"]*)"\} ', page, re.M)
    assert mtime and re.fullmatch(r"(.*/)?xbctl[.]prom", mtime.group(1)), page
    stale = next(rule for rule in rules() if rule["alert"] == "XbctlTextfileStale")
    assert 'file=~"(.*/)?xbctl[.]prom"' in stale["expr"]
