"""The man page's HYPERVISOR CALLS against the hypervisor rig's log: each command it lists is
run as Domain-0 over Debian's real libxenctrl and the rig's libxencall, and the libxenctrl calls
the page names (with their arguments) must be exactly the hypercalls logged, in order: a call
the page does not name fails, and so does a named call that did not happen."""

from __future__ import annotations

import ast
import re

import pytest
from test_man import section
from xen_fixtures import GIB, HVM_VIDEORAM_KIB, MIB

# The rig logs hypercalls (tests/xenharness/hypervisor_stubs/xencall_rig.c); the libxenctrl call
# that issues each, with the logged fields that are its arguments, in the call's order.
LOGGED_AS = {
    "getdomaininfolist": ("xc_domain_getinfolist", ("first", "max")),
    "max_mem": ("xc_domain_setmaxmem", ("domid", "max_memkb")),
    "set_pod_target": ("xc_domain_set_pod_target", ("domid", "target_pages")),
    "physinfo": ("xc_physinfo", ()),
}
WEB_TARGET_KIB = 768 * MIB  # the fresh layout's (tests/xen_fixtures.py LAYOUT)
DB_TARGET_KIB = 1536 * MIB
# Each entry of the page (its .It line, macros dropped) -> command lines that must make its calls,
# with the values of the page's names: domain, size, videoram, new (size - videoram when not given).
SCENARIOS = {
    "mem-max domain size": [
        (["mem-max", "web", "1536"], {"domain": 1, "size": 1536 * MIB}),
        (["mem-max", "db", "3G"], {"domain": 2, "size": 3 * GIB}),
        (["-d", "web", "xen-max", "2G"], {"domain": 1, "size": 2 * GIB}),
    ],
    "mem-set domain size of a PV guest": [
        (["mem-set", "web", "512"], {"domain": 1, "size": 512 * MIB, "videoram": 0}),
        (["mem-set", "0", "3G"], {"domain": 0, "size": 3 * GIB, "videoram": 0}),
        (["-d", "web", "target", "600M"], {"domain": 1, "size": 600 * MIB, "videoram": 0}),
    ],
    "mem-set domain size that grows a PV guest": [
        (["mem-set", "web", "+10M"], {"domain": 1, "videoram": 0, "new": WEB_TARGET_KIB + 10 * MIB}),
        (["-d", "web", "target", "900M"], {"domain": 1, "size": 900 * MIB, "videoram": 0}),
    ],
    "mem-set domain size of an HVM or PVH guest": [
        (["mem-set", "db", "1024"], {"domain": 2, "size": GIB, "videoram": HVM_VIDEORAM_KIB}),
        (["mem-set", "db", "-10M"], {"domain": 2, "videoram": HVM_VIDEORAM_KIB, "new": DB_TARGET_KIB - 10 * MIB}),
    ],
    "--dry-run mem-set domain size": [
        (["--dry-run", "mem-set", "db", "1024"], {"domain": 2}),
        (["--dry-run", "mem-max", "web", "2G"], {"domain": 1}),
    ],
    "-d domain current": [(["-d", "db", "current"], {"domain": 2})],
}
MACRO = re.compile(r"[A-Z][a-z]")


def statements() -> dict[str, list[tuple[str, list[str]]]]:
    """The page's HYPERVISOR CALLS list: entry -> [(call, [argument expressions])]."""
    text = section("HYPERVISOR CALLS")
    listed = text[text.index(".Bl ") : text.index("\n.El")]
    entries: dict[str, list[tuple[str, list[str]]]] = {}
    calls: list[tuple[str, list[str]]] = []
    for line in listed.splitlines()[1:]:
        tokens = line.replace("\\-", "-").split()
        if line.startswith(".It "):
            words, flag = [], False
            for token in tokens[1:]:
                if MACRO.fullmatch(token):
                    flag = token == "Fl"
                    continue
                words.append(("-" if flag else "") + token)
                flag = False
            calls = entries.setdefault(" ".join(words), [])
            continue
        for index, token in enumerate(tokens):
            if token in ("Fn", ".Fn"):
                arguments = []
                for argument in tokens[index + 2 :]:
                    if MACRO.fullmatch(argument) or argument in (",", ".", ";"):
                        break
                    arguments.append(argument)
                calls.append((tokens[index + 1], arguments))
    return entries


def evaluate(expression: str, names: dict[str, int]) -> int:
    """An argument as the page writes it (size+1024, (new+1024)/4) with NAMES' values."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            assert node.id in names, f"the page names {node.id!r}, which the test does not define"
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub, ast.Mult, ast.Div):
            left, right = value(node.left), value(node.right)
            return {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}.get(
                type(node.op), left / right if right else float("nan")
            )
        raise AssertionError(f"{expression!r}: not an argument the test can evaluate")

    result = value(ast.parse(expression, mode="eval").body)
    assert result == int(result), (expression, result)
    return int(result)


def logged_calls(log: list[str]) -> list[tuple[str, list[int]]]:
    """The rig's log lines as libxenctrl calls with their arguments."""
    calls = []
    for line in log:
        op, *fields = line.split()
        assert op in LOGGED_AS and "->" not in fields, f"a hypercall the page cannot name: {line!r}"
        name, arguments = LOGGED_AS[op]
        values = dict(field.split("=", 1) for field in fields)
        calls.append((name, [int(values[argument]) for argument in arguments]))
    return calls


def test_every_entry_of_the_page_is_run_and_every_scenario_is_on_the_page():
    assert set(statements()) == set(SCENARIOS)
    assert all(calls for calls in statements().values()), statements()


@pytest.mark.parametrize(
    "entry, argv, names",
    [(entry, argv, names) for entry, runs in SCENARIOS.items() for argv, names in runs],
    ids=[" ".join(argv) for runs in SCENARIOS.values() for argv, _ in runs],
)
def test_the_page_names_exactly_the_calls_the_rig_logs(hv_host, entry, argv, names):
    names = dict(names)
    if "size" in names and "videoram" in names:
        names.setdefault("new", names["size"] - names["videoram"])
    hv_host.hv.clear_log()
    outcome = hv_host.process(*argv)
    assert outcome.status == 0, outcome
    said = [(call, [evaluate(argument, names) for argument in arguments]) for call, arguments in statements()[entry]]
    done = logged_calls(hv_host.hv.log())
    assert said == done, (entry, argv, f"the page: {said}", f"the rig's log: {hv_host.hv.log()}")
