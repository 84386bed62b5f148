"""A tiny, randomly initialised SDXL-architecture checkpoint that AUTOMATIC1111 loads and generates with, offline.

Writes, under FOLDER (a WebUI tree or a data folder: what its models/ holds):
  models/<name>-clip-l/                    CLIP-L-like text model (transformers: config, tokenizer files, weights)
  models/Stable-diffusion/<name>.yaml      sgm config (A1111 picks up a same-named .yaml)
  models/Stable-diffusion/<name>.safetensors   the whole DiffusionEngine state dict

Modelled on make_tiny_sd1.py (../shared/hosts) and on the WebUI's own SDXL config
(generative-models configs/inference/sd_xl_base.yaml, the commit A1111 1.10.1 pins), shrunk:
- the UNet keeps SDXL's layout: three levels, attention at the two lower ones, linear proj_in/out,
  the label embedding (`num_classes: sequential`) that takes the vector conditioning;
- two text encoders whose outputs are concatenated: a 2-layer CLIP-L-like transformers model (768
  wide, the penultimate hidden state, as `layer: hidden`) and open_clip's smallest registered text
  tower (ViT-S-32-alt, 256 wide: the architecture is named in the yaml, and the WebUI builds it with
  open_clip's own config, so it must be one open_clip ships), its pooled output and the three
  size/crop embeddings forming the vector input;
- a 4-level VAE (the /8 latent scale the WebUI assumes), 32 channels.
Both tokenizers are the real CLIP BPE vocabulary, from the file the open_clip wheel ships.

Like make_tiny_sd1.py: no zero-initialised output layers (a UNet whose output convs are 0 predicts 0
whatever the prompt), and text-encoder outputs whose mean is far from 0 (the WebUI's default emphasis
divides by that mean). Nothing is downloaded.

Usage: python make_tiny_sdxl.py FOLDER [--sgm DIR] [--name tiny-sdxl] [--prediction eps|v] [--seed 0]
  --sgm: a generative-models checkout (default: FOLDER/repositories/generative-models, then sgm on sys.path)
Also imported by the tests: `tiny_sdxl_config(...)` and `build(...)` give the same model in-process.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPEN_CLIP_ARCH = "ViT-S-32-alt"  # open_clip's smallest text tower: width 256, 10 layers, 4 heads
CLIP_L = dict(hidden_size=768, intermediate_size=768, num_hidden_layers=2, num_attention_heads=12)
MEAN_OFFSET = 0.5  # added to both position embeddings: every hidden state's mean moves off 0


def find_sgm(folder: Path, sgm: str = "") -> Path:
    """The generative-models folder holding sgm/ (and configs/inference/sd_xl_base.yaml)."""
    candidates = [Path(sgm)] if sgm else [folder / "repositories" / "generative-models"]
    for c in candidates:
        if (c / "sgm" / "__init__.py").is_file():
            return c.resolve()
    import importlib.util
    spec = importlib.util.find_spec("sgm")
    if spec is None or not spec.origin:
        raise SystemExit(f"sgm not found in {candidates[0]} nor on sys.path: give --sgm DIR")
    return Path(spec.origin).resolve().parents[1]


def write_clip_l(folder: Path, seed: int) -> Path:
    """The CLIP-L-like text model as a transformers folder (FrozenCLIPEmbedder loads it by path)."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel
    sys.path.insert(0, str(ROOT))
    from sd_trainplan.models.clip_vocab import write_tokenizer_files
    write_tokenizer_files(folder)
    cfg = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=1, **CLIP_L)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        CLIPTextModel(cfg).save_pretrained(str(folder))
    return folder


