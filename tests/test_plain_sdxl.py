"""models/plain for SDXL: an SDXL diffusers folder loads into our plain-torch UNet, VAE and both CLIP
text encoders, which compute what diffusers' and transformers' own models compute from the same folder
(the added text_time embedding, stacked transformer blocks, the second encoder's pooled projection at
the position transformers reads it), and a run on such a folder imports neither library nor
torch._dynamo (issue 16: seconds of every SDXL run's start). What the adapter does with them (TI,
LoRA, Dreambooth exports read by diffusers' loaders) is tests/test_sdxl_standalone.py, which now
trains these modules."""
import json

import pytest
import torch

from sd_trainplan.models.diffusers_adapter import load_diffusers
from sd_trainplan.models.tiny_sdxl_diffusers import TINY_UNET, TINY_VAE
from test_plain_models import assert_same_vae

# SDXL's structure at CPU-test widths: a first level without attention, a stack of transformer
# blocks that grows with depth (1, 2, 3: the middle block takes the last, the up path the reverse:
# a mix-up changes the module tree), the added text_time embedding, a second encoder (gelu) whose
# projection is narrower than it and whose config says eos_token_id 2 as SDXL's does (the pooled
# output at the highest id, not at the first end token)
TEXT_L = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
              max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1)
TEXT_G = dict(TEXT_L, hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              hidden_act="gelu", projection_dim=40)
UNET = dict(TINY_UNET, transformer_layers_per_block=(1, 2, 3), cross_attention_dim=32 + 48,
            addition_time_embed_dim=8, projection_class_embeddings_input_dim=40 + 6 * 8)
CONFIGS = (UNET, TINY_VAE, TEXT_L, TEXT_G)


def library_folder(root, configs=CONFIGS):
    """An SDXL folder of diffusers' and transformers' models (random weights, none zero)."""
    from sd_trainplan.models.sdxl_diffusers import adapter_from_configs
    adapter = adapter_from_configs(configs, "test SDXL", seed=0)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(1)
        for p in adapter.unet().parameters():  # diffusers zero-inits some outputs: every path counts
            p.normal_(std=0.05)
    return adapter.save_folder(root)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return library_folder(tmp_path_factory.mktemp("sdxl") / "model")


@pytest.fixture(scope="module")
def pair(folder):
    return load_diffusers(str(folder)), load_diffusers(str(folder), plain=False)


def difference(a, b) -> float:
    assert a.shape == b.shape
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-6)).item()


def close(a, b, tol=2e-5):
    assert difference(a, b) < tol, difference(a, b)


def parts(adapter):
    return (adapter.unet(), adapter.vae(), *adapter.text_encoders())


def test_the_plain_models_are_loaded_and_hold_the_same_tensors_in_the_same_order(pair):
    plain, lib = pair
    assert "plain torch UNet" in plain.describe() and "diffusers UNet" in lib.describe()
    assert all(type(m).__module__.startswith("sd_trainplan.models.plain") for m in parts(plain))
    for a, b in zip(parts(plain), parts(lib)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        # a checkpoint's optimizer state is stored by parameter position
        assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]


def added(g, b, hw):
    """Random pooled text and the size ids SDXL's UNet takes (each row its own sizes)."""
    ids = torch.tensor([[hw[0] * 8, hw[1] * 8, 0, 0, hw[0] * 8, hw[1] * 8], [1024, 768, 16, 32, 512, 640]][:b])
    return {"text_embeds": torch.randn(b, TEXT_G["projection_dim"], generator=g), "time_ids": ids.float()}


@pytest.mark.parametrize("hw", [(8, 8), (9, 12)])  # (9, 12): sizes that do not halve evenly
def test_unet_with_the_added_embedding_predicts_what_diffusers_predicts(pair, hw):
    plain, lib = pair
    g = torch.Generator().manual_seed(2)
    x, ctx = torch.randn(2, 4, *hw, generator=g), torch.randn(2, 77, UNET["cross_attention_dim"], generator=g)
    cond, t = added(g, 2, hw), torch.tensor([10, 900])
    with torch.no_grad():
        ours = plain.unet()(x, t, encoder_hidden_states=ctx, added_cond_kwargs=cond).sample
        close(ours, lib.unet()(x, t, encoder_hidden_states=ctx, added_cond_kwargs=cond).sample)
        other = dict(cond, time_ids=cond["time_ids"].flip(1))  # the size ids condition the output (tiny
        # random weights: by 0.1-0.2 %, while the two models agree to 2e-5)
        assert difference(plain.unet()(x, t, encoder_hidden_states=ctx, added_cond_kwargs=other).sample, ours) > 5e-4


