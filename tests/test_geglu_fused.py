"""GEGLU in one pass (models/geglu_fused.py, Triton): h * gelu(gate) on the two halves of the
projection, its gradient written as the projection's, what PyTorch's chunk + GELU + multiply
computes, in fp32 and bf16, for row counts and widths that are not multiples of the tile; the plain
UNet's GEGLU uses it in a graphed update, or anywhere when asked (SD_TRAINPLAN_TRITON=geglu). In Triton's interpreter on the CPU
(a child process: TRITON_INTERPRET must be set before Triton is imported); compiled on a GPU."""

import pytest
import torch

from child_result import child_result

CHECK = r"""
import json, sys
import torch, torch.nn.functional as F
from sd_trainplan.models.geglu_fused import applies, geglu
from sd_trainplan.models.plain.unet import GEGLU
device = sys.argv[1]
torch.manual_seed(0)
out = {}
for shape, dtype in [((2, 77, 2 * 160), "float32"), ((3, 50, 2 * 200), "float32"), ((1, 64, 2 * 1280), "bfloat16")]:
    dt = getattr(torch, dtype)
    p = (torch.randn(*shape, device=device) * 2).to(dt).requires_grad_()
    dy = torch.randn(*shape[:-1], shape[-1] // 2, device=device, dtype=dt)
    assert applies(p)
    y = geglu(p)
    (dp,) = torch.autograd.grad(y, p, dy)
    rp = p.detach().float().requires_grad_()
    h, g = rp.chunk(2, dim=-1)
    ry = h * F.gelu(g)
    (rdp,) = torch.autograd.grad(ry, rp, dy.float())
    err = lambda a, b: ((a.float() - b).abs().max() / b.abs().max()).item()
    out[f"{shape} {dtype}"] = dict(y=err(y, ry), dp=err(dp, rdp), shape=list(y.shape) == list(ry.shape))
m = GEGLU(16, 24).to(device)
out["grad_fn"] = type(m(torch.randn(2, 5, 16, device=device, requires_grad=True)).grad_fn).__name__
print("RESULT", json.dumps(out))
"""


def run_check(device, **env):
    return child_result(CHECK, device, SD_TRAINPLAN_TRITON="geglu", **env)


def assert_matches(out, bf16_tol=2e-2):
    for case, r in ((k, v) for k, v in out.items() if k != "grad_fn"):
        tol = bf16_tol if "bfloat16" in case else 1e-5
        assert r["shape"] and r["y"] < tol and r["dp"] < tol, (case, r)
    assert out["grad_fn"] == "_GegluBackward"


def test_geglu_kernels_compute_what_pytorch_computes_in_the_triton_interpreter():
    pytest.importorskip("triton")
    assert_matches(run_check("cpu", TRITON_INTERPRET="1"))


def test_the_plain_geglu_keeps_pytorch_outside_a_graphed_update_unless_asked():
    from sd_trainplan.models.plain.unet import GEGLU
    code = ("import json, torch; from sd_trainplan.models.plain.unet import GEGLU; print('RESULT', json.dumps("
            "type(GEGLU(16, 24)(torch.randn(2, 16, requires_grad=True)).grad_fn).__name__))")
    assert child_result(code, SD_TRAINPLAN_TRITON=None, TRITON_INTERPRET="1") == "MulBackward0"
    assert child_result(code, SD_TRAINPLAN_TRITON="geglu", TRITON_INTERPRET="1") == "_GegluBackward"
    assert type(GEGLU(16, 24)(torch.randn(2, 16, requires_grad=True)).grad_fn).__name__ == "MulBackward0"


TRAIN = r"""
import json, sys
from pathlib import Path
from sd_trainplan.models.diffusers_adapter import load_diffusers
from sd_trainplan.train.checkpoint import latest_checkpoint
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.loop import train
import torch
folder, data, out = sys.argv[1:4]
cfg = TrainConfig(method="dreambooth", data=data, output=out, resolution=64, steps=3, batch_size=2, lr=1e-3, log_every=1,
                  noise_scale=False)
run = train(cfg, adapter=load_diffusers(folder))
records = [json.loads(x) for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
state = torch.load(latest_checkpoint(run.run_dir)[1], weights_only=False)["trainable"]
print("RESULT", json.dumps(dict(losses=[r["loss"] for r in records if "loss" in r], state=dict.fromkeys(state))))
"""


def test_a_plain_unet_trains_with_the_kernel_as_without_it(shapes_dir, tmp_path):
    """Dreambooth on a folder that loads into the plain UNet, 3 updates, its GEGLUs through the kernel
    (in the interpreter) and through PyTorch: the same losses, within float rounding."""
    pytest.importorskip("triton")
    from sd_trainplan.models.tiny_diffusers import save_tiny_folder
    folder = save_tiny_folder(tmp_path / "model", seed=7)
    without, with_kernel = (child_result(TRAIN, folder, shapes_dir, tmp_path / "runs", SD_TRAINPLAN_TRITON=kernel,
                                         TRITON_INTERPRET=interpret)
                            for kernel, interpret in (("off", None), ("geglu", "1")))
    # the later losses are of the updated weights (compared one by one they would not do: AdamW moves
    # a weight whose gradient rounds to the other sign 2 x lr away, see test_fast_path.change_agreement)
    assert with_kernel["losses"] == pytest.approx(without["losses"], rel=1e-5)
    assert with_kernel["losses"] != without["losses"]  # the kernel ran (its sums round in another order)
    assert with_kernel["state"].keys() == without["state"].keys()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_geglu_kernels_compute_what_pytorch_computes_on_the_gpu():
    assert_matches(run_check("cuda"))
