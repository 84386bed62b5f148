"""LoRA key names for UNet modules that load into the right module in the WebUI, on any layout.

kohya names an SD1/SD2 UNet module after diffusers' blocks (lora_unet_down_blocks_0_attentions_0_...).
AUTOMATIC1111's built-in Lora extension turns such a name into an ldm module path by arithmetic
that assumes SD's layout (two ResBlocks a level; extensions-builtin/Lora/networks.py,
convert_diffusers_name_to_compvis, v1.10.1): on another layout it silently drops some modules
and applies others to the wrong block (it reports misses only at debug level). A name spelt after
the ldm module path (lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q, kohya's own
convention for SDXL) passes that arithmetic unchanged and is then looked up by the path itself
(load_network: "lora_unet" -> "diffusion_model"), so it lands on its module on any layout.
ComfyUI/Forge and diffusers read that form too.

So: where the WebUI's arithmetic maps every one of a model's kohya names to its own module (SD's
layouts), the usual names stay; otherwise every UNet module is named after its ldm path (one form
per file: diffusers' reader takes a file in one form or the other, not both).
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

# convert_diffusers_name_to_compvis's UNet rules (networks.py, v1.10.1), on kohya names without
# the "lora_unet_" prefix; each gives the ldm module path with "_" for ".".
_RESNET = {"conv1": "in_layers_2", "conv2": "out_layers_3", "norm1": "in_layers_0", "norm2": "out_layers_0",
           "time_emb_proj": "emb_layers_1", "conv_shortcut": "skip_connection"}


def webui_unet_path(name: str) -> Optional[str]:
    """Where the WebUI's Lora extension puts kohya UNet name `name` (no lora_unet_ prefix), as
    `input_blocks_4_1_...`; None for a name its rules do not convert."""
    m = re.match(r"conv_in(.*)", name)
    if m:
        return f"input_blocks_0_0{m[1]}"
    m = re.match(r"conv_out(.*)", name)
    if m:
        return f"out_2{m[1]}"
    m = re.match(r"time_embedding_linear_(\d+)(.*)", name)
    if m:
        return f"time_embed_{int(m[1]) * 2 - 2}{m[2]}"
    m = re.match(r"down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", name)
    if m:
        suffix = _RESNET.get(m[4], m[4]) if m[2] == "resnets" else m[4]
        return f"input_blocks_{1 + int(m[1]) * 3 + int(m[3])}_{1 if m[2] == 'attentions' else 0}_{suffix}"
    m = re.match(r"mid_block_(attentions|resnets)_(\d+)_(.+)", name)
    if m:
        suffix = _RESNET.get(m[3], m[3]) if m[1] == "resnets" else m[3]
        return f"middle_block_{1 if m[1] == 'attentions' else int(m[2]) * 2}_{suffix}"
    m = re.match(r"up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", name)
    if m:
        suffix = _RESNET.get(m[4], m[4]) if m[2] == "resnets" else m[4]
        return f"output_blocks_{int(m[1]) * 3 + int(m[3])}_{1 if m[2] == 'attentions' else 0}_{suffix}"
    m = re.match(r"down_blocks_(\d+)_downsamplers_0_conv", name)
    if m:
        return f"input_blocks_{3 + int(m[1]) * 3}_0_op"
    m = re.match(r"up_blocks_(\d+)_upsamplers_0_conv", name)
    if m:
        return f"output_blocks_{2 + int(m[1]) * 3}_{2 if int(m[1]) > 0 else 1}_conv"
    return None


def unet_lora_names(modules: Sequence[Tuple[Optional[str], str]]) -> List[str]:
    """(diffusers module name or None, ldm module name) pairs, dotted, inside the UNet -> their kohya
    keys, in order: the usual names when the WebUI maps every one of them home, else ldm-path names
    (also when a module has no diffusers name: a layout diffusers cannot express)."""
    def flat(name: str) -> str:
        return name.replace(".", "_")
    usual = all(d is not None and webui_unet_path(flat(d)) == flat(ldm) for d, ldm in modules)
    return ["lora_unet_" + flat(d if usual else ldm) for d, ldm in modules]


def diffusers_style(state: Dict[str, Any], unet) -> Dict[str, Any]:
    """A LoRA state dict with ldm-path UNet names renamed to diffusers' block names for `unet` (a
    diffusers UNet of the model it was trained on): diffusers' SD1 pipeline reads only those."""
    from .ldm_names import unet_name_to_ldm, unet_pairs_for_state
    modules = dict(unet.named_modules())
    pairs = [(d, ldm) for d, ldm in unet_pairs_for_state(unet.state_dict(), unet.config.layers_per_block)
             if d in modules]
    rename = {}
    for name in modules:
        try:
            ldm = unet_name_to_ldm(name, pairs)
        except KeyError:  # the root and containers with no ldm counterpart
            continue
        rename["lora_unet_" + ldm.replace(".", "_")] = "lora_unet_" + name.replace(".", "_")
    out = {}
    for key, value in state.items():
        head, dot, tail = key.partition(".")
        out[rename.get(head, head) + dot + tail] = value
    return out
