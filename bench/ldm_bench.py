"""The WebUI's own model class (Stability-AI ldm LatentDiffusion, SD1.5 config, fp16 as the WebUI
loads it): our trainer through the ldm adapter against the WebUI's Train tab configuration, in
one process on one GPU, random weights, 512 px.

"ldm_webui": what the WebUI's Textual Inversion training does each step (modules/textual_inversion,
v1.10.1, with its default of cross-attention optimisations OFF while training): ldm attention as
shipped, fp16 autocast with a GradScaler, the text stage run every step, AdamW on the vectors.
"ldm_ours": sd_trainplan's train() over LdmAdapter (SDPA attention, bf16 autocast, cached latents,
the update replayed from a CUDA graph).

  python bench/ldm_bench.py [--bs 1,4] [--method ti,lora] [--steps 20] [--out DIR] [--tiny]
Rows are added to the results file step_bench.py writes for the day and GPU.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _shim_lightning() -> None:
    """ldm's ddpm.py imports rank_zero_only from a module pytorch_lightning 2.x no longer has; the
    WebUI pins 1.9.4 where it exists. Alias it when missing (a no-op on the WebUI's own pin)."""
    try:
        import pytorch_lightning.utilities.distributed  # noqa: F401 - present on the WebUI's pin
    except ImportError:
        from pytorch_lightning.utilities.rank_zero import rank_zero_only
        mod = types.ModuleType("pytorch_lightning.utilities.distributed")
        mod.rank_zero_only = rank_zero_only
        sys.modules["pytorch_lightning.utilities.distributed"] = mod


SD15_UNET = dict(image_size=64, in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                 num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_heads=8, use_spatial_transformer=True,
                 transformer_depth=1, context_dim=768, use_checkpoint=False, legacy=False)
SD15_VAE = dict(embed_dim=4, lossconfig={"target": "torch.nn.Identity"},
                ddconfig=dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
                              ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0))


def clip_l_folder(root: Path) -> Path:
    """CLIP ViT-L/14's text model (random weights) and the real tokenizer, in a local folder."""
    from transformers import CLIPTextConfig, CLIPTextModel
    from sd_trainplan.models.clip_vocab import write_tokenizer_files
    from sd_trainplan.models.single_file import SD1_TEXT
    folder = root / "clip-l"
    if not (folder / "config.json").is_file():
        write_tokenizer_files(folder)
        torch.manual_seed(0)
        CLIPTextModel(CLIPTextConfig(**SD1_TEXT)).half().save_pretrained(str(folder))
    return folder


def build_ldm(tiny: bool, root: Path, device):
    _shim_lightning()
    from ldm.util import instantiate_from_config
    from omegaconf import OmegaConf
    if tiny:
        from sd_trainplan.models.tiny_ldm import build_tiny_ldm
        return build_tiny_ldm(0, device=device)
    cfg = {"target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": dict(
        linear_start=0.00085, linear_end=0.012, timesteps=1000, first_stage_key="jpg", cond_stage_key="txt",
        image_size=64, channels=4, cond_stage_trainable=False, conditioning_key="crossattn", scale_factor=0.18215,
        use_ema=False, unet_config={"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": SD15_UNET},
        first_stage_config={"target": "ldm.models.autoencoder.AutoencoderKL", "params": SD15_VAE},
        cond_stage_config={"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder",
                           "params": {"version": str(clip_l_folder(root)), "device": str(device)}})}
    torch.manual_seed(0)
    model = instantiate_from_config(OmegaConf.create(cfg))
    model = model.half().to(device).eval()
    model.logvar = model.logvar.to(device)  # a plain tensor attribute, not a buffer; the WebUI moves it too
    return model


