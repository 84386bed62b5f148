"""What the planner panel renders, without a browser or gradio: the field table, the HTML
tables, the messages beside each field, the LR plot and the dataset count."""
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from sd_trainplan.plan import FIELDS, GROUPS, SCHEDULERS, plan_from_raw
from sd_trainplan.plan.presets import load_presets
from sd_trainplan.plan.render import value_text
from sd_trainplan.ui.dataset import count_images
from sd_trainplan.ui.fields import ALL, DATASET, preset_values, raw_inputs
from sd_trainplan.ui.plot import lr_plot_html
from sd_trainplan.ui.tables import tables_html
from sd_trainplan.ui.view import make_view

REQUIRED_IDS = ("stp_method stp_images stp_dataset stp_repeats stp_val_split stp_batch_size stp_grad_accum stp_gpus"
                " stp_lr stp_resolution stp_base_resolution stp_te stp_strength stp_scheduler stp_warmup stp_steps"
                " stp_epochs stp_step_unit").split()


def test_every_planner_field_has_one_input_with_a_stable_id():
    assert {w.key for w in ALL} == set(FIELDS) | {DATASET}
    ids = [w.elem_id for w in ALL]
    assert len(ids) == len(set(ids)) and all(i.startswith("stp_") for i in ids)
    assert set(REQUIRED_IDS) <= set(ids)


@pytest.mark.parametrize("name", sorted(load_presets()))
def test_a_preset_through_the_inputs_gives_the_presets_plan(name):
    preset = load_presets()[name]
    via_form = plan_from_raw(raw_inputs(preset_values(preset.inputs)))
    direct = plan_from_raw(dict(preset.inputs))
    assert not via_form.errors
    assert {k: q.value for k, q in via_form.quantities.items()} == {k: q.value for k, q in direct.quantities.items()}


class Rows(HTMLParser):
    """Collects each <tr data-quantity> with the text of its cells, by class."""

    def __init__(self):
        super().__init__()
        self.rows, self.titles, self._row, self._cell, self._in_title = {}, [], None, None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-quantity" in a:
            self._row = self.rows.setdefault(a["data-quantity"], {})
        elif tag == "td" and self._row is not None:
            self._cell = a.get("class")
            self._row[self._cell] = ""
        elif tag == "span" and a.get("class") == "stp-group-title":
            self._in_title = True
            self.titles.append("")

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "span":
            self._in_title = False

    def handle_data(self, data):
        if self._row is not None and self._cell:
            self._row[self._cell] += data
        if self._in_title:
            self.titles[-1] += data


def test_tables_have_one_row_per_quantity_with_value_formula_and_source_cells():
    result = plan_from_raw({"images": "26", "batch_size": "13", "grad_accum": "2", "steps": "3000",
                            "step_unit": "batch", "method": "ti", "lr": "5e-3"})
    parsed = Rows()
    parsed.feed(tables_html(result))
    assert list(parsed.rows) == list(result.quantities)
    assert parsed.titles == [GROUPS[g] for g in GROUPS if any(q.group == g for q in result.quantities.values())]
    row = parsed.rows["weight_updates"]
    assert set(row) == {"label", "value", "formula", "source"}
    assert re.sub(r"\s+", " ", row["value"]).strip() == "1500 updates"
    assert "floor(3000 / 2) = 1500" in row["formula"] and row["source"] == "seed 000"
    assert re.sub(r"\s+", " ", parsed.rows["epochs"]["value"]).strip() == "1500 epochs"
    for id, q in result.quantities.items():
        if q.value is None:
            assert parsed.rows[id]["value"] == "—" and parsed.rows[id]["formula"].startswith("needs ")
        elif not isinstance(q.value, (dict, bool)):
            assert re.sub(r"\s+", " ", parsed.rows[id]["value"]).strip() == value_text(q)


def test_what_the_user_typed_is_escaped_in_the_page():
    view = make_view({**preset_values({}), DATASET: "/tmp/<script>alert(1)</script>", "lr": "<i>x</i>"}, True)
    shown = view.messages[DATASET] + view.messages["lr"] + view.status
    assert "<script>" not in shown and "<i>" not in shown
    assert "&lt;script&gt;" in view.messages[DATASET] and "&lt;i&gt;" in view.messages["lr"]


