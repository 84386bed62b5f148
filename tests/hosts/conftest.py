"""Fixtures for the tests in the real WebUIs (tests/hosts/harness.py says how they are booted).

- `a1111`, `forge`: one running WebUI per test session, the extension installed in its data
  folder, the tiny checkpoint loaded (Forge: loaded by a first generation). Tests share it, so
  each test leaves it as it found it (no run left going, the loaded model unchanged).
- `freeze_before`: each host venv's `pip freeze` before its first launch of the session.
- `launch(kind, ...)`: a further launch of its own (another data folder, other flags), stopped at
  the end of the test.
When a test fails, the log of every WebUI running at that moment is added to its report.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import A1111, FORGE, KINDS, Host, make_data_dir, pip_freeze, start_host  # noqa: E402

pytestmark = pytest.mark.hosts
RUNNING: list = []  # every Host up right now, for the failure report


def _start(kind, data, **kw) -> Host:
    problem = kind.missing()
    if problem:  # make test builds the hosts: missing means the set-up is broken, not "skip"
        pytest.fail(problem)
    host = start_host(kind, data, **kw)
    RUNNING.append(host)
    return host


def _stop(host: Host) -> None:
    host.stop()
    if host in RUNNING:
        RUNNING.remove(host)


@pytest.fixture(scope="session")
def freeze_before():
    """Each built host's `pip freeze`, taken before this session launches it."""
    return {k.name: pip_freeze(k) for k in KINDS.values() if not k.missing()}


@pytest.fixture(scope="session")
def a1111(tmp_path_factory, freeze_before) -> Host:
    host = _start(A1111, make_data_dir(A1111, tmp_path_factory.mktemp("a1111-data")))
    yield host
    _stop(host)


@pytest.fixture(scope="session")
def forge(tmp_path_factory, freeze_before) -> Host:
    host = _start(FORGE, make_data_dir(FORGE, tmp_path_factory.mktemp("forge-data")))
    host.txt2img("a cat")  # Forge loads its checkpoint at the first generation, not at start
    yield host
    _stop(host)


def _launcher(folder):
    started = []

    def go(kind, name: str = "data", extension: bool = True, **kw) -> Host:
        host = _start(kind, make_data_dir(kind, folder / name, extension=extension), **kw)
        started.append(host)
        return host
    return go, started


@pytest.fixture
def launch(tmp_path):
    """launch(kind, name="x", **start_host kwargs): a WebUI of its own for this test."""
    go, started = _launcher(tmp_path)
    yield go
    for host in started:
        _stop(host)


@pytest.fixture(scope="module")
def launch_module(tmp_path_factory):
    """The same, for the tests of one module (stopped after the last of them)."""
    go, started = _launcher(tmp_path_factory.mktemp("launch"))
    yield go
    for host in started:
        _stop(host)


def unchanged(host: Host):
    """For a `loaded` fixture: the loaded model's tensor hashes before the test; after it, the test
    must have left them so."""
    before = host.hashes()
    yield before
    assert host.hashes() == before, f"the model loaded in {host.kind.title} changed"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for host in RUNNING:
            report.sections.append((f"{host.kind.title} log ({host.log_path})", host.log_tail(8000)))
