"""Run last by `make test`, after every other test: the test run wrote nothing into the checkout
(screenshots, runs, caches go to temporary folders; `make screenshots` is what writes docs/), and
the real WebUIs' trees are as they were built (each test WebUI has its own data folder).

`make test` records `git status --porcelain` before the tests (build/git-status-before): a checkout
with work in progress is compared with itself, a clean clone (CI) must stay clean.
"""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BEFORE = ROOT / "build" / "git-status-before"
HOSTS = Path(os.environ.get("SD_TRAINPLAN_HOSTS", ROOT / "build" / "hosts"))


def status(folder: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=folder, capture_output=True, text=True,
                          check=True).stdout


def test_the_test_run_left_the_checkout_as_it_found_it():
    if not BEFORE.exists():
        pytest.fail(f"{BEFORE} is missing: run the suite with `make test`, which records the status first")
    assert status(ROOT) == BEFORE.read_text()


@pytest.mark.parametrize("kind", ["a1111", "forge"])
def test_the_webui_trees_are_as_built(kind):
    tree = HOSTS / kind
    if not (tree / ".git").exists():
        pytest.fail(f"{tree} is not built (make hosts)")
    assert status(tree) == "", f"the test run changed {tree}"
