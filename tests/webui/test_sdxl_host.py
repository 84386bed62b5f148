"""Training the WebUI's loaded SDXL model through the host hooks: the real sgm DiffusionEngine (the
tiny one of tests/hosts/make_tiny_sdxl.py) loaded and hijacked as AUTOMATIC1111 1.10.1 does
(stand-in of its modules: sd_models_xl.extend_sdxl, both text encoders wrapped, the embedding
database), each method's file read back as the WebUI reads it. The real WebUI runs the same in
tests/hosts/test_a1111_sdxl.py."""
from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from test_host_train import config, run_job
from webui_host import flags, start_webui, tensor_hashes, tiny_sdxl

SMALL = dict(batch_size=2, steps=2)


@pytest.fixture()
def webui(tmp_path):
    return start_webui(tmp_path / "webui", sdxl=True)


def cond(model, prompt: str) -> torch.Tensor:
    """What the WebUI's two hijacked encoders make of a prompt (token states side by side)."""
    clip_l, clip_g = model.conditioner.embedders[:2]
    with torch.no_grad():
        return torch.cat([clip_l([prompt]), clip_g([prompt])[0]], dim=2)  # clip_g also returns its pooled vector


def test_textual_inversion_trains_both_encoders_vectors_and_the_webui_uses_the_file_at_once(webui, dataset, tmp_path):
    from modules import sd_hijack
    from sd_trainplan.host.hooks import make_hooks
    shared, model = webui
    base, base_flags = tensor_hashes(model), flags(model)
    db = sd_hijack.model_hijack.embedding_db
    seen = {}

    def during(ev):
        if ev.kind == "step" and ev.step == 1:
            vec = db.word_embeddings["zwx"].vec  # the run's own SDXL embedding: one parameter per encoder
            seen["start"] = {k: v.detach().clone() for k, v in vec.items()}
            seen["grad"] = all(v.requires_grad for v in vec.values())
    cfg = config(dataset, tmp_path, method="ti", token="zwx", init_word="shape", vectors=2, lr=5e-2, **SMALL)
    run_job(make_hooks(), cfg, during)
    from sd_trainplan.host.hooks import STATUS
    assert any("SDXL, made for 1024 px: this run trains at 64 px" in n for n in STATUS.snapshot()["notes"])

    assert seen["grad"] and set(seen["start"]) == {"clip_l", "clip_g"}
    assert tensor_hashes(model) == base and flags(model) == base_flags  # the checkpoint's weights, untouched
    path = tmp_path / "webui" / "embeddings" / "zwx.safetensors"
    state = load_file(str(path))  # the layout create_embedding_from_data reads as SDXL
    assert {k: tuple(v.shape) for k, v in state.items()} == {"clip_l": (2, 768), "clip_g": (2, 256)}
    loaded = db.word_embeddings["zwx"]
    assert loaded.filename == str(path) and loaded.vectors == 2 and loaded.shape == db.expected_shape == 1024
    for k in ("clip_l", "clip_g"):
        assert torch.equal(loaded.vec[k].cpu(), state[k]) and not torch.equal(state[k], seen["start"][k].cpu())
    with_token = cond(model, "a zwx")  # usable at once: both hijacked encoders splice their own vectors in
    db.register_embedding_by_name(None, model, "zwx")
    without = cond(model, "a zwx")
    assert not torch.equal(with_token[..., :768], without[..., :768])
    assert not torch.equal(with_token[..., 768:], without[..., 768:])


def test_lora_with_both_text_encoders_loads_fully_and_merges_to_what_it_trained(webui, dataset, tmp_path):
    import networks
    from sd_trainplan.host.hooks import make_hooks
    from sd_trainplan.models.sgm_adapter import SgmAdapter
    from sd_trainplan.train.lora import LoRASet
    shared, model = webui
    base, base_flags = tensor_hashes(model), flags(model)
    cfg = config(dataset, tmp_path, method="lora", lr=5e-2, name="xl", train_text_encoder=True, rank=4, alpha=4,
                 **SMALL)
    run_job(make_hooks(), cfg)
    assert tensor_hashes(model) == base and flags(model) == base_flags  # hooks and the split attention gone

    state = load_file(str(tmp_path / "webui" / "models" / "Lora" / "xl.safetensors"))
    layers = {k.split(".")[0] for k in state}
    assert {k.split("_")[1] for k in layers} == {"unet", "te1", "te2"}
    matched, failed = networks.match_lora_keys(model, state)  # the Lora extension's lookup, key by key
    assert not failed and len(matched) == len(layers)

    # The WebUI merges the file into the weights; the hooks we trained with, loaded from the same
    # file, must give the same model: every name points at the layer that was trained.
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([20, 600])
    hooked = SgmAdapter(copy.deepcopy(tiny_sdxl(0)), "cpu")
    loras = LoRASet(hooked.lora_targets(text_encoder=True, conv=False), 4, 4, "cpu", 0)
    with torch.no_grad():
        for name, lora in zip(loras.names, loras.loras):
            if f"{name}.lora_down.weight" in state:
                lora.down.weight.copy_(state[f"{name}.lora_down.weight"])
                lora.up.weight.copy_(state[f"{name}.lora_up.weight"])
    loras.attach()
    merged = copy.deepcopy(tiny_sdxl(0))
    from modules import sd_hijack, sd_models_xl
    sd_models_xl.extend_sdxl(merged)
    merged.is_sdxl = True
    sd_hijack.StableDiffusionModelHijack().hijack(merged)
    networks.merge_lora(merged, state)
    prompts = ["a red circle", "a blue square"]
    ours = SgmAdapter(merged, "cpu", place=False)
    with torch.no_grad():
        want = hooked.predict(x, t, hooked.encode_prompts(prompts))
        got = ours.predict(x, t, ours.encode_prompts(prompts))
        loras.detach()
        plain = hooked.predict(x, t, hooked.encode_prompts(prompts))
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert not torch.allclose(plain, want, atol=1e-3)  # and the LoRA does change the model


