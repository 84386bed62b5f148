"""Our Triton kernels are on by default in the fast path's update only (models/triton_gate.py): a run
with SD_TRAINPLAN_TRITON unset sends the plain UNet's GEGLUs (and, on a GPU, its channels-last bf16
GroupNorms) through them in the graphed update, and nowhere else; SD_TRAINPLAN_TRITON=off keeps
PyTorch's everywhere; both train to the same losses; where they cannot compile, PyTorch's, said. On the CPU in Triton's interpreter (the fast
path's code without capture), and with real CUDA graphs on a GPU."""

import pytest
import torch

from child_result import child_result

TRAIN = r"""
import json, sys
from sd_trainplan.models import geglu_fused, group_norm_nhwc
from sd_trainplan.train import cuda_graph
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.loop import train
folder, data, out, device, broken = sys.argv[1:6]
calls = {"groupnorm": 0, "geglu": 0}
updating = []  # non-empty inside the fast path's update (its warm-up, capture or replay)
def counted(name, real):
    def call(*a):
        calls[name] += bool(updating)
        return real(*a)
    return call
group_norm_nhwc.group_norm_nhwc = counted("groupnorm", group_norm_nhwc.group_norm_nhwc)
geglu_fused.geglu = counted("geglu", geglu_fused.geglu)
if broken == "broken":  # as on a machine where Triton cannot build its launcher
    def no_compiler():
        raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable")
    group_norm_nhwc._kernels = geglu_fused._kernels = no_compiler
def inside(real):
    def call(*a):
        updating.append(1)
        try:
            return real(*a)
        finally:
            updating.pop()
    return call
recorded = []  # per bucket: was the update captured in a CUDA graph
real_record = cuda_graph.GraphedUpdate._record
cuda_graph.GraphedUpdate._record = inside(lambda self, *a: recorded.append(self.capture) or real_record(self, *a))
cuda_graph._Eager.replay = inside(cuda_graph._Eager.replay)
cfg = TrainConfig(method="dreambooth", model=folder, data=data, output=out, resolution=64, steps=3, batch_size=2,
                  lr=1e-3, log_every=1, noise_scale=False, device=device, final_checkpoint="off")
events = []
run = train(cfg, graph_capture=device != "cpu", sinks=[events.append])
records = [json.loads(x) for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
print("RESULT", json.dumps(dict(losses=[r["loss"] for r in records if "loss" in r], calls=calls, recorded=recorded,
                                steps=run.steps_done, said=[e.message for e in events if "Triton" in (e.message or "")])))
"""


def train_both(shapes_dir, tmp_path, device, **env):
    from sd_trainplan.models.tiny_diffusers import save_tiny_folder
    folder = save_tiny_folder(tmp_path / "model", seed=7)  # loads into the plain UNet
    return [child_result(TRAIN, folder, shapes_dir, tmp_path / f"runs-{asked}", device, "works",
                         SD_TRAINPLAN_TRITON=asked, **env) for asked in (None, "off")]


def test_the_fast_path_uses_the_kernels_by_default_and_off_turns_them_off(shapes_dir, tmp_path):
    pytest.importorskip("triton")
    default, off = train_both(shapes_dir, tmp_path, "cpu", TRITON_INTERPRET="1")
    assert default["recorded"] == [False] and default["calls"]["geglu"] > 0 and not default["said"], default
    assert off["calls"] == {"groupnorm": 0, "geglu": 0}, off
    assert default["losses"] == pytest.approx(off["losses"], rel=1e-5)


def test_where_the_kernels_cannot_compile_the_run_trains_with_pytorchs_and_says_why(shapes_dir, tmp_path):
    """Triton builds its launcher with the machine's C compiler (and Python's headers): a machine
    without one must still train, by default, at PyTorch's speed, and the log says why."""
    pytest.importorskip("triton")
    from sd_trainplan.models.tiny_diffusers import save_tiny_folder
    folder = save_tiny_folder(tmp_path / "model", seed=7)
    r = child_result(TRAIN, folder, shapes_dir, tmp_path / "runs", "cpu", "broken", SD_TRAINPLAN_TRITON=None,
                     TRITON_INTERPRET="1")
    assert r["steps"] == 3 and r["calls"] == {"groupnorm": 0, "geglu": 0}, r
    assert r["said"] == ["our Triton kernels (GroupNorm, GEGLU, AdamW) are off: RuntimeError: Failed to find C compiler."
                         " Please specify via CC environment variable; training with PyTorch's"
                         " (SD_TRAINPLAN_TRITON=off says the same without trying)"], r


def test_an_unknown_kernel_name_lists_the_known_ones(monkeypatch):
    from sd_trainplan.models import triton_gate
    monkeypatch.setenv("SD_TRAINPLAN_TRITON", "geglu,gn")
    with pytest.raises(ValueError, match=r"SD_TRAINPLAN_TRITON: unknown kernel gn \(known: groupnorm, geglu, adamw, all,"
                                         r" auto, off\)"):
        triton_gate.asked()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_graphed_gpu_run_uses_both_kernels_by_default(shapes_dir, tmp_path):
    default, off = train_both(shapes_dir, tmp_path, "cuda")
    assert default["recorded"] == off["recorded"] == [True], (default, off)  # one bucket, captured
    assert default["calls"]["groupnorm"] > 0 and default["calls"]["geglu"] > 0 and not default["said"], default
    assert off["calls"] == {"groupnorm": 0, "geglu": 0}, off
    assert default["losses"] == pytest.approx(off["losses"], rel=2e-2)  # bf16: sums rounded in another order
