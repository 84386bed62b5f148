"""Training an SDXL model the real AUTOMATIC1111 v1.10.1 has loaded (the tiny sgm DiffusionEngine of
tests/hosts/make_tiny_sdxl.py, built with the generative-models commit the WebUI pins), through the
Train Planner tab in Chromium: each method's file is used by the WebUI at once, and the loaded
weights are left as they were (read by the test-only probe extension).

The session's WebUI loads the tiny SDXL for this module and the tiny SD1 again after it. Its live
preview is set to "Approx cheap" meanwhile: the default "Approx NN" downloads vaeapprox-sdxl.pt at
the first SDXL generation (modules/sd_vae_approx.py), which an offline WebUI cannot.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import A1111
from webui_page import QUICK, fill_trainer, open_tab, placed_path, problems, result_text, start_and_wait

from .conftest import unchanged

pytestmark = [pytest.mark.hosts, pytest.mark.browser]
SDXL = ("tiny-sdxl.safetensors", "tiny-sdxl.yaml")


def choose_checkpoint(host, name: str) -> None:
    host.api("POST", "/sdapi/v1/options", {"sd_model_checkpoint": name})  # loads it before answering
    assert host.api("GET", "/sdapi/v1/options")["sd_model_checkpoint"].startswith(name)


@pytest.fixture(scope="module")
def sdxl(a1111):
    """The session's WebUI with the tiny SDXL loaded (linked into its data folder as a user copies it)."""
    models = a1111.data / "models" / "Stable-diffusion"
    for name in SDXL:
        if not (A1111.models / name).exists():
            pytest.fail(f"{A1111.models / name} is missing (run `make hosts`: tests/hosts/build_host.sh makes it)")
        if not (models / name).exists():
            (models / name).symlink_to(A1111.models / name)
    a1111.api("POST", "/sdapi/v1/refresh-checkpoints")
    before = a1111.api("GET", "/sdapi/v1/options")
    a1111.api("POST", "/sdapi/v1/options", {"show_progress_type": "Approx cheap"})
    choose_checkpoint(a1111, SDXL[0])
    assert a1111.py("from modules import shared\nresult = type(shared.sd_model).__name__") == "DiffusionEngine"
    yield a1111
    a1111.api("POST", "/sdapi/v1/options", {"show_progress_type": before["show_progress_type"]})
    choose_checkpoint(a1111, before["sd_model_checkpoint"].split(" [")[0])


@pytest.fixture(scope="module")
def page(sdxl, browser):
    p = open_tab(browser, sdxl)
    yield p
    p.close()


@pytest.fixture
def loaded(sdxl):
    yield from unchanged(sdxl)



def test_sdxl_textual_inversion_through_the_tab_gives_a_clip_l_clip_g_embedding_txt2img_uses(sdxl, page, shapes_dir,
                                                                                            loaded):
    before_img, before_info = sdxl.txt2img_info("a stpxl on grey")
    fill_trainer(page, "ti", data=shapes_dir, token="stpxl", init_word="shape", vectors=2, steps=4, lr=0.05,
                 name="xl-ti", **QUICK)
    assert start_and_wait(page) == "done", result_text(page)
    placed = Path(placed_path(page))
    assert placed == sdxl.data / "embeddings" / "stpxl.safetensors"
    shapes = sdxl.py("from safetensors.torch import load_file\n"
                     f"result = {{k: list(v.shape) for k, v in load_file({str(placed)!r}).items()}}")
    assert shapes == {"clip_l": [2, 768], "clip_g": [2, 256]}  # one set of vectors per text encoder

    img, text = sdxl.txt2img_info("a stpxl on grey")  # no reload, no refresh: usable at once
    assert re.search(r"TI hashes: \"?stpxl: [0-9a-f]+", text), text
    assert img != before_img and "TI hashes" not in before_info
    assert sdxl.api("GET", "/sdapi/v1/embeddings")["loaded"]["stpxl"]["vectors"] == 2
    assert problems(page) == [] and sdxl.tracebacks() == []


def test_sdxl_lora_with_both_text_encoders_loads_fully_in_the_builtin_lora_extension(sdxl, page, shapes_dir, loaded):
    # a token of its own: the TI test's is a loaded embedding now, which Start refuses
    fill_trainer(page, "lora", data=shapes_dir, token="xlstyle", steps=4, lr=0.02, name="xl-lora", rank=4, alpha=4,
                 **QUICK)
    te = page.locator("#tab_sd_trainplan #stp_train_te input[type=checkbox]").first
    te.check()
    try:
        assert start_and_wait(page) == "done", result_text(page)
    finally:
        te.uncheck()
    assert Path(placed_path(page)) == sdxl.data / "models" / "Lora" / "xl-lora.safetensors"

    plain, _ = sdxl.txt2img_info("a red circle")
    with_lora, text = sdxl.txt2img_info("a red circle <lora:xl-lora:1>")
    assert with_lora != plain and "xl-lora" in text
    applied = sdxl.py("""
import networks
from safetensors.torch import load_file
net = networks.loaded_networks[0]
keys = load_file(net.network_on_disk.filename)
result = {"file": sorted({k.split('.')[0] for k in keys}),
          "applied": sorted(m.network_key.split('.')[0] for m in net.modules.values()),
          "errors": dict(networks.extra_network_lora.errors) if networks.extra_network_lora else {}}
""")
    assert applied["applied"] == applied["file"] and not applied["errors"].get("xl-lora")  # no key left unmatched
    assert {k.split("_")[1] for k in applied["file"]} == {"unet", "te1", "te2"}
    assert sdxl.txt2img_info("a red circle")[0] == plain  # without the tag, the WebUI's weights again


def test_sdxl_dreambooth_through_the_tab_writes_a_checkpoint_the_webui_loads_and_generates_with(sdxl, page,
                                                                                                  shapes_dir, loaded):
    fill_trainer(page, "dreambooth", data=shapes_dir, token="sks", steps=3, lr=1e-4, name="xl-db", **QUICK)
    assert start_and_wait(page) == "done", result_text(page)
    placed = Path(placed_path(page))
    assert placed == sdxl.data / "models" / "Stable-diffusion" / "xl-db.safetensors"
    assert placed.with_suffix(".yaml").is_file()  # its config beside it, as the loaded model had
    assert sdxl.api("GET", "/sdapi/v1/options")["sd_model_checkpoint"].startswith(SDXL[0])  # the original stays
    original, _ = sdxl.txt2img_info("a sks shape")
    choose_checkpoint(sdxl, "xl-db.safetensors")
    try:
        trained, _ = sdxl.txt2img_info("a sks shape")
    finally:
        choose_checkpoint(sdxl, SDXL[0])
    assert trained != original
