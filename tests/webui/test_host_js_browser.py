"""javascript/trainplan.js in headless Chromium, inside a page laid out as AUTOMATIC1111 v1.10.1 lays
out its tabs (gradio 3.41.2): "Apply to the WebUI's Train tab" writes the plan into the built-in
Textual Inversion fields (the ids of modules/ui.py) so that the WebUI's server receives them, and a
Start click hands the run's task id to the WebUI's progress bar (requestProgress).

The page's WebUI globals come from tests/webui/standin/javascript/webui_globals.js (each function
mirrors script.js, ui.js or progressbar.js); the Train tab holds only the four fields the script
writes, with the elem_ids, types and defaults of modules/ui.py (v1.10.1, create_ui's train tab).
"""
from __future__ import annotations

import json
import runpy
import urllib.request

import pytest

from conftest import make_dataset
from webui_host import ROOT, STANDIN, start_webui

from ui_harness import click, free_port, text_input, type_into

TRAIN_FIELDS = ("train_embedding_learn_rate", "train_batch_size", "train_gradient_step", "train_steps")


def build_webui_page():
    """The WebUI's tab layout (modules/ui.py create_ui): txt2img first, then Train, then the tabs from
    script_callbacks.ui_tabs_callback(), each as gr.TabItem(label, id=ifid, elem_id=f"tab_{ifid}")."""
    import gradio as gr
    from modules import script_callbacks
    interfaces = script_callbacks.ui_tabs_callback()
    with gr.Blocks(analytics_enabled=False, title="Stable Diffusion") as demo:
        with gr.Tabs(elem_id="tabs"):
            with gr.TabItem("txt2img", id="txt2img", elem_id="tab_txt2img"):
                gr.Textbox(label="Prompt", elem_id="txt2img_prompt")
            with gr.TabItem("Train", id="train", elem_id="tab_train"):
                fields = [gr.Textbox(label="Embedding Learning rate", placeholder="Embedding Learning rate", value="0.005",
                                     elem_id="train_embedding_learn_rate"),
                          gr.Number(label="Batch size", value=1, precision=0, elem_id="train_batch_size"),
                          gr.Number(label="Gradient accumulation steps", value=1, precision=0,
                                    elem_id="train_gradient_step"),
                          gr.Number(label="Max steps", value=100000, precision=0, elem_id="train_steps")]
                # what the server holds for those fields (the WebUI's Train button sends the same inputs)
                echo = gr.Textbox(label="server sees", elem_id="standin_server_sees")
                gr.Button("Show", elem_id="standin_show").click(lambda *v: json.dumps(v), fields, [echo])
            for interface, label, ifid in interfaces:
                with gr.TabItem(label, id=ifid, elem_id=f"tab_{ifid}"):
                    interface.render()
    return demo


@pytest.fixture(scope="module")
def webui_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("webui")
    shared, _ = start_webui(root)
    runpy.run_path(str(ROOT / "scripts" / "trainplan.py"), run_name="trainplan")  # as the WebUI loads scripts/
    from modules import script_callbacks
    demo = build_webui_page()
    demo.queue(64)  # webui.py: shared.demo.queue(64)
    port = free_port()
    app, _, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    script_callbacks.app_started_callback(demo, app)  # the extension's /sd_trainplan routes
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture
def webui_page(browser, webui_url):  # browser: tests/conftest.py's headless Chromium
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(20000)
    page.add_init_script(path=str(STANDIN / "javascript" / "webui_globals.js"))
    page.add_init_script(path=str(ROOT / "javascript" / "trainplan.js"))  # the WebUI adds extensions' scripts
    page.goto(webui_url)
    page.locator("#tabs .tab-nav button", has_text="Train Planner").first.click()
    page.wait_for_selector("#stp_tables tr[data-quantity=weight_updates]")
    yield page
    page.close()


def plan_cell(page, quantity: str) -> str:
    td = page.locator(f'#stp_tables tr[data-quantity="{quantity}"] td.value').first
    num = td.locator(".stp-num")
    return (num.first if num.count() else td).inner_text().strip()


def test_apply_writes_the_plan_into_the_webuis_train_tab_and_its_server_sees_it(webui_page):
    page = webui_page
    from playwright.sync_api import expect
    for key, value in {"stp_images": "26", "stp_batch_size": "3", "stp_grad_accum": "2"}.items():
        type_into(page, key, value)
    text_input(page, "stp_grad_accum").press("Tab")
    expect(page.locator('#stp_tables tr[data-quantity="a1111_max_steps"] td.value')).not_to_have_text("—")
    lr, steps = plan_cell(page, "a1111_learning_rate"), plan_cell(page, "a1111_max_steps")
    assert lr not in ("", "—") and steps.replace(",", "").isdigit()
    click(page, "stp_apply_webui_train")
    expect(page.locator("#stp_webui_textinfo")).to_contain_text("Written to Train > Train")

    page.locator("#tabs .tab-nav button", has_text="Train").first.click()
    want = [lr, "3", "2", steps.replace(",", "")]
    for elem_id, value in zip(TRAIN_FIELDS, want):
        expect(text_input(page, elem_id), elem_id).to_have_value(value)
    click(page, "standin_show")  # the values reached gradio's state on the server, not only the DOM
    expect(text_input(page, "standin_server_sees")).not_to_have_value("")
    seen = json.loads(text_input(page, "standin_server_sees").input_value())
    assert [str(seen[0]), int(seen[1]), int(seen[2]), int(seen[3])] == [lr, 3, 2, int(want[3])]


def test_a_start_click_hands_the_runs_task_to_the_webuis_progress_bar(webui_page, tmp_path, webui_url):
    page = webui_page
    from playwright.sync_api import expect
    data = make_dataset(tmp_path / "data", n=4)
    page.locator("#stp_tabs .tab-nav button", has_text="Train").first.click()
    page.locator('#stp_train_method input[type=radio][value="ti"]').click()
    for key, value in {"stp_train_data": str(data), "stp_train_steps": "3", "stp_train_resolution": "64",
                       "stp_train_output": str(tmp_path / "out"), "stp_train_name": "jsrun"}.items():
        type_into(page, key, value)
    click(page, "stp_train_start")
    page.wait_for_function("window.stpProgressCalls.length > 0", timeout=60000)
    call = page.evaluate("window.stpProgressCalls[0]")
    with urllib.request.urlopen(webui_url + "sd_trainplan/train", timeout=10) as r:
        status = json.loads(r.read())
    assert call["id"] == status["task_id"] and call["id"]
    assert call["container"] == "stp_webui_progress" and call["preview"] == "stp_webui_preview"
    expect(page.locator("#stp_train_progress .stp-progress").first).to_have_attribute("data-state", "done",
                                                                                       timeout=120000)
