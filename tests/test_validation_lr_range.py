"""A validation loss that can be read, the LR range test, and the gradient noise scale."""
import json
import statistics
import subprocess
import sys

import pytest
import torch

from sd_trainplan.models.diffusers_adapter import load_diffusers
from sd_trainplan.models.adapter import add_noise, target_for
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.data import load_dataset
from sd_trainplan.train.latent_cache import encode_items
from sd_trainplan.train.loop import train
from sd_trainplan.train.lr_range import lr_range_test
from sd_trainplan.train.noise_scale import GradProbe, NoiseScale
from sd_trainplan.train.validation import fixed_grid_loss


@pytest.fixture(scope="module")
def encoded(v_base_model, new_concept_dir):
    """A trained model (its loss depends strongly on the timestep, as real models' do)."""
    adapter = load_diffusers(str(v_base_model))
    data = load_dataset(str(new_concept_dir), 64, True, False, 0.0, 0)
    return adapter, encode_items(adapter, data.train, False), {i: it.caption for i, it in enumerate(data.train)}


def test_validation_is_bit_identical_and_leaves_rng_alone(encoded):
    adapter, latents, prompts = encoded
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = fixed_grid_loss(adapter, latents, prompts, seed=0, k=4)
    b = fixed_grid_loss(adapter, latents, prompts, seed=0, k=4)
    assert a == b
    assert torch.equal(torch.random.get_rng_state(), before)  # training's random state is untouched


def test_fixed_grid_is_far_steadier_than_random_timesteps(encoded):
    """At fixed weights, different noise seeds move the fixed-grid loss much less than they move a
    plain loss with random timesteps over the same number of samples."""
    adapter, latents, prompts = encoded
    k = 4
    fixed = [fixed_grid_loss(adapter, latents, prompts, seed=s, k=k) for s in range(8)]
    (bucket, bl), = latents.items()
    n = len(bl.items) * k
    random_t = []
    for s in range(8):
        g = torch.Generator().manual_seed(1000 + s)
        rows = torch.arange(len(bl.items)).repeat(k)
        x0 = bl.mean[rows]
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (n,), generator=g)
        cond = adapter.encode_prompts([prompts[bl.items[r]] for r in rows.tolist()])
        with torch.no_grad():
            pred = adapter.predict(add_noise(adapter.alphas_cumprod, x0, noise, t), t, cond)
        target = target_for(adapter, adapter.prediction_type, x0, noise, t)
        random_t.append(torch.nn.functional.mse_loss(pred, target).item())
    ratio = statistics.stdev(fixed) / statistics.stdev(random_t)
    assert ratio < 0.25, (fixed, random_t)


def test_lr_range_bounds_are_useful(shapes_dir, tmp_path):
    cfg = TrainConfig(method="dreambooth", data=str(shapes_dir), output=str(tmp_path), resolution=64, batch_size=4,
                      val_split=0.2, instance_prompt="[filewords]", val_timesteps=4)
    r = lr_range_test(cfg, mode="exp", max_lr=1e-1, steps=60, adapter=load_diffusers("tiny"))
    s = r.suggestions
    assert s["lower"].lr < s["upper"].lr and set(s) >= {"lower", "upper", "steepest", "midpoint", "minimum"}
    assert s["lower"].lr <= s["steepest"].lr <= s["minimum"].lr
    assert "under-trained" in r.caution
    data = json.loads(open(r.json_path).read())
    assert len(data["points"]) >= 60 and data["suggestions"]["midpoint"]["lr"] == pytest.approx(s["midpoint"].lr)

    def final_val(lr):
        return train(cfg.replace(lr=lr, steps=30, val_every=30), adapter=load_diffusers("tiny"), export=False).val_loss

    mid = final_val(s["midpoint"].lr)
    assert mid < final_val(s["lower"].lr / 100)
    assert mid < final_val(s["upper"].lr * 10)


def test_lr_range_cli_json_png_and_plan_round_trip(shapes_dir, tmp_path):
    from PIL import Image
    out = subprocess.run([sys.executable, "-m", "sd_trainplan", "lr-range", "--data", str(shapes_dir), "--resolution",
                          "64", "--batch-size", "4", "--max-lr", "2e-2", "--sweep-epochs", "2", "--val-timesteps", "2",
                          "--output", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    json_path, png_path = lines[-2], lines[-1]
    with Image.open(png_path) as im:
        assert im.size == (800, 480) and im.format == "PNG"
        assert len(set(im.convert("RGB").getdata())) > 20  # a drawn plot, not a blank canvas
    data = json.loads(open(json_path).read())
    assert data["steps"] == 7  # 14 training images x 2 epochs / BS 4, as the planner's sweep_steps counts
    lo, hi = data["suggestions"]["lower"]["lr"], data["suggestions"]["upper"]["lr"]
    plan = subprocess.run([sys.executable, "-m", "sd_trainplan", "plan", "--images", "18", "--lr-bounds", f"{lo},{hi}",
                           "--json"], capture_output=True, text=True, check=True)
    q = json.loads(plan.stdout)["quantities"]
    assert q["planned_lr"]["value"] == pytest.approx((lo + hi) / 2)
    assert q["cyclical_schedule"]["value"]["max_lr"] == pytest.approx(hi)


def test_noise_scale_on_a_problem_with_known_noise():
    """Per-sample loss 0.5|w - y|^2 with y ~ N(mu, s^2 I): G = w - mu, tr(Sigma) = d s^2."""
    d, sigma, bs, ga = 64, 0.5, 4, 8
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(d, generator=g)
    w = torch.nn.Parameter(mu + 0.2 * torch.randn(d, generator=g))
    true = d * sigma ** 2 / (w.detach() - mu).square().sum().item()
    ns = NoiseScale(bs, bs * ga)
    for _ in range(400):
        w.grad = None
        probe = GradProbe([w], ga)
        for _ in range(ga):
            y = mu + sigma * torch.randn(bs, d, generator=g)
            (0.5 * (w - y).square().sum(1).mean() / ga).backward()
            probe.after_micro()
        ns.update(probe.small_sq(), probe.big_sq())
    assert ns.b_simple == pytest.approx(true, rel=0.2)


def test_noise_scale_is_logged_when_accumulating(shapes_dir, tmp_path):
    result = train(TrainConfig(method="lora", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=4,
                               batch_size=2, grad_accum=3, log_every=2), adapter=load_diffusers("tiny"))
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(r["b_simple"] > 0 for r in records)
