"""The real Xen host for a test session (tests/realhost): one boot, shared by every test of
tests/test_real_host.py, started in the background as soon as the session knows it will run
one of them, so that QEMU boots while the other tests run.

`real_host` (session scope) waits for that boot and hands out what Domain-0 recorded, step by
step; a boot or step that failed fails the test that asks for it, with the job's output and
the serial console's last lines. The boot is bounded by XBCTL_REALHOST_TIMEOUT seconds
(default 1800: a boot takes 3 minutes on an idle 2-core machine, 15 while
other test suites load it), and killed when the session ends first.

XBCTL_REALHOST_REUSE=DIR asserts again on the boot recorded in DIR (a session's
`realhost0` directory under pytest's basetemp) without booting: for working on the tests.

Under pytest-xdist each worker that runs a real-host test boots its own host: run the module
in one worker (`--dist loadfile`) or without -n.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realhost  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODULE = "test_real_host.py"
TIMEOUT_ENV = "XBCTL_REALHOST_TIMEOUT"
REUSE_ENV = "XBCTL_REALHOST_REUSE"
DEFAULT_TIMEOUT_S = 1800


def boot_timeout_s() -> float:
    value = os.environ.get(TIMEOUT_ENV, "")
    return float(value) if value.strip() else DEFAULT_TIMEOUT_S


class Background:
    """One run of dom0_checks.py in a thread of its own."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cancel = threading.Event()
        self.run: realhost.ProgramRun | None = None
        self.thread = threading.Thread(target=self._run, name="real-host", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            if os.environ.get(REUSE_ENV):
                self.run = realhost.recorded_run(Path(os.environ[REUSE_ENV]))
                return
            self.run = realhost.run_program(
                "checks", self.workdir, ROOT, timeout_s=boot_timeout_s(), cancel=self.cancel
            )
        except BaseException:  # whatever happens becomes a failure with its reason, never a hang
            self.run = realhost.ProgramRun(None, None, traceback.format_exc())

    def wait(self) -> realhost.ProgramRun:
        self.thread.join()
        assert self.run is not None
        return self.run


_background: Background | None = None


def _start(config: pytest.Config) -> Background:
    global _background
    if _background is None:
        _background = Background(config._tmp_path_factory.mktemp("realhost"))
    return _background


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "realhost: runs on the real Xen host booted under QEMU (tests/realhost)")


def pytest_collection_finish(session: pytest.Session) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a worker may run none of them: its fixture boots when one asks
    if any(item.path.name == MODULE for item in session.items):
        _start(session.config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _background is not None and _background.thread.is_alive():
        _background.cancel.set()  # QEMU is killed; the thread ends within a second or two
        _background.thread.join(30)


class RealHost:
    """What Domain-0 recorded on the real host, step by step (tests/realhost/dom0_checks.py)."""

    def __init__(self, run: realhost.ProgramRun) -> None:
        self.run = run
        self.results = run.results or {}

    def failure(self, why: str) -> str:
        return f"{why}\n{self.run.describe()}"

    def step(self, name: str) -> dict:
        """Step NAME's record; fails the test when the boot or the step did not get there."""
        if not self.results:
            pytest.fail(self.failure("Domain-0 recorded nothing"), pytrace=False)
        errors = self.results.get("errors", {})
        if name in errors:
            pytest.fail(self.failure(f"step {name!r} failed in Domain-0:\n{errors[name]}"), pytrace=False)
        if name not in self.results.get("steps", {}):
            pytest.fail(
                self.failure(
                    f"step {name!r} never ran (steps done: {self.results.get('order')}; "
                    f"program error: {errors.get('program')})"
                ),
                pytrace=False,
            )
        return self.results["steps"][name]


@pytest.fixture(scope="session")
def real_host(request: pytest.FixtureRequest) -> RealHost:
    """The session's one boot of the real host, once it has powered off."""
    return RealHost(_start(request.config).wait())
