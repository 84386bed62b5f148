"""Where the updates of a real training run spend their GPU time (issue 16: TI BS 4 and Dreambooth
BS 4 are under 5x the diffusers scripts in steady state, and nothing had measured why).

Runs `train()` itself, as `python -m sd_trainplan train` would run it, on a full-size model with
random weights (`random-sd1`, no file) and 8 random images, and profiles a window of updates once
the warm-up is long past: CUDA kernel time summed by kind (matmul, convolution, attention,
normalisation, optimizer, the rest: profile_step.py's kinds), the top kernels, and the window's
wall time per update. `--eager` profiles the same run without CUDA graphs (a graph's replay shows
its kernels only where the profiler can trace inside graphs).

  python bench/profile_update.py --method ti --bs 4 [--eager [--stacks]] [--updates 40] [--window 20:30]
      [--out FILE.json]
  python bench/profile_update.py --tiny ...   the tiny model on the CPU: checks the script only
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_step import kind_of  # noqa: E402
from sd_trainplan.train.config import TrainConfig  # noqa: E402
from sd_trainplan.train.loop import train  # noqa: E402


def images(folder: Path, size: int, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


class Window:
    """A sink that starts torch.profiler at update `first` and stops it at update `last`."""

    def __init__(self, first: int, last: int, cuda: bool, stacks: bool = False):
        from torch.profiler import ProfilerActivity, profile
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        self.prof = profile(activities=acts, with_stack=stacks, record_shapes=stacks)
        self.first, self.last, self.stacks = first, last, stacks
        self.t = {}

    def __call__(self, e) -> None:
        if e.kind != "step" or not e.step:
            return
        if e.step == self.first:
            self.t["from"] = time.perf_counter()
            self.prof.__enter__()
        elif e.step == self.last and "from" in self.t:
            self.prof.__exit__(None, None, None)
            self.t["to"] = time.perf_counter()

    def summary(self) -> dict:
        n = self.last - self.first
        by_kind, top = {}, {}
        for ev in self.prof.events():
            if ev.device_type.name != "CUDA":
                continue
            us = ev.device_time if hasattr(ev, "device_time") else ev.cuda_time
            by_kind[kind_of(ev.name)] = by_kind.get(kind_of(ev.name), 0.0) + us / 1e3 / n
            top[ev.name[:400]] = top.get(ev.name[:400], 0.0) + us / 1e3 / n  # long enough to name a lambda's op
        out = {"strided_ms_by_line": self.strided_by_line(n)} if self.stacks else {}
        return {**out, "updates": n, "wall_ms_per_update": round(1e3 * (self.t["to"] - self.t["from"]) / n, 2),
                "kernel_ms_per_update": round(sum(by_kind.values()), 2),
                "ms_by_kind": {k: round(v, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
                "top_kernels_ms": {k: round(v, 3) for k, v in sorted(top.items(), key=lambda kv: -kv[1])[:25]}}


    def strided_by_line(self, n: int) -> dict:
        """Time of the elementwise kernels PyTorch runs over non-contiguous tensors (its unvectorised
        `elementwise_kernel<128, 4, ...>`), by the line of our code, or torch.nn's, that launched them:
        where the layouts that cost them come from. Needs --eager (a graph's replay has no Python)."""
        lines = {}
        for ev in self.prof.events():
            for k in getattr(ev, "kernels", []):
                if "elementwise_kernel<128, 4" not in k.name:
                    continue
                # the op that launched it is often an inner one (aten::copy_ under aten::contiguous): walk up
                # to the op with a Python frame, or, in the backward pass (no Python), to the autograd node
                chain, frame, p = [], None, ev
                while p is not None and frame is None:
                    chain.append(p.name.replace("autograd::engine::evaluate_function: ", "bwd "))
                    frame = next((f for f in [p.name] + list(p.stack or []) if "sd_trainplan/" in f
                                  or "torch/nn/modules" in f), None)
                    p = p.cpu_parent
                chain = [c for c in chain if "(" not in c or c.startswith("bwd")]  # ops, not Python frames
                shapes = str(getattr(ev, "input_shapes", "") or "")[:80]
                bwd = next((c for c in chain if c.startswith("bwd ")), "")
                key = f"{frame or '?'} | {' < '.join(c for c in chain[:3] if c != bwd)} | {bwd} | {shapes}"
                lines[key] = lines.get(key, 0.0) + k.duration / 1e3 / n  # (profiler_util.Kernel: µs)
        return {k: round(v, 3) for k, v in sorted(lines.items(), key=lambda kv: -kv[1])[:30]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="ti", choices=("dreambooth", "lora", "ti"))
    ap.add_argument("--bs", type=int, default=4)
    ap.add_argument("--updates", type=int, default=40)
    ap.add_argument("--window", default="20:30", help="first:last update of the profiled window")
    ap.add_argument("--eager", action="store_true", help="no CUDA graphs")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--stacks", action="store_true", help="with --eager: strided elementwise kernels' time by line")
    ap.add_argument("--out")
    args = ap.parse_args()
    first, last = (int(x) for x in args.window.split(":"))
    cuda = torch.cuda.is_available() and not args.tiny
    res = 64 if args.tiny else 512
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(method=args.method, model="tiny" if args.tiny else "random-sd1",
                          data=str(images(Path(tmp) / "images", res)), output=str(Path(tmp) / "out"),
                          resolution=res, batch_size=args.bs, steps=args.updates, log_every=1, token="sks",
                          init_word="dog", instance_prompt="a photo of [name] dog", cuda_graphs=not args.eager,
                          device="cuda" if cuda else "cpu", val_split=0, sample_every=0, val_every=0)
        window = Window(first, last, cuda, args.stacks)
        events = []
        train(cfg, sinks=[window, events.append])
    report = {"date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name() if cuda else "cpu",
              "method": args.method, "batch_size": args.bs, "resolution": res, "cuda_graphs": not args.eager,
              "graphs_note": next((e.message for e in events if "CUDA graphs off" in (e.message or "")), None),
              **window.summary()}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
