"""The extension in the real Forge dfdcbab6, installed as the README says: the tab says what is true
there (training on the loaded model, its notice where Start is, no "Apply to the WebUI's Train tab"
since Forge has none), the planner answers, and the tab's own events log nothing in the browser
console. Over HTTP and in headless Chromium."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from ui_harness import cell, choose, type_into
from webui_page import TAB, open_tab

from sd_trainplan.plan.presets import load_presets

pytestmark = [pytest.mark.hosts, pytest.mark.browser]


def components(forge):
    config = forge.api("GET", "/config")
    return config, {c["props"]["elem_id"]: c for c in config["components"] if c.get("props", {}).get("elem_id")}


def test_the_tab_says_what_training_in_forge_does_beside_each_start_button(forge, browser):
    config, by_id = components(forge)
    assert "stp_apply_webui_train" not in by_id  # Forge has no Train tab to apply a plan to
    assert {"tab_sd_trainplan", "stp_tables", "stp_webui_interrupt", "stp_train_start", "stp_lr_range_start"} <= set(by_id)
    for notice in ("stp_train_notice", "stp_lr_range_notice"):
        text = by_id[notice]["props"]["value"]
        assert "checkpoint Forge has loaded" in text and "&lt;lora:NAME:1&gt;" in text, text
        assert "training does not" not in text and "no embedding database" not in text
    status, plan = forge.post("/sd_trainplan/plan", {"images": 26, "batch_size": 13, "grad_accum": 2, "steps": 3000,
                                                     "step_unit": "batch", "method": "ti", "lr": 5e-3})
    assert status == 200 and plan["quantities"]["weight_updates"]["value"] == 1500  # seed 000's example

    page = open_tab(browser, forge)
    try:
        for name, start, notice in (("Train", "stp_train_start", "stp_train_notice"),
                                    ("LR range test", "stp_lr_range_start", "stp_lr_range_notice")):
            page.locator(f"{TAB} #stp_tabs .tab-nav button", has_text=name).first.click()
            expect(page.locator(f"{TAB} #{start}").first).to_be_visible()
            expect(page.locator(f"{TAB} #{notice}").first).to_be_visible()  # the notice with the button it is about
            expect(page.locator(f"{TAB} #{notice}").first).to_contain_text("Dreambooth trains them in place")
        expect(page.locator(f"{TAB} #stp_train_model input").first).to_have_attribute("placeholder",
                                                                                     "empty: the model the host has loaded")
    finally:
        page.close()


def test_the_tabs_events_log_nothing_in_the_browser_console(forge, browser):
    """gradio 4.40's client warns "Too many arguments provided for the endpoint" for any event it finds
    no description of (Forge's own Generate: four times); the page's events are described
    (ui/gradio_endpoints.py): planning as you type, a preset, Apply, the tabs log nothing."""
    log_from = len(forge.log())
    page = open_tab(browser, forge)
    try:
        page.wait_for_timeout(2000)  # what Forge's own page logs while it loads is not counted
        seen = len(page.console)
        for key, value in (("images", "26"), ("batch_size", "13"), ("grad_accum", "2"), ("steps", "3000")):
            type_into(page, f"stp_{key}", value)
        page.locator(f'{TAB} #stp_step_unit input[type=radio][value="batch"]').click()
        expect(cell(page, "weight_updates").first).to_have_text("1500 updates")
        choose(page, "stp_preset", load_presets()["lora_seed001"].title)
        expect(cell(page, "planned_updates").first).not_to_have_text("—")
        page.locator(f"{TAB} #stp_apply").first.click()
        expect(page.locator(f"{TAB} #stp_train_status")).to_contain_text("Filled from the plan")
        page.locator(f"{TAB} #stp_tabs .tab-nav button", has_text="LR range test").first.click()
        page.locator(f"{TAB} #stp_tabs .tab-nav button", has_text="Plan").first.click()
        page.wait_for_timeout(1500)
        logged = [c for c in page.console[seen:] if c[0] in ("warning", "error", "pageerror")]
        assert logged == [], logged
        assert "Traceback" not in forge.log()[log_from:], forge.log_tail()
    finally:
        page.close()

    config, _ = components(forge)  # how: each of the page's events has its description in /info
    info = forge.api("GET", "/info")
    comp_ids = {c["id"]: c.get("props", {}).get("elem_id") or "" for c in config["components"]}
    ours = [d for d in config["dependencies"] if any(comp_ids.get(i, "").startswith("stp_")
                                                     for i in d["inputs"] + d["outputs"])]
    assert len(ours) > 10
    for d in ours:  # the load-time follower too, which sends a State
        assert len(info["unnamed_endpoints"][str(d["id"])]["parameters"]) == len(d["inputs"])
