"""The plan command as a user scripts it: readable tables, stable JSON, clear errors with exit status 2."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sd_trainplan.plan import FIELDS, plan_from_raw
from sd_trainplan.plan.presets import load_presets

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    env = {**os.environ, "COLUMNS": "400"}  # no wrapping inside the phrases these tests look for
    return subprocess.run([sys.executable, "-m", "sd_trainplan", "plan", *args], capture_output=True, text=True,
                          env=env)


@pytest.mark.parametrize("args,flags", [
    (["--images", "0"], ["--images"]),
    (["--batch-size", "four", "--lr", "nan"], ["--batch-size", "--lr"]),
    (["--images", "10", "--batch-size", "11"], ["--batch-size"]),
    (["--resolution", "500"], ["--resolution"]),
    (["--scheduler", "exponential"], ["--scheduler"]),
    (["--val-split", "-0.1", "--grad-accum", "-2"], ["--val-split", "--grad-accum"]),
    (["--steps", "10", "--epochs", "2"], ["--epochs"]),
    (["--lr", "1e-3", "--json", "--strength", "extreme"], ["--strength"]),
])
def test_bad_input_exits_2_naming_each_flag(args, flags):
    out = run(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == len(flags)
    for line, flag in zip(sorted(lines), sorted(flags)):
        assert line.startswith(flag + ": "), line


def test_unknown_preset():
    out = run("--preset", "nope")
    assert out.returncode == 2 and out.stderr.startswith("--preset: unknown preset 'nope'")
    assert "dreambooth_standard" in out.stderr


def test_json_contract():
    out = run("--images", "26", "--batch-size", "13", "--grad-accum", "2", "--steps", "3000", "--step-unit", "batch",
              "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"inputs", "quantities", "warnings", "errors"}
    assert data["inputs"]["batch_size"] == 13 and data["errors"] == []
    q = data["quantities"]["weight_updates"]
    assert set(q) >= {"value", "unit", "formula", "source", "group"}
    assert q["value"] == 1500 and "3000" in q["formula"] and q["source"].startswith("seed 000")


def test_json_errors_still_print_json():
    out = run("--images", "x", "--json")
    assert out.returncode == 2
    data = json.loads(out.stdout)
    assert data["errors"] == [{"field": "images", "message": "must be a whole number (got 'x')"}]


def test_text_tables_group_figures_with_formulas():
    out = run("--preset", "dreambooth_advanced")
    assert out.returncode == 0
    for title in ("The plan", "Run arithmetic", "Dreambooth formulas", "What to type where"):
        assert title in out.stdout
    assert "LR = 1e-5 x F / FN = 1e-5 x 1 / 20 = 5e-7" in out.stdout


def test_warnings_are_shown_not_errors():
    out = run("--images", "8", "--lr", "1e-5", "--batch-size", "3")
    assert out.returncode == 0
    assert "== Warnings ==" in out.stdout and "evenly" in out.stdout and "5 frames" in out.stdout


@pytest.mark.parametrize("name", sorted(load_presets()))
def test_every_preset_is_valid_and_fills_inputs(name):
    preset = load_presets()[name]
    result = plan_from_raw(preset.inputs)
    assert not result.errors, result.errors
    assert set(preset.inputs) <= set(FIELDS)
    assert result.value("planned_updates") is not None
    assert result.value("planned_lr") is not None
    assert len(result.quantities) >= 40  # a preset never hides a figure


def test_presets_reproduce_their_sources():
    p = load_presets()
    assert plan_from_raw(p["full_cycle_seed000"].inputs).value("weight_updates") == 1500
    assert plan_from_raw(p["lr_discovery_seed004"].inputs).value("sweep_steps") == 400
    assert plan_from_raw(p["ti_diffusers_example"].inputs).value("planned_lr") == pytest.approx(2e-3)
    assert plan_from_raw(p["lora_seed001"].inputs).value("planned_updates") == 2000
    assert plan_from_raw(p["ti_webui_defaults"].inputs).value("a1111_max_steps") == 100000


def test_plan_package_is_pure_python():
    """plan/ imports nothing but the standard library and itself (no torch, gradio, numpy)."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in (ROOT / "sd_trainplan" / "plan").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    continue
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in stdlib, f"{path.name} imports {name}"
    code = "import sys, sd_trainplan.plan, sd_trainplan.cli; print(sorted(m for m in ('torch','gradio','numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
