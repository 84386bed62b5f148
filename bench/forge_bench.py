"""Training inside Forge against our standalone path, on the same SD1.5-size checkpoint, in one
process on one GPU (issue 14, item 5).

One random single-file SD1.5 checkpoint (ours: models/load.random_model, saved in the ldm layout
by its checkpoint_state) is trained two ways, one row per method and batch size:
- "standalone": train() given the file as its model, so our standalone loader reads it
  (models/single_file.py through diffusers' from_single_file), in bf16 (the standalone default);
- "forge": Forge's own model of the same file, built as Forge builds it at the first generation
  (modules/sd_models.py forge_model_reload: backend/loader.py forge_loader under inference mode,
  huggingface_guess for the config, its memory manager's dtypes) and loaded on the GPU as a
  generation loads it; each run then goes through what the tab runs in Forge: ForgeHost.load_adapter
  (host/forge_session.py: the checks, plain tensors, norm hooks, SDPA; host/forge_adapter.py),
  train(), and ForgeHost.restore. "forge-bf16" is the same with Forge's own --unet-in-bf16.
Forge's `backend` runs here without its web server; the few parts of its `modules` package that
the backend and our host code read are stand-ins (bench/forge_standin/modules, each value cited).
Before the first Forge row and after the last, every tensor of Forge's UNet, CLIP and VAE is
hashed (sha256, as the test probe does): the bench says whether they are bit-identical, and
still inference tensors, after TI and LoRA runs on the GPU.

Per row: steady ms per update (timed between progress events after the warm-up), the first
update's time from Start (standalone: the file load included; Forge: the model is already loaded,
as after a generation), and the GPU memory peak (max_memory_allocated, and reserved, from just
before the run; Forge's resident model counts, as the standalone row's loaded model does).

  python bench/forge_bench.py [--forge build/hosts/forge] [--bs 1,4] [--method ti,lora]
                              [--variants standalone,forge,forge-bf16] [--steps 20] [--budget-s 330]
                              [--ckpt FILE] [--out bench/results] [--tiny]
--tiny: the CPU, 64 px, batch size 1, 2 updates: checks the script end to end, measures nothing.
On a GPU machine without Forge: carry Forge's backend/ (with only backend/huggingface/runwayml/
stable-diffusion-v1-5 of its configs), packages_3rdparty/ and repositories/huggingface_guess/ in one
folder (3 MB) for --forge, and its pins as wheels (diffusers 0.31.0, transformers 4.46.1, tokenizers,
huggingface_hub, accelerate, peft, importlib_metadata; clip-anytorch for our CLIP vocabulary).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STANDIN = HERE / "forge_standin"


def forge_imports(forge: Path, cpu: bool) -> None:
    """Forge's backend importable as in Forge (its tree's root, packages_3rdparty, huggingface_guess),
    our stand-in `modules` first. backend/args.py parses sys.argv when imported: Forge's flags go there."""
    sys.argv = sys.argv[:1] + (["--always-cpu"] if cpu else [])
    sys.path[:0] = [str(STANDIN), str(forge), str(forge / "packages_3rdparty"),
                    str(forge / "repositories" / "huggingface_guess")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def make_checkpoint(path: Path, device) -> None:
    """A random SD1.5-size model saved as one single-file checkpoint (fp16, the ldm key layout)."""
    import torch
    from safetensors.torch import save_file
    from sd_trainplan.models.load import random_model
    adapter = random_model("sd1", device, torch.float16)
    state = {k: v.detach().to("cpu", torch.float16 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in adapter.checkpoint_state().items()}
    del adapter
    save_file(state, str(path))


def forge_load(path: Path, embeddings: Path, unet_bf16: bool):
    """The engine as modules/sd_models.py forge_model_reload builds it: dynamic_args set, then
    backend.loader.forge_loader(file) in inference mode; then its parts loaded on the device as the
    first generation loads them (memory_management.load_models_gpu)."""
    import torch
    from backend import memory_management
    from backend.args import args, dynamic_args
    from backend.loader import forge_loader
    args.unet_in_bf16 = unet_bf16  # Forge's own --unet-in-bf16 (memory_management.unet_dtype reads it)
    dynamic_args["forge_unet_storage_dtype"] = None  # "Diffusion in Low Bits": Automatic
    dynamic_args["embedding_dir"] = str(embeddings)
    dynamic_args["emphasis_name"] = "Original"
    with torch.inference_mode():
        engine = forge_loader(str(path))
        fo = engine.forge_objects
        memory_management.load_models_gpu([fo.unet, fo.clip.patcher, fo.vae.patcher])
    return engine


def forge_unload(engine) -> None:
    from backend import memory_management
    memory_management.unload_all_models()
    del engine
    memory_management.soft_empty_cache()


def forge_parts(engine):
    fo = engine.forge_objects_original
    return {"unet": fo.unet.model, "clip": fo.clip.cond_stage_model, "vae": fo.vae.first_stage_model}


def tensor_hashes(engine) -> dict:
    """sha256 and dtype of every tensor of the UNet, text encoder and VAE, by name (as
    tests/hosts/probe does over HTTP), and how many tensors are inference tensors."""
    import torch
    out, inference = {}, 0
    for prefix, module in forge_parts(engine).items():
        for name, t in module.state_dict(keep_vars=True).items():
            inference += int(t.is_inference())
            data = t.detach().cpu().contiguous()
            out[f"{prefix}.{name}"] = hashlib.sha256(data.view(-1).view(torch.uint8).numpy().tobytes()).hexdigest() \
                + f":{data.dtype}"
    return {"hashes": out, "inference": inference}


def sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_memory(device) -> float:
    """Frees what the last row left, resets the peak; returns what is allocated now (GiB)."""
    import gc
    import torch
    gc.collect()
    if device.type != "cuda":
        return float("nan")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated() / 2 ** 30


def timed_run(cfg, adapter, device, t0: float, warm: int) -> dict:
    """train(cfg) on `adapter` (None: train() loads cfg.model), timed between the progress events
    after `warm` updates and the last; the first update's time is counted from t0 (Start)."""
    import torch
    from sd_trainplan.train.loop import train
    marks, first, loaded, graphs = {}, [], [], []

    def sink(ev):
        if ev.kind == "step" and ev.step:
            sync(device)
            marks[ev.step] = time.perf_counter()
        elif ev.kind == "prepare" and ev.message.startswith("first update done"):
            sync(device)
            first.append(time.perf_counter())
        elif ev.kind == "prepare" and ev.message.startswith("loaded in"):
            loaded.append(ev.message.split(":")[0])
        elif ev.kind == "prepare" and "CUDA graphs off" in ev.message:  # the fast path fell back to eager
            graphs.append(ev.message)

    result = train(cfg, adapter=adapter, sinks=[sink], export=False)
    start = min(s for s in marks if s >= warm)
    dt = (marks[cfg.steps] - marks[start]) / (cfg.steps - start)
    row = dict(ms_per_update=dt * 1e3, img_per_s=cfg.batch_size / dt, first_update_s=first[0] - t0,
               loss=result.last_loss, timings=result.timings,
               cuda_graphs="off: " + graphs[0] if graphs else "on" if device.type == "cuda" else "-")
    if device.type == "cuda":
        row.update(peak_gib=torch.cuda.max_memory_allocated() / 2 ** 30,
                   peak_reserved_gib=torch.cuda.max_memory_reserved() / 2 ** 30)
    if loaded:
        row["load"] = loaded[0]
    return row


def run_config(method: str, bs: int, res: int, data: Path, device, total: int, log: int, model: str = ""):
    from sd_trainplan.train.config import TrainConfig
    return TrainConfig(method=method, model=model, data=str(data), output=str(data.parent / "runs"), resolution=res,
                       batch_size=bs, lr=5e-3 if method == "ti" else 1e-4, token="zwx", steps=total, log_every=log,
                       keep_last=1, noise_scale=False, val_split=0, val_every=0, sample_every=0, device=str(device))


def standalone_row(ckpt: Path, method: str, bs: int, res: int, data: Path, device, total: int, log: int,
                   warm: int) -> dict:
    base = reset_memory(device)
    cfg = run_config(method, bs, res, data, device, total, log, model=str(ckpt))
    return dict(timed_run(cfg, None, device, time.perf_counter(), warm), resident_gib=base)


def forge_row(method: str, bs: int, res: int, data: Path, device, total: int, log: int, warm: int) -> dict:
    """What Start in the tab runs in Forge: ForgeHost.load_adapter, train(), ForgeHost.restore."""
    from sd_trainplan.host.forge_hooks import ForgeHost
    base = reset_memory(device)
    cfg = run_config(method, bs, res, data, device, total, log)
    host = ForgeHost(log=lambda text: None)
    t0 = time.perf_counter()
    adapter = host.load_adapter(cfg)
    prepared = time.perf_counter() - t0
    try:
        row = timed_run(cfg, adapter, device, t0, warm)
    finally:
        host.restore()
    return dict(row, prepare_s=prepared, resident_gib=base, unet_dtype=str(adapter.dtype).replace("torch.", ""),
                notes=[n for n in host.status.snapshot().get("notes", [])])


def commit() -> str:
    """SD_TRAINPLAN_COMMIT when set (a copy without .git, e.g. on the GPU machine, may sit inside
    another checkout, whose HEAD git would report), else this checkout's HEAD."""
    if os.environ.get("SD_TRAINPLAN_COMMIT"):
        return os.environ["SD_TRAINPLAN_COMMIT"]
    import subprocess
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    except OSError:
        out = ""
    return out.strip() or "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--forge", default=str(Path(os.environ.get("SD_TRAINPLAN_HOSTS", ROOT / "build" / "hosts")) / "forge"),
                    help="Forge's tree (its backend/, packages_3rdparty/, repositories/huggingface_guess/)")
    ap.add_argument("--bs", default="1,4")
    ap.add_argument("--method", default="ti,lora")
    ap.add_argument("--variants", default="standalone,forge,forge-bf16")
    ap.add_argument("--steps", type=int, default=20, help="timed updates per row (after the warm-up)")
    ap.add_argument("--warm", type=int, default=10)
    ap.add_argument("--budget-s", type=float, default=330, help="start no new row after this many seconds")
    ap.add_argument("--ckpt", help="the checkpoint to use (made when missing)")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    began = time.perf_counter()
    forge = Path(a.forge).resolve()
    if not (forge / "backend" / "loader.py").is_file():
        sys.exit(f"--forge: {forge} has no backend/loader.py (Forge's tree: make hosts builds it)")
    forge_imports(forge, a.tiny)
    sys.path.insert(0, str(ROOT))
    import torch
    device = torch.device("cpu" if a.tiny else "cuda")
    res = 64 if a.tiny else 512
    bss = [1] if a.tiny else [int(x) for x in a.bs.split(",")]
    warm, steps, log = (1, 2, 1) if a.tiny else (a.warm, a.steps, 5)
    total = warm + steps + (-(warm + steps)) % log
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    root = Path(tempfile.mkdtemp(prefix="forge-bench-"))
    from sd_trainplan.train.sample_data import make_shapes
    data = make_shapes(root / "data", size=res, per_kind=max(1, -(-2 * max(bss) // 12)))
    ckpt = Path(a.ckpt) if a.ckpt else root / "rand-sd15.safetensors"
    t = time.perf_counter()
    if not ckpt.is_file():
        make_checkpoint(ckpt, device)
    info = dict(gpu=gpu, date=time.strftime("%Y-%m-%d"), commit=commit(), torch=torch.__version__, res=res,
                checkpoint=dict(name=ckpt.name, mb=round(ckpt.stat().st_size / 1e6), made_or_read_s=time.perf_counter() - t))
    import diffusers
    import transformers
    info.update(diffusers=diffusers.__version__, transformers=transformers.__version__)
    print(json.dumps(info), flush=True)
    rows, checks = [], []
    methods = a.method.split(",")

    from sd_trainplan.plan.memory import estimate_gib

    def add(row):
        if "bs" in row and "method" in row:  # what the planner says this run needs
            row["estimated_gib"] = estimate_gib(row["method"], row["bs"], res, row["impl"])
        print(json.dumps(row), flush=True)
        rows.append(row)

    def over_budget(what) -> bool:
        if time.perf_counter() - began > a.budget_s:
            add(dict(what, skipped=f"over the {a.budget_s:.0f} s budget"))
            return True
        return False

    variants = a.variants.split(",")
    if "standalone" in variants:
        for method in methods:
            for bs in bss:
                what = dict(impl="standalone", method=method, bs=bs)
                if over_budget(what):
                    continue
                try:
                    add(dict(what, **standalone_row(ckpt, method, bs, res, data, device, total, log, warm)))
                except Exception as e:  # keep the other rows
                    import traceback
                    traceback.print_exc()
                    add(dict(what, error=f"{type(e).__name__}: {e}"[:400]))
    from modules import shared  # the stand-in: the engine goes where Forge keeps it
    for variant in [v for v in variants if v.startswith("forge")]:
        if over_budget(dict(impl=variant)):
            continue
        reset_memory(device)
        t = time.perf_counter()
        engine = forge_load(ckpt, root / "embeddings", unet_bf16=variant == "forge-bf16")
        loaded_s = time.perf_counter() - t
        shared.sd_model = engine
        dtypes = {k: str(next(m.parameters()).dtype).replace("torch.", "") for k, m in forge_parts(engine).items()}
        before = tensor_hashes(engine)
        check = dict(impl=variant, forge_load_s=loaded_s, dtypes=dtypes, tensors=len(before["hashes"]),
                     inference_before=before["inference"], runs=[])
        print(json.dumps(check), flush=True)
        for method in methods:
            for bs in bss:
                what = dict(impl=variant, method=method, bs=bs)
                if over_budget(what):
                    continue
                try:
                    add(dict(what, **forge_row(method, bs, res, data, device, total, log, warm)))
                    check["runs"].append(f"{method} bs {bs}")
                except Exception as e:
                    import traceback
                    traceback.print_exc()
                    add(dict(what, error=f"{type(e).__name__}: {e}"[:400]))
        after = tensor_hashes(engine)
        changed = sorted(k for k in before["hashes"] if after["hashes"].get(k) != before["hashes"][k])
        check.update(inference_after=after["inference"], bit_identical=not changed and
                     set(after["hashes"]) == set(before["hashes"]), changed=changed[:20])
        print(json.dumps(check), flush=True)
        checks.append(check)
        shared.sd_model = None
        forge_unload(engine)

    result = dict(info, rows=rows, forge_tensors=checks, seconds=time.perf_counter() - began)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = out / f"{info['date']}-{gpu.replace(' ', '_')}-forge.json"
    name.write_text(json.dumps(result, indent=1))
    print(f"\n{gpu}, SD1.5-size random checkpoint, {res} px; wrote {name}")
    for r in rows:
        if "error" in r or "skipped" in r:
            print(f"{r.get('method', '-'):5} {r.get('bs', '-'):>3} {r['impl']:11} {r.get('error') or r.get('skipped')}")
            continue
        print(f"{r['method']:5} {r['bs']:>3} {r['impl']:11} {r['ms_per_update']:8.1f} ms/update"
              f" first {r['first_update_s']:6.1f} s  peak {r.get('peak_gib', float('nan')):6.2f} GiB")
    for c in checks:
        print(f"{c['impl']}: {c['tensors']} tensors ({c['dtypes']}) bit-identical after {c['runs']}: {c['bit_identical']};"
              f" inference tensors {c['inference_before']} -> {c['inference_after']}")


if __name__ == "__main__":
    main()
