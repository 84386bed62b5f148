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
