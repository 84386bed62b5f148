"""The trainer tabs in headless Chromium, on gradio 4.40.0 and on gradio 3.41.2: real training jobs
of the built-in tiny model on the shipped sample images (64 px, a few updates each).

Each test runs twice (ids gradio4 / gradio3) against the real app (see test_ui_browser.py). Runs
write into the test's temporary folder; every test leaves no job running behind it.
"""
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from sd_trainplan.plan import plan_from_raw
from sd_trainplan.plan.presets import load_presets
from sd_trainplan.plan.quantity import fmt
from sd_trainplan.plan.render import value_text
from sd_trainplan.train.apply import plan_to_train_config
from sd_trainplan.ui.fields import preset_values, raw_inputs
from sd_trainplan.ui.train_fields import field_values
from sd_trainplan.ui.hooks import STANDALONE
from sd_trainplan.ui.trainer_panel import start_config
from ui_harness import app_folder, cell, choose, click, job_state, message, open_tab, text_input, type_into

pytestmark = pytest.mark.browser
START = "dreambooth_advanced"  # the preset the page opens with
RUN = 120_000  # ms: a whole tiny run on a busy 2-core machine


@pytest.fixture
def tpage(page):
    """The page on its Train tab; afterwards no job is left running (the next test starts its own)."""
    open_tab(page, "Train")
    yield page
    for elem in ("stp_train_progress", "stp_lr_range_progress"):
        if job_state(page, elem).get_attribute("data-state") == "running":
            click(page, "stp_train_stop")
            expect(job_state(page, elem)).not_to_have_attribute("data-state", "running", timeout=RUN)


def fill(page, **fields):
    for key, value in fields.items():
        type_into(page, f"stp_train_{key}", str(value))


def start_new(page, button="stp_train_start", progress="stp_train_progress"):
    """Click a start button; wait until its tab follows a new job that runs; return the job's id."""
    before = job_state(page, progress).get_attribute("data-job")  # None while the tab shows no job
    click(page, button)
    other = re.compile(rf"^(?!{before}$)\d+$" if before else r"^\d+$")
    expect(job_state(page, progress)).to_have_attribute("data-job", other, timeout=30_000)
    return job_state(page, progress).get_attribute("data-job")


def screenshot(page, request, name):
    env = request.node.callspec.params["app_url"]
    shots = request.getfixturevalue("shots")
    shots.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / (f"{name}.png" if env == ".venv" else f"{name}-gradio3.png")))


def test_apply_fills_the_trainer_fields(page):
    preset = load_presets()["lora_seed001"]
    choose(page, "stp_preset", preset.title)
    type_into(page, "stp_images", "24")
    values = preset_values(preset.inputs)
    values["images"] = "24"
    expect(cell(page, "planned_updates")).to_have_text(value_text(plan_from_raw(raw_inputs(values))
                                                                  .quantities["planned_updates"]))
    want = field_values(plan_to_train_config(plan_from_raw(raw_inputs(values)), start_config(STANDALONE)))
    click(page, "stp_apply")
    expect(text_input(page, "stp_train_steps")).to_be_visible()  # Apply opens the Train tab
    expect(page.locator('#stp_train_method input[value="lora"]')).to_be_checked()
    for key in ("steps", "lr", "batch_size", "grad_accum", "resolution", "warmup", "val_split"):
        expect(text_input(page, f"stp_train_{key}"), key).to_have_value(want[key])
    expect(text_input(page, "stp_train_scheduler")).to_have_value(want["scheduler"])
    expect(text_input(page, "stp_train_rank")).to_be_visible()  # LoRA's own field is shown for LoRA
    expect(text_input(page, "stp_train_init_word")).to_be_hidden()
    expect(page.locator("#stp_train_status .stp-status")).to_contain_text(f"{want['steps']} weight updates of lora")
    # the demo's sample images are 64 px; the plan trains at 512: said now, with what fits, not only at Start
    assert want["resolution"] == "512"
    expect(page.locator("#stp_train_status .stp-status-warn")).to_contain_text(
        "12 of the 12 images in the dataset folder are too small to train at 512 px")
    expect(page.locator("#stp_train_status .stp-status-warn")).to_contain_text("use 80 px or less")
    type_into(page, "stp_train_steps", "12")  # each field stays editable
    expect(text_input(page, "stp_train_steps")).to_have_value("12")


