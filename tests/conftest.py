"""Shared fixtures: run xbctl in-process (Typer's runner) or as the installed command."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from hypothesis import settings as hypothesis_settings
from typer.testing import CliRunner

from xbctl.cli import app

pytest_plugins = ["xen_fixtures", "realhost_fixtures"]

# Property tests (Hypothesis): in CI (CI=true) derandomized, so that every run tries the same
# examples and a red build never depends on luck or on a local example database; elsewhere
# they explore with a seed of the session's, printed in the header (--hypothesis-seed=N
# runs the same examples again).
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
CI = os.environ.get("CI") == "true"
if CI:
    hypothesis_settings.load_profile("ci")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Outside CI, one random Hypothesis seed for the session (before Hypothesis's plugin reads it)."""
    if not CI and config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(int.from_bytes(os.urandom(4), "big"))


def pytest_report_header(config: pytest.Config) -> str:
    """How the property tests choose their examples, so a failure can be run again."""
    if hypothesis_settings.default.derandomize:
        return "hypothesis: derandomized (profile 'ci', as CI=true selects): the same examples every run"
    seed = config.getoption("hypothesis_seed", None)
    return f"hypothesis: seed {seed} (pytest --hypothesis-seed={seed} runs the same examples again)"


# The xbctl under test is the one installed with this Python (its venv's console script),
# whatever else PATH holds: every test that runs "the installed xbctl" finds it first.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
# Writes are recorded in the system log (xbctl.journal): never in the log of the machine that
# runs the suite. tests/test_journal.py switches the record on, towards a socket of its own.
os.environ["XBCTL_SYSLOG"] = "off"


class _SeparateStderrRunner(CliRunner):
    """click 8.1's runner (under Debian 12's Typer 0.7): stderr apart, and flushed before it is read."""

    def __init__(self) -> None:
        super().__init__(mix_stderr=False)

    @contextlib.contextmanager
    def isolation(self, *args, **kwargs):
        with super().isolation(*args, **kwargs) as streams:
            sys.stderr.reconfigure(write_through=True)  # click 8.1 reads its stderr buffer unflushed
            yield streams


def cli_runner() -> CliRunner:
    """Typer's runner with stdout and stderr apart, whichever click is underneath."""
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return _SeparateStderrRunner()
    return CliRunner()  # click 8.2 and Typer's own click keep them apart


@dataclass
class Outcome:
    """What one xbctl run did."""

    status: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        """Stdout as the one JSON document --json prints, checked against the shipped schema."""
        document = json.loads(self.stdout)
        errors = [e.message for e in json_validator().iter_errors(document)]
        assert not errors, (document, errors)
        return document


@functools.cache
def json_validator() -> jsonschema.Draft202012Validator:
    """The validator for xbctl/schema.json."""
    schema = json.loads(resources.files("xbctl").joinpath("schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def assert_clean_failure(outcome: Outcome, status: int, *fragments: str) -> None:
    """OUTCOME failed with STATUS, said why on stderr as 'xbctl: ...', printed no data and no traceback."""
    assert outcome.status == status, outcome
    assert outcome.stdout == "", outcome
    assert outcome.stderr.startswith("xbctl: "), outcome
    assert "Traceback" not in outcome.stderr
    for fragment in fragments:
        assert fragment in outcome.stderr, (fragment, outcome.stderr)


class Xbctl:
    """xbctl against one simulated host whose state lives in a test's own directory."""

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        self.env = {
            "XBCTL_SIM_STATE": str(state_path),
            "XBCTL_TRANSPORT": "sim",
            "NO_COLOR": "1",
            "XBCTL_DEBUG": None,
        }

    def __call__(self, *args: str, env: dict | None = None) -> Outcome:
        """Run xbctl ARGS in-process through Typer's runner."""
        runner = cli_runner()
        result = runner.invoke(app, list(args), env={**self.env, **(env or {})}, catch_exceptions=False)
        return Outcome(result.exit_code, result.stdout, result.stderr)

    def process_env(self, env: dict | None = None) -> dict:
        """The environment a separate xbctl process runs with: this host's, plus ENV (None unsets)."""
        return {k: v for k, v in {**os.environ, **self.env, **(env or {})}.items() if v is not None}

    def process(self, *args: str, env: dict | None = None, timeout: float = 60) -> Outcome:
        """Run the installed xbctl command ARGS as a separate process."""
        done = subprocess.run(
            [shutil.which("xbctl") or "xbctl", *args],
            env=self.process_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Outcome(done.returncode, done.stdout, done.stderr)

    def value(self, node: str, domain: str = "Domain-0") -> int:
        """One node's value, read through the CLI."""
        outcome = self("-d", domain, "-n", node)
        assert outcome.status == 0, outcome
        return int(outcome.stdout)

    def snapshot(self) -> str:
        """Everything observable about the simulated host (to prove nothing changed)."""
        listing = self("--json", "list")
        log = self("--json", "sim", "log")
        assert listing.status == 0 and log.status == 0, (listing, log)
        return listing.stdout + log.stdout


@pytest.fixture
def xbctl(tmp_path: Path) -> Xbctl:
    """A freshly reset simulated host with a manual clock: nothing moves unless told to."""
    tool = Xbctl(tmp_path / "state" / "sim.json")
    reset = tool("sim", "reset", "--clock", "manual")
    assert reset.status == 0, reset
    return tool
