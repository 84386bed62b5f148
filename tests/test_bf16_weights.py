"""Dreambooth's fast-path update with bf16 copies of the weights beside the fp32 masters
(train/bf16_weights.py): it trains what autocast's update trains, a stopped run resumes to the same
weights bit for bit, and the checkpoint and export hold the fp32 masters. On the CPU in Triton's
interpreter (the fast path's code without capture, precision bf16), and with real CUDA graphs on a GPU."""
import json
from pathlib import Path

import pytest
import torch

from child_result import child_result
from test_fast_path import change_agreement, final_state

RUN = r"""
import json, sys
from sd_trainplan.train import bf16_weights
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.loop import train
folder, data, out, device, steps, stop_at, resume, fail_at, te = sys.argv[1:10]
steps = {"n": 0}
real = bf16_weights.Bf16Weights.step
real_take = bf16_weights.Bf16Weights.take_grads
def take(self):
    if steps["n"] + 1 == int(fail_at):  # as a recording that fails: the loop goes on eagerly
        raise RuntimeError("recording failed here")
    return real_take(self)
bf16_weights.Bf16Weights.take_grads = take
real_flat = bf16_weights._Flat._flat
made = []
def flat(self, *a):
    made.append(self.n > bf16_weights.PAD * 16)  # the model's buffers, not the start thread's trial
    made[:] = [m for m in made if m]
    if int(fail_at) < 0 and len(made) == -int(fail_at):  # as a GPU without the memory for this buffer
        raise RuntimeError("CUDA out of memory (as a test)")
    return real_flat(self, *a)
bf16_weights._Flat._flat = flat
def counted(self, *a):
    steps["n"] += 1
    return real(self, *a)
bf16_weights.Bf16Weights.step = counted
stops = {"n": 0}
def stop():
    stops["n"] += 1
    return stops["n"] >= int(stop_at)
cfg = TrainConfig(method="dreambooth", model=folder, data=data, output=out, resolution=64, steps=int(sys.argv[5]),
                  batch_size=2, lr=1e-3, log_every=1, noise_scale=False, device=device, precision="bf16",
                  save_every=1, keep_last=10, final_checkpoint="on", scheduler="cosine", warmup=2,
                  train_text_encoder=te == "te")
events = []
run = train(cfg, graph_capture=device != "cpu", stop=stop, resume=resume if resume != "-" else None,
            sinks=[events.append])
records = [json.loads(x) for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
print("RESULT", json.dumps(dict(losses=[r["loss"] for r in records if "loss" in r], bf16_steps=steps["n"],
                                run_dir=str(run.run_dir), export=str(run.export_path),
                                graphs_off=[e.message for e in events if "CUDA graphs off" in (e.message or "")])))
"""


def run(folder, shapes_dir, out, device, kernels, steps=6, stop_at=10**6, resume="-", fail_at=0, te="-", **env):
    return child_result(RUN, folder, shapes_dir, out, device, steps, stop_at, resume, fail_at, te,
                        SD_TRAINPLAN_TRITON=kernels, **env)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from sd_trainplan.models.tiny_diffusers import save_tiny_folder
    return save_tiny_folder(tmp_path_factory.mktemp("tiny") / "model", seed=7)  # loads into the plain UNet


def check_trains_what_autocast_trains(folder, shapes_dir, tmp_path, device, same, **env):
    """`same`: how many first losses are equal (on the CPU the first update's weights are too)."""
    # both with our GroupNorm and GEGLU kernels, so that the update is the only difference
    copies = run(folder, shapes_dir, tmp_path / "copies", device, "all", **env)
    autocast = run(folder, shapes_dir, tmp_path / "autocast", device, "groupnorm,geglu", **env)
    # the step's Python runs at each update on the CPU, once (while it is recorded) on a GPU
    assert copies["bf16_steps"] == (6 if device == "cpu" else 1) and autocast["bf16_steps"] == 0, (copies, autocast)
    # the forward pass is autocast's arithmetic exactly; the updates round in another order (measured on
    # the CPU: a cosine of 0.995, 10% apart in norm, where our GroupNorm and GEGLU kernels against
    # PyTorch's make 0.985 and 17%)
    assert copies["losses"][:same] == autocast["losses"][:same]
    assert copies["losses"] == pytest.approx(autocast["losses"], rel=2e-3)
    diff, cosine = change_agreement(*[Path(r["run_dir"]) for r in (autocast, copies)])
    assert cosine > 0.99 and diff < 0.15, (diff, cosine)
    return copies


def test_bf16_copies_train_what_autocast_trains_and_save_fp32_masters(folder, shapes_dir, tmp_path):
    pytest.importorskip("triton")
    copies = check_trains_what_autocast_trains(folder, shapes_dir, tmp_path, "cpu", 2, TRITON_INTERPRET="1")
    from safetensors.torch import load_file
    from sd_trainplan.train.checkpoint import latest_checkpoint
    state = torch.load(latest_checkpoint(Path(copies["run_dir"]))[1], weights_only=False)
    trained = state["trainable"]
    assert all(v.dtype == torch.float32 for v in trained.values())
    # the masters, not their bf16 copies: most weights are not bf16 values
    conv = next(v for k, v in trained.items() if k.endswith("conv1.weight"))
    assert not torch.equal(conv, conv.bfloat16().float())
    steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert steps == {6.0}, steps  # every weight's AdamW count, as torch's AdamW keeps it
    exported = load_file(copies["export"])
    assert any(torch.equal(v.float(), conv) for v in exported.values() if v.shape == conv.shape)