def test_unet_gradients_match_with_and_without_checkpointing(pair):
    plain, lib = pair
    g = torch.Generator().manual_seed(3)
    x, ctx = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, UNET["cross_attention_dim"], generator=g)
    cond = added(g, 1, (8, 8))
    grads, kept = [], []
    for adapter, ckpt in ((lib, False), (plain, False), (plain, True)):
        unet = adapter.unet()
        unet.requires_grad_(True)
        adapter.set_gradient_checkpointing(ckpt)
        saved = []  # what autograd keeps for the backward pass: less with checkpointing
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            loss = unet(x, torch.tensor([500]), encoder_hidden_states=ctx, added_cond_kwargs=cond).sample.square().mean()
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in unet.parameters()]))
        kept.append(sum(saved))
        unet.zero_grad(set_to_none=True)
        adapter.set_gradient_checkpointing(False)
        unet.requires_grad_(False).eval()
    close(grads[1], grads[0], 1e-4)
    assert torch.equal(grads[2], grads[1])  # recomputation gives the very same gradients
    assert kept[2] < kept[1] / 2, kept


def test_text_encoders_and_the_conditioning_match_transformers_with_a_spliced_token(folder):
    """Penultimate states, pooled and projected outputs of both encoders, and the adapter's packed
    conditioning, with a Textual Inversion token spliced into both (ids past the vocabulary: where
    transformers reads the pooled output of an eos_token_id-2 config)."""
    plain, lib = load_diffusers(str(folder)), load_diffusers(str(folder), plain=False)
    prompts = ["a photo of zwx zwx_1 on a table", "a dog", ""]
    for adapter in (plain, lib):
        adapter.add_token("zwx", 2, "shape")
    ids = plain.tokenize(prompts)
    assert torch.equal(ids, lib.tokenize(prompts)) and ids.max() >= TEXT_L["vocab_size"]
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(plain.text_encoders(), lib.text_encoders())):
            ours, theirs = a(ids[:, i], output_hidden_states=True), b(ids[:, i], output_hidden_states=True)
            assert len(ours.hidden_states) == len(theirs.hidden_states)
            close(ours.hidden_states[-2], theirs.hidden_states[-2])
            close(ours.last_hidden_state, theirs.last_hidden_state)
            close(ours[0], theirs[0])  # CLIP-L: the last hidden state; bigG: the projected pooled output
        close(ours.text_embeds, theirs.text_embeds)
        close(plain.encode_prompts(prompts), lib.encode_prompts(prompts))


def test_the_pooled_embedding_is_read_at_the_end_token_with_a_spliced_token(folder):
    """SDXL's second encoder config says eos_token_id 2, so transformers pools at the highest id: with
    a Textual Inversion token spliced in, that is the new token. The WebUI's embedder pools at the end
    token, so the adapter does too: the conditioning trained is the one the WebUI gives."""
    from sd_trainplan.models.sdxl_diffusers import unpack
    adapter = load_diffusers(str(folder))
    adapter.add_token("zwx", 1, "shape")
    prompts = ["a zwx on a table", "a dog"]
    ids = adapter.tokenize(prompts)
    text2 = adapter.text_encoders()[1]
    with torch.no_grad():
        out = text2(ids[:, 1], output_hidden_states=True)
        pooled = unpack(adapter.encode_prompts(prompts), adapter.vector_rows, adapter.pooled_dim)[1]
        end = [row.tolist().index(adapter.tokenizer_2.eos_token_id) for row in ids[:, 1]]
        at_end = text2.text_projection(out.last_hidden_state[torch.arange(2), end])
    close(pooled, at_end)
    close(pooled[1], out.text_embeds[1])  # no added token: where transformers reads it too
    assert difference(pooled[0], out.text_embeds[0]) > 1e-3  # transformers' place: the spliced token


def test_vae_encodes_and_decodes_as_diffusers(pair):
    plain, lib = pair
    assert plain.vae_scaling == lib.vae_scaling == 0.13025  # SDXL's, from its config
    assert_same_vae(plain, lib, 4, close)


def test_channels_last_and_bf16_norms_apply_to_the_plain_unet(pair):
    """What a CUDA run turns on (loop.py): the same norms found, predictions as diffusers' under autocast."""
    plain, lib = load_diffusers(str(pair[0].source)), load_diffusers(str(pair[0].source), plain=False)
    g = torch.Generator().manual_seed(5)
    x, ctx = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, UNET["cross_attention_dim"], generator=g)
    cond, out = added(g, 1, (8, 8)), []
    for adapter in (plain, lib):
        adapter.use_channels_last()
        out.append(adapter.use_norms_in(torch.bfloat16))
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
            out.append(adapter.unet()(x, torch.tensor([300]), encoder_hidden_states=ctx, added_cond_kwargs=cond).sample)
    assert out[0] == out[2] > 0
    close(out[1].float(), out[3].float(), 2e-2)


def test_a_folder_the_plain_models_save_loads_in_diffusers_and_transformers(pair, tmp_path):
    plain, _ = pair
    back = load_diffusers(str(plain.save_folder(tmp_path / "again")), plain=False)
    assert [type(m).__name__ for m in parts(back)] == ["UNet2DConditionModel", "AutoencoderKL", "CLIPTextModel",
                                                      "CLIPTextModelWithProjection"]
    assert all(type(m).__module__.split(".")[0] in ("diffusers", "transformers") for m in parts(back))
    for a, b in zip(parts(plain), parts(back)):
        sb = b.state_dict()
        assert all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("part,key,value", [
    ("unet", "transformer_layers_per_block", [[1], [2], [3]]),  # (with reverse_transformer_layers_per_block)
    ("unet", "addition_time_embed_dim", None), ("text_encoder_2", "hidden_act", "relu"),
    ("text_encoder_2", "architectures", ["CLIPTextModel"])])
