"""LoRA key names for UNet modules that load into the right module in the WebUI, on any layout.

kohya names an SD1/SD2 UNet module after diffusers' blocks (lora_unet_down_blocks_0_attentions_0_...).
AUTOMATIC1111's built-in Lora extension turns such a name into an ldm module path by arithmetic
that assumes SD's layout (two ResBlocks a level; extensions-builtin/Lora/networks.py,
convert_diffusers_name_to_compvis, v1.10.1): on another layout it silently drops some modules
and applies others to the wrong block (it reports misses only at debug level). A name spelt after
the ldm module path (lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q, kohya's own
convention for SDXL) passes that arithmetic unchanged and is then looked up by the path itself
(load_network: "lora_unet" -> "diffusion_model"), so it lands on its module on any layout.
Forge and ComfyUI read that form too (comfyui_lora_collection/lora.py model_lora_keys_unet);
diffusers' SD1 pipeline reads only the usual form (`diffusers_style` renames a file for it).

So: where the WebUI's arithmetic maps every one of a model's kohya names to its own module (SD's
layouts), the usual names stay, as every tool expects them; otherwise every UNet module is named
after its ldm path (one form per file: a loader that maps one form, e.g. diffusers' SDXL one,
refuses a mix).
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

# convert_diffusers_name_to_compvis's UNet rules (networks.py, v1.10.1), on kohya names without
# the "lora_unet_" prefix: (pattern, the ldm module path it gives with "_" for "."). A block's
# index counts three per level, SD's layout: two ResBlocks (or attentions) and a sampler.
_RESNET = {"conv1": "in_layers_2", "conv2": "out_layers_3", "norm1": "in_layers_0", "norm2": "out_layers_0",
           "time_emb_proj": "emb_layers_1", "conv_shortcut": "skip_connection"}


def _layer(kind: str, rest: str) -> str:
    """The layer inside a block (ResBlocks rename theirs), after the block's slot (1: attention, 0: ResBlock)."""
    return _RESNET.get(rest, rest) if kind == "resnets" else rest


def _slot(kind: str) -> int:
    return 1 if kind == "attentions" else 0


_RULES = (
    (r"conv_in(.*)", lambda m: f"input_blocks_0_0{m[1]}"),
    (r"conv_out(.*)", lambda m: f"out_2{m[1]}"),
    (r"time_embedding_linear_(\d+)(.*)", lambda m: f"time_embed_{int(m[1]) * 2 - 2}{m[2]}"),
    (r"down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)",
     lambda m: f"input_blocks_{1 + int(m[1]) * 3 + int(m[3])}_{_slot(m[2])}_{_layer(m[2], m[4])}"),
    (r"mid_block_(attentions|resnets)_(\d+)_(.+)",
     lambda m: f"middle_block_{1 if m[1] == 'attentions' else int(m[2]) * 2}_{_layer(m[1], m[3])}"),
    (r"up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)",
     lambda m: f"output_blocks_{int(m[1]) * 3 + int(m[3])}_{_slot(m[2])}_{_layer(m[2], m[4])}"),
    (r"down_blocks_(\d+)_downsamplers_0_conv", lambda m: f"input_blocks_{3 + int(m[1]) * 3}_0_op"),
    (r"up_blocks_(\d+)_upsamplers_0_conv",
     lambda m: f"output_blocks_{2 + int(m[1]) * 3}_{2 if int(m[1]) > 0 else 1}_conv"),
)


def webui_unet_path(name: str) -> Optional[str]:
    """Where the WebUI's Lora extension puts kohya UNet name `name` (no lora_unet_ prefix), as
    `input_blocks_4_1_...`; None for a name its rules do not convert. The first rule that matches
    wins, as in networks.py."""
    for pattern, path in _RULES:
        m = re.match(pattern, name)
        if m:
            return path(m)
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
