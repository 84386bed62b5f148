"""The Train Planner page in headless Chromium, on gradio 4.40.0 and on gradio 3.41.2.

Every test runs twice (ids gradio4 / gradio3) against the real app started from the
environment pinned like Forge (.venv) and like AUTOMATIC1111 (.venv-a1111). Expected figures
come from the planner itself, so these tests check what the page shows a person: the
right numbers in the right rows, at once, and messages beside the fields they are about.
"""
import re

import pytest
from playwright.sync_api import expect

from sd_trainplan.plan import plan_from_raw
from sd_trainplan.plan.presets import load_presets
from sd_trainplan.plan.render import value_text
from sd_trainplan.ui.fields import BY_KEY, preset_values, raw_inputs
from ui_harness import cell, choose, message, open_more, pick_radio, set_checkbox, text_input, type_into

pytestmark = pytest.mark.browser
START = "dreambooth_advanced"  # the preset the page opens with


def expected(values, quantity):
    result = plan_from_raw(raw_inputs(values))
    assert not result.errors, result.errors
    return value_text(result.quantities[quantity])


def act(page, key, value):
    w = BY_KEY[key]
    if w.kind == "text":
        type_into(page, w.elem_id, value)
    elif w.kind == "dropdown":
        choose(page, w.elem_id, value)
    elif w.kind == "radio":
        pick_radio(page, w.elem_id, value)
    else:
        set_checkbox(page, w.elem_id, value)


# (field, new value, a figure that must change). Applied in order, each on top of the last.
EVERY_INPUT = [
    ("images", "26", "frames"), ("repeats", "3", "train_images"), ("val_split", "0.2", "val_images"),
    ("batch_size", "2", "effective_batch"), ("grad_accum", "3", "effective_batch"), ("gpus", "2", "effective_batch"),
    ("lr", "2e-6", "planned_lr"), ("lr_scaling", "sqrt", "planned_lr"),
    ("resolution", "768", "resolution_factor"), ("base_resolution", "768", "resolution_factor"),
    ("train_text_encoder", True, "spf_base"), ("strength", "hard", "lr_for_frames"),
    ("scheduler", "cosine", "scheduler_multiplier"), ("warmup", "600", "scheduler_multiplier"),
    ("steps", "900", "weight_updates"), ("step_unit", "batch", "weight_updates"),
    ("steps", "", "weight_updates"), ("epochs", "10", "weight_updates"),
    ("method", "ti", "precision_floor"), ("weights", "bf16", "precision_floor"),
    ("weight_scale", "0.1", "precision_floor"),
    ("resolutions", "512,768", "dynamic_resolution_steps"), ("sweep_epochs", "50", "sweep_steps"),
    ("sweep_max_lr", "1e-5", None),  # shows nothing until the bounds' steps are given:
    ("bounds_steps", "20,80", "lr_lo"), ("sweep_max_lr", "2e-5", "lr_lo"), ("lr_bounds", "1e-6,4e-6", "lr_lo"),
]


def test_every_input_updates_the_tables_at_once(page):
    values = preset_values(load_presets()[START].inputs)
    for key, value, quantity in EVERY_INPUT:
        if BY_KEY[key].section == "more":
            open_more(page)
        before = dict(values)
        values[key] = value
        act(page, key, value)
        if quantity is None:
            continue
        after = expected(values, quantity)
        assert after != expected(before, quantity), f"test data: {key}={value!r} should change {quantity}"
        expect(cell(page, quantity), f"{key} -> {quantity}").to_have_text(after)
    expect(page.locator("#stp_status .stp-status")).not_to_contain_text("to fix")


