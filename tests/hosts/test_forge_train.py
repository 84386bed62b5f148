"""Training the model the real Forge (dfdcbab6, CPU) has loaded, through the Train Planner tab in
headless Chromium, as a user does: Textual Inversion, LoRA and Dreambooth each write a file Forge
uses at once (txt2img changes with the token, with <lora:NAME:1>, with the new checkpoint chosen),
and Forge's loaded tensors are the same afterwards (hashes, and still inference tensors), also
after Interrupt and after an error; what cannot train cleanly is refused with a message.

Tiny on purpose: Forge's random SD1.5-shaped checkpoint (an 80M UNet), 64 px shapes, 2-3 updates.
The tests share the session's Forge (tests/hosts/conftest.py) and one page, and run in order; each
leaves the loaded model as it found it.
"""
from __future__ import annotations

import hashlib
import re

import pytest
from playwright.sync_api import expect

from webui_page import TAB, fill_trainer, job_box, open_tab, placed_path, result_text, start_and_wait

pytestmark = [pytest.mark.hosts, pytest.mark.browser]
RUN = 240_000  # ms: a short run, its export and Forge's bookkeeping on a busy 2-core machine
COMMON = dict(resolution=64, batch_size=2, instance_prompt="[name] [filewords]")
PROMPT = "a red circle"  # the random CLIP gives finite conditioning for it (shared/hosts/README.md)

STATE = """
from modules import shared
import backend.nn.unet as forge_unet
fo = shared.sd_model.forge_objects_original
out = {}
for name, m in (("unet", fo.unet.model), ("clip", fo.clip.cond_stage_model), ("vae", fo.vae.first_stage_model)):
    ts = list(m.parameters()) + list(m.buffers())
    out[name] = [len(ts), sum(t.is_inference() for t in ts), sum(t.requires_grad for t in ts)]
unet = fo.unet.model.diffusion_model
out["hooks"] = sum(len(x._forward_hooks) + len(x._forward_pre_hooks) + ("forward" in vars(x)) for x in unet.modules())
out["attention"] = forge_unet.attention_function.__name__
result = out
"""


def model_state(forge):
    """The loaded model as Forge keeps it: tensor hashes, and which tensors are inference tensors,
    require grad, carry hooks; the UNet's attention function."""
    return forge.hashes(), forge.py(STATE)


def digest(png: bytes) -> str:
    return hashlib.sha256(png).hexdigest()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from sd_trainplan.train.sample_data import make_shapes
    return make_shapes(tmp_path_factory.mktemp("forge-shapes"), colors=("red", "green"), shapes=("circle", "square"))


@pytest.fixture(scope="module")
def page(forge, browser):
    page = open_tab(browser, forge)
    yield page
    page.close()


def train_in_tab(page, method: str, wait=("done",), **fields):
    """The Train tab: the method, the fields typed in, Start; with `wait`, until the job ends so."""
    fill_trainer(page, method, **{**COMMON, **fields})
    if not wait:  # started: a new job on the page, still running
        before = job_box(page).get_attribute("data-job")
        page.locator(f"{TAB} #stp_train_start").first.click()
        expect(job_box(page)).to_have_attribute("data-job", re.compile(rf"^(?!{before}$)\d+$" if before else r"^\d+$"),
                                                timeout=60_000)
        return job_box(page)
    state = start_and_wait(page, end=wait)
    assert state in wait, result_text(page)
    return job_box(page)


