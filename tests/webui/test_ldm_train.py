"""Each method trains a real ldm LatentDiffusion through our one loop, and touches only what it should.

This is the WebUI's model class (the tiny one, on CPU), driven exactly as the host will drive
`shared.sd_model`: `train(cfg, adapter=LdmAdapter(model))`.
"""
from __future__ import annotations

import statistics

import pytest
import torch
from safetensors.torch import load_file

from sd_trainplan.models.ldm_adapter import LdmAdapter
from sd_trainplan.models.tiny_ldm import build_tiny_ldm
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.loop import train
from sd_trainplan.train.methods import Dreambooth
from webui_host import tensor_hashes


def run(cfg: TrainConfig, adapter: LdmAdapter):
    events = []
    result = train(cfg, adapter=adapter, sinks=[events.append])
    losses = [e.loss for e in events if e.kind == "step" and e.loss is not None]
    vals = [(e.val_loss, e.stable_loss) for e in events if e.kind == "val"]
    return result, losses, vals


def config(data, tmp_path, **kw) -> TrainConfig:
    base = dict(data=str(data), output=str(tmp_path), resolution=64, batch_size=4, log_every=1, val_split=0.25,
                instance_prompt="[name] [filewords]", device="cpu", precision="fp32")
    return TrainConfig(**{**base, **kw})


def test_dreambooth_trains_the_unet_and_its_export_loads_into_latent_diffusion(dataset, tmp_path):
    model = build_tiny_ldm(0)
    adapter = LdmAdapter(model, "cpu")
    frozen = {k: h for k, h in tensor_hashes(model).items() if not k.startswith("model.diffusion_model.")}
    unet0 = {k: v.clone() for k, v in adapter.unet().state_dict().items()}
    cfg = config(dataset, tmp_path, method="dreambooth", steps=40, lr=2e-3, val_every=20)
    result, losses, vals = run(cfg, adapter)

    assert statistics.mean(losses[-10:]) < 0.5 * statistics.mean(losses[:10]), losses
    assert vals[-1][0] < vals[0][0] and vals[-1][1] < vals[0][1]  # held-out and stabilised losses fall
    after = tensor_hashes(model)
    assert {k: after[k] for k in frozen} == frozen  # VAE, text encoder and schedule untouched
    trained = adapter.unet().state_dict()
    assert sum(not torch.equal(v, trained[k]) for k, v in unet0.items()) > 0.9 * len(unet0)

    # The export is a single-file checkpoint under ldm's own names: a fresh LatentDiffusion built
    # from the same config (another seed: other weights) takes it strictly and becomes the trained model.
    state = load_file(str(result.export_path))
    fresh = build_tiny_ldm(seed=7)
    fresh.load_state_dict(state, strict=True)
    for k, v in model.state_dict().items():  # in the model's own dtype (fp32): nothing rounded
        assert fresh.state_dict()[k].dtype == v.dtype and torch.equal(fresh.state_dict()[k], v), k
    # and the reloaded model predicts as the trained one did
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([50, 700])
    with torch.no_grad():
        c = model.cond_stage_model(["a red circle", "sks"])
        assert torch.allclose(fresh.apply_model(x, t, c), model.apply_model(x, t, c), atol=1e-5)  # attention: SDPA
    # fp16 on request: the weights rounded, the noise schedule not
    half = load_file(str(Dreambooth(adapter, cfg.replace(save_precision="fp16")).export(tmp_path / "half", 40)))
    assert half["model.diffusion_model.out.2.weight"].dtype == torch.float16
    assert half["first_stage_model.decoder.conv_out.weight"].dtype == torch.float16
    assert half["alphas_cumprod"].dtype == torch.float32


