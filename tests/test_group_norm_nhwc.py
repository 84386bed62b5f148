"""GroupNorm on channels-last activations (models/group_norm_nhwc.py, Triton): what it computes is
F.group_norm's output and gradients, for SD's layer shapes (4 to 40 channels a group, several tiles of
pixels with a partial last one, large means), in fp32 and bf16, the same bits twice; a norms_in model
under bf16 autocast uses it in a graphed update or when asked (SD_TRAINPLAN_TRITON=groupnorm), only on channels-last input.

CI has no GPU: the kernels run in Triton's interpreter on the CPU (TRITON_INTERPRET=1, set before
Triton is imported, so in a child process). On a GPU the last test runs them compiled."""
import os
import subprocess
import sys

import pytest
import torch

from child_result import child_result

CHECK = r"""
import json, sys
import torch, torch.nn.functional as F
from torch import nn
from sd_trainplan.models.group_norm_nhwc import applies, group_norm_nhwc
from sd_trainplan.models.norms import norms_in
device = sys.argv[1]
out = {}
torch.manual_seed(0)
# (n, c, h, w, groups, dtype, weight): SD1.5's levels at 8 groups-of-channels sizes, tiles of 64 pixels
# affine "frozen": weights that do not train (LoRA, TI), whose per-channel partials are not written
for n, c, h, w, g, dtype, affine in [(2, 128, 9, 8, 32, "float32", True), (1, 320, 11, 13, 32, "float32", "frozen"),
                                     (2, 1280, 4, 4, 32, "float32", False), (1, 64, 12, 12, 8, "bfloat16", True)]:
    dt = getattr(torch, dtype)
    x = (torch.randn(n, c, h, w, device=device) * 3 + 40).to(dt).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(c, device=device, dtype=dt) if affine else None
    bt = torch.randn(c, device=device, dtype=dt) if affine else None
    dy = torch.randn(n, c, h, w, device=device, dtype=dt)
    assert applies(x, g), (n, c, h, w)
    leaves = [t.requires_grad_() for t in ((x, wt, bt) if affine is True else (x,)) if t is not None]
    y = group_norm_nhwc(x, g, wt, bt, 1e-5)
    grads = torch.autograd.grad(y, leaves, dy)
    y_again = group_norm_nhwc(x, g, wt, bt, 1e-5)
    ref_leaves = [t.detach().float().contiguous().requires_grad_() for t in leaves]
    rx, rw, rb = (ref_leaves + [None, None])[:3]
    if affine == "frozen":
        rw, rb = wt.float(), bt.float()
    ry = F.group_norm(rx, g, rw, rb, 1e-5)
    rgrads = torch.autograd.grad(ry, ref_leaves, dy.float())
    err = lambda a, b: ((a.float() - b).abs().max() / b.abs().max()).item()
    out[f"{n}x{c}x{h}x{w}/{g} {dtype}"] = dict(
        y=err(y, ry), grads=[err(a, b) for a, b in zip(grads, rgrads)],
        channels_last=[t.is_contiguous(memory_format=torch.channels_last) for t in (y, grads[0])],
        same_bits=torch.equal(y, y_again))
# a model's GroupNorm through norms_in under bf16 autocast: the kernels on channels-last input only
m = nn.Sequential(nn.GroupNorm(8, 32)).to(device)
norms_in(m, torch.bfloat16)
with torch.autocast(device, dtype=torch.bfloat16):
    x = torch.randn(2, 32, 6, 6, device=device)
    out["grad_fn"] = [type(m(x.contiguous(memory_format=cl).requires_grad_()).grad_fn).__name__
                      for cl in (torch.channels_last, torch.contiguous_format)]
print("RESULT", json.dumps(out))
"""


def run_check(device: str, **env):
    return child_result(CHECK, device, SD_TRAINPLAN_TRITON="groupnorm", **env)


def assert_matches_group_norm(out, bf16_tol):
    for case, r in ((k, v) for k, v in out.items() if k != "grad_fn"):
        tol = bf16_tol if "bfloat16" in case else 1e-5
        assert r["y"] < tol, (case, r)
        assert max(r["grads"]) < tol, (case, r)
        assert r["channels_last"] == [True, True], (case, r)
        assert r["same_bits"], case
    assert out["grad_fn"][0] == "_GroupNormNHWCBackward"
    assert out["grad_fn"][1] != "_GroupNormNHWCBackward"  # NCHW input: PyTorch's own GroupNorm


def test_kernels_compute_group_norm_in_the_triton_interpreter():
    pytest.importorskip("triton")
    assert_matches_group_norm(run_check("cpu", TRITON_INTERPRET="1"), bf16_tol=2e-2)


UNET = r"""
import json, os, sys
import torch
from sd_trainplan.models import group_norm_nhwc
from sd_trainplan.models.diffusers_adapter import load_diffusers
calls = []
real = group_norm_nhwc.group_norm_nhwc
group_norm_nhwc.group_norm_nhwc = lambda *a: calls.append(1) or real(*a)
out = {}
for mode in ("kernel", "pytorch", "fp32"):  # bf16 with and without the kernel; fp32 without, the reference
    os.environ["SD_TRAINPLAN_TRITON"] = "groupnorm" if mode == "kernel" else "off"
    adapter = load_diffusers(sys.argv[1])  # the plain UNet, set up as a CUDA run sets it up
    adapter.use_channels_last()
    adapter.use_norms_in(torch.bfloat16)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.no_grad():
        cond = adapter.encode_prompts(["a red circle", "a green square"])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode != "fp32"):
        pred = adapter.predict(x, torch.tensor([10, 700]), cond)
    pred.float().square().mean().backward()
    out[mode] = (pred.detach().float(), x.grad.float(), len(calls))
    calls.clear()
err = lambda a, b: ((a - b).abs().max() / b.abs().max()).item()
ref = out["fp32"]
print("RESULT", json.dumps({m: dict(calls=out[m][2], pred=err(out[m][0], ref[0]), grad=err(out[m][1], ref[1]))
                            for m in ("kernel", "pytorch")}))
"""


