"""Our training step against the diffusers-recipe step, side by side in one process on one GPU.

SD1.5-size random-initialised models at 512 px (speed and memory do not depend on the values).
"recipe": what the diffusers example scripts do each step: VAE and text encode every step, fp32
master weights, foreach AdamW, bf16 autocast, grad-norm clip (as shared/bench/anchor_step.py).
"ours": sd_trainplan's trainer (train() on a synthetic dataset): cached latents and
conditioning, bf16 frozen weights, fused AdamW, the update replayed from CUDA graphs.
"ours_lowvram": the same with gradient checkpointing and 8-bit AdamW.

  python bench/step_bench.py [--only db,lora,ti] [--bs 1,4,8,16] [--impl ours,recipe,ours_lowvram,ours_compiled]
                             [--steps 20] [--out bench/results] [--tiny]   (--tiny: a CPU smoke run)

Prints img/s, ms/step, peak GiB, FLOP per step and the fraction of the measured bf16 matmul
peak, and writes bench/results/<date>-<gpu>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sd_trainplan.models.diffusers_adapter import DiffusersAdapter  # noqa: E402
from sd_trainplan.models.single_file import SCHEDULER, SD1_TEXT, SD_UNET, SD_VAE  # noqa: E402
from sd_trainplan.models.tiny_diffusers import TEXT as TINY_TEXT, UNET as TINY_UNET, VAE as TINY_VAE  # noqa: E402
from sd_trainplan.plan.memory import estimate_gib  # noqa: E402
from sd_trainplan.train.config import TrainConfig  # noqa: E402
from sd_trainplan.train.loop import train  # noqa: E402
from sd_trainplan.train.sample_data import make_shapes  # noqa: E402

METHODS = {"db": "dreambooth", "lora": "lora", "ti": "ti"}


def build(tiny: bool, device, dtype=torch.float32):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    from sd_trainplan.models.clip_vocab import clip_tokenizer
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**(TINY_UNET if tiny else SD_UNET))
        vae = AutoencoderKL(**(TINY_VAE if tiny else SD_VAE))
        text = CLIPTextModel(CLIPTextConfig(**(TINY_TEXT if tiny else SD1_TEXT)))
    return unet.to(dtype), vae.to(dtype), text.to(dtype), clip_tokenizer()


def matmul_peak(device) -> float:
    if device.type != "cuda":
        return float("nan")
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return 2 * 8192 ** 3 * 20 / (time.perf_counter() - t) / 1e12


def unet_flops(unet, bs: int, res: int, cross: int, device, text=None) -> float:
    """FLOP of one training step's model work: UNet forward + backward (+ the text encoder for TI)."""
    from torch.utils.flop_counter import FlopCounterMode
    lat = torch.randn(bs, 4, res // 8, res // 8, device=device)
    c = torch.randn(bs, 77, cross, device=device, requires_grad=True)  # TI: gradients flow to the conditioning
    fc = FlopCounterMode(display=False)
    with fc, torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = unet(lat, torch.randint(0, 1000, (bs,), device=device), encoder_hidden_states=c).sample
        out.float().square().mean().backward()
    unet.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(step, warm: int, steps: int, device) -> float:
    """Seconds per call of step(), after `warm` calls, over `steps` calls."""
    for _ in range(warm):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - t0) / steps


def reset_memory(device):
    import gc
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device) -> float:
    """Peak memory the process held (reserved), so a CUDA graph's private pool counts in full."""
    return torch.cuda.max_memory_reserved() / 2 ** 30 if device.type == "cuda" else float("nan")


def peak_alloc_gib(device) -> float:
    return torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else float("nan")


