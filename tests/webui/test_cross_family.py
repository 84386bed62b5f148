"""The ldm adapter and the diffusers adapter compute the same thing (issue 3, "Done when").

A tiny LatentDiffusion's own state dict is written as a single-file checkpoint; the standalone
environment loads it with diffusers' own `from_single_file` (the configs given as a local
folder) inside our DiffusersAdapter, and both adapters compute the text conditioning, the UNet
prediction, the training loss and the VAE's encode/decode on the same inputs. A LoRA trained
through the ldm adapter is loaded by diffusers' own kohya loader and must change diffusers'
prediction exactly as it changes ldm's. And our exporter (ldm_names.diffusers_to_ldm_state), run on
what diffusers converted, must give back the ldm model's own keys and tensors.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sd_trainplan.models.ldm_adapter import LdmAdapter
from sd_trainplan.models.ldm_names import unet_name_to_ldm, unet_prefix_pairs
from sd_trainplan.models.tiny_ldm import build_tiny_ldm
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.lora import LoRASet
from sd_trainplan.train.loop import train

from loss_parts import loss_parts
from standalone_env import run_standalone
PROMPTS = ["a photo of a red circle", "sks, a blue square on grey"]
CASES = {"eps": 0, "v": 1}  # parameterization -> seed
RANK, ALPHA = 4, 2.0        # alpha != rank, so a loader that ignores alpha is caught


def attach_exported_lora(adapter: LdmAdapter, path: Path) -> LoRASet:
    """Put an exported kohya file back on the ldm model (by its kohya names) with our LoRA hooks."""
    sd = load_file(str(path))
    names = {k[:-len(".lora_down.weight")] for k in sd if k.endswith(".lora_down.weight")}
    targets = adapter.lora_targets(text_encoder=True, conv=True)
    assert names <= set(targets), sorted(names - set(targets))
    lora = LoRASet({n: targets[n] for n in names}, RANK, ALPHA, adapter.device, seed=0)
    with torch.no_grad():
        for name, mod in zip(lora.names, lora.loras):
            mod.down.weight.copy_(sd[f"{name}.lora_down.weight"].float())
            mod.up.weight.copy_(sd[f"{name}.lora_up.weight"].float())
            assert float(sd[f"{name}.alpha"]) == ALPHA
    lora.attach()
    return lora


def write_case(case: Path, parameterization: str, seed: int, data: Path) -> dict:
    case.mkdir(parents=True)
    model = build_tiny_ldm(seed, parameterization=parameterization)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(case / "model.safetensors"))
    adapter = LdmAdapter(model, "cpu")
    g = torch.Generator().manual_seed(seed)
    x = {"latents": torch.randn(2, 4, 8, 8, generator=g), "noise": torch.randn(2, 4, 8, 8, generator=g),
         "t": torch.tensor([37, 801]), "pixels": torch.rand(2, 3, 64, 64, generator=g) * 2 - 1}
    save_file(x, str(case / "inputs.safetensors"))
    (case / "inputs.json").write_text(json.dumps({"prompts": PROMPTS, "prediction_type": adapter.prediction_type}))
    out = {f"base.{k}": v for k, v in loss_parts(adapter, x, PROMPTS).items()}
    mean, std = adapter.encode_images(x["pixels"])
    out.update({"vae.mean": mean, "vae.std": std, "vae.decoded": adapter.decode_latents(x["latents"])})
    # A few LoRA updates through our loop (UNet attention and convs, and the text encoder)
    cfg = TrainConfig(method="lora", data=str(data), output=str(case / "runs"), resolution=64, steps=3, batch_size=2,
                      lr=5e-2, rank=RANK, alpha=ALPHA, lora_conv=True, train_text_encoder=True, log_every=3,
                      instance_prompt="[filewords]", device="cpu", seed=seed)
    result = train(cfg, adapter=adapter)
    os.replace(result.export_path, case / "lora.safetensors")
    hooks = attach_exported_lora(adapter, case / "lora.safetensors")
    out.update({f"lora.{k}": v for k, v in loss_parts(adapter, x, PROMPTS).items()})
    hooks.detach()
    return {"model": model, "adapter": adapter, "out": out}


@pytest.fixture(scope="module")
def cases(tmp_path_factory, dataset):
    root = tmp_path_factory.mktemp("cross")
    made = {p: write_case(root / p, p, seed, dataset) for p, seed in CASES.items()}
    run_standalone("cross_family_diffusers.py", *(root / p for p in CASES), timeout=300)
    for p in CASES:
        made[p]["theirs"] = load_file(str(root / p / "out.safetensors"))
        made[p]["info"] = json.loads((root / p / "out.json").read_text())
    return made


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol, rtol=rtol)


@pytest.mark.parametrize("param", list(CASES))
def test_same_conditioning_prediction_and_loss(cases, param):
    c = cases[param]
    ours, theirs = c["out"], c["theirs"]
    assert c["info"]["prediction_type"] == c["adapter"].prediction_type
    for key in ("base.cond", "base.pred", "base.loss", "vae.mean", "vae.std", "vae.decoded"):
        assert close(ours[key], theirs[key]), (key, (ours[key].float() - theirs[key]).abs().max())
    assert theirs["base.loss"].item() == pytest.approx(ours["base.loss"].item(), rel=1e-5)


@pytest.mark.parametrize("param", list(CASES))
def test_an_ldm_trained_lora_does_the_same_in_diffusers(cases, param):
    ours, theirs = cases[param]["out"], cases[param]["theirs"]
    moved = (ours["lora.pred"] - ours["base.pred"]).abs().max()
    assert moved > 1e-2  # the LoRA really changes the prediction, so agreeing below means something
    assert (ours["lora.cond"] - ours["base.cond"]).abs().max() > 1e-3  # its text-encoder part too
    for key in ("lora.cond", "lora.pred", "lora.loss"):
        assert close(ours[key], theirs[key], atol=1e-4), (key, (ours[key].float() - theirs[key]).abs().max())


@pytest.mark.parametrize("param", list(CASES))
def test_lora_targets_and_attention_heads_match(cases, param):
    c = cases[param]
    adapter = c["adapter"]
    ours = {n: list(m.weight.shape) for n, m in adapter.lora_targets(True, True).items()}
    assert ours == c["info"]["lora_targets"]  # same kohya names, same layer shapes
    unet = dict(adapter.unet().named_modules())
    pairs = unet_prefix_pairs(1, 2, [False, True])  # the tiny UNet: 1 layer per block, attention in up block 1
    assert c["info"]["heads"]
    for name, heads in c["info"]["heads"].items():  # diffusers "attention_head_dim=8" is 8 heads
        assert unet[unet_name_to_ldm(name, pairs)].heads == heads == 8, name


@pytest.mark.parametrize("param", list(CASES))
def test_our_exporter_gives_back_the_ldm_checkpoint(cases, param):
    """ldm state dict -> diffusers' single-file conversion -> our diffusers_to_ldm_state: the same
    keys as the ldm model's own UNet, VAE and text-encoder keys, and bit-identical tensors."""
    c = cases[param]
    parts = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")
    own = {k: v for k, v in c["model"].state_dict().items() if k.startswith(parts)}
    exported = {k[len("export."):]: v for k, v in c["theirs"].items() if k.startswith("export.")}
    assert sorted(exported) == sorted(own)
    bad = [k for k in own if not torch.equal(own[k].to(exported[k].dtype), exported[k])]
    assert not bad, bad[:5]
