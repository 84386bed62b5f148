"""A LoRA trained in the real AUTOMATIC1111 v1.10.1 on a model whose UNet is not laid out as SD's
(one ResBlock a level: our tiny ldm model, a checkpoint with its yaml) loads fully in the WebUI's
built-in Lora extension, every module on its own layer (issue 17, item 4). Read from what the
extension applied (networks.loaded_networks), not from its log: it reports misses at debug level
only. With kohya's usual names it dropped some modules here and put others on the wrong block."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness import host_env
from webui_page import fill_trainer, open_tab, placed_path, result_text, start_and_wait

pytestmark = [pytest.mark.hosts, pytest.mark.browser]
ORIGINAL = "tiny-sd1.safetensors"
LAYOUT = "tiny-l1"

# Run by the WebUI's own Python, with the extension's code as installed and the WebUI's ldm: our tiny
# LatentDiffusion (seeded) as a checkpoint, its config as the yaml beside it.
MAKE = """
import sys
from omegaconf import OmegaConf
from safetensors.torch import save_file
from sd_trainplan.models.tiny_ldm import build_tiny_ldm, tiny_ldm_config
out = sys.argv[1]
model = build_tiny_ldm(3)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out + ".safetensors")
OmegaConf.save(OmegaConf.create({"model": tiny_ldm_config(3)}), out + ".yaml")
"""


@pytest.fixture(scope="module")
def layout_model(a1111):
    models = a1111.data / "models" / "Stable-diffusion"
    code = [a1111.data / "extensions" / "sd_trainplan",
            a1111.kind.tree / "repositories" / "stable-diffusion-stability-ai"]
    env = host_env({"PYTHONPATH": os.pathsep.join(map(str, code)), "SD_TRAINPLAN_CACHE": str(a1111.data / "stp-cache")})
    subprocess.run([str(a1111.kind.python), "-c", MAKE, str(models / LAYOUT)], env=env, check=True, timeout=300)
    a1111.api("POST", "/sdapi/v1/refresh-checkpoints")
    yield f"{LAYOUT}.safetensors"


def applied_modules(a1111, name: str):
    """What the Lora extension made of the file: each key's module and the layer it was put on."""
    return a1111.py(f"""
import networks
from modules import shared
from safetensors.torch import load_file
net = [n for n in networks.loaded_networks if n.name == {name!r}][0]
layers = {{id(m): k for k, m in shared.sd_model.network_layer_mapping.items()}}
result = {{"file": sorted({{k.split('.')[0] for k in load_file(net.network_on_disk.filename)}}),
          "applied": {{m.network_key.split('.')[0]: layers.get(id(m.sd_module)) for m in net.modules.values()}}}}
""")


def test_a_lora_on_another_unet_layout_loads_every_module_on_its_own_layer(a1111, browser, layout_model, shapes_dir):
    before = a1111.hashes()
    page = open_tab(browser, a1111)
    try:
        a1111.api("POST", "/sdapi/v1/options", {"sd_model_checkpoint": layout_model})
        blocks = a1111.py("from modules import shared\nresult = shared.sd_model.model.diffusion_model.num_res_blocks")
        assert blocks == [1, 1]  # not SD's two a level
        fill_trainer(page, "lora", data=shapes_dir, token="stplayout", steps=4, lr=0.01, name="layout-lora", rank=4,
                     alpha=4, resolution=64, batch_size=2, instance_prompt="[name] [filewords]", val_split=0,
                     sample_every=0, val_every=0)
        assert start_and_wait(page) == "done", result_text(page)
        placed = Path(placed_path(page))
        plain = a1111.txt2img("a red circle")
        assert a1111.txt2img(f"a red circle <lora:{placed.stem}:1>") != plain
        got = applied_modules(a1111, placed.stem)
        unet = [k for k in got["file"] if k.startswith("lora_unet_")]
        assert len(unet) == 32  # q, k, v, out of both attentions in its 4 transformer blocks
        assert sorted(got["applied"]) == got["file"]  # every module in the file was applied
        for key in unet:  # each on the layer its name gives (the ldm module path), none on another block
            assert got["applied"][key] == "diffusion_model_" + key[len("lora_unet_"):], (key, got["applied"][key])
        assert a1111.txt2img("a red circle") == plain  # without the tag the WebUI takes it off again
    finally:
        page.close()
        a1111.api("POST", "/sdapi/v1/options", {"sd_model_checkpoint": ORIGINAL})
    assert a1111.hashes() == before  # the shared WebUI has its model back