def webui_ti(model, bs: int, res: int, device, steps: int, warm: int = 5) -> dict:
    """The WebUI Train tab's Textual Inversion step, on the model as loaded (attention as shipped)."""
    from step_bench import peak_alloc_gib, peak_gib, reset_memory, time_steps
    from sd_trainplan.models.token_splice import splice_token
    reset_memory(device)  # the model is already built (and loaded in fp16, as the WebUI holds it)
    clip = model.cond_stage_model
    tv = splice_token(clip.tokenizer, clip.transformer, "zwx", 1, "person")
    opt = torch.optim.AdamW([tv.vectors], lr=5e-3, weight_decay=0.0)
    scaler = torch.cuda.amp.GradScaler() if device.type == "cuda" else None
    lat = torch.randn(bs, 4, res // 8, res // 8, device=device)  # latents cached ("once"), as the WebUI does
    prompts = ["a photo of zwx"] * bs

    def step():
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            c = model.cond_stage_model(prompts)
            loss = model(lat, c)[0]  # LatentDiffusion.forward: random t and noise, its own loss
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)

    dt = time_steps(step, warm, steps, device)
    return dict(impl="ldm_webui", ms_per_step=dt * 1e3, img_per_s=bs / dt, peak_gib=peak_alloc_gib(device),
                peak_reserved_gib=peak_gib(device))


def ours_ldm(model, method: str, bs: int, res: int, device, steps: int, data: Path, warm: int = 10) -> dict:
    from step_bench import reset_memory, timed_train
    from sd_trainplan.models.ldm_adapter import LdmAdapter
    reset_memory(device)
    adapter = LdmAdapter(model, device, next(model.parameters()).dtype, "random SD1.5 (ldm)")
    kw = dict(method=method, data=str(data), output=str(data.parent / "runs"), resolution=res, batch_size=bs,
              lr=5e-3 if method == "ti" else 1e-4, token="zwx")
    return dict(timed_train(kw, adapter, device, warm, steps, "ldm_ours"), sdpa_blocks=adapter.sdpa_modules)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bs", default="1,4")
    ap.add_argument("--method", default="ti")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    from sd_trainplan.plan.memory import estimate_gib
    from sd_trainplan.train.sample_data import make_shapes
    device = torch.device("cpu" if a.tiny else "cuda")
    res = 64 if a.tiny else 512
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    root = Path(tempfile.mkdtemp())
    bss = [int(x) for x in a.bs.split(",")]
    data = make_shapes(root / "data", size=res, per_kind=max(1, -(-2 * max(bss) // 12)))
    rows = []
    for method in a.method.split(","):
        for bs in bss:
            for impl in (["ldm_webui"] if method == "ti" else []) + ["ldm_ours"]:
                try:
                    model = build_ldm(a.tiny, root, device)  # fresh each row: the WebUI row leaves its token in
                    r = webui_ti(model, bs, res, device, a.steps) if impl == "ldm_webui" else \
                        ours_ldm(model, method, bs, res, device, a.steps, data)
                    del model
                except Exception as e:  # keep the other rows
                    import traceback
                    traceback.print_exc()
                    r = dict(impl=impl, error=f"{type(e).__name__}: {e}"[:400])
                r.update(method={"ti": "ti", "lora": "lora", "db": "dreambooth"}[method], bs=bs,
                         estimated_gib=estimate_gib(method if method != "db" else "dreambooth", bs, res, impl))
                print(json.dumps(r), flush=True)
                rows.append(r)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = out / f"{time.strftime('%Y-%m-%d')}-{gpu.replace(' ', '_')}-ldm.json"
    name.write_text(json.dumps({"gpu": gpu, "date": time.strftime("%Y-%m-%d"), "res": res, "rows": rows}, indent=1))
    print(f"\n{gpu}, ldm SD1.5 config, {res} px; wrote {name}")
    for r in rows:
        if "error" in r:
            print(f"{r['method']:5} {r['bs']:>3} {r['impl']:10} ERROR {r['error'][:100]}")
            continue
        base = next((x for x in rows if x["method"] == r["method"] and x["bs"] == r["bs"]
                     and x["impl"] == "ldm_webui" and "error" not in x), None)
        sp = r["img_per_s"] / base["img_per_s"] if base else float("nan")
        mem = r["peak_gib"] / base["peak_gib"] if base else float("nan")
        print(f"{r['method']:5} {r['bs']:>3} {r['impl']:10} {r['ms_per_step']:8.1f} ms {r['img_per_s']:7.1f} img/s"
              f" x{sp:5.2f}  peak {r['peak_gib']:6.2f} GiB ({mem:4.2f} of the WebUI's)  est {r['estimated_gib']:.2f}")


if __name__ == "__main__":
    main()
