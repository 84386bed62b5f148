"""SDXL: our trainer on the DiffusionEngine the WebUI has loaded and our standalone diffusers SDXL path,
side by side in one process on one GPU (and optionally the diffusers SDXL example scripts' step);
SDXL-size random weights, 1024 px.

"sdxl_ours": train() over host/sdxl_adapter.WebUiSgmAdapter on an sgm DiffusionEngine built from
  sd_xl_base.yaml (generative-models at the commit AUTOMATIC1111 1.10.1 pins, --sgm), loaded as the
  WebUI loads it: fp16, sd_models_xl.extend_sdxl, both text encoders hijacked (the WebUI's modules as
  tests/webui/standin mirrors them), Textual Inversion through its embedding database.
"sdxl_ours_lowvram": the same LoRA with the low-VRAM option (gradient checkpointing; the text encoders
  and VAE wait on the CPU while the UNet trains, the UNet while images and prompts are encoded:
  train/offload.py), 'auto' precision (bf16, CUDA graphs); "sdxl_ours_lowvram_fp16": the same computing
  in fp16 with loss scaling on the fp16 weights (eager), "sdxl_ours_lowvram_bf16_eager": bf16 without
  CUDA graphs, for comparison (train/precision.py says what they showed). Each sgm row checks that the
  loaded model's weights are bit for bit what they were (a checksum of every tensor's bits, on the GPU)
  and on the same devices.
"sdxl_standalone": train() over models/sdxl_diffusers.DiffusersSdxlAdapter (what `python -m sd_trainplan
  train --model <SDXL diffusers folder>` runs), built from SDXL's diffusers configs, frozen parts in bf16
  as the standalone loader puts them; "sdxl_standalone_lowvram": its LoRA with gradient checkpointing.
"sdxl_recipe": what the diffusers SDXL examples do each step (train_text_to_image_lora_sdxl.py,
  textual_inversion_sdxl.py): VAE and both text encoders every step, the size ids, bf16 autocast,
  peft LoRA on the attention projections (TI: both token-embedding tables in fp32), foreach AdamW,
  grad-norm clip (not in the default --impl: measured in 2026-11-30-NVIDIA_H200-sdxl.json).

  python bench/sdxl_bench.py --sgm DIR [--method ti,lora] [--bs 1,4]
        [--impl lowvram,lowvram_fp16,lowvram_bf16_eager,ours,standalone,standalone_lowvram,recipe]
        [--steps 5] [--budget 170]
        [--out DIR] [--tag sdxl-standalone] [--tiny]   (--tiny: a CPU smoke run)
Each row is printed as JSON as it ends and written to <out>/<date>-<gpu>-<tag>.json; --budget (s)
skips the rows that would start after it (a lease is short).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests" / "webui" / "standin"))  # the WebUI's modules, as the tests mirror them
sys.path.insert(0, str(ROOT / "tests" / "hosts"))

from step_bench import peak_alloc_gib, peak_gib, reset_memory, time_steps, timed_train  # noqa: E402

def build_loaded_sgm(sgm_root: Path, tiny: bool, root: Path, device):
    """The DiffusionEngine as AUTOMATIC1111 holds it after loading an SDXL checkpoint: returns the adapter."""
    import open_clip
    from omegaconf import OmegaConf
    from sgm.util import instantiate_from_config
    from modules import devices, sd_hijack, sd_models_xl, shared
    from modules.textual_inversion.textual_inversion import Embedding
    import make_tiny_sdxl
    from sd_trainplan.host.sdxl_adapter import WebUiSgmAdapter
    devices.device, devices.dtype_unet = device, torch.float16 if device.type == "cuda" else torch.float32
    clip_l = make_tiny_sdxl.write_clip_l(root / "clip-l", 0) if tiny else _clip_l_full(root)
    if tiny:
        conf = make_tiny_sdxl.tiny_sdxl_config(sgm_root, clip_l)
    else:  # the WebUI's settings for a checkpoint without xformers (modules/sd_models.py, sd_models_config.py)
        conf = OmegaConf.load(str(sgm_root / "configs" / "inference" / "sd_xl_base.yaml"))
        p = conf.model.params
        p.network_config.params.update(use_checkpoint=False, spatial_transformer_attn_type="softmax")
        p.first_stage_config.params.ddconfig.attn_type = "vanilla"
        p.conditioner_config.params.emb_models[0].params.version = str(clip_l)
        p.conditioner_config.params.emb_models[1].params.version = None  # built without weights, as the WebUI does
    import sgm.modules.diffusionmodules.discretizer as disc
    # Built on the GPU (random init of 3.5B parameters on a CPU takes minutes): open_clip is asked for
    # the CPU by sgm, and sgm's noise schedule goes through numpy, so both are kept where they work.
    original, schedule = open_clip.create_model_and_transforms, disc.make_beta_schedule
    open_clip.create_model_and_transforms = lambda *a, device=None, **kw: original(*a, device=dev, **kw)
    disc.make_beta_schedule = lambda *a, **kw: _on_cpu(schedule, *a, **kw)
    dev = device
    torch.manual_seed(0)
    try:
        with torch.device(device):
            model = instantiate_from_config(conf.model)
    except Exception as e:  # noqa: BLE001 - some other part wants the CPU: build it there
        print(f"building on {device} failed ({type(e).__name__}: {e}); building on the CPU", flush=True)
        dev = torch.device("cpu")
        model = instantiate_from_config(conf.model)
    finally:
        open_clip.create_model_and_transforms, disc.make_beta_schedule = original, schedule
    model = model.to(device, torch.float16 if device.type == "cuda" else torch.float32).eval()
    clip = model.conditioner.embedders[0].transformer
    if not hasattr(clip, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel; the WebUI's 4.30 has the
        object.__setattr__(clip, "text_model", clip)  # layer its hijack reaches (an alias, not a submodule)
    sd_models_xl.extend_sdxl(model)
    model.alphas_cumprod_original, model.is_sdxl, model.lowvram = model.alphas_cumprod, True, False
    hijack = sd_hijack.reset()
    hijack.hijack(model)
    shared.sd_model = model
    return WebUiSgmAdapter(model, device, hijack.embedding_db, Embedding, source="random SDXL (sgm)")


def _on_cpu(fn, *a, **kw):
    with torch.device("cpu"):
        return fn(*a, **kw)


def _clip_l_full(root: Path) -> Path:
    from ldm_bench import clip_l_folder
    return clip_l_folder(root)


def checksum(model) -> dict:
    """Every tensor's bits summed on its device (int64), with its dtype and device: equal before and after
    means untouched (a cheap stand-in for the tests' sha256, which would copy 7 GB to the host)."""
    out = {}
    with torch.no_grad():
        for k, v in model.state_dict().items():
            bits = v.detach().contiguous().view(-1)
            bits = bits.view(torch.int16 if v.element_size() == 2 else torch.int32 if v.element_size() == 4
                             else torch.int64 if v.element_size() == 8 else torch.uint8)
            out[k] = (bits.long().sum(), v.dtype, v.device)
    return {k: (int(s), d, dev) for k, (s, d, dev) in out.items()}


def ours(adapter, method: str, bs: int, res: int, device, steps: int, data: Path, impl: str) -> dict:
    """train() on the loaded DiffusionEngine (impl: ours | lowvram | lowvram_fp16 | lowvram_bf16_eager) or
    the standalone adapter (standalone | standalone_lowvram)."""
    lowvram = "lowvram" in impl
    before = checksum(adapter.model) if hasattr(adapter, "model") else None
    reset_memory(device)
    kw = dict(method=method, data=str(data), output=str(data.parent / "runs"), resolution=res, batch_size=bs,
              lr=5e-3 if method == "ti" else 1e-4, token=f"zwx{bs}{impl}".replace("_", ""), init_word="person",
              gradient_checkpointing=lowvram, precision="fp16" if "fp16" in impl else "auto",
              cuda_graphs=not impl.endswith("eager"))
    name = "sdxl_" + ("ours_" + impl if impl.startswith("lowvram") else "ours" if impl == "ours" else impl)
    try:
        r = timed_train(kw, adapter, device, 5, steps, name)
    finally:
        for tv in list(getattr(adapter, "tokens", [])):
            adapter.remove_token(tv)
    if before is not None:
        r["weights_unchanged"] = checksum(adapter.model) == before
    return r


def release(models) -> None:
    """Free a model's GPU memory though something still refers to it (the WebUI's globals hold the sgm
    model): its tensors become meta tensors, so the next model's rows do not count it in their peak."""
    if models is None:
        return
    parts = [models.model] if hasattr(models, "model") else \
        [models.unet(), models.vae(), *models.text_encoders()] if hasattr(models, "unet") else \
        [m for m in models if isinstance(m, torch.nn.Module)]
    for m in parts:
        m.to("meta")


def standalone_model(tiny: bool, device):
    """The standalone SDXL adapter as `train()` loads a folder: models/plain's classes, frozen parts in
    bf16 on a GPU."""
    from sd_trainplan.models.sdxl_diffusers import adapter_from_configs
    from sd_trainplan.models.tiny_sdxl_diffusers import FULL, TINY
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return adapter_from_configs(TINY if tiny else FULL, "random SDXL (plain)", device, dtype, plain=True)


def build_diffusers(tiny: bool, device):
    from sd_trainplan.models.sdxl_diffusers import build_sdxl
    from sd_trainplan.models.tiny_sdxl_diffusers import FULL, TINY
    from sd_trainplan.models.clip_vocab import clip_tokenizer
    return (*build_sdxl(TINY if tiny else FULL, device), clip_tokenizer())


def recipe(models, method: str, bs: int, res: int, device, steps: int) -> dict:
    """The diffusers SDXL examples' step (see the module docstring)."""
    unet, vae, te1, te2, tok = models
    wdt = torch.bfloat16 if device.type == "cuda" else torch.float32
    vae.requires_grad_(False).to(wdt)
    ac = torch.cumprod(1 - torch.linspace(0.00085 ** .5, 0.012 ** .5, 1000, device=device) ** 2, 0)
    adapters = []
    if method == "lora":
        from peft import LoraConfig
        for m in (unet, te1, te2):
            m.requires_grad_(False).to(wdt)
        name = f"bs{bs}"
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                    target_modules=["to_k", "to_q", "to_v", "to_out.0"]), adapter_name=name)
        adapters.append(name)
        params = [p for p in unet.parameters() if p.requires_grad]
        for p in params:
            p.data = p.data.float()
    else:  # textual_inversion_sdxl.py: both encoders' whole token-embedding tables, the encoders in fp32
        unet.requires_grad_(False).to(wdt)
        params = []
        for te in (te1, te2):
            te.requires_grad_(False).float()
            te.get_input_embeddings().weight.requires_grad_(True)
            params.append(te.get_input_embeddings().weight)
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2, foreach=True)
    reset_memory(device)
    pix = torch.randn(bs, 3, res, res, device=device, dtype=wdt)
    ids = tok(["a photo of a sks dog"] * bs, padding="max_length", max_length=77, return_tensors="pt").input_ids.to(device)
    time_ids = torch.tensor([[res, res, 0, 0, res, res]] * bs, device=device, dtype=wdt)

    def encode():
        h1 = te1(ids, output_hidden_states=True).hidden_states[-2]
        out2 = te2(ids, output_hidden_states=True)
        return torch.cat([h1, out2.hidden_states[-2]], dim=-1), out2.text_embeds

    def step():
        with torch.no_grad():
            latents = vae.encode(pix).latent_dist.sample() * 0.13025
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            if method == "ti":
                enc, pooled = encode()
            else:
                with torch.no_grad():
                    enc, pooled = encode()
            noise = torch.randn_like(latents)
            t = torch.randint(0, 1000, (bs,), device=device)
            a = ac[t].view(-1, 1, 1, 1)
            noisy = a.sqrt() * latents.float() + (1 - a).sqrt() * noise.float()
            pred = unet(noisy, t, enc, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    try:
        dt = time_steps(step, 3, steps, device)
        return dict(impl="sdxl_recipe", ms_per_step=dt * 1e3, img_per_s=bs / dt, peak_gib=peak_alloc_gib(device),
                    peak_reserved_gib=peak_gib(device))
    finally:
        from peft.tuners.tuners_utils import BaseTunerLayer
        for name in adapters:  # peft's own removal (diffusers' delete_adapters needs its PEFT backend switch)
            for m in unet.modules():
                if isinstance(m, BaseTunerLayer):
                    m.delete_adapter(name)
        for te in (te1, te2):
            te.get_input_embeddings().weight.requires_grad_(False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sgm", required=True, help="a generative-models folder (sgm/ and configs/inference/)")
    ap.add_argument("--method", default="ti,lora")
    ap.add_argument("--bs", default="1,4")
    ap.add_argument("--impl", default="lowvram,ours,standalone_lowvram,standalone")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--budget", type=float, default=1e9)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--tag", default="sdxl-standalone")
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    t0 = time.monotonic()
    sys.path.insert(0, str(Path(a.sgm).resolve()))
    from sd_trainplan.train.sample_data import make_shapes
    device = torch.device("cpu" if a.tiny else "cuda")
    res = 64 if a.tiny else 1024
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    root = Path(tempfile.mkdtemp())
    methods, bss, impls = a.method.split(","), [int(x) for x in a.bs.split(",")], a.impl.split(",")
    data = make_shapes(root / "data", size=res, per_kind=max(1, -(-2 * max(bss) // 12)))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = out / f"{time.strftime('%Y-%m-%d')}-{gpu.replace(' ', '_')}-{a.tag}.json"
    rows = []
    # the low-VRAM rows first on each model: nothing an earlier row left (a CUDA graph's pool) in their peak
    plan = [(i, "lora", 1) for i in ("lowvram", "lowvram_fp16", "lowvram_bf16_eager") if i in impls
            and "lora" in methods]
    plan += [("ours", m, b) for m in methods for b in bss if "ours" in impls]
    plan += [("standalone_lowvram", "lora", 1)] if "standalone_lowvram" in impls and "lora" in methods else []
    plan += [("standalone", m, b) for m in methods for b in bss if "standalone" in impls]
    plan += [("recipe", m, b) for m in methods for b in bss if "recipe" in impls]
    models, kind = None, None
    for impl, method, bs in plan:
        if time.monotonic() - t0 > a.budget:
            rows.append(dict(impl=impl, method=method, bs=bs, skipped="over the time budget"))
            continue
        want = "recipe" if impl == "recipe" else "standalone" if impl.startswith("standalone") else "sgm"
        try:
            if kind != want:
                release(models)
                models, kind = None, None
                reset_memory(device)
                models = build_loaded_sgm(Path(a.sgm), a.tiny, root, device) if want == "sgm" else \
                    standalone_model(a.tiny, device) if want == "standalone" else build_diffusers(a.tiny, device)
                kind = want
            r = recipe(models, method, bs, res, device, a.steps) if impl == "recipe" else \
                ours(models, method, bs, res, device, a.steps, data, impl)
        except Exception as e:  # keep the other rows
            import traceback
            traceback.print_exc()
            r = dict(impl=impl, error=f"{type(e).__name__}: {e}"[:400])
        r.update(method=method, bs=bs, t=round(time.monotonic() - t0, 1))
        print(json.dumps(r), flush=True)
        rows.append(r)
        name.write_text(json.dumps({"gpu": gpu, "date": time.strftime("%Y-%m-%d"), "res": res,
                                    "torch": torch.__version__, "rows": rows}, indent=1))
    print(f"\n{gpu}, SDXL, {res} px; wrote {name}")
    for r in rows:
        if "ms_per_step" not in r:
            print(f"{r['method']:5} {r['bs']:>3} {r['impl']:24} {r.get('error') or r.get('skipped')}")
            continue
        print(f"{r['method']:5} {r['bs']:>3} {r['impl']:24} {r['ms_per_step']:8.1f} ms {r['img_per_s']:6.2f} img/s"
              f"  peak {r['peak_gib']:6.2f} GiB alloc, {r['peak_reserved_gib']:6.2f} reserved"
              f"  {'' if r.get('weights_unchanged', True) else 'WEIGHTS CHANGED'}")


if __name__ == "__main__":
    main()