def tiny_sdxl_config(sgm_root: Path, clip_l: Path, prediction: str = "eps"):
    """sd_xl_base.yaml, shrunk (see the module docstring); an OmegaConf config."""
    from omegaconf import OmegaConf
    conf = OmegaConf.load(str(sgm_root / "configs" / "inference" / "sd_xl_base.yaml"))
    p = conf.model.params
    text_g = 256  # the open_clip tower's width and pooled size (ViT-S-32-alt)
    outdim = p.conditioner_config.params.emb_models[2].params.outdim  # 256 per number, as SDXL
    p.network_config.params.update(
        model_channels=32, channel_mult=[1, 2, 2], num_head_channels=16, transformer_depth=[1, 1, 1],
        context_dim=CLIP_L["hidden_size"] + text_g, adm_in_channels=text_g + 3 * 2 * outdim,
        use_checkpoint=False,  # the WebUI sets it False for inference anyway (sd_models.py)
        spatial_transformer_attn_type="softmax")  # what softmax-xformers falls back to without xformers
    embedders = p.conditioner_config.params.emb_models
    embedders[0].params.update(version=str(clip_l), layer_idx=CLIP_L["num_hidden_layers"] - 1)  # penultimate
    embedders[1].params.update(arch=OPEN_CLIP_ARCH, version=None)  # the WebUI builds it without weights anyway
    p.first_stage_config.params.ddconfig.update(ch=32, ch_mult=[1, 1, 1, 1], num_res_blocks=1, attn_type="vanilla")
    if prediction == "v":
        p.denoiser_config.params.scaling_config.target = "sgm.modules.diffusionmodules.denoiser_scaling.VScaling"
    elif prediction != "eps":
        raise SystemExit(f"--prediction: eps or v, not {prediction!r}")
    return conf


def build(conf, seed: int = 0):
    """The DiffusionEngine from `conf`, random weights (seeded), every output layer live, text
    outputs with a mean away from 0. Needs sgm importable."""
    import torch
    from sgm.util import instantiate_from_config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = instantiate_from_config(conf.model)
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for m in model.model.diffusion_model.modules():  # sgm zeroes each ResBlock's last conv, proj_out, out
                w = getattr(m, "weight", None)
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and not w.any():
                    bound = 1 / math.sqrt(w[0].numel())
                    w.copy_((torch.rand(w.shape, generator=g) * 2 - 1) * bound)
            clip_l, clip_g = model.conditioner.embedders[0], model.conditioner.embedders[1]
            clip_l.transformer.text_model.embeddings.position_embedding.weight.add_(MEAN_OFFSET)
            clip_g.model.positional_embedding.add_(MEAN_OFFSET)
    return model.eval()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--sgm", default="")
    ap.add_argument("--name", default="tiny-sdxl")
    ap.add_argument("--prediction", default="eps", choices=("eps", "v"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    folder = Path(a.folder).resolve()
    sgm_root = find_sgm(folder, a.sgm)
    sys.path.insert(0, str(sgm_root))
    from omegaconf import OmegaConf
    from safetensors.torch import save_file
    ckpt_dir = folder / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    clip_l = write_clip_l(folder / "models" / f"{a.name}-clip-l", a.seed)
    conf = tiny_sdxl_config(sgm_root, clip_l, a.prediction)
    model = build(conf, a.seed)
    yaml_path = ckpt_dir / f"{a.name}.yaml"
    OmegaConf.save(conf, str(yaml_path))
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    path = ckpt_dir / f"{a.name}.safetensors"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(sd, str(tmp))
    os.replace(tmp, path)  # last and whole: its presence says the checkpoint is made (build_host.sh tests for it)
    n = sum(v.numel() for v in sd.values())
    print(f"wrote {path} ({n / 1e6:.1f}M params, {path.stat().st_size / 1e6:.1f} MB), {yaml_path}, {clip_l}")
    for pre in ("model.diffusion_model.", "first_stage_model.", "conditioner.embedders.0.", "conditioner.embedders.1."):
        print(f"  {pre:28s} {sum(v.numel() for k, v in sd.items() if k.startswith(pre)) / 1e6:6.2f}M")


if __name__ == "__main__":
    main()