def test_seed_000_example_26_images_bs13_ga2_3000_batch_steps(page):
    type_into(page, "stp_images", "26")
    type_into(page, "stp_batch_size", "13")
    type_into(page, "stp_grad_accum", "2")
    type_into(page, "stp_steps", "3000")
    pick_radio(page, "stp_step_unit", "batch")
    expect(cell(page, "weight_updates")).to_have_text(re.compile(r"^1500 updates$"))
    expect(cell(page, "epochs")).to_have_text(re.compile(r"^1500 epochs$"))
    expect(cell(page, "full_cycle")).to_have_text("yes")
    expect(cell(page, "weight_updates", "formula")).to_contain_text("floor(3000 / 2) = 1500")
    expect(cell(page, "weight_updates", "source")).to_have_text("seed 000")
    expect(page.locator('#stp_summary [data-card="planned_updates"]')).to_contain_text("1500")


def test_choosing_a_preset_fills_the_inputs(page):
    presets = load_presets()
    p = presets["full_cycle_seed000"]
    choose(page, "stp_preset", p.title)
    for key, want in (("images", "26"), ("batch_size", "13"), ("grad_accum", "2"), ("steps", "3000"),
                      ("lr", "0.005")):
        expect(text_input(page, BY_KEY[key].elem_id)).to_have_value(want)
    expect(page.locator('#stp_step_unit input[value="batch"]')).to_be_checked()
    expect(page.locator('#stp_method input[value="ti"]')).to_be_checked()
    expect(cell(page, "weight_updates")).to_have_text("1500 updates")
    expect(page.locator("#stp_preset_note .stp-preset-note")).to_contain_text(p.description)

    p = presets["lr_discovery_seed004"]  # the next preset replaces every input, including the hidden ones
    choose(page, "stp_preset", p.title)
    open_more(page)
    for key, want in (("val_split", "0.2"), ("epochs", "100"), ("steps", ""), ("warmup", "400"),
                      ("bounds_steps", "50,300"), ("sweep_max_lr", "1.5e-6")):
        expect(text_input(page, BY_KEY[key].elem_id)).to_have_value(want)
    expect(text_input(page, "stp_scheduler")).to_have_value("linear")
    expect(page.locator("#stp_te input[type=checkbox]")).to_be_checked()
    expect(cell(page, "sweep_steps")).to_have_text("400 updates")
    expect(cell(page, "lr_mid")).to_have_text(expected(preset_values(p.inputs), "lr_mid"))


def _below(page, field_id, msg_locator):
    """The message sits right under its field, in the same column."""
    f = page.locator(f"#{field_id}").first.bounding_box()
    m = msg_locator.first.bounding_box()
    assert m["y"] >= f["y"] + f["height"] - 2 and m["y"] - (f["y"] + f["height"]) < 40, (f, m)
    assert abs(m["x"] - f["x"]) < 30 and m["width"] <= f["width"] + 30, (f, m)


def test_invalid_input_shows_its_message_beside_the_field(page):
    expect(cell(page, "frames")).to_have_text("20 images")
    type_into(page, "stp_images", "0")
    expect(message(page, "stp_images")).to_have_text(re.compile(r"must be >= 1"))
    _below(page, "stp_images", message(page, "stp_images"))
    expect(page.locator("#stp_status .stp-status")).to_contain_text("1 input to fix")
    expect(cell(page, "frames")).to_have_text("20 images")  # the last valid figures stay, the page stays usable

    type_into(page, "stp_resolution", "500")
    type_into(page, "stp_lr", "fast")
    expect(message(page, "stp_resolution")).to_contain_text("multiple of 8")
    expect(message(page, "stp_lr")).to_contain_text("must be a number")
    _below(page, "stp_lr", message(page, "stp_lr"))
    expect(page.locator("#stp_status .stp-status")).to_contain_text("3 inputs to fix")
    assert "Traceback" not in page.content()

    type_into(page, "stp_images", "10")
    type_into(page, "stp_resolution", "512")
    type_into(page, "stp_lr", "")
    expect(message(page, "stp_images")).to_have_count(0)
    expect(message(page, "stp_lr")).to_have_count(0)
    expect(cell(page, "frames")).to_have_text("10 images")

    type_into(page, "stp_batch_size", "11")  # more than the images: the message goes to batch size
    expect(message(page, "stp_batch_size")).to_contain_text("more than the 10 training images")
    type_into(page, "stp_batch_size", "3")  # a warning (not an error) beside the same field
    expect(message(page, "stp_batch_size")).to_contain_text("do not split evenly")
    expect(page.locator("#stp_batch_size_msg .stp-msg-warning")).to_have_count(1)
    expect(cell(page, "effective_batch")).to_have_text("3 images/update")


