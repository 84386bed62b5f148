"""The standalone half of test_sd2_export.py, run in the standalone environment (.venv: diffusers):
a tiny SD2-structured diffusers folder whose text encoder is open_clip's ViT-S-32-alt text tower in
transformers' form (gelu, 256 wide, 4 heads; 9 layers: diffusers' SD2 folders leave out the last of
open_clip's 10, as SD2's penultimate conditioning never reads it), trained by `train()` as
`python -m sd_trainplan train` does (Dreambooth with the text encoder, so its weights move), and
what our adapter conditions fixed prompts with.

    python sd2_standalone_files.py OUT_DIR DATA_DIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from sd_trainplan.models.clip_vocab import clip_tokenizer
from sd_trainplan.models.diffusers_adapter import DiffusersAdapter, load_diffusers
from sd_trainplan.models.tiny_diffusers import SCHEDULER, UNET, VAE
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.loop import train

PROMPTS = ["a red circle", "a blue square on grey, 4k"]
TEXT = dict(vocab_size=49408, hidden_size=256, intermediate_size=1024, num_hidden_layers=9, num_attention_heads=4,
            max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2,
            pad_token_id=1)  # SD2's own text_encoder/config.json ids


def main(out: Path, data: Path) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**dict(UNET, cross_attention_dim=256, use_linear_projection=True))
    tokenizer = clip_tokenizer()
    tokenizer.pad_token = "!"  # SD2's tokenizer pads with "!" (id 0), as open_clip pads with 0
    folder = DiffusersAdapter(unet, AutoencoderKL(**VAE), CLIPTextModel(CLIPTextConfig(**TEXT)), tokenizer,
                              dict(SCHEDULER, prediction_type="v_prediction")).save_folder(out / "tiny-sd2")
    cfg = TrainConfig(method="dreambooth", model=str(folder), data=str(data), output=str(out / "runs"),
                      resolution=64, batch_size=2, steps=2, lr=1e-3, train_text_encoder=True, token="zwx",
                      name="dreambooth")
    adapter = load_diffusers(str(folder))
    export = train(cfg, adapter=adapter).export_path
    ids = adapter.tokenize(PROMPTS)
    with torch.no_grad():  # the trained model as it is in memory, not as any reader reads the file back
        cond = adapter.encode_prompts(PROMPTS)
    save_file({"ids": ids.contiguous(), "cond": cond.contiguous()}, str(out / "computed.safetensors"))
    (out / "files.json").write_text(json.dumps({"dreambooth": str(export), "prompts": PROMPTS}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
