"""The extension as the WebUI loads it: scripts/trainplan.py registers the tab, the settings and the
HTTP routes (stand-in of modules.script_callbacks, v1.10.1; gradio 3.41.2 as AUTOMATIC1111)."""
from __future__ import annotations

import runpy

import pytest

from webui_host import ROOT, start_webui


@pytest.fixture()
def webui(tmp_path):
    shared, model = start_webui(tmp_path)
    runpy.run_path(str(ROOT / "scripts" / "trainplan.py"), run_name="trainplan")  # as the WebUI loads scripts/
    return shared


def test_the_tab_registers_and_renders_as_the_webui_renders_tabs(webui):
    import gradio as gr
    from modules import script_callbacks
    script_callbacks.ui_settings_callback()
    for key in ("sd_trainplan_embeddings_dir", "sd_trainplan_lora_dir", "sd_trainplan_checkpoints_dir",
                "sd_trainplan_runs_dir"):
        assert key in webui.opts.data_labels and webui.opts.data_labels[key].section == ("sd_trainplan", "Train Planner")
    tabs = script_callbacks.ui_tabs_callback()
    assert [(title, elem_id) for _, title, elem_id in tabs] == [("Train Planner", "sd_trainplan")]
    blocks = tabs[0][0]
    assert isinstance(blocks, gr.Blocks)
    with gr.Blocks(analytics_enabled=False) as demo:  # modules/ui.py: each tab's interface.render()
        with gr.Tabs(elem_id="tabs"):
            with gr.TabItem("Train Planner", id="sd_trainplan", elem_id="tab_sd_trainplan"):
                blocks.render()
    ids = [b.elem_id for b in demo.blocks.values() if getattr(b, "elem_id", None)]
    for needed in ("stp_apply_webui_train", "stp_webui_interrupt", "stp_train_notice", "stp_lr_range_notice",
                   "stp_tables", "stp_images"):
        assert needed in ids
    assert len(ids) == len(set(ids))
    for where in ("stp_train_notice", "stp_lr_range_notice"):  # the host's notice beside each Start button
        notice = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == where)
        assert "checkpoint loaded in the WebUI" in notice.value


def test_default_folders_are_the_webuis_own(webui, tmp_path):
    from sd_trainplan.host import settings
    assert settings.folder("sd_trainplan_embeddings_dir") == str(tmp_path / "embeddings")
    assert settings.folder("sd_trainplan_lora_dir") == str(tmp_path / "models" / "Lora")
    assert settings.folder("sd_trainplan_checkpoints_dir") == str(tmp_path / "models" / "Stable-diffusion")
    webui.opts.add_option("sd_trainplan_lora_dir", webui.OptionInfo(""))
    webui.opts.sd_trainplan_lora_dir = str(tmp_path / "mine")
    assert settings.folder("sd_trainplan_lora_dir") == str(tmp_path / "mine")


def test_the_api_routes_answer(webui):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from modules import script_callbacks
    app = FastAPI()
    script_callbacks.app_started_callback(None, app)
    client = TestClient(app)
    r = client.post("/sd_trainplan/plan", json={"images": 26, "batch_size": 13, "grad_accum": 2, "steps": 3000,
                                               "step_unit": "batch", "method": "ti", "lr": 5e-3})
    assert r.status_code == 200, r.text
    q = r.json()["quantities"]
    assert q["weight_updates"]["value"] == 1500 and q["epochs"]["value"] == 1500  # seed 000's worked example
    bad = client.post("/sd_trainplan/plan", json={"images": 10, "batch_size": 11})
    assert bad.status_code == 422 and any(e["field"] == "batch_size" for e in bad.json()["errors"])
    status = client.get("/sd_trainplan/train").json()
    assert status["state"] in ("idle", "done", "stopped", "error")