def test_a_short_run_shows_progress_a_loss_plot_samples_and_the_file(tpage, tmp_path, request):
    page = tpage
    fill(page, output=tmp_path, name="five", steps=5, batch_size=2, resolution=64, val_every=2, sample_every=5,
         sample_steps=4)
    job = start_new(page)
    state = job_state(page)
    expect(state).to_have_attribute("data-state", "running")
    expect(state.locator(".stp-bar")).to_contain_text("/ 5 updates")
    expect(state).to_have_attribute("data-state", "done", timeout=RUN)
    assert state.get_attribute("data-job") == job
    expect(state.locator(".stp-bar-label")).to_have_text("5 / 5 updates · 100%")
    plot = page.locator("#stp_train_loss_plot svg.stp-chart")
    expect(plot.locator("polyline.stp-s-train")).to_have_count(1)
    expect(plot.locator("circle.stp-s-val")).to_have_count(4)   # before training, after 2, 4 and 5 updates
    expect(plot.locator("circle.stp-s-stable")).to_have_count(4)
    expect(page.locator("#stp_train_samples img")).to_have_count(1)
    path = page.locator("#stp_train_result .stp-export-path").first
    expect(path).to_have_text(re.compile(r"five\.safetensors$"))
    exported = Path(path.inner_text())
    assert exported.is_file() and exported.parent.parent == tmp_path
    assert "Traceback" not in page.content()


