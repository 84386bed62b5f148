"""Forge (gradio 4.40, this environment's pin): the Train Planner tab registers and renders, the
planner answers, and training is off with a notice (Forge's model is not an ldm model and has no
embedding database). The WebUI's callbacks come from the stand-in in tests/webui/standin."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "webui" / "standin"

SCRIPT = f"""
import importlib.machinery, json, runpy, sys, types
sys.path.insert(0, {str(STANDIN)!r})
forge = types.ModuleType("modules_forge"); forge.__spec__ = importlib.machinery.ModuleSpec("modules_forge", None)
sys.modules["modules_forge"] = forge          # what tells Forge apart
import gradio as gr
from modules import script_callbacks as sc
runpy.run_path({str(ROOT / "scripts" / "trainplan.py")!r})
(tab, title, elem_id), = sc.ui_tabs_callback()
with gr.Blocks(analytics_enabled=False) as demo:   # Forge renders extension tabs as AUTOMATIC1111 does
    with gr.Tabs():
        with gr.Tab(title, id=elem_id, elem_id="tab_" + elem_id):
            tab.render()
blocks = {{b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}}
from sd_trainplan.host.hooks import make_hooks
hooks = make_hooks()
from sd_trainplan.host.api import plan_json
plan = plan_json({{"images": 26, "batch_size": 13, "grad_accum": 2, "steps": 3000, "step_unit": "batch"}})
print(json.dumps({{"gradio": gr.__version__, "title": title, "notice": blocks["stp_webui_notice"].value,
                  "interrupt": "stp_webui_interrupt" in blocks, "planner": "stp_tables" in blocks,
                  "can_train": hooks.can_train, "updates": plan["quantities"]["weight_updates"]["value"]}}))
"""


def test_forge_gets_the_planner_and_a_notice_instead_of_training():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    assert out.returncode == 0, out.stderr[-3000:]
    import json
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["gradio"] == "4.40.0" and got["title"] == "Train Planner" and got["planner"]
    assert not got["can_train"] and not got["interrupt"]
    assert "training does not" in got["notice"] and "AUTOMATIC1111" in got["notice"] and "standalone" in got["notice"]
    assert got["updates"] == 1500
