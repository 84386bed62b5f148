"""The real app in a real browser: start `python -m sd_trainplan ui` in a chosen environment,
open it in headless Debian Chromium through Playwright, and drive its inputs as a person does.

Shared by the browser tests, the screenshot step and bench/ui_latency.py. Playwright never
downloads a browser here: it drives /usr/bin/chromium (`make test` installs it).
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# environment folder -> what it stands for
ENVS = {".venv": "gradio 4.40.0 (Forge's pin)", ".venv-a1111": "gradio 3.41.2 (AUTOMATIC1111's pin)"}
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


def env_python(env: str) -> Path:
    return ROOT / env / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_folder(url: str) -> Path:
    """The working folder of the app serving `url` (its default output folder runs/ is in it)."""
    return APP_FOLDERS[url]


APP_FOLDERS: dict = {}


@contextlib.contextmanager
def running_app(env: str, timeout: float = 90.0) -> Iterator[str]:
    """Serve the app from `env`'s interpreter on a free loopback port; yield its URL. It runs in a
    temporary folder of its own (a user's runs/ appears there), so a test run writes nothing into
    the checkout."""
    port = free_port()
    log = tempfile.TemporaryFile()
    work = tempfile.TemporaryDirectory(prefix="stp-app-")
    proc = subprocess.Popen([str(env_python(env)), "-m", "sd_trainplan", "ui", "--port", str(port)], cwd=work.name,
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the app in {env} exited with {proc.returncode}:\n{log.read().decode()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app in {env} did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.25)
        APP_FOLDERS[url] = Path(work.name)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        work.cleanup()


@contextlib.contextmanager
def launch_browser() -> Iterator["object"]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_planner(browser, url: str, width: int = 1440, height: int = 1000):
    """A fresh page (its own gradio session) with the planner's tables drawn."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(15000)
    page.goto(url)
    page.wait_for_selector("#stp_tables tr[data-quantity=weight_updates]")
    return page


# ---- driving the inputs the way a person does (the same selectors work on gradio 3.41 and 4.40) ----

def text_input(page, elem_id: str):
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first


def type_into(page, elem_id: str, value: str) -> None:
    text_input(page, elem_id).fill(value)


def choose(page, elem_id: str, option: str) -> None:
    """Pick an option of a dropdown: open its list, click the option."""
    text_input(page, elem_id).click()
    page.locator(f'#{elem_id} ul.options li[aria-label="{option}"]').click()


def pick_radio(page, elem_id: str, value: str) -> None:
    page.locator(f'#{elem_id} input[type=radio][value="{value}"]').click()


def set_checkbox(page, elem_id: str, on: bool) -> None:
    box = page.locator(f"#{elem_id} input[type=checkbox]")
    if box.is_checked() != on:
        box.click()


def cell(page, quantity: str, column: str = "value"):
    return page.locator(f'#stp_tables tr[data-quantity="{quantity}"] td.{column}')


def message(page, elem_id: str):
    """The messages shown beside the input with this id."""
    return page.locator(f"#{elem_id}_msg .stp-msg")


def open_more(page) -> None:
    """Open the accordion with the dynamic-resolution and LR-range-test inputs."""
    if not page.locator("#stp_sweep_epochs input").is_visible():
        page.get_by_text("Dynamic resolution and LR range test").first.click()
        page.locator("#stp_sweep_epochs input").wait_for(state="visible")


def open_tab(page, name: str) -> None:
    """Select one of the page's tabs (Plan, Train, LR range test)."""
    page.locator("#stp_tabs .tab-nav button", has_text=name).first.click()


def click(page, elem_id: str) -> None:
    page.locator(f"#{elem_id}").first.click()


def job_state(page, elem_id: str = "stp_train_progress"):
    """The progress block of the Train (or LR range test) tab: data-state, data-job, data-step."""
    return page.locator(f"#{elem_id} .stp-progress").first


def have_chromium() -> bool:
    return os.access(CHROMIUM, os.X_OK)


if __name__ == "__main__":  # a quick look: python tests/ui_harness.py .venv
    with running_app(sys.argv[1] if len(sys.argv) > 1 else ".venv") as u:
        print("serving", u, "- Ctrl+C stops")
        while True:
            time.sleep(1)