def test_stop_stops_a_longer_run_and_resume_continues_it(tpage, request):
    """Also the screenshot of the Train tab (trainer.png): the run goes to the default folder (runs/
    in the app's working folder, as a user's would)."""
    page = tpage
    fill(page, steps=300, batch_size=2, resolution=64, val_every=4, sample_every=8, sample_steps=6)
    start_new(page)
    state = job_state(page)
    expect(state).to_have_attribute("data-step", re.compile(r"^([6-9]|\d\d+)$"), timeout=RUN)
    # a reload mid-run: the fields show the running run's settings, not the page's defaults (issue 17)
    page.reload()
    page.wait_for_selector("#stp_tables tr[data-quantity=weight_updates]")
    open_tab(page, "Train")
    for key, value in (("steps", "300"), ("val_every", "4"), ("sample_every", "8"), ("sample_steps", "6")):
        expect(text_input(page, f"stp_train_{key}"), key).to_have_value(value)
    expect(page.locator("#stp_train_status .stp-status")).to_contain_text("A training run is running")
    state = job_state(page)
    expect(state).to_have_attribute("data-state", "running")
    click(page, "stp_train_stop")
    expect(state).to_have_attribute("data-state", "stopped", timeout=RUN)
    stopped_at = int(state.get_attribute("data-step"))
    assert 6 <= stopped_at < 300
    result = page.locator("#stp_train_result .stp-result").first
    expect(result).to_contain_text(f"Stopped at update {stopped_at}")
    run = Path(page.locator("#stp_train_result .stp-result-run code").first.inner_text())
    assert run.parent == app_folder(request.getfixturevalue("app_url")) / "runs" and run.name.startswith("demo-")
    checkpoints = sorted(p.name for p in run.glob("checkpoints/step-*.pt"))
    assert checkpoints[-1] == f"step-{stopped_at:06d}.pt"

    fill(page, steps=stopped_at + 8)  # continue it a little further than where it stopped
    start_new(page, "stp_train_resume")
    expect(page.locator("#stp_train_status .stp-status")).to_contain_text(f"at update {stopped_at}")
    expect(state).to_have_attribute("data-state", "done", timeout=RUN)
    expect(state).to_have_attribute("data-step", str(stopped_at + 8))
    expect(page.locator("#stp_train_result .stp-export-path")).to_have_text(str(run / "demo.safetensors"))
    first_val = page.locator("#stp_train_loss_plot circle.stp-s-val").first  # the curve from before the stop
    assert float(first_val.get_attribute("cx")) < 100
    expect(page.locator("#stp_train_samples img")).to_have_count((stopped_at + 8) // 8)  # the samples too
    page.set_viewport_size({"width": 1440, "height": 1180})
    screenshot(page, request, "trainer")


def test_lr_range_test_shows_its_curve_and_bounds_and_feeds_the_planner(tpage, tmp_path, request):
    page = tpage
    fill(page, output=tmp_path, batch_size=2, resolution=64)
    open_tab(page, "LR range test")
    type_into(page, "stp_lr_range_max", "0.01")
    type_into(page, "stp_lr_range_steps", "8")
    state = job_state(page, "stp_lr_range_progress")
    start_new(page, "stp_lr_range_start", "stp_lr_range_progress")
    expect(state).to_have_attribute("data-state", "done", timeout=RUN)
    plot = page.locator("#stp_lr_range_plot")
    expect(plot.locator("svg circle.stp-s-val")).to_have_count(9)  # before the sweep and after each update
    for mark in ("lower", "upper", "steepest", "midpoint"):
        expect(plot.locator(f'svg [data-mark="{mark}"]')).to_have_count(1)
    expect(plot.locator("svg rect.stp-band")).to_have_count(1)
    expect(plot.locator(".stp-caution")).to_contain_text("under-trained")
    lo, hi = (float(plot.locator(f'tr[data-suggestion="{k}"] td.value').inner_text()) for k in ("lower", "upper"))
    assert 0 < lo < hi <= 0.01
    page.set_viewport_size({"width": 1440, "height": 820})
    screenshot(page, request, "lr-range")

    click(page, "stp_lr_use_bounds")
    mid = fmt(float(f"{(lo + hi) / 2:.3g}"))
    expect(text_input(page, "stp_lr")).to_have_value(mid)  # the Plan tab, with the bounds written in
    expect(text_input(page, "stp_lr_bounds")).to_have_value(f"{fmt(lo)},{fmt(hi)}")
    values = preset_values(load_presets()[START].inputs)
    values.update(lr=mid, lr_bounds=f"{fmt(lo)},{fmt(hi)}")
    plan = plan_from_raw(raw_inputs(values))
    for q in ("lr_lo", "lr_hi", "planned_lr"):
        expect(cell(page, q), q).to_have_text(value_text(plan.quantities[q]))


def test_invalid_trainer_input_shows_the_fields_message(tpage, tmp_path):
    page = tpage
    before = job_state(page).get_attribute("data-job")
    fill(page, batch_size="two", resolution="60", data=tmp_path / "missing", lr="-1")
    click(page, "stp_train_start")
    expect(message(page, "stp_train_batch_size")).to_contain_text("whole number")
    expect(message(page, "stp_train_resolution")).to_contain_text("multiple of 8")
    expect(message(page, "stp_train_lr")).to_contain_text("must be a number > 0")
    expect(page.locator("#stp_train_status .stp-status")).to_contain_text("nothing was started")
    fill(page, batch_size="2", resolution="64", lr="1e-3")  # the dataset is checked once the fields parse
    click(page, "stp_train_start")
    expect(message(page, "stp_train_data")).to_contain_text("is not a folder")
    expect(message(page, "stp_train_batch_size")).to_have_count(0)
    expect(page.locator("#stp_train_status .stp-status")).to_contain_text("1 setting to fix")
    # nothing ran: the tab shows no job, or the one it showed (a page opened after earlier runs is
    # shown the latest job by the load event, which may land after `before` was read)
    now = job_state(page)
    assert now.get_attribute("data-job") == before or (before is None and now.get_attribute("data-state") != "running")
    assert "Traceback" not in page.content()
