"""Reloading the real AUTOMATIC1111 v1.10.1's page while a run goes on (issue 17, item 6): the tab's
form shows the running run's settings (not the defaults: dreambooth, 512 px, 100 updates), the
progress re-attaches, and the WebUI's own progress bar follows the run again."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from webui_page import TAB, fill_trainer, job_box, open_tab

pytestmark = [pytest.mark.hosts, pytest.mark.browser]


def field(page, key: str):
    return page.locator(f"{TAB} #stp_train_{key} input, {TAB} #stp_train_{key} textarea").first


def test_a_page_reloaded_mid_run_shows_the_running_runs_settings(a1111, browser, shapes_dir):
    before = a1111.hashes()
    page = open_tab(browser, a1111)
    try:
        settings = dict(data=shapes_dir, token="stpreload", steps=400, lr=0.002, name="reload-run", rank=8, alpha=8,
                        resolution=64, batch_size=2, instance_prompt="[name] [filewords]", val_split=0,
                        sample_every=0, val_every=0)
        fill_trainer(page, "lora", **settings)
        page.locator(f"{TAB} #stp_train_start").first.click()
        expect(job_box(page)).to_have_attribute("data-step", re.compile(r"^[1-9]\d*$"), timeout=120_000)

        page.close()
        page = open_tab(browser, a1111)  # the same address again: a reload
        page.locator(f"{TAB} #stp_tabs .tab-nav button", has_text="Train").first.click()
        expect(page.locator(f'{TAB} #stp_train_method input[value="lora"]')).to_be_checked()
        for key in ("token", "steps", "lr", "name", "rank", "alpha", "resolution", "batch_size", "instance_prompt"):
            expect(field(page, key), key).to_have_value(str(settings[key]))
        expect(field(page, "data")).to_have_value(str(shapes_dir))
        expect(field(page, "rank")).to_be_visible()  # the method's own fields are shown, the others hidden
        expect(field(page, "init_word")).to_be_hidden()
        expect(page.locator(f"{TAB} #stp_train_status").first).to_contain_text("A training run is running")
        expect(job_box(page)).to_have_attribute("data-state", "running")
        expect(page.locator(".stp-webui-progress .progressDiv .progress").first).to_contain_text("ETA",
                                                                                              timeout=30_000)
        a1111.api("POST", "/sdapi/v1/interrupt")
        expect(job_box(page)).to_have_attribute("data-state", "stopped", timeout=120_000)
    finally:
        if a1111.api("GET", "/sd_trainplan/train")["state"] in ("queued", "running"):
            a1111.api("POST", "/sdapi/v1/interrupt")
        page.close()
    assert a1111.hashes() == before
