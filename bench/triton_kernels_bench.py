"""Our Triton kernels beside what PyTorch does without them, one op at a time, at SD1.5's shapes
(512 px, batch 1 and 4, bf16, channels-last as a CUDA run lays the UNet out), forward and backward:

  groupnorm: GroupNorm -> SiLU -> 3x3 convolution (the ResNet block's pattern, so PyTorch's NCHW
             copies before the norm and the convolution's copy back are both in the time), with
             torch's GroupNorm against models/group_norm_nhwc.py, at each of the UNet's levels;
  geglu:     the FeedForward's projection output -> h * gelu(gate), chunk + GELU + multiply against
             models/geglu_fused.py, at each level with attention.

Each row: median ms over --reps timed repetitions (CUDA events) after --warmup, the two variants
interleaved. Frozen weights (LoRA, TI) by default; --trained also times the norm's weight gradients
(Dreambooth).

  python bench/triton_kernels_bench.py [--bs 1,4] [--reps 50] [--trained] [--out FILE.json]
  TRITON_INTERPRET=1 python bench/triton_kernels_bench.py --tiny   a CPU smoke run of the script
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("SD_TRAINPLAN_TRITON", "all")
from sd_trainplan.models import geglu_fused, group_norm_nhwc  # noqa: E402

LEVELS = [(320, 64), (640, 32), (1280, 16), (1280, 8)]  # SD1.5 UNet channels at 512 px latents (64 x 64)


def timed(fn, reps: int, warmup: int, device) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def groupnorm_case(bs, ch, hw, device, dtype, trained):
    x = torch.randn(bs, ch, hw, hw, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.ones(ch, device=device, dtype=dtype, requires_grad=trained)
    b = torch.zeros(ch, device=device, dtype=dtype, requires_grad=trained)
    conv = torch.randn(ch, ch, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()

    def run(norm):
        y = F.conv2d(F.silu(norm(x, 32, w, b, 1e-5)), conv, padding=1)
        y.backward(torch.ones_like(y))
    assert group_norm_nhwc.applies(x, 32), "the GroupNorm kernel does not apply (SD_TRAINPLAN_TRITON, device?)"
    return {"torch": lambda: run(F.group_norm), "ours": lambda: run(group_norm_nhwc.group_norm_nhwc)}


def geglu_case(bs, ch, hw, device, dtype, trained):
    p = torch.randn(bs, hw * hw, 2 * 4 * ch, device=device, dtype=dtype, requires_grad=True)
    assert geglu_fused.applies(p), "the GEGLU kernel does not apply (SD_TRAINPLAN_TRITON, device?)"

    def torch_geglu():
        h, gate = p.chunk(2, dim=-1)
        y = h * F.gelu(gate)
        y.backward(torch.ones_like(y))

    def ours():
        y = geglu_fused.geglu(p)
        y.backward(torch.ones_like(y))
    return {"torch": torch_geglu, "ours": ours}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bs", default="1,4")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--trained", action="store_true", help="the norm's weight and bias train (Dreambooth)")
    ap.add_argument("--tiny", action="store_true", help="small shapes on the CPU (with TRITON_INTERPRET=1)")
    ap.add_argument("--out")
    args = ap.parse_args()
    device = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    levels = [(64, 8), (128, 4)] if args.tiny else LEVELS
    reps, warmup = (2, 1) if args.tiny else (args.reps, args.warmup)
    rows = []
    for bs in (int(b) for b in args.bs.split(",")):
        for op, make in (("groupnorm", groupnorm_case), ("geglu", geglu_case)):
            for ch, hw in levels:
                fns = make(bs, ch, hw, device, dtype, args.trained)
                ms = {name: timed(fn, reps, warmup, device) for name, fn in fns.items()}
                row = dict(op=op, bs=bs, channels=ch, size=hw, torch_ms=round(ms["torch"], 4),
                           ours_ms=round(ms["ours"], 4), speedup=round(ms["torch"] / ms["ours"], 2))
                rows.append(row)
                print(json.dumps(row), flush=True)
    meta = dict(device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu", torch=torch.__version__,
                trained=args.trained, date=time.strftime("%Y-%m-%d"))
    if args.out:
        Path(args.out).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))


if __name__ == "__main__":
    main()
