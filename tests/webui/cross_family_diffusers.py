"""The diffusers half of the cross-family check, run by test_cross_family.py in the standalone
environment (.venv: diffusers 0.31, transformers 4.46), since the WebUI-pinned one has no diffusers.

For each case folder the ldm half wrote (model.safetensors: a tiny LatentDiffusion's own state
dict; inputs.safetensors + inputs.json: latents, noise, timesteps, pixels, prompts; lora.safetensors:
a LoRA the ldm adapter trained), this loads the checkpoint with diffusers' own single-file
conversion, given the tiny model's configs as an explicit local config folder, wraps it in our
DiffusersAdapter and writes what it computes to out.safetensors / out.json.

    python cross_family_diffusers.py CASE_DIR [CASE_DIR ...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from sd_trainplan.models.diffusers_adapter import DiffusersAdapter
from sd_trainplan.models.tiny_diffusers import save_tiny_folder

from loss_parts import loss_parts


def run_case(case: Path) -> None:
    meta = json.loads((case / "inputs.json").read_text())
    x = load_file(str(case / "inputs.safetensors"))
    config = save_tiny_folder(case / "diffusers-config", prediction_type=meta["prediction_type"])
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_single_file(str(case / "model.safetensors"), config=str(config),
                                                    local_files_only=True, safety_checker=None,
                                                    requires_safety_checker=False)
    adapter = DiffusersAdapter(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, dict(pipe.scheduler.config),
                               source="from_single_file")
    out = {f"base.{k}": v for k, v in loss_parts(adapter, x, meta["prompts"]).items()}
    mean, std = adapter.encode_images(x["pixels"])
    out.update({"vae.mean": mean, "vae.std": std, "vae.decoded": adapter.decode_latents(x["latents"])})
    # Our own exporter, run on what diffusers converted: it should give back the ldm file.
    state = adapter.checkpoint_state()
    out.update({f"export.{k}": v for k, v in state.items()})
    info = {
        "prediction_type": adapter.prediction_type,
        "lora_targets": {name: list(m.weight.shape) for name, m in adapter.lora_targets(True, True).items()},
        "heads": {name: m.heads for name, m in adapter.unet().named_modules() if type(m).__name__ == "Attention"},
    }
    # The LoRA the ldm adapter trained and exported, loaded by diffusers' own kohya loader. The tiny
    # layout is not SD's, so the file has ldm-path names (kohya_names.py); diffusers' SD1 loader reads
    # only its own block names: rename them for it.
    from sd_trainplan.models.kohya_names import diffusers_style
    renamed = diffusers_style(load_file(str(case / "lora.safetensors")), pipe.unet)
    save_file(renamed, str(case / "lora-d.safetensors"))
    pipe.load_lora_weights(str(case), weight_name="lora-d.safetensors")  # offline: name the file
    out.update({f"lora.{k}": v for k, v in loss_parts(adapter, x, meta["prompts"]).items()})
    save_file({k: (v.float() if v.is_floating_point() else v).detach().contiguous() for k, v in out.items()}, str(case / "out.safetensors"))
    (case / "out.json").write_text(json.dumps(info))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        run_case(Path(arg))