def test_textual_inversion_embedding_is_used_by_txt2img_at_once_and_the_model_is_unchanged(forge, page, data):
    token = "stpforgetok"
    before = model_state(forge)
    image_before = forge.txt2img(f"{PROMPT}, {token}")
    init = forge.py("from modules import shared\n"
                    "eng = shared.sd_model.text_processing_engine\n"
                    "ids = eng.tokenize(['person'])[0]\n"
                    "w = eng.text_encoder.transformer.text_model.embeddings.token_embedding.wrapped.weight\n"
                    "result = w[ids[0]].float().tolist()")

    train_in_tab(page, "ti", data=data, steps=3, lr="0.05", token=token, name="forge-ti")
    embedding = forge.data / "embeddings" / f"{token}.safetensors"
    assert placed_path(page) == str(embedding)
    assert model_state(forge) == before  # bit-identical, still inference tensors, no hook left

    from safetensors.torch import load_file
    vec = load_file(str(embedding))["emb_params"]
    assert vec.shape == (1, 768) and (vec[0] - __import__("torch").tensor(init)).abs().max() > 1e-3  # it trained
    image_after = forge.txt2img(f"{PROMPT}, {token}")
    assert digest(image_after) != digest(image_before)  # txt2img reads the new embedding at once
    assert digest(forge.txt2img(f"{PROMPT}, {token}")) == digest(image_after)
    assert f"Used Embedding [{token}]" in forge.log()

    # The same token again: refused beside the Token field at Start, as Forge's engine would put the
    # loaded embedding in its place; nothing starts.
    job = job_box(page).get_attribute("data-job")
    fill_trainer(page, "ti", **{**COMMON, "data": data, "steps": 3, "token": token, "name": "forge-ti-again"})
    page.locator(f"{TAB} #stp_train_start").first.click()
    expect(page.locator(f"{TAB} #stp_train_token_msg .stp-msg").first).to_contain_text("already a loaded embedding")
    assert job_box(page).get_attribute("data-job") == job
    assert model_state(forge) == before


def test_an_error_mid_run_leaves_forges_model_as_it_was(forge, page, data):
    """An absurd learning rate: the loss turns non-finite after the model is prepared, the run ends
    as an error (nothing written), and Forge's tensors are put back all the same."""
    before = model_state(forge)
    train_in_tab(page, "ti", wait=("error",), data=data, steps=3, lr="1e30", token="stpforgenan", name="forge-nan")
    assert re.search(r"loss became (nan|inf|-inf)|non-finite", result_text(page)), result_text(page)
    assert not (forge.data / "embeddings" / "stpforgenan.safetensors").exists()
    assert model_state(forge) == before


def test_lora_loads_in_forge_with_every_key_matched_and_the_model_is_unchanged(forge, page, data):
    before = model_state(forge)
    plain = digest(forge.txt2img(PROMPT))
    train_in_tab(page, "lora", data=data, steps=3, lr="0.01", token="stp", name="forge-lora")
    assert placed_path(page) == str(forge.data / "models" / "Lora" / "forge-lora.safetensors")
    assert model_state(forge) == before

    log_from = len(forge.log())
    with_lora = digest(forge.txt2img(f"{PROMPT} <lora:forge-lora:1>"))
    log = forge.log()[log_from:]
    assert with_lora != plain
    loaded = re.search(r"\[LORA\] Loaded \S*forge-lora\.safetensors for KModel-UNet with (\d+) keys .*\(skipped (\d+)"
                       r" keys\)", log)
    assert loaded and int(loaded.group(1)) == 32 and loaded.group(2) == "0", log[-3000:]
    assert "unmatched keys" not in log and "version mismatch" not in log
    assert digest(forge.txt2img(PROMPT)) == plain  # Forge takes its merge back out
    assert model_state(forge) == before


