"""Mirrors modules/sd_models_xl.py (v1.10.1): what the WebUI adds to sgm's classes so an SDXL
DiffusionEngine looks like an SD1 model to the rest of it: GeneralConditioner's
encode_embedding_init_text (both encoders' init vectors side by side) and tokenize (the first text
encoder's), and extend_sdxl (parameterization from the denoiser's scaling, alphas_cumprod from
sgm's LegacyDDPMDiscretization, an empty `conditioner.wrapped`). Left out: get_learned_conditioning
and apply_model (the trainer builds its own conditioning), process_texts."""
import torch

import sgm.modules
import sgm.modules.diffusionmodules.denoiser_scaling
import sgm.modules.diffusionmodules.discretizer
from modules import devices


def encode_embedding_init_text(self, init_text, nvpt):
    res = [e.encode_embedding_init_text(init_text, nvpt) for e in self.embedders
           if hasattr(e, "encode_embedding_init_text")]
    return torch.cat(res, dim=1)


def tokenize(self, texts):
    for embedder in [e for e in self.embedders if hasattr(e, "tokenize")]:
        return embedder.tokenize(texts)
    raise AssertionError("no tokenizer available")


sgm.modules.GeneralConditioner.encode_embedding_init_text = encode_embedding_init_text
sgm.modules.GeneralConditioner.tokenize = tokenize


def extend_sdxl(model):
    dtype = next(model.model.diffusion_model.parameters()).dtype
    model.model.diffusion_model.dtype = dtype
    model.model.conditioning_key = "crossattn"
    model.cond_stage_key = "txt"
    scaling = sgm.modules.diffusionmodules.denoiser_scaling.VScaling
    model.parameterization = "v" if isinstance(model.denoiser.scaling, scaling) else "eps"
    discretization = sgm.modules.diffusionmodules.discretizer.LegacyDDPMDiscretization()
    model.alphas_cumprod = torch.asarray(discretization.alphas_cumprod, device=devices.device, dtype=torch.float32)
    model.conditioner.wrapped = torch.nn.Module()
