"""Stands for the built-in Lora extension's networks.py (extensions-builtin/Lora, v1.10.1), which
the WebUI imports as the top-level module `networks`: the list of loaded networks, the weight
backups it keeps on each layer before merging a network in place, and its restore function.
`merge_for_test` does what network_apply_weights does to a layer for one network (back up the
weight on the CPU, add the delta in place, record the names). `match_lora_keys` and `lora_delta`
mirror how load_network finds the layer of each key of a kohya LoRA (assign_network_names_to_compvis_modules,
convert_diffusers_name_to_compvis's SDXL text-encoder-2 rule, the x_proj, lora_unet and lora_te1
fallbacks) and what network_apply_weights adds to it (network_lora.py calc_updown: up @ down * alpha /
rank; an nn.MultiheadAttention gets q, k, v stacked into in_proj_weight and out into out_proj). Left
out: the diffusers-named SD1 UNet rules, other network types."""
import re

import torch

from modules import devices

loaded_networks = []
refreshes = []


def store_weights_backup(weight):
    return None if weight is None else weight.to(devices.cpu, copy=True)


def restore_weights_backup(obj, field, weight):
    if weight is None:
        setattr(obj, field, None)
        return
    getattr(obj, field).copy_(weight)


def network_restore_weights_from_backup(self):
    weights_backup = getattr(self, "network_weights_backup", None)
    bias_backup = getattr(self, "network_bias_backup", None)
    if weights_backup is None and bias_backup is None:
        return
    if weights_backup is not None:
        restore_weights_backup(self, "weight", weights_backup)
    restore_weights_backup(self, "bias", bias_backup)


def list_available_networks():
    refreshes.append(True)


class NetworkForTest:
    def __init__(self, name):
        self.name, self.te_multiplier, self.unet_multiplier, self.dyn_dim = name, 1.0, 1.0, None


def merge_for_test(layer, net, delta):
    with torch.no_grad():
        if getattr(layer, "network_weights_backup", None) is None:
            layer.network_weights_backup = store_weights_backup(layer.weight)
            layer.network_bias_backup = store_weights_backup(layer.bias)
        layer.weight += delta.to(layer.weight.dtype)
    layer.network_current_names = ((net.name, net.te_multiplier, net.unet_multiplier, net.dyn_dim),)
    if net not in loaded_networks:
        loaded_networks.append(net)


re_x_proj = re.compile(r"(.*)_([qkv]_proj)$")


def assign_network_names_to_compvis_modules(sd_model):
    mapping = {}
    if getattr(sd_model, "is_sdxl", False):
        for i, embedder in enumerate(sd_model.conditioner.embedders):
            if not hasattr(embedder, "wrapped"):
                continue
            for name, module in embedder.wrapped.named_modules():
                mapping[f"{i}_{name.replace('.', '_')}"] = module
    else:
        cond = getattr(sd_model.cond_stage_model, "wrapped", sd_model.cond_stage_model)
        for name, module in cond.named_modules():
            mapping[name.replace(".", "_")] = module
    for name, module in sd_model.model.named_modules():
        mapping[name.replace(".", "_")] = module
    return mapping


def convert_te2_name(key):
    m = re.match(r"lora_te2_text_model_encoder_layers_(\d+)_(.+)", key)
    if not m:
        return key
    i, rest = m.groups()
    rest = rest.replace("mlp_fc1", "mlp_c_fc").replace("mlp_fc2", "mlp_c_proj").replace("self_attn", "attn")
    return f"1_model_transformer_resblocks_{i}_{rest}"


def match_lora_keys(sd_model, state):
    """{layer key: (module, {lora_down, lora_up, alpha})} and the keys that matched no layer."""
    mapping = assign_network_names_to_compvis_modules(sd_model)
    matched, failed = {}, {}
    for key_network, weight in state.items():
        base, _, part = key_network.partition(".")
        key = convert_te2_name(base)
        module = mapping.get(key)
        if module is None and re_x_proj.match(key):
            module = mapping.get(re_x_proj.match(key).group(1))
        if module is None and "lora_unet" in base:
            key = base.replace("lora_unet", "diffusion_model")
            module = mapping.get(key)
        elif module is None and "lora_te1_text_model" in base:
            key = base.replace("lora_te1_text_model", "0_transformer_text_model")
            module = mapping.get(key)
        if module is None:
            failed[key_network] = key
            continue
        matched.setdefault(key, (module, {}))[1][part] = weight
    return matched, failed


def lora_delta(w, shape):
    up, down = w["lora_up.weight"].float(), w["lora_down.weight"].float()
    scale = float(w["alpha"]) / down.shape[0] if "alpha" in w else 1.0
    return (up.reshape(up.size(0), -1) @ down.reshape(down.size(0), -1)).reshape(shape) * scale


def merge_lora(sd_model, state):
    """Add a LoRA file's deltas into the model's weights as network_apply_weights does."""
    matched, failed = match_lora_keys(sd_model, state)
    assert not failed, failed
    attentions = {}  # an nn.MultiheadAttention's q/k/v keys matched the attention itself
    for key, (module, _) in matched.items():
        if isinstance(module, torch.nn.MultiheadAttention):
            attentions[re_x_proj.match(key).group(1)] = module
    with torch.no_grad():
        for key, (module, w) in matched.items():
            if isinstance(module, torch.nn.MultiheadAttention) or (key.endswith("_out_proj") and key[:-9] in attentions):
                continue  # merged with its attention below (the out_proj Linear is never called on its own)
            module.weight += lora_delta(w, module.weight.shape).to(module.weight.dtype)
        for base, mha in attentions.items():
            d = mha.embed_dim
            qkv = torch.vstack([lora_delta(matched[f"{base}_{x}_proj"][1], (d, d)) for x in "qkv"])
            mha.in_proj_weight += qkv.to(mha.in_proj_weight.dtype)
            mha.out_proj.weight += lora_delta(matched[f"{base}_out_proj"][1], (d, d)).to(mha.out_proj.weight.dtype)