def test_dreambooth_checkpoint_is_listed_and_loads_and_the_loaded_model_is_put_back(forge, page, data):
    before = model_state(forge)
    plain = digest(forge.txt2img(PROMPT))
    train_in_tab(page, "dreambooth", data=data, steps=2, lr="0.0001", token="stp", name="forge-db")
    assert placed_path(page) == str(forge.data / "models" / "Stable-diffusion" / "forge-db.safetensors")
    assert model_state(forge) == before  # trained in place, put back exactly
    assert digest(forge.txt2img(PROMPT)) == plain

    names = [m["model_name"] for m in forge.api("GET", "/sdapi/v1/sd-models")]
    assert "forge-db" in names
    try:
        forge.api("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "forge-db"})
        trained = digest(forge.txt2img(PROMPT))
        assert "forge-db.safetensors" in forge.log().rsplit("Loading Model:", 1)[-1].splitlines()[0]
        assert trained != plain
        assert "Unexpected" not in forge.log().rsplit("Loading Model:", 1)[-1]  # every key is one Forge knows
    finally:
        forge.api("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "rand-sd15-small"})
    assert digest(forge.txt2img(PROMPT)) == plain
    assert model_state(forge)[0] == before[0]


def test_interrupt_stops_a_run_shown_in_forges_progress_bar_and_the_model_is_put_back(forge, page, data):
    """A Dreambooth run (the one that changes the weights) followed in Forge's own progress bar and
    live preview, stopped with the tab's Interrupt (shared.state.interrupt, as Forge's own button)."""
    before = model_state(forge)
    state = train_in_tab(page, "dreambooth", wait=(), data=data, steps=200, lr="0.0001", token="stp",
                         name="forge-stop", sample_every=1, sample_steps=2)
    expect(state).to_have_attribute("data-step", re.compile(r"^([2-9]|\d\d+)$"), timeout=RUN)
    bar = page.locator(f"{TAB} #stp_webui_progress_box .progressDiv .progress").first
    expect(bar).to_contain_text("ETA", timeout=30_000)  # Forge's own bar, with its percentage and ETA
    assert "<p>" not in bar.inner_text() and "<br" not in bar.inner_text()  # not the tab's HTML as text
    expect(page.locator(f"{TAB} #stp_webui_textinfo")).to_contain_text("Loss:")
    expect(page.locator(f"{TAB} #stp_webui_preview .livePreview img").first).to_be_attached(timeout=30_000)
    page.locator(f"{TAB} #stp_webui_interrupt").first.click()
    expect(state).to_have_attribute("data-state", "stopped", timeout=RUN)
    assert int(state.get_attribute("data-step")) < 200
    assert model_state(forge) == before
    assert not (forge.data / "models" / "Stable-diffusion" / "forge-stop.safetensors").exists()


LOW_BITS = """
from modules import shared
from modules_forge import main_entry
shared.opts.set("forge_unet_storage_dtype", {choice!r})
main_entry.refresh_model_loading_parameters()  # what Forge's "Diffusion in Low Bits" menu calls on a change
result = None
"""


def test_what_cannot_train_cleanly_is_refused_with_a_message(forge, page, data):
    """Low-bit UNet storage ("Diffusion in Low Bits", a menu Forge shows in its xl/flux/all UI presets)
    is refused at Start, before anything changes; Forge's placeholder model before the first generation
    is refused by the same check (its real class, in the running Forge)."""
    not_loaded = forge.py("from modules.sd_models import FakeInitialModel\n"
                          "from sd_trainplan.host.forge_model import engine_problems\n"
                          "from sd_trainplan.train.config import TrainConfig\n"
                          "result = engine_problems(FakeInitialModel(), TrainConfig(method='lora'))")
    assert len(not_loaded) == 1 and "generate one image" in not_loaded[0]

    try:
        forge.py(LOW_BITS.format(choice="float8-e4m3fn"))
        forge.txt2img(PROMPT)  # Forge reloads the model with the UNet stored in fp8
        assert "float8_e4m3fn" in forge.log().rsplit("K-Model Created", 1)[-1].splitlines()[0]
        before = model_state(forge)
        train_in_tab(page, "lora", wait=("error",), data=data, steps=2, token="stp", name="forge-fp8")
        assert "Diffusion in Low Bits" in result_text(page)
        assert model_state(forge) == before
    finally:
        forge.py(LOW_BITS.format(choice="Automatic"))
        forge.txt2img(PROMPT)
    assert "float32" in forge.log().rsplit("K-Model Created", 1)[-1].splitlines()[0]
