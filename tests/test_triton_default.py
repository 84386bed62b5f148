"""Our Triton kernels are on by default in the fast path's update only (models/triton_gate.py): a run
with SD_TRAINPLAN_TRITON unset sends the plain UNet's GEGLUs (and, on a GPU, its channels-last bf16
GroupNorms) through them in the graphed update, and nowhere else; SD_TRAINPLAN_TRITON=off keeps
PyTorch's everywhere; both train to the same losses. On the CPU in Triton's interpreter (the fast
path's code without capture), and with real CUDA graphs on a GPU."""

import pytest
import torch

from child_result import child_result

TRAIN = r"""
import json, sys
from sd_trainplan.models import geglu_fused, group_norm_nhwc
from sd_trainplan.models.plain import unet
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.loop import train
folder, data, out, device = sys.argv[1:5]
calls = {"groupnorm": 0, "geglu": 0}
def counted(name, real):
    def call(*a):
        calls[name] += 1
        return real(*a)
    return call
group_norm_nhwc.group_norm_nhwc = counted("groupnorm", group_norm_nhwc.group_norm_nhwc)
unet.geglu_fused.geglu = counted("geglu", geglu_fused.geglu)
from sd_trainplan.train import cuda_graph
recorded = []  # per bucket: was the update captured in a CUDA graph
real_record = cuda_graph.GraphedUpdate._record
cuda_graph.GraphedUpdate._record = lambda self, *a: recorded.append(self.capture) or real_record(self, *a)
cfg = TrainConfig(method="dreambooth", model=folder, data=data, output=out, resolution=64, steps=3, batch_size=2,
                  lr=1e-3, log_every=1, noise_scale=False, device=device, final_checkpoint="off")
run = train(cfg, graph_capture=device != "cpu")
after_training = dict(calls)
from sd_trainplan.models.plain.unet import GEGLU
import torch
GEGLU(16, 24).to(device)(torch.randn(2, 5, 16, device=device))  # outside the update: PyTorch's
records = [json.loads(x) for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
print("RESULT", json.dumps(dict(losses=[r["loss"] for r in records if "loss" in r], calls=after_training,
                                later=calls["geglu"] - after_training["geglu"], recorded=recorded)))
"""


def train_both(shapes_dir, tmp_path, device, **env):
    from sd_trainplan.models.tiny_diffusers import save_tiny_folder
    folder = save_tiny_folder(tmp_path / "model", seed=7)  # loads into the plain UNet
    return [child_result(TRAIN, folder, shapes_dir, tmp_path / f"runs-{asked}", device, SD_TRAINPLAN_TRITON=asked,
                         **env) for asked in (None, "off")]


def test_the_fast_path_uses_the_kernels_by_default_and_off_turns_them_off(shapes_dir, tmp_path):
    pytest.importorskip("triton")
    default, off = train_both(shapes_dir, tmp_path, "cpu", TRITON_INTERPRET="1")
    assert default["recorded"] == [False] and default["calls"]["geglu"] > 0 and default["later"] == 0, default
    assert off["calls"] == {"groupnorm": 0, "geglu": 0}, off
    assert default["losses"] == pytest.approx(off["losses"], rel=1e-5)


def test_an_unknown_kernel_name_lists_the_known_ones(monkeypatch):
    from sd_trainplan.models import triton_gate
    monkeypatch.setenv("SD_TRAINPLAN_TRITON", "geglu,gn")
    with pytest.raises(ValueError, match=r"SD_TRAINPLAN_TRITON: unknown kernel gn \(known: groupnorm, geglu, all,"
                                         r" auto, off\)"):
        triton_gate.asked()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_graphed_gpu_run_uses_both_kernels_by_default(shapes_dir, tmp_path):
    default, off = train_both(shapes_dir, tmp_path, "cuda")
    assert default["recorded"] == off["recorded"] == [True], (default, off)  # one bucket, captured
    assert default["calls"]["groupnorm"] > 0 and default["calls"]["geglu"] > 0 and default["later"] == 0, default
    assert off["calls"] == {"groupnorm": 0, "geglu": 0}, off
    assert default["losses"] == pytest.approx(off["losses"], rel=2e-2)  # bf16: sums rounded in another order
