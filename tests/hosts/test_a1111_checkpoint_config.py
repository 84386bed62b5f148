"""A Dreambooth checkpoint made in the real AUTOMATIC1111 v1.10.1 loads there as its original did
(issue 17, items 1 and 2): the loaded tiny checkpoint has its config beside it (tiny-sd1.yaml, as SD2
v-models, inpainting models and custom configs do), so the new one gets that config beside it under
its own name; and it keeps the loaded model's precision (the test WebUI runs --no-half: fp32), the
parts that did not train bit for bit. Without the config the WebUI falls back to SD1's, cannot load
it ("Can't load tokenizer") and is left with no model loaded."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from safetensors.torch import load_file

from webui_page import fill_trainer, open_tab, placed_path, result_text, start_and_wait

pytestmark = [pytest.mark.hosts, pytest.mark.browser]
ORIGINAL = "tiny-sd1.safetensors"


@pytest.fixture(scope="module")
def page(a1111, browser):
    p = open_tab(browser, a1111)
    yield p
    p.close()


def dtypes(path: Path) -> set:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def test_the_checkpoint_gets_the_loaded_ones_config_and_precision_and_the_webui_loads_it(a1111, page, shapes_dir):
    before = a1111.hashes()
    models = a1111.data / "models" / "Stable-diffusion"
    fill_trainer(page, "dreambooth", data=shapes_dir, token="sks", steps=3, lr=1e-4, name="db-config", resolution=64,
                 batch_size=2, instance_prompt="[name] [filewords]", val_split=0, sample_every=0, val_every=0)
    assert start_and_wait(page) == "done", result_text(page)
    placed = Path(placed_path(page))
    assert placed == models / "db-config.safetensors"
    assert placed.with_suffix(".yaml").read_text() == (models / "tiny-sd1.yaml").read_text()
    assert "db-config.yaml" in result_text(page)  # the page says the config went with it
    # precision: the loaded model is fp32, so is the file; what did not train is the original's, bit for bit
    assert dtypes(placed) <= {"F32", "I64"}
    new, old = load_file(str(placed)), load_file(str(models / ORIGINAL))
    frozen = [k for k in old if k.startswith(("first_stage_model.", "cond_stage_model."))]
    assert frozen and all(k in new and new[k].equal(old[k]) for k in frozen)
    assert any(not new[k].equal(old[k]) for k in old if k.startswith("model.diffusion_model."))

    plain = a1111.txt2img("a red circle")
    try:
        a1111.api("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "db-config.safetensors"})
        assert a1111.api("GET", "/sdapi/v1/options")["sd_model_checkpoint"].startswith("db-config.safetensors")
        used = a1111.py("from modules import shared\nresult = shared.sd_model.used_config")
        assert Path(used) == placed.with_suffix(".yaml")  # the WebUI read the config beside it
        trained = a1111.txt2img("a red circle")  # and it generates with the trained weights
        assert trained != plain
        assert "Can't load tokenizer" not in a1111.log()
    finally:
        a1111.api("POST", "/sdapi/v1/options", {"sd_model_checkpoint": ORIGINAL})
    assert a1111.hashes() == before  # the original is loaded again, as it was
