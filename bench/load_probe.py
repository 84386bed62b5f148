"""Where a model load's seconds go on a GPU machine (issue 16): the imports, the CUDA context, and
three ways of moving a 3.4 GB fp32 safetensors file (SD1.5's UNet size) from the page cache to the GPU.

  python bench/load_probe.py [--gb 3.4] [--out FILE.json]

A: safetensors get_tensor per tensor, then .to(cuda)  (what models/direct_load.py does)
B: safe_open(device="cuda:0")
C: the file mapped once (numpy memmap), 256 MiB pieces through one pinned buffer, views per tensor
"""
from __future__ import annotations

import argparse
import json
import time

T0 = time.monotonic()
marks = {}


def mark(name: str, since: float) -> float:
    now = time.monotonic()
    marks[name] = round(now - since, 3)
    print(f"{name}: {now - since:.2f} s", flush=True)
    return now


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=3.4)
    ap.add_argument("--out")
    args = ap.parse_args()
    t = T0
    import torch
    t = mark("import torch", t)
    torch.cuda.init()
    torch.empty(1, device="cuda")
    torch.cuda.synchronize()
    t = mark("CUDA context", t)
    from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401
    t = mark("import diffusers models", t)
    from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401
    t = mark("import transformers CLIP", t)
    import accelerate  # noqa: F401
    t = mark("import accelerate", t)
    from safetensors import safe_open
    from safetensors.torch import save_file
    n = 686
    per = int(args.gb * 1e9 / 4 / n)
    path = "/tmp/load_probe.safetensors"
    tensors = {f"w{i:03d}": torch.empty(per) for i in range(n)}
    t = mark("allocate the CPU tensors (first touch when written)", t)
    save_file(tensors, path)
    del tensors
    t = mark(f"write {args.gb} GB", t)
    for rep in (1, 2):
        with safe_open(path, framework="pt") as f:
            out = [f.get_tensor(k).to("cuda") for k in f.keys()]
        torch.cuda.synchronize()
        del out
        t = mark(f"A get_tensor + to(cuda), try {rep}", t)
        with safe_open(path, framework="pt", device="cuda:0") as f:
            out = [f.get_tensor(k) for k in f.keys()]
        torch.cuda.synchronize()
        del out
        t = mark(f"B safe_open(device=cuda), try {rep}", t)
        out = mapped_to_gpu(path, torch)
        torch.cuda.synchronize()
        del out
        t = mark(f"C mapped, pinned pieces, try {rep}", t)
    marks["total"] = round(time.monotonic() - T0, 3)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(marks, f, indent=1)


def mapped_to_gpu(path: str, torch, piece: int = 256 * 2**20):
    import numpy as np
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    start = 8 + n
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    total = len(mm) - start
    gpu = torch.empty(total, dtype=torch.uint8, device="cuda")
    pinned = [torch.empty(piece, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
    events = [None, None]
    for k, off in enumerate(range(0, total, piece)):
        m = min(piece, total - off)
        b = k % 2
        if events[b] is not None:
            events[b].synchronize()
        pinned[b][:m].numpy()[:] = mm[start + off:start + off + m]
        gpu[off:off + m].copy_(pinned[b][:m], non_blocking=True)
        events[b] = torch.cuda.Event()
        events[b].record()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, e = info["data_offsets"]
        out[name] = gpu[a:e].view(torch.float32)
    return out


if __name__ == "__main__":
    main()
