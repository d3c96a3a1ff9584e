"""The suite itself, as a fresh machine runs it: every module a test imports is declared, and the
property tests choose their examples reproducibly (derandomized in CI, a printed seed elsewhere)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
# The collection's own tests, which the suite runs through ansible-test (test_collection.py).
COLLECTION_TESTS = ROOT / "ansible_collections" / "xbctl" / "xen" / "tests"
PROJECT_MODULES = {"xbctl", "ansible_collections"}  # the package, and the collection's tree


def canonical(distribution: str) -> str:
    """A distribution's name as PEP 503 compares them (Prometheus_Client is prometheus-client)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def declared_for_tests() -> set[str]:
    """The distributions the `test` extra of pyproject.toml declares, by canonical name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonical(re.match(r"[A-Za-z0-9._-]+", spec).group()) for spec in project["optional-dependencies"]["test"]}


def local_modules(directory: Path) -> set[str]:
    """What the tests import from their own tree: pytest puts each test directory without an
    __init__.py on sys.path, so its modules and packages are importable by their own names."""
    found = set()
    for folder in [directory, *(p for p in directory.rglob("*") if p.is_dir())]:
        if (folder / "__init__.py").exists() or "__pycache__" in folder.parts:
            continue
        found.update(p.stem for p in folder.glob("*.py"))
        found.update(p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    return found


def imported_modules(path: Path) -> set[str]:
    """The top-level modules PATH imports: import statements (absolute ones; anywhere, inside
    functions too) and __import__/import_module/importorskip of a constant name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called in ("__import__", "import_module", "importorskip") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value.partition(".")[0])
    return found


def test_every_module_the_tests_import_is_the_standard_librarys_the_projects_their_own_or_declared():
    """So `pip install .[test]` on a fresh machine is all the suite needs: a module that is only
    there because something else happened to install it (a dependency's dependency, a package
    of the machine's) is a suite that breaks elsewhere."""
    declared = declared_for_tests()
    distributions = packages_distributions()  # top-level module -> the installed distributions providing it
    undeclared = {}
    for tree in (TESTS, COLLECTION_TESTS):
        local = local_modules(tree)
        for path in sorted(tree.rglob("*.py")):
            for module in sorted(imported_modules(path)):
                if module in sys.stdlib_module_names or module in PROJECT_MODULES or module in local:
                    continue
                providers = {canonical(name) for name in distributions.get(module, [])}
                if not providers & declared:
                    where = ", ".join(sorted(providers)) or "not installed"
                    undeclared.setdefault(f"{module} ({where})", []).append(str(path.relative_to(ROOT)))
    assert not undeclared, f"imported by the tests but not in pyproject.toml's test extra: {undeclared}"


def test_the_walk_sees_what_it_must():
    """The check above cannot pass by seeing nothing: it finds the imports it must judge."""
    conftest = imported_modules(TESTS / "conftest.py")
    assert {"jsonschema", "pytest", "hypothesis", "typer", "xbctl", "os"} <= conftest, conftest
    assert "sys" in imported_modules(TESTS / "test_exporter.py")  # there only as __import__("sys")
    assert {"xen_fixtures", "xenharness", "conftest"} <= local_modules(TESTS)
    assert "pyxs" in declared_for_tests() and packages_distributions()["_pytest"] == ["pytest"]


# ---------------------------------------------------------------- Hypothesis: reproducible examples


def run_property_test(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """One property test of the suite, every example it tries printed."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-s",
            "--hypothesis-verbosity=verbose",
            "tests/test_properties.py::test_every_spelling_around_the_dot_is_what_the_reference_says",
            *args,
        ],
        cwd=ROOT,
        env={k: v for k, v in {**os.environ, **env}.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=300,
    )


def tried(done: subprocess.CompletedProcess) -> list[str]:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    examples = [line for line in done.stdout.splitlines() if "text=" in line]
    assert len(examples) > 20, done.stdout[-3000:]
    return examples


def test_ci_runs_the_property_tests_derandomized_and_says_so():
    first = run_property_test({"CI": "true"})
    header = "\nhypothesis: derandomized (profile 'ci', as CI=true selects): the same examples every run\n"
    assert header in first.stdout, first.stdout[:2000]
    assert tried(first) == tried(run_property_test({"CI": "true"}))  # the same examples, run after run


def test_outside_ci_the_header_prints_the_seed_that_runs_the_same_examples_again():
    first = run_property_test({"CI": None})
    seed = re.search(
        r"^hypothesis: seed (\d+) \(pytest --hypothesis-seed=\1 runs the same examples again\)$", first.stdout, re.M
    )
    assert seed, first.stdout[:2000]
    assert tried(run_property_test({"CI": None}, f"--hypothesis-seed={seed.group(1)}")) == tried(first)
