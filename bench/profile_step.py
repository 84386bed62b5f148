"""Where a Dreambooth step's GPU time goes: the SD1.5-size UNet at 512 px (fp32 masters, bf16
autocast, fused AdamW, as our fast path computes it), eagerly under torch.profiler, with the CUDA
kernel time summed by kind (matmul, convolution, attention, normalisation, optimizer, the rest).
Then each SDPA backend alone on the UNet's attention shapes, forward + backward, and optionally
torch.compile's UNet against eager.

  python bench/profile_step.py [--bs 16] [--compile] [--out bench/results]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from step_bench import build, commit, matmul_peak, time_steps  # noqa: E402

KINDS = [("attention", r"flash|fmha|attention|sdpa|cudnn_generated_fort_native_sdpa"),
         ("convolution", r"conv|implicit_gemm|dgrad|wgrad|fprop|xmma_.*nhwc"),
         ("matmul", r"gemm|nvjet|cutlass|sm90_xmma|cublas"),
         ("normalisation", r"norm"),
         ("optimizer", r"adam|multi_tensor|foreach")]


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, pattern in KINDS:
        if re.search(pattern, low):
            return kind
    return "other (elementwise, casts, copies)"


def unet_step(unet, opt, bs: int, device):
    lat = torch.randn(bs, 4, 64, 64, device=device)
    cond = torch.randn(bs, 77, 768, device=device)
    t = torch.randint(0, 1000, (bs,), device=device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = unet(lat, t, encoder_hidden_states=cond).sample
        out.float().square().mean().backward()
        torch.nn.utils.clip_grad_norm_(list(unet.parameters()), 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def timed(fn, n: int = 10) -> float:
    """ms per call, after 3 warm-up calls."""
    return time_steps(fn, 3, n, torch.device("cuda")) * 1e3


def profile(step) -> dict:
    from torch.profiler import ProfilerActivity, profile as prof
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with prof(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(3):
            step()
        torch.cuda.synchronize()
    by_kind, top = {}, {}
    for e in p.events():
        if e.device_type.name != "CUDA":
            continue
        us = e.device_time if hasattr(e, "device_time") else e.cuda_time
        by_kind[kind_of(e.name)] = by_kind.get(kind_of(e.name), 0.0) + us / 3e3
        top[e.name[:90]] = top.get(e.name[:90], 0.0) + us / 3e3
    return {"ms_by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
            "top_kernels_ms": dict(sorted(top.items(), key=lambda kv: -kv[1])[:25])}


def sdpa_backends(bs: int, device) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F
    out = {}
    for name, (q_len, kv_len) in {"self 64x64": (4096, 4096), "cross 64x64": (4096, 77)}.items():
        q = torch.randn(bs, 8, q_len, 40, device=device, dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(bs, 8, kv_len, 40, device=device, dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(bs, 8, kv_len, 40, device=device, dtype=torch.bfloat16, requires_grad=True)
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
            def fb():
                with sdpa_kernel([backend]):
                    F.scaled_dot_product_attention(q, k, v).sum().backward()
            try:
                out[f"{name} {backend.name}"] = round(timed(fb), 3)
            except Exception as e:  # noqa: BLE001 - a backend that does not take this shape
                out[f"{name} {backend.name}"] = f"{type(e).__name__}: {str(e)[:120]}"
        q.grad = k.grad = v.grad = None
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = ap.parse_args()
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    unet, _, _, _ = build(False, device)
    unet.train()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-6, fused=True)
    step = unet_step(unet, opt, a.bs, device)
    res = {"gpu": torch.cuda.get_device_name(), "commit": commit(), "bs": a.bs, "torch": torch.__version__,
           "matmul_peak_tflops": matmul_peak(device), "eager_ms": timed(step)}
    res.update(profile(step))
    res["sdpa_fwd_bwd_ms"] = sdpa_backends(a.bs, device)
    if a.compile:
        t0 = time.perf_counter()
        unet.forward = torch.compile(unet.forward)
        step()
        res["compile_s"] = time.perf_counter() - t0
        res["compiled_ms"] = timed(step)
    print(json.dumps(res, indent=1))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{time.strftime('%Y-%m-%d')}-profile-bs{a.bs}-{res['gpu'].replace(' ', '_')}.json").write_text(
        json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
