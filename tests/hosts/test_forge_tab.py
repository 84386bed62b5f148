"""The extension in the real Forge (dfdcbab6, gradio 4.40), installed as the README says: its
installer changes no package, the tab is there and plans, our HTTP routes follow Forge's API
rules (--api-auth), the tab says what is true there (training on the loaded model, its notice where
Start is, no "Apply to the WebUI's Train tab" since Forge has none), Start before Forge has loaded
its checkpoint is refused beside the Model field, and the tab's own events log nothing in the
browser console."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from harness import FORGE, pip_freeze
from ui_harness import cell, choose, text_input, type_into
from webui_page import QUICK, TAB, fill_trainer, job_box, open_tab, ours

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
        assert host.tracebacks() == [], host.log_tail()


def test_with_api_auth_our_routes_ask_for_forges_credentials(second):
    for method, path in (("GET", "/sd_trainplan/train"), ("POST", "/sd_trainplan/plan"), ("GET", "/sdapi/v1/sd-models")):
        data = {"images": 10} if method == "POST" else None
        assert second.request(method, path, data, auth=None)[0] == 401, path
        assert second.request(method, path, data, auth="stp:wrong")[0] == 401, path
        assert second.request(method, path, data, auth=AUTH)[0] == 200, path


LOADED = "from modules import shared\nresult = type(shared.sd_model).__name__"


def test_start_before_forges_first_generation_is_refused_beside_the_model_field(second, browser, tmp_path):
    """Forge loads its checkpoint at the first generation, not at start-up (modules/sd_models.py: a
    FakeInitialModel until then); the second launch has generated nothing. Start in the tab says so
    beside the Model field and starts nothing: no job, no file, Forge's model still not loaded."""
    from sd_trainplan.train.sample_data import make_shapes
    assert second.py(LOADED) == "FakeInitialModel"
    data = make_shapes(tmp_path / "shapes", colors=("red",), shapes=("circle", "square"))
    outputs = second.data / "outputs"
    before = sorted(p.relative_to(second.data) for p in second.data.rglob("*") if p.is_file() and "outputs" in p.parts)
    page = open_tab(browser, second)
    try:
        job = job_box(page).get_attribute("data-job")
        fill_trainer(page, "lora", **{**QUICK, "data": data, "steps": 2, "token": "stp", "name": "forge-not-loaded"})
        page.locator(f"{TAB} #stp_train_start").first.click()
        beside = page.locator(f"{TAB} #stp_train_model_msg .stp-msg").first
        expect(beside).to_contain_text("Forge has not loaded its checkpoint yet")
        expect(beside).to_contain_text("generate one image in txt2img")
        expect(page.locator(f"{TAB} #stp_train_status")).to_contain_text("nothing was started")
        page.wait_for_timeout(1000)  # a job would have been queued by now
        assert job_box(page).get_attribute("data-job") == job
    finally:
        page.close()
    assert second.api("GET", "/sd_trainplan/train")["state"] == "idle"
    assert second.py(LOADED) == "FakeInitialModel"  # Start did not load it either
    after = sorted(p.relative_to(second.data) for p in second.data.rglob("*") if p.is_file() and "outputs" in p.parts)
    assert after == before and not (outputs / "sd_trainplan").exists()
    assert not list(second.data.rglob("forge-not-loaded*"))
    assert second.tracebacks() == [], second.log_tail()


def test_the_tab_is_in_config_renders_plans_and_logs_nothing_in_the_console(forge, browser):
    config = forge.api("GET", "/config")
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"tab_sd_trainplan", "stp_images", "stp_tables"} <= ids
    status, plan = forge.post("/sd_trainplan/plan", {"images": 26, "batch_size": 13, "grad_accum": 2, "steps": 3000,
                                                     "step_unit": "batch"})
    assert status == 200 and plan["quantities"]["weight_updates"]["value"] == 1500

    log_from = len(forge.log())
    page = open_tab(browser, forge)
    try:
        page.wait_for_timeout(2000)  # what Forge's own page logs while it loads is not counted
        seen = len(page.console)
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
        page.locator(f"{TAB} #stp_apply").first.click()
        expect(page.locator(f"{TAB} #stp_train_status")).to_contain_text("Filled from the plan")
        page.locator(f"{TAB} #stp_tabs .tab-nav button", has_text="LR range test").first.click()
        page.locator(f"{TAB} #stp_tabs .tab-nav button", has_text="Plan").first.click()
        page.wait_for_timeout(1500)
        # gradio 4.40's client warns "Too many arguments provided for the endpoint" for any event it finds
        # no description of (Forge's own Generate: four times); the page's events are described
        # (ui/gradio_endpoints.py): planning as you type, a preset, Apply, the tabs log nothing
        logged = [c for c in page.console[seen:] if c[0] in ("warning", "error", "pageerror")]
        assert logged == [], logged
        assert forge.tracebacks(log_from) == [], forge.log_tail()
    finally:
        page.close()


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


def test_each_of_the_tabs_events_is_described_to_gradios_client(forge):
    """What keeps the console quiet (see the test above): /info describes each event of the page, the
    load-time follower too (it sends a State), with one parameter per input."""
    config, _ = components(forge)
    info = forge.api("GET", "/info")
    comp_ids = {c["id"]: c.get("props", {}).get("elem_id") or "" for c in config["components"]}
    ours_ = [d for d in config["dependencies"] if any(comp_ids.get(i, "").startswith("stp_")
                                                      for i in d["inputs"] + d["outputs"])]
    assert len(ours_) > 10
    for d in ours_:
        assert len(info["unnamed_endpoints"][str(d["id"])]["parameters"]) == len(d["inputs"])
