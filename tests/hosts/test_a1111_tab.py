"""The extension in the real AUTOMATIC1111 v1.10.1, installed as the README says (a clone into
extensions/): its installer changes no package, the tab is there and works, and "Apply to the
WebUI's Train tab" writes the WebUI's own fields. Over HTTP and in headless Chromium."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from harness import A1111, pip_freeze
from ui_harness import cell, choose, text_input, type_into
from webui_page import TAB, open_tab, open_webui_tab, problems

from sd_trainplan.plan import plan_from_raw
from sd_trainplan.plan.presets import load_presets
from sd_trainplan.plan.render import value_text
from sd_trainplan.ui.fields import preset_values, raw_inputs

pytestmark = [pytest.mark.hosts, pytest.mark.browser]


AUTH = "stp:s3cret"


@pytest.fixture(scope="module")
def second(a1111, launch_module):
    """A second launch of the same WebUI, this one with --api-auth."""
    return launch_module(A1111, "second", auth=AUTH)


def test_install_py_and_two_launches_change_no_package(a1111, second, freeze_before):
    """install.py runs at every launch (normal case: nothing missing, so nothing to do): the venv's
    `pip freeze` is the same before the first launch, after it, and after a second launch."""
    assert pip_freeze(A1111) == freeze_before["a1111"]
    assert second.api("GET", "/sd_trainplan/train")["state"] == "idle"  # the extension is loaded there too
    for host in (a1111, second):
        assert host.tracebacks() == [], host.log_tail()


def test_with_api_auth_our_routes_ask_for_the_webuis_credentials(second):
    """--api-auth: the WebUI's own API and ours answer 401 without (or with wrong) credentials and
    answer with the right ones (modules/api/api.py Api.auth)."""
    body = {"images": 10}
    for method, path in (("GET", "/sd_trainplan/train"), ("POST", "/sd_trainplan/plan"), ("GET", "/sdapi/v1/sd-models")):
        data = body if method == "POST" else None
        assert second.request(method, path, data, auth=None)[0] == 401, path
        assert second.request(method, path, data, auth="stp:wrong")[0] == 401, path
        assert second.request(method, path, data, auth="other:s3cret")[0] == 401, path
        status, out = second.request(method, path, data, auth=AUTH)
        assert status == 200, (path, out)
    assert second.request("GET", "/sd_trainplan/train", auth=AUTH)[1]["state"] == "idle"


def test_without_api_the_webui_serves_no_api_and_neither_do_we(launch_module, a1111):
    plain = launch_module(A1111, "no-api", drop_flags=("--api",))
    assert plain.get("/sdapi/v1/sd-models")[0] == 404
    assert plain.get("/sd_trainplan/train")[0] == 404
    assert plain.post("/sd_trainplan/plan", {"images": 10})[0] == 404
    assert plain.api("GET", "/config")  # the UI itself is served


def test_the_tab_is_in_config_and_the_planner_answers_over_http(a1111):
    config = a1111.api("GET", "/config")
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"tab_sd_trainplan", "stp_images", "stp_tables", "stp_apply_webui_train"} <= ids
    status, plan = a1111.post("/sd_trainplan/plan", {"images": 26, "batch_size": 13, "grad_accum": 2, "steps": 3000,
                                                     "step_unit": "batch", "method": "ti", "lr": 5e-3})
    assert status == 200 and plan["quantities"]["weight_updates"]["value"] == 1500  # seed 000's example
    status, bad = a1111.post("/sd_trainplan/plan", {"images": 10, "batch_size": 11})
    assert status == 422 and bad["errors"][0]["field"] == "batch_size"


def test_the_tab_renders_plans_as_you_type_and_fills_from_a_preset(a1111, browser):
    page = open_tab(browser, a1111)
    try:
        type_into(page, "stp_images", "26")
        type_into(page, "stp_batch_size", "13")
        type_into(page, "stp_grad_accum", "2")
        type_into(page, "stp_steps", "3000")
        page.locator(f'{TAB} #stp_step_unit input[type=radio][value="batch"]').click()
        expect(cell(page, "weight_updates").first).to_have_text("1500 updates")
        expect(cell(page, "epochs").first).to_contain_text("1500")

        preset = load_presets()["lora_seed001"]
        choose(page, "stp_preset", preset.title)
        values = preset_values(preset.inputs)
        for key in ("batch_size", "lr"):
            if values.get(key):
                expect(text_input(page, f"stp_{key}")).to_have_value(str(values[key]))
        values["images"] = "26"  # a preset keeps the image count typed in
        plan = plan_from_raw(raw_inputs(values))
        expect(cell(page, "planned_updates").first).to_have_text(value_text(plan.quantities["planned_updates"]))
        assert problems(page) == [], problems(page)
        assert a1111.tracebacks() == [], a1111.log_tail()
    finally:
        page.close()


def test_apply_writes_the_plan_into_the_webui_train_tab(a1111, browser):
    page = open_tab(browser, a1111)
    try:
        for key, value in (("images", "26"), ("batch_size", "13"), ("grad_accum", "2"), ("steps", "3000"),
                           ("lr", "0.005")):
            type_into(page, f"stp_{key}", value)
        page.locator(f'{TAB} #stp_step_unit input[type=radio][value="batch"]').click()
        page.locator(f'{TAB} #stp_method input[type=radio][value="ti"]').click()
        expect(cell(page, "a1111_max_steps").first).to_have_text("1500 updates")
        lr = cell(page, "a1111_learning_rate").first.inner_text().split()[0]
        page.locator("#stp_apply_webui_train").first.click()
        expect(page.locator("#stp_webui_textinfo").first).to_contain_text("Written to Train > Train")

        open_webui_tab(page, "Train")
        page.locator("#tab_train .tab-nav button", has_text="Train").last.click()
        want = {"train_embedding_learn_rate": lr, "train_batch_size": "13", "train_gradient_step": "2",
                "train_steps": "1500"}
        for elem, value in want.items():
            expect(page.locator(f"#{elem} input, #{elem} textarea").first, elem).to_have_value(value)
        assert problems(page) == [], json.dumps(problems(page))
    finally:
        page.close()