def test_dataset_folder_counts_its_images(page, tmp_path):
    for i in range(7):
        (tmp_path / f"img{i}.png").write_bytes(b"not really a png")
    for i in range(3):
        (tmp_path / f"photo{i}.JPG").write_bytes(b"")
    (tmp_path / "img0.txt").write_text("a caption")
    (tmp_path / "notes.gif").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.png").write_bytes(b"")
    type_into(page, "stp_dataset", str(tmp_path))
    expect(text_input(page, "stp_images")).to_have_value("10")
    expect(message(page, "stp_dataset")).to_contain_text("10 images (7 png, 3 jpg), 1 with a .txt caption")
    expect(cell(page, "frames")).to_have_text("10 images")

    type_into(page, "stp_images", "12")  # typed over: the folder's count is pointed out beside Images
    expect(message(page, "stp_images")).to_contain_text("the dataset folder has 10 images")

    missing = tmp_path / "no such folder"
    type_into(page, "stp_dataset", str(missing))
    expect(message(page, "stp_dataset")).to_contain_text("does not exist")
    _below(page, "stp_dataset", message(page, "stp_dataset"))
    expect(text_input(page, "stp_images")).to_have_value("12")
    expect(cell(page, "frames")).to_have_text("12 images")


def test_fast_typing_ends_on_what_was_typed(page):
    box = text_input(page, "stp_steps")
    box.fill("")
    box.press_sequentially("123456", delay=0)  # faster than one round trip per key
    expect(cell(page, "weight_updates")).to_have_text("123456 updates")


def test_lr_plot_follows_the_schedule(page):
    line = page.locator("#stp_lr_plot svg polyline")
    expect(line).to_have_count(1)
    flat = line.get_attribute("points")
    choose(page, "stp_scheduler", "cosine")
    expect(page.locator("#stp_lr_plot .stp-plot-title")).to_contain_text("cosine")
    assert line.get_attribute("points") != flat
    type_into(page, "stp_warmup", "500")
    expect(page.locator("#stp_lr_plot svg")).to_contain_text("warm-up")


def test_screenshot_of_the_planner(page, request, shots):
    """planner.png (gradio 4.40, the standalone app) and planner-gradio3.png: the README's, with `make
    screenshots`."""
    choose(page, "stp_preset", load_presets()["dreambooth_advanced"].title)
    type_into(page, "stp_images", "24")
    set_checkbox(page, "stp_te", True)
    choose(page, "stp_scheduler", "cosine")
    type_into(page, "stp_warmup", "100")
    type_into(page, "stp_batch_size", "5")
    expect(message(page, "stp_batch_size")).to_contain_text("do not split evenly")
    expect(page.locator("#stp_lr_plot svg")).to_contain_text("warm-up")
    page.set_viewport_size({"width": 1440, "height": 1180})
    page.evaluate("window.scrollTo(0, 0)")
    shots.mkdir(parents=True, exist_ok=True)
    env = request.node.callspec.params["app_url"]
    page.screenshot(path=str(shots / ("planner.png" if env == ".venv" else "planner-gradio3.png")))


def test_the_page_asks_nothing_of_the_internet(browser, app_url):
    """No font CDN, no analytics: the page works on a machine without internet. The only outside
    address is gradio 4's own template's async iframe-resizer script, which nothing waits for."""
    outside = []
    page = browser.new_page()
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(app_url) else None)
    page.goto(app_url)
    page.wait_for_selector("#stp_tables tr[data-quantity=weight_updates]")
    type_into(page, "stp_images", "30")
    expect(cell(page, "frames")).to_have_text("30 images")
    page.close()
    assert [u for u in outside if "iframeResizer" not in u] == []
