"""The trainer's parts against real references: schedules vs diffusers' and torch's own, the keyed
random numbers, data handling, and the plan -> trainer mapping."""
import math
import random

import pytest
import torch

from sd_trainplan.plan import plan_from_raw
from sd_trainplan.plan import schedule as sched
from sd_trainplan.train import keyed_rng
from sd_trainplan.train.apply import plan_to_train_config
from sd_trainplan.train.buckets import bucket_for, bucket_sizes
from sd_trainplan.train.config import TrainConfig, check_config, lr_schedule
from sd_trainplan.train.data import render_prompt, shuffle_tags


@pytest.mark.parametrize("name", ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts",
                                  "polynomial"])
def test_schedules_match_diffusers_get_scheduler(name):
    from diffusers.optimization import get_scheduler
    total, warmup, lr = 100, 10, 1e-3
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    kw = {"num_cycles": 3} if name == "cosine_with_restarts" else {}
    ref = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=total, **kw)
    ours = sched.Schedule(name, lr, total, warmup=warmup if name != "constant" else 0, cycles=3)
    for step in range(total):
        assert sched.lr_at(ours, step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6, abs=1e-12), step
        opt.step()
        ref.step()


def test_one_cycle_matches_torch():
    total, lr = 200, 1e-3
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)
    ours = sched.Schedule("one_cycle", lr, total)
    for step in range(total):
        assert sched.lr_at(ours, step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6), step
        opt.step()
        ref.step()


def test_cyclical_and_webui_schedules():
    c = sched.Schedule("cyclical", 1e-3, 100, base_lr=1e-4, step_size=25)
    assert [sched.lr_at(c, s) for s in (0, 25, 50, 75)] == pytest.approx([1e-4, 1e-3, 1e-4, 1e-3])
    pieces = sched.parse_a1111("5e-3:100, 1e-3:1000, 1e-5", max_steps=3000)
    a = sched.Schedule("a1111", 5e-3, 3000, pieces=pieces)
    assert [sched.lr_at(a, s) for s in (0, 99, 100, 999, 1000, 2999)] == [5e-3, 5e-3, 1e-3, 1e-3, 1e-5, 1e-5]
    with pytest.raises(sched.ScheduleError):
        sched.parse_a1111("5e-3:100, 1e-3:50")


def test_trainer_uses_the_planner_schedule():
    cfg = TrainConfig(data="x", scheduler="cyclical", lr=1e-3, lr_min=2e-4, steps=40, cycle_steps=10)
    s = lr_schedule(cfg)
    assert (s.base_lr, s.step_size) == (2e-4, 10)
    assert "scheduler: " in check_config(cfg.replace(scheduler="exponential"))[0]


def test_keyed_normal_is_standard_and_independent_of_batching():
    keys = torch.arange(4000)
    z = keyed_rng.normal(7, keyed_rng.NOISE, keys, (4, 8, 8))
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    part = keyed_rng.normal(7, keyed_rng.NOISE, keys[1234:1240], (4, 8, 8))
    assert torch.equal(part, z[1234:1240])  # a sample's noise depends on its key alone
    assert not torch.equal(keyed_rng.normal(8, keyed_rng.NOISE, keys[:2], (4,)), z[:2, 0, 0, :4].reshape(2, 4))
    t = keyed_rng.integers(7, keyed_rng.TIMESTEP, keys, 1000)
    assert t.min() >= 0 and t.max() <= 999 and len(set(t.tolist())) > 900


def test_buckets():
    assert bucket_for((1024, 768), 512) == (576, 448)
    assert bucket_for((300, 300), 512) == (512, 512)
    for w, h in bucket_sizes(768):
        assert w % 64 == 0 and h % 64 == 0 and w * h <= 768 * 768 and max(w, h) <= 2 * min(w, h)


def test_prompts_and_tags():
    assert render_prompt("a photo of [name], [filewords]", "zwx", "red circle") == "a photo of zwx, red circle"
    rng = random.Random(0)
    tags = [shuffle_tags("sks, woman, red hair, smiling, outdoors", 1, rng) for _ in range(20)]
    assert all(t.startswith("sks, ") for t in tags) and len(set(tags)) > 3