def test_the_plain_unet_under_bf16_autocast_uses_the_kernels_as_accurately_as_pytorch(tmp_path):
    """The plain UNet set up as a CUDA run sets it up (channels-last, norms_in bf16), on the CPU in the
    interpreter: every GroupNorm of its forward goes through the kernels, and its prediction and
    input gradient are as close to fp32's as with PyTorch's bf16 GroupNorm (measured 2026-12-01:
    1.3% and 2.9% with the kernels, 1.7% and 2.9% without)."""
    pytest.importorskip("triton")
    from sd_trainplan.models.tiny_diffusers import save_tiny_folder
    folder = save_tiny_folder(tmp_path / "model", seed=7)
    r = child_result(UNET, folder, TRITON_INTERPRET="1")
    assert r["kernel"]["calls"] == 21 and r["pytorch"]["calls"] == 0, r  # the tiny UNet's 21 GroupNorms
    for what in ("pred", "grad"):
        assert r["kernel"][what] <= 1.5 * r["pytorch"][what] + 1e-3, (what, r)


GATE = r"""
import json, os, sys, torch
from sd_trainplan.models import group_norm_nhwc, triton_gate
x = torch.randn(1, 32, 4, 4).contiguous(memory_format=torch.channels_last)
out = {}
def check(label):
    with triton_gate.graphed_update():
        inside = group_norm_nhwc.applies(x, 8)
    out[label] = [group_norm_nhwc.applies(x, 8), inside]
os.environ["SD_TRAINPLAN_TRITON"] = ""
check("default, not proven")
def fails():
    raise RuntimeError("Failed to find C compiler")
out["problem"] = triton_gate.prove(fails if sys.argv[1] == "fails" else lambda: None)
check("default")
for asked in ("off", "groupnorm", "geglu"):
    os.environ["SD_TRAINPLAN_TRITON"] = asked
    check(asked)
print("RESULT", json.dumps(out))
"""


def test_by_default_only_in_a_graphed_update_once_proven_and_never_on_a_cpu_tensor():
    """[outside, inside] a graphed update, per SD_TRAINPLAN_TRITON (in the interpreter): the default
    only once the kernels compiled and ran in the process, and not at all where they failed to (a
    machine without a C compiler: Triton builds its launcher with one); a CPU tensor without the
    interpreter never."""
    pytest.importorskip("triton")
    from sd_trainplan.models import group_norm_nhwc, triton_gate
    x = torch.randn(1, 32, 4, 4).contiguous(memory_format=torch.channels_last)
    with triton_gate.graphed_update():
        assert not group_norm_nhwc.applies(x, 8)  # a CPU tensor (no interpreter): PyTorch's GroupNorm
    explicit = {"off": [False, False], "groupnorm": [True, True], "geglu": [False, False]}
    assert child_result(GATE, "works", TRITON_INTERPRET="1") == {
        "default, not proven": [False, False], "problem": None, "default": [False, True], **explicit}
    assert child_result(GATE, "fails", TRITON_INTERPRET="1") == {
        "default, not proven": [False, False], "problem": "RuntimeError: Failed to find C compiler",
        "default": [False, False], **explicit}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kernels_compute_group_norm_on_the_gpu():
    assert_matches_group_norm(run_check("cuda"), bf16_tol=2e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_start_thread_compiles_the_kernels_asked_for(tmp_path):
    """Triton compiles at the first call (seconds on a fresh machine): the thread that starts the GPU
    while the model loads (train/gpu_start.py) compiles the kernels a run may use (all by default),
    and no other."""
    code = "import torch; from sd_trainplan.train.gpu_start import start_gpu; start_gpu(torch.device('cuda')).join()"
    gn = {"partial_stats", "finish_stats", "apply", "partial_grads", "input_grad"}
    for asked, expected in (("groupnorm", gn), ("", gn | {"forward", "backward"}), ("off", set())):
        cache = tmp_path / f"triton-{asked or 'none'}"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=300,
                       env=dict(os.environ, SD_TRAINPLAN_TRITON=asked, TRITON_CACHE_DIR=str(cache)))
        names = {p.stem for p in cache.rglob("*.json") if not p.name.startswith("__grp__")} if cache.exists() else set()
        assert names & (gn | {"forward", "backward"}) == expected, names


def test_an_unknown_kernel_name_is_named_before_anything_runs(shapes_dir, tmp_path, monkeypatch):
    from sd_trainplan.train.config import ConfigError, TrainConfig
    from sd_trainplan.train.loop import prepare_checks
    monkeypatch.setenv("SD_TRAINPLAN_TRITON", "groupnorm,group_norm")
    with pytest.raises(ConfigError) as e:
        prepare_checks(TrainConfig(method="lora", data=str(shapes_dir), output=str(tmp_path)))
    assert "SD_TRAINPLAN_TRITON: unknown kernel group_norm (known: groupnorm, geglu, adamw, all, auto, off)" in str(e.value)