def recipe(method: str, bs: int, res: int, tiny: bool, device, steps: int, warm: int = 5) -> dict:
    """The diffusers example scripts' step."""
    unet, vae, text, tok = build(tiny, device)
    wdt = torch.bfloat16 if device.type == "cuda" else torch.float32
    vae.requires_grad_(False).to(wdt)
    ac = torch.cumprod(1 - torch.linspace(0.00085 ** .5, 0.012 ** .5, 1000, device=device) ** 2, 0)
    if method == "db":
        text.requires_grad_(False).to(wdt)
        params = list(unet.parameters())
    elif method == "lora":
        from peft import LoraConfig
        unet.requires_grad_(False).to(wdt)
        text.requires_grad_(False).to(wdt)
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                    target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
        params = [p for p in unet.parameters() if p.requires_grad]
        for p in params:
            p.data = p.data.float()
    else:
        unet.requires_grad_(False).to(wdt)
        text.requires_grad_(False)
        emb = text.get_input_embeddings()
        emb.weight.requires_grad_(True)
        params = [emb.weight]
    opt = torch.optim.AdamW(params, lr=1e-6, weight_decay=1e-2, foreach=True)
    reset_memory(device)  # the peak of training, not of building random models in fp32
    pix = torch.randn(bs, 3, res, res, device=device, dtype=wdt)
    ids = tok(["a photo of a sks dog"] * bs, padding="max_length", max_length=77, return_tensors="pt").input_ids.to(device)

    def step():
        with torch.no_grad():
            latents = vae.encode(pix).latent_dist.sample() * 0.18215
        if method == "ti":
            enc = text(ids)[0]
        else:
            with torch.no_grad():
                enc = text(ids)[0]
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (bs,), device=device)
        a = ac[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents.float() + (1 - a).sqrt() * noise.float()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            pred = unet(noisy, t, enc).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    dt = time_steps(step, warm, steps, device)
    flops = unet_flops(unet, bs, res, unet.config.cross_attention_dim, device)
    out = dict(impl="recipe", ms_per_step=dt * 1e3, img_per_s=bs / dt, peak_gib=peak_alloc_gib(device),
               peak_reserved_gib=peak_gib(device), flop_per_step=flops)
    return out


def timed_train(cfg_kw: dict, adapter, device, warm: int, steps: int, impl: str, log: int = 5) -> dict:
    """train() on `adapter`, timed between the progress events after `warm` updates and the last."""
    total = warm + steps
    total += (-total) % log
    cfg = TrainConfig(steps=total, log_every=log, keep_last=1, noise_scale=False, device=str(device), **cfg_kw)
    marks, notes, phase = {}, [], {}

    def sink(ev):
        if ev.kind == "step" and ev.step:
            sync(device)
            marks[ev.step] = time.perf_counter()
        if ev.kind == "prepare" and ("CUDA graphs" in ev.message or "low VRAM" in ev.message):
            notes.append(ev.message)
        if ev.kind == "prepare" and ev.message.startswith("encoded ") and device.type == "cuda":
            phase["encode"] = peak_alloc_gib(device)  # the peak while images and prompts were encoded
            torch.cuda.reset_peak_memory_stats()       # from here: the updates' own peak

    t0 = time.perf_counter()
    train(cfg, adapter=adapter, sinks=[sink], export=False)
    first = min(s for s in marks if s >= warm)
    dt = (marks[total] - marks[first]) / (total - first)
    train_peak = peak_alloc_gib(device)
    return dict(impl=impl, ms_per_step=dt * 1e3, img_per_s=cfg.batch_size / dt,
                peak_gib=max(train_peak, phase.get("encode", train_peak)), peak_encode_gib=phase.get("encode"),
                peak_train_gib=train_peak, peak_reserved_gib=peak_gib(device), notes=notes,
                first_log_s=marks[min(marks)] - t0)  # set-up, recording (and compiling) to the first log step


def ours(method: str, bs: int, res: int, tiny: bool, device, steps: int, data: Path, lowvram: bool = False,
         warm: int = 10, channels_last: str = "auto", compiled: bool = False) -> dict:
    """sd_trainplan's trainer on a synthetic dataset (`compiled`: with `compile = true`)."""
    unet, vae, text, tok = build(tiny, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    adapter = DiffusersAdapter(unet, vae, text, tok, SCHEDULER, device, unet.dtype, "random SD1.5")
    reset_memory(device)  # the peak of training, not of building random models in fp32
    kw = dict(method=METHODS[method], data=str(data), output=str(data.parent / "runs"), resolution=res,
              batch_size=bs, lr=1e-6 if method == "db" else 1e-4, gradient_checkpointing=lowvram,
              optimizer="adamw8bit" if lowvram else "adamw", token="sks", channels_last=channels_last,
              compile=compiled)
    return timed_train(kw, adapter, device, warm, steps, "ours_compiled" if compiled else
                       "ours_lowvram" if lowvram else "ours")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip() or os.environ.get("SD_TRAINPLAN_COMMIT", "?")
    except OSError:
        return os.environ.get("SD_TRAINPLAN_COMMIT", "?")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="db,lora,ti")
    ap.add_argument("--bs", default="1,4,8,16")
    ap.add_argument("--impl", default="recipe,ours")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"), help="ours: NHWC UNet weights")
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU: checks the script, measures nothing")
    a = ap.parse_args()
    device = torch.device("cpu" if a.tiny else "cuda")
    res = 64 if a.tiny else a.res
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = matmul_peak(device)
    print(json.dumps({"gpu": gpu, "matmul_peak_tflops": peak}), flush=True)
    bss = [int(x) for x in a.bs.split(",")]
    tmp = Path(tempfile.mkdtemp())
    data = make_shapes(tmp / "data", size=res, per_kind=max(1, -(-2 * max(bss) // 12)))
    rows = []
    for m in a.only.split(","):
        for bs in bss:
            for impl in a.impl.split(","):
                try:
                    if impl == "recipe":
                        r = recipe(m, bs, res, a.tiny, device, a.steps)
                    else:
                        r = ours(m, bs, res, a.tiny, device, a.steps, data, lowvram=impl == "ours_lowvram",
                                 channels_last=a.channels_last, compiled=impl == "ours_compiled")
                        r["channels_last"] = a.channels_last
                except Exception as e:  # one failure must not lose the other rows
                    r = dict(impl=impl, error=f"{type(e).__name__}: {e}"[:400])
                r.update(method=METHODS[m], bs=bs)
                r["estimated_gib"] = estimate_gib(METHODS[m], bs, res, "ours" if impl == "ours_compiled" else impl)
                if "flop_per_step" not in r:
                    r["flop_per_step"] = next((x["flop_per_step"] for x in rows
                                               if x.get("flop_per_step") and x["method"] == r["method"]
                                               and x["bs"] == bs), None)
                print(json.dumps(r), flush=True)
                rows.append(r)
    result = {"gpu": gpu, "commit": commit(), "date": time.strftime("%Y-%m-%d"), "matmul_peak_tflops": peak,
              "res": res, "rows": rows}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = out / f"{time.strftime('%Y-%m-%d')}-{gpu.replace(' ', '_')}.json"
    name.write_text(json.dumps(result, indent=1))
    print(f"\n{gpu}, bf16 matmul peak {peak:.0f} TFLOP/s, {res} px; wrote {name}")
    print(f"{'method':11} {'bs':>3} {'impl':13} {'ms/step':>8} {'img/s':>7} {'x recipe':>8} {'peak GiB':>8}"
          f" {'est GiB':>7} {'TFLOP':>6} {'%peak':>6}")
    for r in rows:
        if "error" in r:
            print(f"{r['method']:11} {r['bs']:>3} {r['impl']:13} ERROR {r['error'][:80]}")
            continue
        base = next((x for x in rows if x["method"] == r["method"] and x["bs"] == r["bs"] and x["impl"] == "recipe"
                     and "error" not in x), None)
        speed = r["img_per_s"] / base["img_per_s"] if base else float("nan")
        f = r.get("flop_per_step") or 0
        mfu = f / (r["ms_per_step"] / 1e3) / (peak * 1e12) * 100 if f and peak == peak else float("nan")
        print(f"{r['method']:11} {r['bs']:>3} {r['impl']:13} {r['ms_per_step']:8.1f} {r['img_per_s']:7.1f}"
              f" {speed:8.2f} {r['peak_gib']:8.2f} {r['estimated_gib']:7.2f} {f / 1e12:6.2f} {mfu:6.1f}")


if __name__ == "__main__":
    main()
