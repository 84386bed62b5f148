"""Training the model the real AUTOMATIC1111 v1.10.1 has loaded (the tiny SD1 checkpoint), through
the Train Planner tab in Chromium, as a user does: each method ends with a file the WebUI uses at
once, and the loaded weights are left as they were (read by the test-only probe extension).

The WebUI and its page are shared by the tests of this module (one boot); each test leaves no run
going and the original checkpoint loaded.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from webui_page import QUICK, TAB, fill_trainer, job_box, open_tab, placed_path, problems, result_text, start_and_wait

from .conftest import unchanged

pytestmark = [pytest.mark.hosts, pytest.mark.browser]


@pytest.fixture(scope="module")
def page(a1111, browser):
    p = open_tab(browser, a1111)
    yield p
    p.close()


@pytest.fixture
def loaded(a1111):
    yield from unchanged(a1111)



def test_textual_inversion_through_the_tab_gives_an_embedding_txt2img_uses_at_once(a1111, page, shapes_dir, loaded):
    before_img, before_info = a1111.txt2img_info("a stpshape on grey")
    fill_trainer(page, "ti", data=shapes_dir, token="stpshape", init_word="shape", steps=6, lr=0.05, name="ti-run",
                 **QUICK)
    assert start_and_wait(page) == "done", result_text(page)
    placed = Path(placed_path(page))
    assert placed == a1111.data / "embeddings" / "stpshape.safetensors" and placed.is_file()

    img, text = a1111.txt2img_info("a stpshape on grey")  # no reload, no refresh: usable at once
    assert re.search(r"TI hashes: \"?stpshape: [0-9a-f]+", text), text  # the WebUI says it used the embedding
    assert img != before_img and "TI hashes" not in before_info
    names = a1111.api("GET", "/sdapi/v1/embeddings")["loaded"]
    assert names["stpshape"]["vectors"] == 1
    assert problems(page) == [] and a1111.tracebacks() == []


def test_lora_through_the_tab_loads_fully_in_the_builtin_lora_extension(a1111, page, shapes_dir, loaded):
    # a token of its own: the one above is now a loaded embedding, which Start refuses for any method
    fill_trainer(page, "lora", data=shapes_dir, token="stplora", steps=6, lr=0.01, name="lora-run", rank=4, alpha=4,
                 **QUICK)
    assert start_and_wait(page) == "done", result_text(page)
    placed = Path(placed_path(page))
    assert placed == a1111.data / "models" / "Lora" / "lora-run.safetensors" and placed.is_file()

    plain, _ = a1111.txt2img_info("a red circle")
    with_lora, text = a1111.txt2img_info("a red circle <lora:lora-run:1>")
    assert with_lora != plain and "lora-run" in text  # the LoRA changed the image, and the infotext names it
    applied = a1111.py("""
import networks
from safetensors.torch import load_file
net = networks.loaded_networks[0]
keys = load_file(net.network_on_disk.filename)
result = {"name": net.name, "file": sorted({k.split('.')[0] for k in keys}),
          "applied": sorted(m.network_key.split('.')[0] for m in net.modules.values())}
""")
    assert applied["name"] == "lora-run"
    assert applied["applied"] == applied["file"] and len(applied["file"]) > 0  # every module in the file applied
    again, _ = a1111.txt2img_info("a red circle")  # without the tag the WebUI puts its weights back (checked by `loaded`)
    assert again == plain


def test_dreambooth_through_the_tab_lists_a_checkpoint_and_puts_the_loaded_model_back(a1111, page, shapes_dir, loaded):
    fill_trainer(page, "dreambooth", data=shapes_dir, token="sks", steps=4, lr=1e-4, name="db-run", **QUICK)
    assert start_and_wait(page) == "done", result_text(page)
    placed = Path(placed_path(page))
    assert placed == a1111.data / "models" / "Stable-diffusion" / "db-run.safetensors" and placed.is_file()
    titles = [m["title"] for m in a1111.api("GET", "/sdapi/v1/sd-models")]
    assert any(t.startswith("db-run.safetensors") for t in titles), titles  # listed without a restart
    current = a1111.api("GET", "/sdapi/v1/options")["sd_model_checkpoint"]
    assert current.startswith("tiny-sd1.safetensors")  # the original stays loaded (its weights: `loaded`)
    # a LoRA used earlier (the test above) and since dropped from the prompt is no longer merged: nothing to say
    notes = a1111.api("GET", "/sd_trainplan/train").get("notes", [])
    assert not any("Lora extension had merged" in n for n in notes), notes


def test_a_running_run_shows_in_the_webui_progress_refuses_a_second_start_and_stops_on_interrupt(
        a1111, page, shapes_dir, loaded):
    """Dreambooth with the text encoder: the run changes the loaded weights in place; Interrupt
    stops it and puts them back (`loaded` compares every tensor's hash)."""
    fill_trainer(page, "dreambooth", data=shapes_dir, steps=400, lr=1e-3, name="long-run", te=True, **QUICK)
    before = job_box(page).get_attribute("data-job")
    page.locator(f"{TAB} #stp_train_start").first.click()
    expect(job_box(page)).to_have_attribute("data-job", re.compile(rf"^(?!{before}$)\d+$" if before else r"^\d+$"),
                                            timeout=60_000)
    expect(job_box(page)).to_have_attribute("data-step", re.compile(r"^[1-9]\d*$"), timeout=120_000)
    # the WebUI's own progress bar follows the run (javascript/trainplan.js -> requestProgress puts it beside
    # #stp_webui_progress, as progressbar.js does)
    expect(page.locator(".stp-webui-progress .progressDiv .progress").first).to_contain_text("ETA", timeout=30_000)
    status = a1111.api("GET", "/sd_trainplan/train")
    assert status["state"] == "running" and status["task_id"].startswith("task(sd_trainplan-")

    page.locator(f"{TAB} #stp_train_start").first.click()  # a second Start while it runs
    expect(page.locator(f"{TAB} #stp_train_status").first).to_contain_text("Not started")
    a1111.api("POST", "/sdapi/v1/interrupt")  # the WebUI's Interrupt
    expect(job_box(page)).to_have_attribute("data-state", "stopped", timeout=120_000)
    step = int(job_box(page).get_attribute("data-step"))
    assert 1 <= step < 400
    assert f"Stopped at update {step}" in result_text(page)
    assert a1111.api("GET", "/sd_trainplan/train")["state"] == "stopped"
    assert not list((a1111.data / "models" / "Stable-diffusion").glob("long-run*"))  # a stopped run exports nothing
    a1111.txt2img_info("a red circle")  # the queue is free again: txt2img runs
    fill_trainer(page, "dreambooth", te=False)


def test_a_bad_dataset_folder_is_named_before_anything_starts(a1111, page, tmp_path):
    runs = a1111.data / "outputs" / "sd_trainplan"
    existing = set(runs.iterdir()) if runs.exists() else set()
    before = job_box(page).get_attribute("data-job")
    fill_trainer(page, "ti", data=tmp_path / "nowhere", token="stpbad", steps=5, name="bad", **QUICK)
    page.locator(f"{TAB} #stp_train_start").first.click()
    expect(page.locator(f"{TAB} #stp_train_data_msg .stp-msg").first).to_contain_text("is not a folder")
    assert job_box(page).get_attribute("data-job") == before  # nothing ran
    assert (set(runs.iterdir()) if runs.exists() else set()) == existing  # not even a run folder