def test_dreambooth_interrupted_or_finished_leaves_the_original_and_writes_a_checkpoint_sgm_loads(webui, dataset,
                                                                                                   tmp_path):
    from modules import sd_models, shared as shared_mod
    from sd_trainplan.host.hooks import make_hooks
    _, model = webui
    base, base_flags = tensor_hashes(model), flags(model)

    def interrupt(ev):
        if ev.kind == "step" and ev.step == 1:
            assert tensor_hashes(model) != base  # it trains in place
            shared_mod.state.interrupt()
    cfg = config(dataset, tmp_path, method="dreambooth", lr=1e-3, train_text_encoder=True, name="stop",
                 batch_size=2, steps=3)
    result, _ = run_job(make_hooks(), cfg, interrupt)
    assert result.stopped and tensor_hashes(model) == base and flags(model) == base_flags

    run_job(make_hooks(), config(dataset, tmp_path, method="dreambooth", lr=1e-3, name="xldb", **SMALL))
    assert tensor_hashes(model) == base
    path = tmp_path / "webui" / "models" / "Stable-diffusion" / "xldb.safetensors"
    assert sd_models.checkpoints_list == {"xldb.safetensors": str(path)}
    state = load_file(str(path))
    assert not any(".wrapped." in k or k.startswith("cond_stage_model.") for k in state)  # plain sgm names
    fresh = copy.deepcopy(tiny_sdxl(0))
    fresh.load_state_dict(state, strict=True)  # a DiffusionEngine of the same config takes every key
    key = "model.diffusion_model.out.2.weight"
    assert not torch.equal(state[key].float(), model.state_dict()[key].half().float())


def test_an_sdxl_refiner_is_refused_by_name_and_nothing_changes(webui, dataset, tmp_path):
    from sd_trainplan.host.hooks import make_hooks
    from sd_trainplan.train.config import ConfigError
    _, model = webui
    base = tensor_hashes(model)
    model.conditioner.embedders[2].input_key = "aesthetic_score"
    with pytest.raises(ConfigError, match="not an SDXL base model"):
        run_job(make_hooks(), config(dataset, tmp_path, method="lora", **SMALL))
    assert tensor_hashes(model) == base


def test_medvram_sdxl_holds_the_conditioner_for_the_run_and_puts_the_swapping_back(dataset, tmp_path):
    """--medvram(-sdxl) swaps SDXL's whole conditioner in and out (lowvram.setup_for_low_vram); TI needs
    both its encoders with the UNet in one step, so the run holds them all and gives the hooks back."""
    from modules import lowvram
    from sd_trainplan.host.hooks import STATUS, make_hooks
    _, model = start_webui(tmp_path / "webui", medvram=True, sdxl=True)
    hooked = sorted(n for n, m in model.named_modules() if m._forward_pre_hooks)
    assert hooked == ["conditioner", "first_stage_model", "model"] and "encode" in vars(model.first_stage_model)
    base = tensor_hashes(model)
    run_job(make_hooks(), config(dataset, tmp_path, method="ti", token="zwq", init_word="shape", **SMALL))
    held = sum(p.numel() * p.element_size() for part in (model.model, model.first_stage_model, model.conditioner)
               for p in part.parameters()) / 2 ** 30  # the UNet, the VAE and both text encoders
    assert any(f"({held:.1f} GiB of weights)" in n for n in STATUS.snapshot()["notes"]), STATUS.snapshot()["notes"]
    assert sorted(n for n, m in model.named_modules() if m._forward_pre_hooks) == hooked
    assert "encode" in vars(model.first_stage_model) and lowvram.module_in_gpu is None
    assert tensor_hashes(model) == base
