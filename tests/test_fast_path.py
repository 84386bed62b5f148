"""The fast path computes what eager mode computes.

On a CPU the CUDA-graph path runs its own code (static buffers, warm-up and restore, replay)
without recording, and must match eager mode exactly; bf16 compute must match fp32 within bf16
tolerance. On a GPU (skipped in CI) the recorded graphs must match eager mode after 10 updates.
"""
import json

import pytest
import torch

from sd_trainplan.models.diffusers_adapter import load_diffusers
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.loop import train


def losses(run_dir):
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]  # validation records hold val_loss only


def final_state(run_dir):
    from sd_trainplan.train.checkpoint import latest_checkpoint
    return torch.load(latest_checkpoint(run_dir)[1], weights_only=False)["trainable"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from sd_trainplan.models.tiny_diffusers import save_tiny_folder
    return save_tiny_folder(tmp_path_factory.mktemp("tiny") / "model", seed=7)


def tiny(kind, folder, device="cpu"):
    """The built-in tiny model in diffusers' classes, or the same architecture as a folder, which loads
    into models/plain's (what a user's SD1/SD2 model runs on)."""
    adapter = load_diffusers("tiny" if kind == "diffusers" else str(folder), device=device)
    assert ("plain torch UNet" in adapter.describe()) == (kind == "plain")
    return adapter


@pytest.mark.parametrize("kind", ["diffusers", "plain"])
@pytest.mark.parametrize("method", ["lora", "ti", "dreambooth"])
def test_fast_path_code_matches_eager_on_cpu(shapes_dir, tmp_path, method, kind, tiny_folder):
    cfg = TrainConfig(method=method, data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=6, batch_size=2,
                      grad_accum=2, lr=2e-3, flip=0.5, log_every=1, token="zwx", scheduler="cosine", warmup=2,
                      noise_scale=False)
    eager = train(cfg.replace(cuda_graphs=False), adapter=tiny(kind, tiny_folder))
    fast = train(cfg, adapter=tiny(kind, tiny_folder), graph_capture=False)
    assert losses(fast.run_dir) == pytest.approx(losses(eager.run_dir), rel=1e-6)
    a, b = final_state(eager.run_dir), final_state(fast.run_dir)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-7)


def test_bf16_compute_matches_fp32_within_bf16_tolerance(shapes_dir, tmp_path):
    cfg = TrainConfig(method="lora", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=8, batch_size=2,
                      lr=1e-3, log_every=1)
    fp32 = losses(train(cfg.replace(precision="fp32"), adapter=load_diffusers("tiny")).run_dir)
    bf16 = losses(train(cfg.replace(precision="bf16"), adapter=load_diffusers("tiny")).run_dir)
    assert bf16 == pytest.approx(fp32, rel=3e-2)
    assert bf16 != fp32  # bf16 really ran


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", ["diffusers", "plain"])
@pytest.mark.parametrize("method", ["dreambooth", "lora", "ti"])
def test_cuda_graphs_match_eager_after_10_updates(shapes_dir, tmp_path, method, kind, tiny_folder):
    cfg = TrainConfig(method=method, data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=10,
                      batch_size=2, grad_accum=2, lr=1e-3, log_every=1, token="zwx", device="cuda", noise_scale=False,
                      val_every=5, sample_every=10)  # validation and samples run outside autocast
    events = []
    graphed = train(cfg, adapter=tiny(kind, tiny_folder, "cuda"), sinks=[events.append])
    assert not any("CUDA graphs off" in e.message for e in events)
    eager = train(cfg.replace(cuda_graphs=False), adapter=tiny(kind, tiny_folder, "cuda"))
    assert losses(graphed.run_dir) == pytest.approx(losses(eager.run_dir), rel=1e-3)
    a, b = final_state(eager.run_dir), final_state(graphed.run_dir)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-5)


def test_compile_on_a_cpu_says_it_trains_uncompiled(shapes_dir, tmp_path):
    cfg = TrainConfig(method="lora", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=2, batch_size=2,
                      lr=1e-3, log_every=1, compile=True)
    events = []
    run = train(cfg, adapter=load_diffusers("tiny"), sinks=[events.append])
    assert run.steps_done == 2
    assert any("compile: only a standalone model on a CUDA device" in e.message for e in events)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["dreambooth", "lora", "ti"])
def test_compiled_unet_matches_uncompiled_after_8_updates(shapes_dir, tmp_path, method):
    """`compile = true` (torch.compile's fused kernels inside the recorded update) trains what the
    uncompiled update trains, within the rounding of reordered bf16 arithmetic."""
    cfg = TrainConfig(method=method, data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=8,
                      batch_size=2, lr=1e-3, log_every=1, token="zwx", device="cuda", noise_scale=False, val_every=4)
    events = []
    compiled = train(cfg.replace(compile=True), adapter=load_diffusers("tiny", device="cuda"), sinks=[events.append])
    assert any("compiling the UNet" in e.message for e in events)
    assert not any("CUDA graphs off" in e.message for e in events)
    plain = train(cfg, adapter=load_diffusers("tiny", device="cuda"))
    assert losses(compiled.run_dir) == pytest.approx(losses(plain.run_dir), rel=2e-2)
    a, b = final_state(plain.run_dir), final_state(compiled.run_dir)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=2e-2, atol=1e-3)
