"""The VRAM estimate against what the bench measured, and the 'does it fit' answer."""
import json
from pathlib import Path

import pytest

from sd_trainplan.plan import plan_from_raw
from sd_trainplan.plan.memory import estimate, estimate_gib, fit_advice

# step_bench/ldm_bench results (one GPU, with memory); the multi-GPU and profile files hold speed only.
# superseded/ keeps earlier runs: their rows of code that has changed since ("ours": the UNet's norms
# now compute in bf16) no longer describe the trainer; the recipe's and the ldm model's rows still do.
ROOT = Path(__file__).resolve().parents[1] / "bench" / "results"
RESULTS = sorted(p for p in list(ROOT.glob("*.json")) + list(ROOT.glob("superseded/*.json"))
                 if "res" in json.loads(p.read_text()))
STILL_CURRENT = {"recipe", "ldm_ours", "ldm_webui"}


def test_bench_results_are_recorded():
    assert RESULTS, "bench/results holds the measurements the estimate is calibrated on"


@pytest.mark.parametrize("path", RESULTS, ids=[p.stem for p in RESULTS])
def test_estimate_within_15_percent_of_every_measured_peak(path):
    data = json.loads(path.read_text())
    rows = [r for r in data["rows"] if (path.parent == ROOT or r["impl"] in STILL_CURRENT)
            and "peak_gib" in r]  # a row that stopped (an error, over the time budget) measured nothing
    assert rows
    for row in rows:
        est = estimate_gib(row["method"], row["bs"], data["res"], row["impl"])
        assert est == pytest.approx(row["peak_gib"], rel=0.15), row


def test_fit_advice():
    fits, text, settings = fit_advice("dreambooth", 4, 1, 512, 24)
    assert fits and "fits in 24 GB" in text and settings is None
    fits, text, settings = fit_advice("dreambooth", 4, 1, 512, 12)
    assert not fits and "does not fit in 12 GB" in text
    assert settings["batch_size"] * settings["grad_accum"] == 4  # the same effective batch
    assert estimate("dreambooth", settings["batch_size"], 512, optimizer=settings["optimizer"],
                    checkpointing=settings["gradient_checkpointing"]).total_gib <= 12 * 0.95
    assert fit_advice("lora", 1, 1, 512, 6)[0]
    fits, text, settings = fit_advice("dreambooth", 1, 1, 512, 4)
    assert not fits and settings is None and "LoRA or Textual Inversion" in text


def test_plan_shows_memory_and_warns_when_it_does_not_fit():
    r = plan_from_raw({"images": 20, "batch_size": 4, "vram_gb": 12})
    assert r.value("vram_estimate") == pytest.approx(16.01, abs=0.05)  # measured 15.64 and 15.71 GiB
    assert "use BS" in r.value("vram_fit")
    assert any(w.field == "batch_size" and "does not fit" in w.message for w in r.warnings)
    r = plan_from_raw({"images": 20, "method": "lora"})
    assert r.value("vram_fit") is None and r.quantities["vram_fit"].formula.startswith("needs vram_gb")


def test_an_sdxl_embedding_trains_a_vector_per_text_encoder():
    """SDXL's Textual Inversion vector is CLIP-L's 768 plus OpenCLIP bigG's 1280 numbers (the WebUI's
    clip_l/clip_g embedding), so its gradients and AdamW states are 2048 per vector, not SD1's 768."""
    from sd_trainplan.plan.memory import GIB, estimate
    sd1, sdxl = estimate("ti", 1, 512, "sd1", vectors=4), estimate("ti", 1, 1024, "sdxl", vectors=4)
    assert sd1.parts["gradients"] == 4 * 768 * 4 / GIB and sdxl.parts["gradients"] == 4 * 2048 * 4 / GIB
