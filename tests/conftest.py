"""Fixtures for the browser tests: the real app served from each gradio environment, and
one headless Chromium for the session (see tests/ui_harness.py)."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_harness import ENVS, env_python, have_chromium, launch_browser, open_planner, running_app


def _missing(what: str) -> None:
    """Skip on a developer's machine; fail in CI, where `make test` must have provided it."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (make test provides it)")
    pytest.skip(f"{what}: run `make test` (or `make envs`) to get it")


@pytest.fixture(scope="session")
def browser():
    if not have_chromium():
        _missing("no /usr/bin/chromium")
    with launch_browser() as b:
        yield b


@pytest.fixture(scope="session", params=list(ENVS), ids=["gradio4", "gradio3"])
def app_url(request):
    env = request.param
    if not env_python(env).exists():
        _missing(f"no {env} environment ({ENVS[env]})")
    with running_app(env) as url:
        yield url


@pytest.fixture
def page(browser, app_url):
    p = open_planner(browser, app_url)
    yield p
    p.close()