def test_a_stopped_run_resumes_to_the_same_weights(folder, shapes_dir, tmp_path):
    pytest.importorskip("triton")
    straight = run(folder, shapes_dir, tmp_path / "straight", "cpu", "all", TRITON_INTERPRET="1")
    stopped = run(folder, shapes_dir, tmp_path / "stopped", "cpu", "all", stop_at=3, TRITON_INTERPRET="1")
    assert len(stopped["losses"]) == 3 and stopped["bf16_steps"] == 3
    resumed = run(folder, shapes_dir, tmp_path / "stopped", "cpu", "all", resume=stopped["run_dir"],
                  TRITON_INTERPRET="1")
    assert resumed["bf16_steps"] == 3
    a, b = final_state(Path(straight["run_dir"])), final_state(Path(resumed["run_dir"]))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    lines = [json.loads(x) for x in (Path(resumed["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in lines] == straight["losses"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_recorded_in_a_cuda_graph_bf16_copies_train_what_autocast_trains(folder, shapes_dir, tmp_path):
    check_trains_what_autocast_trains(folder, shapes_dir, tmp_path, "cuda", 1)


@pytest.mark.parametrize("fail_at", [3, -3, -5], ids=["recording at update 3", "setup at the second moments",
                                                       "setup at the last buffer"])
def test_after_a_failure_the_run_goes_on_eagerly_from_the_masters(folder, shapes_dir, tmp_path, fail_at):
    pytest.importorskip("triton")
    failed = run(folder, shapes_dir, tmp_path / "failed", "cpu", "all", fail_at=fail_at, TRITON_INTERPRET="1")
    autocast = run(folder, shapes_dir, tmp_path / "autocast", "cpu", "groupnorm,geglu", TRITON_INTERPRET="1")
    assert failed["bf16_steps"] == max(fail_at - 1, 0) and len(failed["losses"]) == 6, failed
    from sd_trainplan.train.checkpoint import latest_checkpoint
    state = torch.load(latest_checkpoint(Path(failed["run_dir"]))[1], weights_only=False)
    steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert steps == {6.0}, steps  # each weight counted its own steps again, once each
    diff, cosine = change_agreement(Path(autocast["run_dir"]), Path(failed["run_dir"]))
    assert cosine > 0.99 and diff < 0.15, (diff, cosine)


def test_with_the_text_encoder_trained_the_unet_alone_computes_with_copies(folder, shapes_dir, tmp_path):
    """The text encoder runs outside autocast, in its fp32 weights: bf16 copies there would meet fp32
    activations (and the update would fall back to eager mode at its first recording)."""
    pytest.importorskip("triton")
    both = run(folder, shapes_dir, tmp_path / "te", "cpu", "all", te="te", TRITON_INTERPRET="1")
    autocast = run(folder, shapes_dir, tmp_path / "te-autocast", "cpu", "groupnorm,geglu", te="te",
                   TRITON_INTERPRET="1")
    assert both["bf16_steps"] == 6 and not both["graphs_off"], both
    assert both["losses"][:2] == autocast["losses"][:2]
    diff, cosine = change_agreement(Path(autocast["run_dir"]), Path(both["run_dir"]))
    assert cosine > 0.99 and diff < 0.15, (diff, cosine)


def test_only_dreambooth_in_bf16_with_one_micro_batch_on_one_process(monkeypatch):
    """Elsewhere the update keeps autocast's casts: other methods train few weights, fp32 has no copies to
    make, several micro-batches would sum their gradients in bf16, several processes reduce in fp32."""
    pytest.importorskip("triton")
    from sd_trainplan.train.bf16_weights import applies
    from sd_trainplan.train.config import TrainConfig
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("SD_TRAINPLAN_TRITON", "adamw")
    cpu, bf16 = torch.device("cpu"), torch.bfloat16
    db = TrainConfig(method="dreambooth", data=".")
    assert applies(db, bf16, 1, cpu)
    assert not applies(db, torch.float32, 1, cpu)
    assert not applies(db.replace(grad_accum=2), bf16, 1, cpu)
    assert not applies(db, bf16, 2, cpu)
    assert not applies(db.replace(compile=True), bf16, 1, cpu)
    assert not applies(db.replace(method="lora"), bf16, 1, cpu)
    monkeypatch.setenv("SD_TRAINPLAN_TRITON", "off")
    assert not applies(db, bf16, 1, cpu)


ROUNDING = r"""
import json, sys, torch
from sd_trainplan.train import bf16_weights
device = sys.argv[1]
p = torch.nn.Parameter((torch.randn(5000) * torch.logspace(-30, 30, 5000)).to(device))
p.data[:3] = torch.tensor([1.0 + 2**-8, 1.0 + 3 * 2**-8, -1.0 - 2**-8])  # halfway: ties go to even
opt = type("Opt", (), {"state": {p: {}}})()
f = bf16_weights._Flat(opt, {"betas": (0.9, 0.999), "lr": 0.0, "weight_decay": 0.0, "eps": 1e-8}, [p])
masters = p.detach().clone()
f.weight.zero_()
f.step_(torch.ones((), device=device))  # no change to the masters: the copies rewritten from them
print("RESULT", json.dumps(dict(same_masters=bool(torch.equal(p.detach(), masters)),
                                differ=int((f.weights[0] != masters.bfloat16()).sum()))))
"""


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])])
def test_the_step_writes_the_copies_rounded_as_autocast_rounds(device):
    """Else each update would compute with other weights than autocast's (Triton's interpreter truncates)."""
    pytest.importorskip("triton")
    r = child_result(ROUNDING, device, TRITON_INTERPRET="1" if device == "cpu" else None)
    assert r == {"same_masters": True, "differ": 0}, r
