"""SDXL: our trainer on the DiffusionEngine the WebUI has loaded, against the diffusers SDXL example
scripts' step, side by side in one process on one GPU; SDXL-size random weights, 1024 px.

"sdxl_ours": train() over host/sdxl_adapter.WebUiSgmAdapter on an sgm DiffusionEngine built from
  sd_xl_base.yaml (generative-models at the commit AUTOMATIC1111 1.10.1 pins, --sgm), loaded as the
  WebUI loads it: fp16, sd_models_xl.extend_sdxl, both text encoders hijacked (the WebUI's modules as
  tests/webui/standin mirrors them), Textual Inversion through its embedding database.
"sdxl_ours_lowvram": the same LoRA with gradient checkpointing.
"sdxl_recipe": what the diffusers SDXL examples do each step (train_text_to_image_lora_sdxl.py,
  textual_inversion_sdxl.py): VAE and both text encoders every step, the size ids, bf16 autocast,
  peft LoRA on the attention projections (TI: both token-embedding tables in fp32), foreach AdamW,
  grad-norm clip. sd_trainplan has no standalone SDXL path yet (models/load.py loads SD1.x/2.x), so
  this is the step a diffusers-based SDXL trainer runs on the same architecture.

  python bench/sdxl_bench.py --sgm DIR [--method ti,lora] [--bs 1,4] [--impl ours,recipe,lowvram]
                             [--steps 5] [--budget 170] [--out DIR] [--tiny]   (--tiny: a CPU smoke run)
Each row is printed as JSON as it ends and written to <out>/<date>-<gpu>-sdxl.json; --budget (s)
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

# diffusers' SDXL base config (stabilityai/stable-diffusion-xl-base-1.0 unet/config.json)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
                 attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
TINY_UNET = dict(SDXL_UNET, sample_size=8, block_out_channels=(32, 64, 64), transformer_layers_per_block=(1, 1, 1),
                 attention_head_dim=(2, 4, 4), cross_attention_dim=1024, projection_class_embeddings_input_dim=1792)
TEXT_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
              max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)
TINY_TEXT_G = dict(TEXT_G, hidden_size=256, intermediate_size=1024, num_hidden_layers=10, num_attention_heads=4,
                   projection_dim=256)


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


def ours(adapter, method: str, bs: int, res: int, device, steps: int, data: Path, lowvram: bool) -> dict:
    reset_memory(device)
    kw = dict(method=method, data=str(data), output=str(data.parent / "runs"), resolution=res, batch_size=bs,
              lr=5e-3 if method == "ti" else 1e-4, token=f"zwx{bs}{int(lowvram)}", init_word="person",
              gradient_checkpointing=lowvram)
    try:
        return timed_train(kw, adapter, device, 5, steps, "sdxl_ours_lowvram" if lowvram else "sdxl_ours")
    finally:
        for tv in list(adapter.tokens):
            adapter.remove_token(tv)


def build_diffusers(tiny: bool, device):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    from sd_trainplan.models.clip_vocab import clip_tokenizer
    from sd_trainplan.models.single_file import SD1_TEXT, SD_VAE
    import make_tiny_sdxl
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**(TINY_UNET if tiny else SDXL_UNET))
        vae = AutoencoderKL(**dict(SD_VAE, block_out_channels=(32,) * 4, layers_per_block=1) if tiny else SD_VAE)
        te1 = CLIPTextModel(CLIPTextConfig(**(dict(SD1_TEXT, **make_tiny_sdxl.CLIP_L) if tiny else SD1_TEXT)))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**(TINY_TEXT_G if tiny else TEXT_G)))
    return unet, vae, te1, te2, clip_tokenizer()


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
    ap.add_argument("--impl", default="ours,recipe,lowvram")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--budget", type=float, default=1e9)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
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
    name = out / f"{time.strftime('%Y-%m-%d')}-{gpu.replace(' ', '_')}-sdxl.json"
    rows = []
    plan = [("ours", m, b) for m in methods for b in bss if "ours" in impls]
    plan += [("lowvram", "lora", 1)] if "lowvram" in impls and "lora" in methods else []
    plan += [("recipe", m, b) for m in methods for b in bss if "recipe" in impls]
    models = None
    for impl, method, bs in plan:
        if time.monotonic() - t0 > a.budget:
            rows.append(dict(impl=impl, method=method, bs=bs, skipped="over the time budget"))
            continue
        try:
            if impl in ("ours", "lowvram") and models is None:
                models = build_loaded_sgm(Path(a.sgm), a.tiny, root, device)
            if impl == "recipe" and not isinstance(models, tuple):
                models = None
                reset_memory(device)
                models = build_diffusers(a.tiny, device)
            r = recipe(models, method, bs, res, device, a.steps) if impl == "recipe" else \
                ours(models, method, bs, res, device, a.steps, data, impl == "lowvram")
        except Exception as e:  # keep the other rows
            import traceback
            traceback.print_exc()
            r = dict(impl=impl, error=f"{type(e).__name__}: {e}"[:400])
        r.update(method=method, bs=bs, t=round(time.monotonic() - t0, 1))
        print(json.dumps(r), flush=True)
        rows.append(r)
        name.write_text(json.dumps({"gpu": gpu, "date": time.strftime("%Y-%m-%d"), "res": res, "rows": rows}, indent=1))
    print(f"\n{gpu}, SDXL, {res} px; wrote {name}")
    for r in rows:
        if "ms_per_step" not in r:
            print(f"{r['method']:5} {r['bs']:>3} {r['impl']:18} {r.get('error') or r.get('skipped')}")
            continue
        base = next((x for x in rows if x["method"] == r["method"] and x["bs"] == r["bs"]
                     and x["impl"] == "sdxl_recipe" and "ms_per_step" in x), None)
        sp = r["img_per_s"] / base["img_per_s"] if base else float("nan")
        print(f"{r['method']:5} {r['bs']:>3} {r['impl']:18} {r['ms_per_step']:8.1f} ms {r['img_per_s']:6.2f} img/s"
              f" x{sp:5.2f}  peak {r['peak_gib']:6.2f} GiB alloc, {r['peak_reserved_gib']:6.2f} reserved")


if __name__ == "__main__":
    main()