def test_errors_and_warnings_go_beside_the_field_they_name():
    values = preset_values({"images": 10})
    values.update(images="10", batch_size="11", resolution="500", lr="fast")
    view = make_view(values)
    assert view.tables is None and view.cards is None  # the page keeps the last valid figures
    assert "more than the 10 training images" in view.messages["batch_size"]
    assert "multiple of 8" in view.messages["resolution"]
    assert "must be a number" in view.messages["lr"]
    assert "stp-msg-error" in view.messages["lr"]
    assert "3 inputs to fix" in view.status
    assert not view.messages["images"]

    values.update(batch_size="3", resolution="512", lr="")
    view = make_view(values)
    assert view.tables and "stp-msg-warning" in view.messages["batch_size"]
    assert "do not split evenly" in view.messages["batch_size"] and "1 note" in view.status


def test_dataset_folder_fills_images_and_says_what_it_found(tmp_path):
    for name in ("a.png", "b.JPEG", "c.webp", "d.bmp", "e.jpg", "f.gif", "a.txt", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "10_token class").mkdir()
    (tmp_path / "10_token class" / "x.png").write_bytes(b"")
    count = count_images(str(tmp_path))
    assert count.images == 5 and count.captions == 1 and count.subfolder_images == 1
    view = make_view({**preset_values({}), DATASET: str(tmp_path)}, from_folder=True)
    assert view.images == "5" and view.result.value("frames") == 5
    assert "5 images" in view.messages[DATASET] and "stp-msg-info" in view.messages[DATASET]

    missing = make_view({**preset_values({"images": 7}), DATASET: str(tmp_path / "nope")}, from_folder=True)
    assert missing.images is None and missing.result.value("frames") == 7
    assert "does not exist" in missing.messages[DATASET] and "stp-msg-error" in missing.messages[DATASET]
    file_view = make_view({**preset_values({}), DATASET: str(tmp_path / "a.png")}, from_folder=True)
    assert "is a file, not a folder" in file_view.messages[DATASET]
    empty = tmp_path / "10_token class" / "empty"
    empty.mkdir()
    assert "No images" in make_view({**preset_values({}), DATASET: str(empty)}, True).messages[DATASET]


@pytest.mark.parametrize("scheduler", list(SCHEDULERS) + ["5e-3:100, 1e-3:1000"])
def test_lr_plot_is_an_inline_svg_of_the_schedule(scheduler):
    result = plan_from_raw({"images": "20", "lr": "1e-4", "steps": "1000", "scheduler": scheduler, "warmup": "50"})
    html = lr_plot_html(result.schedule)
    assert html.count("<svg") == 1 and "<polyline" in html
    points = re.search(r'points="([^"]+)"', html).group(1).split()
    assert len(points) > 50
    ys = [float(p.split(",")[1]) for p in points]
    assert all(0 <= y <= 200 for y in ys)


def test_lr_plot_says_what_it_needs_without_a_schedule():
    result = plan_from_raw({"method": "ti"})
    assert result.schedule is None
    view = make_view(preset_values({"method": "ti"}))
    assert "<svg" not in view.plot and "needs" in view.plot


def test_the_plan_command_does_not_import_gradio_or_torch():
    code = "import sys, sd_trainplan.cli; print('gradio' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_ui_code_parses_as_python_3_10_and_imports_no_3_11_module():
    """The WebUI host runs Python 3.10; no 3.10 interpreter can be installed here, so check the syntax
    (ast with feature_version) and the standard-library modules that are new in 3.11."""
    import ast
    from pathlib import Path
    ui = Path(__file__).resolve().parents[1] / "sd_trainplan" / "ui"
    for path in sorted(ui.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 10))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & {"tomllib", "wsgiref.types"}, path
        assert "modules" not in names, f"{path}: only sd_trainplan/host/ may import the WebUI's modules.*"


def test_images_too_small_for_the_resolution_are_flagged_beside_it_with_one_that_fits(tmp_path):
    from PIL import Image
    from sd_trainplan.train.buckets import too_small
    for i in range(3):
        Image.new("RGB", (64, 64), (40 * i, 90, 200)).save(tmp_path / f"small{i}.png")
    Image.new("RGB", (768, 768), (200, 90, 40)).save(tmp_path / "big.png")
    view = make_view({DATASET: str(tmp_path), "images": "4", "resolution": "512"})
    note = view.messages["resolution"]
    assert "3 of the 4 images in the dataset folder are too small to train at 512 px" in note
    assert "the smallest is 64x64" in note and "use 80 px or less" in note
    assert not too_small([(64, 64)], 80) and too_small([(64, 64)], 88)  # 80 px is the trainer's own limit
    assert "too small" not in make_view({DATASET: str(tmp_path), "images": "4", "resolution": "64"}).messages["resolution"]
    assert "too small" not in make_view({"images": "4", "resolution": "512"}).messages["resolution"]  # no folder
