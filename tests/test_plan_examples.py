"""Every worked example of DESIGN.md §3, through the public function and through `plan --json`."""
import json
import math
import subprocess
import sys

import pytest

from sd_trainplan.plan import compute_plan, plan_from_raw, parse_inputs

REL = 1e-9


def plan(**raw):
    result = plan_from_raw(raw)
    assert not result.errors, result.errors
    return result


def cli_json(*flags):
    out = subprocess.run([sys.executable, "-m", "sd_trainplan", "plan", "--json", *flags],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["quantities"]


# --- run arithmetic, seed 000: 26 images, steps counted as batches -----------------------------

SEED_000 = [  # (BS, GA, steps) -> (updates, epochs rounded down as the seed prints them)
    (13, 2, 3000, 1500, 1500),
    (3, 17, 3000, 176, 346),
    (3, 17, 150, 8, 17),
]


@pytest.mark.parametrize("bs,ga,steps,updates,epochs", SEED_000)
def test_seed000_examples(bs, ga, steps, updates, epochs):
    r = plan(images=26, batch_size=bs, grad_accum=ga, steps=steps, step_unit="batch")
    assert r.value("weight_updates") == updates
    assert r.value("batches") == steps
    assert math.floor(r.value("epochs")) == epochs
    assert r.value("planned_updates") == updates


@pytest.mark.parametrize("bs,ga,steps,updates,epochs", SEED_000)
def test_seed000_examples_cli(bs, ga, steps, updates, epochs):
    q = cli_json("--images", "26", "--batch-size", str(bs), "--grad-accum", str(ga), "--steps", str(steps),
                 "--step-unit", "batch")
    assert q["weight_updates"]["value"] == updates
    assert math.floor(q["epochs"]["value"]) == epochs


def test_full_cycle_and_uneven_batch():
    r = plan(images=26, batch_size=13, grad_accum=2, steps=10)
    assert r.value("full_cycle") is True
    assert not any(w.field == "batch_size" for w in r.warnings)
    r = plan(images=26, batch_size=3, grad_accum=17, steps=10)
    assert r.value("full_cycle") is False
    assert any(w.field == "batch_size" and "evenly" in w.message for w in r.warnings)


def test_update_unit_counts_batches_times_ga():
    r = plan(images=26, batch_size=3, grad_accum=17, steps=176)
    assert r.value("weight_updates") == 176
    assert r.value("batches") == 176 * 17
    assert r.value("images_seen") == 176 * 17 * 3


def test_val_images_is_exact_ceiling():
    # 100 * 0.07 is 7.000000000000001 in floats; the exact ceiling is 7
    r = plan(images=100, val_split=0.07)
    assert r.value("val_images") == 7
    assert r.value("train_images") == 93
    r = plan(images=20, val_split=0.2, repeats=3)
    assert (r.value("val_images"), r.value("train_images"), r.value("frames")) == (4, 48, 16)


# --- Dreambooth formulas, seed 002 -------------------------------------------------------------

@pytest.mark.parametrize("te,spf", [(False, 450), (True, 225)])
def test_768_on_512_model(te, spf):
    r = plan(resolution=768, base_resolution=512, train_text_encoder=te, lr=1e-5, images=3)
    assert r.value("resolution_factor") == pytest.approx(2.25, rel=REL)
    assert r.value("spf_base") == pytest.approx(spf, rel=REL)
    assert r.value("spf") == pytest.approx(spf, rel=REL)
    assert r.value("standard_steps") == 3 * spf


def test_frames_for_strength_at_1e6():
    r = plan(lr=1e-6)
    f = r.value("frames_for_strength")
    assert f["medium"] == pytest.approx(10, rel=REL)
    assert f["hard"] == pytest.approx(20, rel=REL)  # the seed's own example says 15: a typo
    assert "contradicts" in r.quantities["frames_for_strength"].formula


def test_lr_for_frames():
    r = plan(images=125, strength="medium")
    assert r.value("lr_for_frames") == pytest.approx(8e-8, rel=REL)
    assert r.value("advanced_steps") == 125 * 200
    assert r.value("planned_lr") == pytest.approx(8e-8, rel=REL)


def test_spf_a():
    assert plan(images=5).value("spf_a") == 134
    assert plan(images=5, train_text_encoder=True).value("spf_a") == 100


BS_GA_TE = [(10, 1, 1000), (10, 2, 778), (10, 5, 626), (10, 10, 601),
            (100, 1, 10000), (100, 2, 7142), (100, 4, 5150), (100, 5, 4651), (100, 10, 3447)]


@pytest.mark.parametrize("frames,bs,steps", BS_GA_TE)
def test_bs_ga_steps_with_te(frames, bs, steps):
    r = plan(images=frames, batch_size=bs, train_text_encoder=True)
    assert r.value("bs_ga_steps") == steps


def test_bs_ga_steps_cli():
    q = cli_json("--images", "100", "--batch-size", "4", "--train-text-encoder")
    assert q["bs_ga_steps"]["value"] == 5150
    assert q["planned_updates"]["value"] == 5150  # constant schedule: multiplier 1


def test_grad_accum_multiplies_by_sqrt_ga():
    r = plan(images=10, train_text_encoder=True, grad_accum=4)
    assert r.value("bs_ga_steps") == 2000


def test_class_images():
    assert plan(images=7).value("class_images") == 1400
    assert plan(images=7, train_text_encoder=True).value("class_images") == 700
    assert plan(images=10, val_split=0.2).value("class_images") == 8 * 200  # frames exclude held-out images


def test_standard_formula_and_warning():
    r = plan(images=4, lr=1e-5)
    assert r.value("standard_steps") == 800
    assert "typo" in r.quantities["standard_steps"].formula
    assert not any(w.field == "images" for w in r.warnings)
    r = plan(images=8, lr=1e-5)
    assert any(w.field == "images" and "5 frames" in w.message for w in r.warnings)


@pytest.mark.parametrize("name,mult", [("constant", 1.0), ("linear", 2.0), ("cosine", 2.0),
                                       ("cosine_with_restarts", 2.0)])
def test_scheduler_multiplier(name, mult):
    r = plan(images=10, train_text_encoder=True, scheduler=name)
    assert r.value("scheduler_multiplier") == pytest.approx(mult, rel=1e-3)
    assert r.value("scheduled_steps") == round(1000 * mult)


def test_polynomial_multiplier_is_about_two_and_seed_table_shown():
    r = plan(images=10, lr=1e-5, scheduler="polynomial")
    assert r.value("scheduler_multiplier") == pytest.approx(2.0, rel=0.02)
    assert "~2" in r.quantities["scheduler_multiplier"].formula
    # diffusers' polynomial decays to lr_end 1e-7, a tenth of a 1e-6 peak: the mean is 0.55 of it
    r = plan(images=10, lr=1e-6, scheduler="polynomial")
    assert r.value("scheduler_multiplier") == pytest.approx(1 / 0.55, rel=1e-3)


def test_multiplier_is_peak_over_mean_for_other_schedules():
    r = plan(images=10, lr=1e-6, steps=1000, scheduler="constant_with_warmup", warmup=500)
    assert r.value("scheduler_multiplier") == pytest.approx(1 / 0.75, rel=1e-3)
    r = plan(images=10, lr=1e-6, steps=1000, scheduler="5e-6:500, 2.5e-6")
    assert r.value("scheduler_multiplier") == pytest.approx(5 / 3.75, rel=1e-3)
    r = plan(images=10, lr=1e-6, steps=1000, scheduler="cyclical", lr_bounds="2e-7,1e-6")
    assert r.value("scheduler_multiplier") == pytest.approx(1e-6 / 6e-7, rel=0.02)


def test_dynamic_resolution():
    r = plan(images=10, train_text_encoder=True, resolutions="512,768")
    assert r.value("dynamic_resolution_steps") == 1625
    r = plan(images=10, resolutions="512,768,1024")
    assert r.value("dynamic_resolution_copies") == {"512": 1, "768": 2, "1024": 4}


# --- LR scaling, LoRA, precision floor ------------------------------------------------------

def test_lr_scaling():
    r = plan(lr=1e-6, batch_size=2, grad_accum=3, gpus=4)
    assert r.value("effective_batch") == 24
    assert r.value("scaled_lr_linear") == pytest.approx(24e-6, rel=REL)
    assert r.value("scaled_lr_sqrt") == pytest.approx(1e-6 * math.sqrt(24), rel=REL)


def test_scale_lr_choice_sets_planned_lr():
    # seed 003: the diffusers TI example, 5e-4 with --scale_lr at BS 1 GA 4 trains at 2e-3
    r = plan(method="ti", lr=5e-4, lr_scaling="linear", batch_size=1, grad_accum=4, steps=3000)
    assert r.value("planned_lr") == pytest.approx(2e-3, rel=REL)
    assert r.value("diffusers_learning_rate") == pytest.approx(2e-3, rel=REL)
    assert "5e-4" in r.quantities["diffusers_learning_rate"].formula


def test_lora_steps():
    assert plan(method="lora").value("lora_steps") == 2000
    r = plan(method="lora", batch_size=4, grad_accum=2)
    assert r.value("lora_steps") == 250
    assert r.value("planned_updates") == 250
    assert r.value("planned_lr") == pytest.approx(1e-4)


@pytest.mark.parametrize("weights,eps", [("bf16", 2 ** -7), ("fp16", 2 ** -10), ("fp32", 2 ** -23),
                                         ("mixed", 2 ** -23)])
def test_precision_floor(weights, eps):
    r = plan(weights=weights, lr=1e-3)
    assert r.value("precision_floor") == pytest.approx(0.03 * eps / 2, rel=REL)
    ti = plan(weights=weights, method="ti", lr=1e-3)
    assert ti.value("precision_floor") == pytest.approx(0.015 * eps / 2, rel=REL)


def test_precision_floor_warns_for_pure_bf16_at_dreambooth_lr():
    r = plan(weights="bf16", lr=1e-5)
    assert any(w.field == "lr" and "precision floor" in w.message for w in r.warnings)
    r = plan(weights="mixed", lr=1e-5)
    assert not any(w.field == "lr" for w in r.warnings)


# --- LR range test plan, seed 004 ----------------------------------------------------------

def test_sweep_steps_and_bounds():
    r = plan(images=20, val_split=0.2, sweep_epochs=100, batch_size=4, sweep_max_lr=1.5e-6, bounds_steps="50,300")
    assert r.value("sweep_steps") == 400
    assert r.value("lr_lo") == pytest.approx(1.875e-7, rel=REL)
    assert r.value("lr_hi") == pytest.approx(1.125e-6, rel=REL)
    assert r.value("lr_mid") == pytest.approx(6.5625e-7, rel=REL)
    assert "under-trained" in r.quantities["lr_mid"].formula


def test_sweep_cli_and_measured_bounds_take_precedence():
    q = cli_json("--preset", "lr_discovery_seed004")
    assert q["sweep_steps"]["value"] == 400
    assert q["lr_mid"]["value"] == pytest.approx(6.5625e-7, rel=REL)
    q = cli_json("--preset", "lr_discovery_seed004", "--lr-bounds", "1e-7,9e-7", "--lr", "")
    assert q["lr_mid"]["value"] == pytest.approx(5e-7, rel=REL)
    assert q["planned_lr"]["value"] == pytest.approx(5e-7, rel=REL)
    assert q["cyclical_schedule"]["value"]["base_lr"] == pytest.approx(1e-7)


# --- what to type where -------------------------------------------------------------------

def test_conventions_for_seed000():
    r = plan(images=26, batch_size=13, grad_accum=2, steps=3000, step_unit="batch", method="ti", lr=5e-3)
    assert r.value("a1111_max_steps") == 1500
    assert "1 update(s) per epoch" in r.quantities["a1111_max_steps"].formula
    assert r.value("diffusers_max_train_steps") == 1500
    assert r.value("kohya_max_train_steps") == 1500
    assert r.value("everydream2_max_epochs") == 1500
    assert r.value("onetrainer_epochs") == 1500


def test_a1111_clamps_grad_accum():
    # 26 images at BS 3: the WebUI lowers GA 17 to 26 // 3 = 8
    r = plan(images=26, batch_size=3, grad_accum=17, steps=100, method="ti", lr=5e-3)
    assert "GA 8" in r.quantities["a1111_max_steps"].formula
    assert any(w.field == "grad_accum" and "lowers" in w.message for w in r.warnings)


def test_a1111_schedule_string():
    r = plan(method="ti", lr=5e-3, steps=1000, scheduler="linear")
    text = r.value("a1111_learning_rate")
    pieces = [p.split(":") for p in text.split(", ")]
    assert int(pieces[-1][1]) == 1000
    rates = [float(p[0]) for p in pieces]
    assert rates == sorted(rates, reverse=True) and rates[0] < 5e-3
    assert plan(method="ti", lr=5e-3, steps=10).value("a1111_learning_rate") == "0.005"


# --- missing inputs stay visible ---------------------------------------------------------

def test_missing_inputs_are_null_with_reason():
    r = plan()
    for id in ("train_images", "standard_steps", "bs_ga_steps", "sweep_steps", "lr_mid", "epochs"):
        assert r.value(id) is None
        assert r.quantities[id].formula.startswith("needs ")
    required = ("val_images train_images effective_batch batches weight_updates epochs images_seen full_cycle "
                "resolution_factor spf_base spf standard_steps frames_for_strength lr_for_frames advanced_steps "
                "spf_a ads bs_ga_steps class_images scheduler_multiplier scheduled_steps scaled_lr_linear "
                "scaled_lr_sqrt lora_steps sweep_steps lr_lo lr_hi lr_mid dynamic_resolution_steps "
                "dynamic_resolution_copies precision_floor planned_updates").split()
    for result in (r, plan(images=10, lr=1e-6)):
        assert set(required) <= set(result.quantities)
        for q in result.quantities.values():
            assert q.source and q.group and q.formula


def test_ti_without_steps_says_what_it_needs():
    r = plan(method="ti", images=10)
    assert r.value("planned_updates") is None
    assert "Textual Inversion" in r.quantities["planned_updates"].formula


def test_epochs_input():
    r = plan(images=20, val_split=0.2, batch_size=4, epochs=100)
    assert r.value("planned_updates") == 400
    assert r.value("epochs") == pytest.approx(100)


def test_frozen_inputs_and_direct_call():
    inputs, errors = parse_inputs({"images": "12", "lr": "2e-6"})
    assert not errors
    with pytest.raises(Exception):
        inputs.images = 3
    assert compute_plan(inputs).value("standard_steps") == 12 * 1000


# --- every worked example again, through the CLI's JSON (one subprocess each) ---------------

CLI_EXAMPLES = [
    (["--images", "26", "--batch-size", "13", "--grad-accum", "2", "--steps", "3000", "--step-unit", "batch"],
     {"weight_updates": 1500, "epochs": 1500}),
    (["--images", "26", "--batch-size", "3", "--grad-accum", "17", "--steps", "3000", "--step-unit", "batch"],
     {"weight_updates": 176}),
    (["--images", "26", "--batch-size", "3", "--grad-accum", "17", "--steps", "150", "--step-unit", "batch"],
     {"weight_updates": 8}),
    (["--resolution", "768", "--lr", "1e-5"], {"spf_base": 450}),
    (["--resolution", "768", "--train-text-encoder"], {"spf_base": 225}),
    (["--lr", "1e-6"], {"frames_for_strength.medium": 10, "frames_for_strength.hard": 20}),
    (["--images", "125", "--strength", "medium"], {"lr_for_frames": 8e-8}),
    (["--images", "3"], {"spf_a": 134}),
    (["--images", "10", "--train-text-encoder", "--batch-size", "2"], {"bs_ga_steps": 778}),
    (["--images", "10", "--train-text-encoder", "--batch-size", "5"], {"bs_ga_steps": 626}),
    (["--images", "10", "--train-text-encoder", "--batch-size", "10"], {"bs_ga_steps": 601}),
    (["--images", "100", "--train-text-encoder", "--batch-size", "2"], {"bs_ga_steps": 7142}),
    (["--images", "100", "--train-text-encoder", "--batch-size", "5"], {"bs_ga_steps": 4651}),
    (["--images", "100", "--train-text-encoder", "--batch-size", "10"], {"bs_ga_steps": 3447}),
    (["--images", "10", "--train-text-encoder", "--resolutions", "512,768"], {"dynamic_resolution_steps": 1625}),
    (["--images", "20", "--val-split", "0.2", "--sweep-epochs", "100", "--batch-size", "4", "--sweep-max-lr", "1.5e-6",
      "--bounds-steps", "50,300"], {"sweep_steps": 400, "lr_lo": 1.875e-7, "lr_hi": 1.125e-6, "lr_mid": 6.5625e-7}),
    (["--images", "100", "--val-split", "0.07"], {"val_images": 7}),
    (["--images", "7", "--train-text-encoder"], {"class_images": 700}),
]


@pytest.mark.parametrize("flags,expected", CLI_EXAMPLES)
def test_worked_examples_through_the_cli(flags, expected):
    q = cli_json(*flags)
    for key, value in expected.items():
        id, _, sub = key.partition(".")
        got = q[id]["value"][sub] if sub else q[id]["value"]
        if id == "epochs":
            got = math.floor(got)
        assert got == pytest.approx(value, rel=1e-9), key


def test_constant_with_a_warmup_says_the_warmup_is_ignored():
    r = plan(images=10, lr=1e-6, warmup=100)
    assert any(w.field == "warmup" and "constant_with_warmup" in w.message for w in r.warnings)
    assert "warm-up" not in r.quantities["scheduler_multiplier"].formula
    r = plan(images=10, lr=1e-6, warmup=100, scheduler="constant_with_warmup")
    assert not any(w.field == "warmup" for w in r.warnings)