def test_textual_inversion_changes_only_the_new_vectors(dataset, tmp_path):
    model = build_tiny_ldm(0)
    adapter = LdmAdapter(model, "cpu")
    before = tensor_hashes(model)
    init_id = adapter.tokenizer("shape", add_special_tokens=False).input_ids[0]
    init = adapter.text_encoder().text_model.embeddings.token_embedding.weight[init_id].clone()
    cfg = config(dataset, tmp_path, method="ti", steps=40, lr=5e-2, val_every=10, token="zwx", init_word="shape",
                 vectors=2)
    result, losses, vals = run(cfg, adapter)

    stable = [s for _, s in vals]
    held_out = [v for v, _ in vals]
    assert stable[-1] < stable[0] and min(stable[1:]) < stable[0], vals  # the deterministic loss falls
    assert held_out[-1] < held_out[0], vals
    after = tensor_hashes(model)
    extras = {k for k in after if ".token_embedding.extras." in k}
    assert len(extras) == 1  # the new vectors live beside the embedding table, not in it
    base_names = {k.replace(".token_embedding.base.", ".token_embedding."): h for k, h in after.items()
                  if k not in extras}
    assert base_names == before  # every tensor of the model bit-identical
    assert set(adapter.checkpoint_state()) == set(before)  # a checkpoint of it has the plain ldm keys
    vectors = load_file(str(result.export_path))["emb_params"]
    assert vectors.shape == (2, 32) and not torch.allclose(vectors[0], init)
    with torch.no_grad():  # the token reaches the model through its own cond stage
        with_token, without = model.cond_stage_model(["zwx zwx_1 on grey", "shape shape on grey"])
    assert not torch.allclose(with_token, without)


def test_lora_leaves_the_base_bit_identical_and_names_real_modules(dataset, tmp_path):
    model = build_tiny_ldm(0)
    adapter = LdmAdapter(model, "cpu")
    before = tensor_hashes(model)
    cfg = config(dataset, tmp_path, method="lora", steps=40, lr=1e-2, rank=4, alpha=4, val_every=20,
                 train_text_encoder=True, lora_scope="transformer")  # every linear of the blocks (kohya's)
    result, losses, vals = run(cfg, adapter)

    assert statistics.mean(losses[-10:]) < 0.85 * statistics.mean(losses[:10]), losses
    assert vals[-1][0] < vals[0][0]
    assert tensor_hashes(model) == before
    sd = load_file(str(result.export_path))
    names = {k.rsplit(".", 2)[0] for k in sd if k.endswith(".lora_down.weight")}
    modules = adapter.lora_targets(text_encoder=True, conv=False)
    assert names == set(modules)
    # the tiny UNet's layout is not SD's (one ResBlock a level): its modules are named after their ldm
    # paths, which the WebUI's Lora extension looks up as they are (kohya_names.py)
    assert "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q" in names
    assert "lora_unet_middle_block_1_proj_in" in names
    assert "lora_te_text_model_encoder_layers_1_mlp_fc2" in names
    by_path = {"diffusion_model_" + k.split("diffusion_model.", 1)[1].replace(".", "_"): m
               for k, m in model.model.named_modules() if "diffusion_model." in k}  # networks.py's own mapping
    assert all(by_path[n.replace("lora_unet_", "diffusion_model_", 1)] is modules[n]
               for n in names if n.startswith("lora_unet_"))
    ldm_modules = {id(m) for m in model.modules()}
    for n in names:
        m = modules[n]
        assert id(m) in ldm_modules  # a module of this very LatentDiffusion
        down, up = sd[f"{n}.lora_down.weight"], sd[f"{n}.lora_up.weight"]
        assert down.shape[1] == m.weight.shape[1] and up.shape[0] == m.weight.shape[0], n
        assert float(sd[f"{n}.alpha"]) == 4.0
    # After the run no hook is left: the model computes exactly what it did before.
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("method", ["dreambooth", "lora"])
def test_gradient_checkpointing_gives_the_same_result(dataset, tmp_path, method):
    out = []
    for gc in (False, True):
        adapter = LdmAdapter(build_tiny_ldm(0), "cpu")
        cfg = config(dataset, tmp_path / str(gc), method=method, steps=3, batch_size=2, lr=1e-3,
                     gradient_checkpointing=gc, train_text_encoder=method == "lora")
        out.append(run(cfg, adapter)[1])
        # switched off after the run (attention blocks keep the SDPA forward the adapter gave them)
        assert not any("forward" in vars(m) for m in adapter.unet().modules() if type(m).__name__ != "CrossAttention")
    assert out[0] == pytest.approx(out[1], rel=1e-5)


def test_prior_preservation_samples_class_images_with_the_ldm_model(dataset, tmp_path):
    adapter = LdmAdapter(build_tiny_ldm(0), "cpu")
    cfg = config(dataset, tmp_path, method="dreambooth", steps=2, batch_size=2, lr=1e-3, num_class_images=3,
                 class_prompt="a shape", sample_steps=2, class_data=str(tmp_path / "class"), val_split=0.0)
    result, losses, _ = run(cfg, adapter)
    assert len(list((tmp_path / "class").glob("*.png"))) == 3
    assert result.steps_done == 2 and losses
