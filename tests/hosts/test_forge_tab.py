"""The extension in the real Forge (dfdcbab6, gradio 4.40), installed as the README says: its
installer changes no package, the tab is there and plans, and our HTTP routes follow Forge's API
rules (--api-auth)."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from harness import FORGE, pip_freeze
from ui_harness import cell, choose, text_input, type_into
from webui_page import TAB, open_tab, ours

from sd_trainplan.plan import plan_from_raw
from sd_trainplan.plan.presets import load_presets
from sd_trainplan.plan.render import value_text
from sd_trainplan.ui.fields import preset_values, raw_inputs

pytestmark = [pytest.mark.hosts, pytest.mark.browser]
AUTH = "stp:s3cret"


@pytest.fixture(scope="module")
def second(forge, launch_module):
    """A second launch of the same Forge, this one with --api-auth."""
    return launch_module(FORGE, "second", auth=AUTH)


def test_install_py_and_two_launches_change_no_package(forge, second, freeze_before):
    assert pip_freeze(FORGE) == freeze_before["forge"]
    assert second.api("GET", "/sd_trainplan/train")["state"] == "idle"
    for host in (forge, second):
        assert "Traceback" not in host.log(), host.log_tail()


def test_with_api_auth_our_routes_ask_for_forges_credentials(second):
    for method, path in (("GET", "/sd_trainplan/train"), ("POST", "/sd_trainplan/plan"), ("GET", "/sdapi/v1/sd-models")):
        data = {"images": 10} if method == "POST" else None
        assert second.request(method, path, data, auth=None)[0] == 401, path
        assert second.request(method, path, data, auth="stp:wrong")[0] == 401, path
        assert second.request(method, path, data, auth=AUTH)[0] == 200, path


def test_the_tab_is_in_config_renders_and_plans(forge, browser):
    config = forge.api("GET", "/config")
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"tab_sd_trainplan", "stp_images", "stp_tables"} <= ids
    status, plan = forge.post("/sd_trainplan/plan", {"images": 26, "batch_size": 13, "grad_accum": 2, "steps": 3000,
                                                     "step_unit": "batch"})
    assert status == 200 and plan["quantities"]["weight_updates"]["value"] == 1500

    page = open_tab(browser, forge)
    try:
        type_into(page, "stp_images", "26")
        type_into(page, "stp_batch_size", "13")
        type_into(page, "stp_grad_accum", "2")
        type_into(page, "stp_steps", "3000")
        page.locator(f'{TAB} #stp_step_unit input[type=radio][value="batch"]').click()
        expect(cell(page, "weight_updates").first).to_have_text("1500 updates")
        preset = load_presets()["lora_seed001"]
        choose(page, "stp_preset", preset.title)
        values = preset_values(preset.inputs)
        values["images"] = "26"
        expect(text_input(page, "stp_batch_size")).to_have_value(str(values["batch_size"]))
        expect(cell(page, "planned_updates").first).to_have_text(
            value_text(plan_from_raw(raw_inputs(values)).quantities["planned_updates"]))
        assert [p for p in ours(page) if p[0] == "pageerror"] == []
    finally:
        page.close()