def test_a_config_the_plain_models_do_not_cover_loads_with_the_libraries(folder, tmp_path, part, key, value):
    import shutil

    from sd_trainplan.models.plain.parts import unsupported_folder
    from sd_trainplan.models.sdxl_diffusers import PARTS
    changed = tmp_path / "m"
    shutil.copytree(folder, changed)
    cfg = json.loads((changed / part / "config.json").read_text())
    (changed / part / "config.json").write_text(json.dumps(dict(cfg, **{key: value})))
    why = unsupported_folder(changed, PARTS)
    assert why is not None and why.startswith(f"{part}: ") and (key in why or "CLIPTextModel" in why), why
    if key in ("hidden_act", "architectures"):  # (the others diffusers itself cannot build as written)
        said = load_diffusers(str(changed)).describe()
        assert "diffusers UNet" in said and f"diffusers' model code because of {why}" in said


def test_sdxls_own_configs_are_covered(tmp_path):
    """stabilityai/stable-diffusion-xl-base-1.0's configs (tiny_sdxl_diffusers.FULL: its values, keys
    and all) are the plain models' to load."""
    from sd_trainplan.models.plain.parts import unsupported_folder
    from sd_trainplan.models.sdxl_diffusers import PARTS
    from sd_trainplan.models.tiny_sdxl_diffusers import FULL
    unet, vae, te1, te2 = FULL
    full = {"unet": dict(unet, _class_name="UNet2DConditionModel", addition_embed_type_num_heads=64,
                         upcast_attention=None, num_attention_heads=None, mid_block_type="UNetMidBlock2DCrossAttn"),
            "vae": dict(vae, _class_name="AutoencoderKL", force_upcast=True),
            "text_encoder": dict(te1, architectures=["CLIPTextModel"], eos_token_id=2),
            "text_encoder_2": dict(te2, architectures=["CLIPTextModelWithProjection"], eos_token_id=2)}
    for part, cfg in full.items():
        (tmp_path / part).mkdir()
        (tmp_path / part / "config.json").write_text(json.dumps(cfg))
    assert unsupported_folder(tmp_path, PARTS) is None


def test_a_run_on_an_sdxl_folder_imports_neither_diffusers_nor_transformers_nor_dynamo(shapes_dir, tmp_path):
    from sd_trainplan.models.tiny_sdxl_diffusers import save_tiny_sdxl_folder
    from test_plain_models import train_importing_nothing
    said = train_importing_nothing(save_tiny_sdxl_folder(tmp_path / "model"), shapes_dir, tmp_path / "out")
    assert "diffusers SDXL model" in said and "plain torch UNet" in said


def test_full_size_sdxl_has_the_libraries_parameters_in_their_order():
    """SDXL base's architecture (2.57B UNet, CLIP-L, bigG), built without memory on both sides: every
    parameter's name and shape, in order (a real SDXL folder's files are these state dicts)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from sd_trainplan.models.plain.blocks import uninitialised
    from sd_trainplan.models.plain.parts import classes
    from sd_trainplan.models.sdxl_diffusers import PARTS
    from sd_trainplan.models.tiny_sdxl_diffusers import FULL
    unet, vae, te1, te2 = FULL
    with init_empty_weights():
        libs = [UNet2DConditionModel(**unet), AutoencoderKL(**vae), CLIPTextModel(CLIPTextConfig(**te1)),
                CLIPTextModelWithProjection(CLIPTextConfig(**te2))]
    with uninitialised():
        ours = [classes()[part](dict(cfg)) for part, cfg in zip(PARTS, FULL)]
    for a, b in zip(ours, libs):
        assert [(n, p.shape) for n, p in a.named_parameters()] == [(n, p.shape) for n, p in b.named_parameters()]
    assert sum(p.numel() for p in ours[0].parameters()) == 2_567_463_684


def test_random_sdxl_is_built_from_the_plain_classes_and_saves_what_the_libraries_load(tmp_path):
    """random-sdxl (the benchmarks' SDXL, built from configs) is what a user's SDXL folder loads into:
    the plain models, not diffusers' and transformers' classes, and they are the same model to them."""
    from sd_trainplan.models.sdxl_diffusers import adapter_from_configs
    ours = adapter_from_configs(CONFIGS, "random SDXL", seed=3, plain=True)
    assert "plain torch UNet" in ours.describe()
    lib = load_diffusers(str(ours.save_folder(tmp_path / "model")), plain=False)
    assert "plain torch UNet" not in lib.describe()
    prompts = ["a red circle!", "zwx on grey"]
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 8, 12, generator=g), torch.tensor([10, 700])
    with torch.no_grad():
        close(ours.encode_prompts(prompts), lib.encode_prompts(prompts))
        close(ours.predict(x, t, ours.encode_prompts(prompts)), lib.predict(x, t, lib.encode_prompts(prompts)))