def test_plan_to_train_config():
    plan = plan_from_raw({"method": "lora", "images": 20, "batch_size": 2, "grad_accum": 2, "val_split": 0.1,
                          "train_text_encoder": True, "scheduler": "cosine", "warmup": 50, "resolution": 768})
    cfg = plan_to_train_config(plan, TrainConfig(data="d", name="mine"))
    assert (cfg.method, cfg.batch_size, cfg.grad_accum, cfg.resolution) == ("lora", 2, 2, 768)
    assert cfg.steps == plan.value("planned_updates") == 500 and cfg.lr == pytest.approx(1e-4)
    assert cfg.text_encoder_lr == pytest.approx(5e-5) and cfg.scheduler == "cosine" and cfg.warmup == 50
    assert cfg.val_every == 25 and cfg.name == "mine" and not check_config(cfg)
    db = plan_from_raw({"method": "dreambooth", "images": 10, "train_text_encoder": True})
    cfg = plan_to_train_config(db, TrainConfig(data="d", class_prompt="a woman"))
    assert cfg.num_class_images == 1000 and cfg.steps == 1000 and cfg.lr == pytest.approx(1e-6)
    with pytest.raises(ValueError):
        plan_to_train_config(plan_from_raw({"images": 0}))


def test_8bit_adam_is_offered_not_forced(shapes_dir, tmp_path):
    from sd_trainplan.train.config import ConfigError
    from sd_trainplan.train.loop import prepare_checks
    import importlib.util
    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")  # the test environments do not install it
    with pytest.raises(ConfigError, match="optimizer: adamw8bit needs the bitsandbytes package"):
        prepare_checks(TrainConfig(data=str(shapes_dir), resolution=64, optimizer="adamw8bit"))


def test_min_snr_and_noise_offset_change_the_loss(shapes_dir, tmp_path):
    from sd_trainplan.models.diffusers_adapter import load_diffusers
    from sd_trainplan.train.loop import train
    base = TrainConfig(method="lora", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=2,
                       batch_size=2, log_every=1)
    losses = []
    for extra in ({}, {"min_snr_gamma": 0.05}, {"noise_offset": 0.1}):
        events = []
        train(base.replace(**extra), adapter=load_diffusers("tiny"), sinks=[events.append])
        losses.append([e.loss for e in events if e.kind == "step" and e.loss is not None])
    assert losses[0] != losses[1] and losses[0] != losses[2]
    assert all(math.isfinite(x) for run in losses for x in run)


def test_lora_scope_attention_by_default():
    from sd_trainplan.models.diffusers_adapter import load_diffusers
    from sd_trainplan.train.methods import scoped
    every = load_diffusers("tiny").lora_targets(text_encoder=True, conv=True)
    attention = scoped(every, "attention", conv=False)
    unet = [n for n in attention if n.startswith("lora_unet_")]
    assert unet and all(n.rsplit("_attn", 1)[1][1:] in ("_to_q", "_to_k", "_to_v", "_to_out_0") for n in unet)
    assert any(n.startswith("lora_te_") for n in attention)  # the text encoder's layers are kept
    assert any(n.endswith("ff_net_2") for n in every) and not any(n.endswith("ff_net_2") for n in attention)
    assert scoped(every, "transformer", conv=True) == every
    assert TrainConfig().lora_scope == "attention"



@pytest.mark.parametrize("shape", [(6, 16), (2, 5, 16), (2, 16, 3, 3)])
def test_lora_adds_up_down_times_alpha_over_rank(shape):
    """The LoRA's output (the scale folded into its up weight) is up(down(x)) * alpha / rank, in value and
    gradient, for a linear and a convolution; under bf16 autocast too."""
    from torch import nn
    from sd_trainplan.train.lora import LoRA
    torch.manual_seed(0)
    base = nn.Conv2d(16, 8, 3, padding=1) if len(shape) == 4 else nn.Linear(16, 24)
    lora = LoRA(base, rank=4, alpha=2.0)
    nn.init.normal_(lora.up.weight)  # not the starting no-op: the up weight counts
    x = torch.randn(*shape, requires_grad=True)
    got, want = lora(x), lora.up(lora.down(x)) * 0.5
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(got, [x, lora.up.weight, lora.down.weight], g),
                    torch.autograd.grad(want, [x, lora.up.weight, lora.down.weight], g)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got16, want16 = lora(x), lora.up(lora.down(x)) * 0.5
    assert got16.dtype == torch.bfloat16
    torch.testing.assert_close(got16.float(), want16.float(), rtol=2e-2, atol=2e-2)
