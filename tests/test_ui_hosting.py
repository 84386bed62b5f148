"""The planner panel builds inside a host's Blocks, as the WebUI's on_ui_tabs embeds it,
on both gradio versions (each environment's own interpreter, no browser)."""
import subprocess

import pytest

from ui_harness import ENVS, ROOT, env_python

EMBED = """
import gradio as gr
from sd_trainplan.ui import build_planner
tab = build_planner()                       # what on_ui_tabs returns: [(tab, "Train Planner", "sd_trainplan")]
with gr.Blocks(analytics_enabled=False) as host:
    with gr.Tabs():
        with gr.Tab("txt2img"):
            gr.Textbox(label="prompt")
        with gr.Tab("Train Planner", id="sd_trainplan"):
            tab.render()
ids = [b.elem_id for b in host.blocks.values() if getattr(b, "elem_id", None)]
print(gr.__version__, len([i for i in ids if i.startswith("stp_")]), len(ids) == len(set(ids)))
"""


@pytest.mark.parametrize("env", list(ENVS), ids=["gradio4", "gradio3"])
def test_the_tab_renders_inside_a_host_blocks(env):
    py = env_python(env)
    if not py.exists():
        pytest.fail(f"no {env}: `make test` builds it")
    out = subprocess.run([str(py), "-c", EMBED], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"GRADIO_ANALYTICS_ENABLED": "False", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    version, n_ids, unique = out.stdout.split()
    assert version == ("4.40.0" if env == ".venv" else "3.41.2")
    assert int(n_ids) >= 27 * 2 and unique == "True"  # every input and its message, each id once
