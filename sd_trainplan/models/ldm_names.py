"""Key names between diffusers modules and the original (ldm) single-file checkpoint layout.

Used to export a Dreambooth result as a single file the WebUI loads, and to give LoRA
modules of an ldm model their kohya (diffusers-style) names. Written from the two
architectures' module layouts:

UNet (L = layers_per_block):
  input_blocks.0.0            <- conv_in
  input_blocks.{1+i(L+1)+j}.0 <- down_blocks.i.resnets.j    (.1 <- attentions.j)
  input_blocks.{(i+1)(L+1)}.0.op <- down_blocks.i.downsamplers.0.conv
  middle_block.{0,1,2}        <- mid_block.resnets.0, attentions.0, resnets.1
  output_blocks.{i(L+1)+j}.0  <- up_blocks.i.resnets.j      (.1 <- attentions.j)
  output_blocks.{i(L+1)+L}.{1|2}.conv <- up_blocks.i.upsamplers.0.conv (2 when the block has attention)
  time_embed.{0,2} <- time_embedding.linear_{1,2}; out.{0,2} <- conv_norm_out, conv_out
  resnets: in_layers.{0,2}, emb_layers.1, out_layers.{0,3}, skip_connection
        <- norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut
VAE: down.i.block.j / up.(n-1-i).block.j, mid.block_{1,2}, mid.attn_1 (1x1 convs q k v proj_out),
     nin_shortcut, norm_out.
Text encoder (SD1): cond_stage_model.transformer.<transformers CLIPTextModel key>.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
          ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]


def unet_prefix_pairs(layers_per_block: int, n_blocks: int, up_has_attn: List[bool]) -> List[Tuple[str, str]]:
    """(diffusers module prefix, ldm module prefix) pairs for every block of the UNet."""
    L = layers_per_block
    pairs = [("time_embedding.linear_1", "time_embed.0"), ("time_embedding.linear_2", "time_embed.2"),
             ("conv_in", "input_blocks.0.0"), ("conv_norm_out", "out.0"), ("conv_out", "out.2"),
             ("mid_block.resnets.0", "middle_block.0"), ("mid_block.attentions.0", "middle_block.1"),
             ("mid_block.resnets.1", "middle_block.2")]
    for i in range(n_blocks):
        for j in range(L):
            k = 1 + i * (L + 1) + j
            pairs += [(f"down_blocks.{i}.resnets.{j}", f"input_blocks.{k}.0"),
                      (f"down_blocks.{i}.attentions.{j}", f"input_blocks.{k}.1")]
        if i < n_blocks - 1:
            pairs.append((f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{(i + 1) * (L + 1)}.0.op"))
        for j in range(L + 1):
            k = i * (L + 1) + j
            pairs += [(f"up_blocks.{i}.resnets.{j}", f"output_blocks.{k}.0"),
                      (f"up_blocks.{i}.attentions.{j}", f"output_blocks.{k}.1")]
        if i < n_blocks - 1:
            slot = 2 if up_has_attn[i] else 1
            pairs.append((f"up_blocks.{i}.upsamplers.0", f"output_blocks.{i * (L + 1) + L}.{slot}"))
    return pairs


def unet_name_to_ldm(name: str, pairs: List[Tuple[str, str]]) -> str:
    """A diffusers UNet parameter/module name -> the ldm one (inside model.diffusion_model)."""
    found = _rename(name, pairs, 0)
    if found is None:
        raise KeyError(f"no ldm name for UNet key {name}")
    return found


def _rename(name: str, pairs: List[Tuple[str, str]], side: int) -> Optional[str]:
    """`name` on one side of `pairs` (0: diffusers, 1: ldm) -> the other side's name, or None. The
    longest matching prefix wins; inside a ResNet block the layer names change too (RESNET)."""
    other = 1 - side
    for pair in sorted(pairs, key=lambda p: -len(p[side])):
        prefix = pair[side]
        if name == prefix or name.startswith(prefix + "."):
            rest = name[len(prefix):]
            if ".resnets." in pair[0] or pair[0].startswith("mid_block.resnets"):
                for layer in RESNET:
                    if rest.startswith("." + layer[side] + ".") or rest == "." + layer[side]:
                        rest = "." + layer[other] + rest[len(layer[side]) + 1:]
                        break
            return pair[other] + rest
    return None


def _up_has_attn(unet_state: Dict[str, torch.Tensor]) -> List[bool]:
    n = 1 + max(int(m.group(1)) for k in unet_state for m in [re.match(r"up_blocks\.(\d+)\.", k)] if m)
    return [any(k.startswith(f"up_blocks.{i}.attentions.") for k in unet_state) for i in range(n)]


def unet_pairs_for_state(unet_state: Dict[str, torch.Tensor], layers_per_block: int) -> List[Tuple[str, str]]:
    has_attn = _up_has_attn(unet_state)
    return unet_prefix_pairs(layers_per_block, len(has_attn), has_attn)


def vae_name_to_ldm(name: str, n_blocks: int) -> str:
    name = name.replace("conv_norm_out", "norm_out")
    name = re.sub(r"mid_block\.resnets\.(\d)", lambda m: f"mid.block_{int(m.group(1)) + 1}", name)
    name = name.replace("mid_block.attentions.0", "mid.attn_1")
    name = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets", r"encoder.down.\1.block", name)
    name = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0", r"encoder.down.\1.downsample", name)
    name = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets", lambda m: f"decoder.up.{n_blocks - 1 - int(m.group(1))}.block",
                  name)
    name = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0",
                  lambda m: f"decoder.up.{n_blocks - 1 - int(m.group(1))}.upsample", name)
    name = name.replace("conv_shortcut", "nin_shortcut")
    for d, l in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
        name = name.replace(f"attn_1.{d}.", f"attn_1.{l}.")
    return name


SD_PREFIXES = {"unet": "model.diffusion_model.", "vae": "first_stage_model.", "text_encoder": "cond_stage_model.transformer."}


def diffusers_to_ldm_state(unet: Dict[str, torch.Tensor], vae: Dict[str, torch.Tensor],
                           text: Dict[str, torch.Tensor], layers_per_block: int,
                           vae_blocks: int, prefixes: Dict[str, str] = SD_PREFIXES,
                           extra_pairs: Sequence[Tuple[str, str]] = ()) -> Dict[str, torch.Tensor]:
    """A full single-file checkpoint (SD1 layout; sdxl_names.py adds SDXL's second text encoder under
    its `prefixes`, with its vector input's `extra_pairs`) from diffusers state dicts."""
    out: Dict[str, torch.Tensor] = {}
    pairs = unet_pairs_for_state(unet, layers_per_block) + list(extra_pairs)
    for k, v in unet.items():
        out[prefixes["unet"] + unet_name_to_ldm(k, pairs)] = v
    for k, v in vae.items():
        name = vae_name_to_ldm(k, vae_blocks)
        if ".mid.attn_1." in name and name.endswith(".weight") and v.ndim == 2:
            v = v[:, :, None, None]  # diffusers uses Linear, ldm 1x1 convs
        out[prefixes["vae"] + name] = v
    for k, v in text.items():
        out[prefixes["text_encoder"] + k] = v
    # transformers < 4.31 (the WebUI's 4.30.2, and every SD1 checkpoint) keeps CLIP's position_ids
    # as a saved buffer; newer versions do not save it. Write it so the file has the ldm model's keys.
    pos = prefixes["text_encoder"] + "text_model.embeddings.position_ids"
    table = text.get("text_model.embeddings.position_embedding.weight")
    if pos not in out and table is not None:
        out[pos] = torch.arange(table.shape[0], dtype=torch.int64)[None]
    return out


def ldm_name_to_unet(name: str, pairs: List[Tuple[str, str]]) -> str:
    """The inverse of unet_name_to_ldm: an ldm UNet module/parameter name -> the diffusers one.

    `pairs` must hold only pairs whose ldm side exists with the right kind of module: without
    attention in a level, its attention slot and its upsampler share one ldm prefix.
    """
    found = _rename(name, pairs, 1)
    if found is None:
        raise KeyError(f"no diffusers name for ldm UNet key {name}")
    return found
