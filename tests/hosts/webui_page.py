"""A real WebUI's page in headless Chromium, opened on the Train Planner tab, as a user opens it.

`open_tab(browser, host)` loads the WebUI, clicks its "Train Planner" tab and waits for the plan's
tables; every console message and page error is kept on `page.console` (type, text, source URL),
so a test can assert that the extension caused none. The selectors of tests/ui_harness.py work
inside the tab (our element ids are the same in the WebUI as standalone).
"""
from __future__ import annotations

import re
from typing import List, Tuple

TAB = "#tab_sd_trainplan"
# What Chromium prints for this machine being offline, whatever the page: not the extension's doing
OFFLINE = re.compile(r"net::ERR_|Failed to load resource|fonts\.googleapis|ERR_NAME_NOT_RESOLVED")


def open_tab(browser, host, width: int = 1440, height: int = 1000, timeout: float = 90_000):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(30_000)
    page.console: List[Tuple[str, str, str]] = []
    page.on("console", lambda m: page.console.append((m.type, m.text, m.location.get("url", ""))))
    page.on("pageerror", lambda e: page.console.append(("pageerror", str(e), "")))
    page.goto(host.url)
    page.wait_for_selector(TAB, state="attached", timeout=timeout)
    page.locator("#tabs > .tab-nav button, #tabs > div > .tab-nav button", has_text="Train Planner").first.click()
    page.wait_for_selector(f"{TAB} #stp_tables tr[data-quantity=weight_updates]", timeout=timeout)
    return page


def problems(page) -> List[Tuple[str, str, str]]:
    """Console errors and warnings, and page errors, other than the machine being offline."""
    return [(kind, text, url) for kind, text, url in page.console
            if kind in ("error", "warning", "pageerror") and not OFFLINE.search(text)]


def ours(page) -> List[Tuple[str, str, str]]:
    """The console problems the extension caused: from its script, or naming its elements/routes."""
    mark = re.compile(r"trainplan|stp_|sd_trainplan|Train Planner")
    return [p for p in problems(page) if mark.search(p[1]) or mark.search(p[2])]


def open_webui_tab(page, name: str) -> None:
    """One of the WebUI's own top tabs (txt2img, Train, ...)."""
    page.locator("#tabs > .tab-nav button, #tabs > div > .tab-nav button", has_text=name).first.click()


# ---- training through the tab's trainer panel (the same fields as standalone) -----------------

RUN_MS = 240_000  # a whole tiny run in a WebUI on a busy 2-core machine
# the fields of a quick run on a tiny model: 64 px, no validation, no samples
QUICK = dict(resolution=64, batch_size=2, instance_prompt="[name] [filewords]", val_split=0, sample_every=0,
             val_every=0)


def fill_trainer(page, method: str, **fields) -> None:
    """Our Train sub-tab: choose the method, type each field (`stp_train_<key>`)."""
    page.locator(f"{TAB} #stp_tabs .tab-nav button", has_text="Train").first.click()
    page.locator(f'{TAB} #stp_train_method input[type=radio][value="{method}"]').click()
    for key, value in fields.items():
        if isinstance(value, bool):
            box = page.locator(f"{TAB} #stp_train_{key} input[type=checkbox]").first
            if box.is_checked() != value:
                box.click()
        else:
            page.locator(f"{TAB} #stp_train_{key} input, {TAB} #stp_train_{key} textarea").first.fill(str(value))


def job_box(page):
    return page.locator(f"{TAB} #stp_train_progress .stp-progress").first


def start_and_wait(page, end=("done", "stopped", "error"), timeout: float = RUN_MS) -> str:
    """Click Start, wait for a new job to begin and end; returns its final state."""
    import re
    from playwright.sync_api import expect
    before = job_box(page).get_attribute("data-job")
    page.locator(f"{TAB} #stp_train_start").first.click()
    other = re.compile(rf"^(?!{before}$)\d+$" if before else r"^\d+$")
    expect(job_box(page)).to_have_attribute("data-job", other, timeout=60_000)
    expect(job_box(page)).to_have_attribute("data-state", re.compile("^(" + "|".join(end) + ")$"), timeout=timeout)
    return job_box(page).get_attribute("data-state")


def result_text(page) -> str:
    return page.locator(f"{TAB} #stp_train_result .stp-result").first.inner_text()


def placed_path(page) -> str:
    """Where the WebUI's folders got the run's file (the host's after_job)."""
    return page.locator(f"{TAB} #stp_train_result .stp-placed-path").first.inner_text()
