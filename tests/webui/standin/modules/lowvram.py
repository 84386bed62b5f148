"""Mirrors modules/lowvram.py (v1.10.1) for SD1/SD2 and SDXL models: --medvram/--lowvram keep the
big parts on the CPU and a forward pre-hook `send_me_to_gpu` on each moves it to the GPU (sending
the previous one back); the VAE's encode/decode are wrapped on its instance to do the same; SDXL's
whole conditioner is one part. Left out: depth/embedder models and the
medvram_fields/medvram_modules protocol."""
import torch

from modules import devices, shared

module_in_gpu = None
cpu = torch.device("cpu")


def send_everything_to_cpu():
    global module_in_gpu
    if module_in_gpu is not None:
        module_in_gpu.to(cpu)
    module_in_gpu = None


def is_needed(sd_model):
    return shared.cmd_opts.lowvram or shared.cmd_opts.medvram or (shared.cmd_opts.medvram_sdxl and hasattr(sd_model, "conditioner"))


def apply(sd_model):
    enable = is_needed(sd_model)
    shared.parallel_processing_allowed = not enable
    if enable:
        setup_for_low_vram(sd_model, not shared.cmd_opts.lowvram)
    else:
        sd_model.lowvram = False


def setup_for_low_vram(sd_model, use_medvram):
    if getattr(sd_model, "lowvram", False):
        return
    sd_model.lowvram = True
    parents = {}

    def send_me_to_gpu(module, _):
        global module_in_gpu
        module = parents.get(module, module)
        if module_in_gpu == module:
            return
        if module_in_gpu is not None:
            module_in_gpu.to(cpu)
        module.to(devices.device)
        module_in_gpu = module

    vae = sd_model.first_stage_model
    vae_encode, vae_decode = vae.encode, vae.decode

    def first_stage_model_encode_wrap(x):
        send_me_to_gpu(vae, None)
        return vae_encode(x)

    def first_stage_model_decode_wrap(z):
        send_me_to_gpu(vae, None)
        return vae_decode(z)

    is_sdxl = hasattr(sd_model, "conditioner")
    cs = sd_model.conditioner if is_sdxl else sd_model.cond_stage_model
    text_field = "model" if hasattr(cs, "model") else "transformer"
    keep_on_cpu = [(sd_model, "first_stage_model"), (sd_model, "model"),
                   (sd_model, "conditioner") if is_sdxl else (cs, text_field)]
    stored = [getattr(obj, field) for obj, field in keep_on_cpu]
    for obj, field in keep_on_cpu:
        setattr(obj, field, None)
    sd_model.to(devices.device)  # the rest of the model goes to the GPU
    for (obj, field), module in zip(keep_on_cpu, stored):
        setattr(obj, field, module)

    if is_sdxl:
        sd_model.conditioner.register_forward_pre_hook(send_me_to_gpu)
    else:
        text = getattr(cs, text_field)
        text.register_forward_pre_hook(send_me_to_gpu)
        parents[text] = cs
    vae.register_forward_pre_hook(send_me_to_gpu)
    vae.encode = first_stage_model_encode_wrap
    vae.decode = first_stage_model_decode_wrap
    if use_medvram:
        sd_model.model.register_forward_pre_hook(send_me_to_gpu)
    else:
        unet = sd_model.model.diffusion_model
        stored = unet.input_blocks, unet.middle_block, unet.output_blocks, unet.time_embed
        unet.input_blocks = unet.middle_block = unet.output_blocks = unet.time_embed = None
        sd_model.model.to(devices.device)
        unet.input_blocks, unet.middle_block, unet.output_blocks, unet.time_embed = stored
        unet.time_embed.register_forward_pre_hook(send_me_to_gpu)
        for block in list(unet.input_blocks) + [unet.middle_block] + list(unet.output_blocks):
            block.register_forward_pre_hook(send_me_to_gpu)


def is_enabled(sd_model):
    return sd_model.lowvram
