"""Standalone SDXL (a diffusers StableDiffusionXLPipeline folder): our conditioning is the pipeline's
own, and each method's file loads in diffusers' own SDXL loaders and gives the model we trained. The
WebUI side (the same files in the real sgm DiffusionEngine and the Lora extension's key lookup) is
tests/webui/test_sdxl_standalone_files.py."""
import shutil

import pytest
import torch
from safetensors.torch import load_file

from sd_trainplan.models.diffusers_adapter import load_diffusers
from sd_trainplan.models.sdxl_diffusers import DiffusersSdxlAdapter
from sd_trainplan.models.tiny_sdxl_diffusers import save_tiny_sdxl_folder
from sd_trainplan.train.config import ConfigError, TrainConfig
from sd_trainplan.train.loop import train

PROMPTS = ["a red circle", "a blue square on grey"]


@pytest.fixture(scope="module")
def xl_folder(tmp_path_factory):
    return save_tiny_sdxl_folder(tmp_path_factory.mktemp("xl") / "model")


def pipeline(adapter: DiffusersSdxlAdapter):
    """diffusers' SDXL pipeline on the adapter's modules: the libraries' (load_diffusers(..., plain=False))."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    return StableDiffusionXLPipeline(adapter.vae(), adapter.text_encoders()[0], adapter.text_encoders()[1],
                                     adapter.tokenizer, adapter.tokenizer_2, adapter.unet(),
                                     EulerDiscreteScheduler.from_config(adapter.scheduler_config))


def run(folder, shapes_dir, tmp_path, method, **kw):
    adapter = load_diffusers(str(folder))
    assert isinstance(adapter, DiffusersSdxlAdapter)
    cfg = TrainConfig(method=method, data=str(shapes_dir), output=str(tmp_path), resolution=64, batch_size=2,
                      **dict(dict(steps=3, lr=2e-2, token="zwx", init_word="shape"), **kw))
    return adapter, train(cfg, adapter=adapter)


def test_conditioning_and_size_ids_are_what_diffusers_sdxl_pipeline_makes(xl_folder):
    adapter = load_diffusers(str(xl_folder))  # (models/plain's modules)
    pipe = pipeline(load_diffusers(str(xl_folder), plain=False))
    with torch.no_grad():
        embeds, empty, pooled, empty_pooled = pipe.encode_prompt(PROMPTS, device="cpu", negative_prompt=None)
        ours = adapter.encode_prompts(PROMPTS + [""])
    cross, vec = ours[:, adapter.vector_rows:], ours[:, :adapter.vector_rows].reshape(3, -1)[:, :adapter.pooled_dim]
    assert cross.shape[2] == 768 + 256  # CLIP-L's and encoder 2's penultimate states side by side
    torch.testing.assert_close(cross[:2], embeds)
    torch.testing.assert_close(vec[:2], pooled)
    assert not cross[2].any() and not vec[2].any() and not empty.any() and not empty_pooled.any()  # "": zeros
    x = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(0))  # 64 x 96 px
    ids = pipe._get_add_time_ids((64, 96), (0, 0), (64, 96), torch.float32, text_encoder_projection_dim=256)
    assert torch.equal(adapter.time_ids(x), ids.repeat(2, 1))
    t = torch.tensor([10, 700])
    with torch.no_grad():
        want = pipe.unet(x, t, embeds, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids.repeat(2, 1)}).sample
        torch.testing.assert_close(adapter.predict(x, t, ours[:2]), want, rtol=1e-5, atol=1e-5)


def test_embedding_has_both_encoders_vectors_and_loads_into_the_diffusers_pipeline(xl_folder, shapes_dir, tmp_path):
    adapter, result = run(xl_folder, shapes_dir, tmp_path, "ti", vectors=2, lr=5e-2, name="zwx")
    state = load_file(str(result.export_path))
    assert {k: tuple(v.shape) for k, v in state.items()} == {"clip_l": (2, 768), "clip_g": (2, 256)}
    fresh = load_diffusers(str(xl_folder), plain=False)
    pipe = pipeline(fresh)
    # diffusers' documented way for an SDXL embedding: one load per text encoder
    pipe.load_textual_inversion(state["clip_l"], token="zwx", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(state["clip_g"], token="zwx", text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    with torch.no_grad():
        theirs, _, pooled, _ = pipe.encode_prompt(["a photo of zwx"], device="cpu", do_classifier_free_guidance=False)
        ours = adapter.encode_prompts(["a photo of zwx zwx_1"])
        plain = fresh.encode_prompts(["a photo of zwx"])
    torch.testing.assert_close(ours[:, adapter.vector_rows:], theirs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours[:, 0, :256], pooled, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(plain[:, adapter.vector_rows:], theirs, atol=1e-3)  # the vectors matter


def test_lora_with_both_text_encoders_loads_in_diffusers_sdxl_loader_as_trained(xl_folder, shapes_dir, tmp_path):
    adapter, result = run(xl_folder, shapes_dir, tmp_path, "lora", train_text_encoder=True, rank=4, alpha=2)
    sd = load_file(str(result.export_path))
    heads = {k.split(".")[0] for k in sd}
    assert {h.split("_")[1] for h in heads} == {"unet", "te1", "te2"}
    assert any(h.startswith("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q") for h in heads)  # sgm paths
    from sd_trainplan.train.methods import LoRAMethod
    x, t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([500])
    cfg = TrainConfig(method="lora", train_text_encoder=True, rank=4, alpha=2)
    method = LoRAMethod(adapter, cfg)
    with torch.no_grad():
        for name, lora in zip(method.set.names, method.set.loras):
            lora.down.weight.copy_(sd[f"{name}.lora_down.weight"])
            lora.up.weight.copy_(sd[f"{name}.lora_up.weight"])
        ours = adapter.predict(x, t, adapter.encode_prompts(["red circle"]))
        method.close()
        base = adapter.predict(x, t, adapter.encode_prompts(["red circle"]))
    pipe = pipeline(load_diffusers(str(xl_folder), plain=False))
    pipe.load_lora_weights(str(result.export_path.parent), weight_name=result.export_path.name)  # kohya SDXL names
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(["red circle"], device="cpu", do_classifier_free_guidance=False)
        ids = pipe._get_add_time_ids((64, 64), (0, 0), (64, 64), torch.float32, text_encoder_projection_dim=256)
        theirs = pipe.unet(x, t, embeds, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
    assert (ours - base).abs().max() > 1e-3  # the LoRA does something
    torch.testing.assert_close(theirs, ours, rtol=1e-3, atol=1e-4)


def test_dreambooth_single_file_loads_with_from_single_file_as_trained(xl_folder, shapes_dir, tmp_path):
    from diffusers import StableDiffusionXLPipeline
    adapter, result = run(xl_folder, shapes_dir, tmp_path, "dreambooth", train_text_encoder=True, lr=1e-3, name="db")
    pipe = StableDiffusionXLPipeline.from_single_file(str(result.export_path), config=str(xl_folder),
                                                      local_files_only=True)
    original = load_diffusers(str(xl_folder))
    for ours, theirs, before in zip((adapter.unet(), adapter.vae(), *adapter.text_encoders()),
                                    (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2),
                                    (original.unet(), original.vae(), *original.text_encoders())):
        trained, loaded = ours.state_dict(), theirs.state_dict()
        assert set(trained) == set(loaded)
        for k, v in trained.items():  # an fp32 folder: an fp32 file, nothing rounded
            assert torch.equal(loaded[k], v), k
    for trained_part, before in ((adapter.unet(), original.unet()), (adapter.text_encoders()[1], original.text_encoders()[1])):
        b = before.state_dict()
        assert any(not torch.equal(b[k], v) for k, v in trained_part.state_dict().items())  # they trained


@pytest.mark.parametrize("broken", ["text_encoder_2", "tokenizer_2", "unet-config"])
def test_an_incomplete_sdxl_folder_is_refused_naming_the_file_before_loading(xl_folder, shapes_dir, tmp_path, broken):
    folder = tmp_path / "model"
    shutil.copytree(xl_folder, folder)
    if broken == "unet-config":
        import json
        cfg = json.loads((folder / "unet" / "config.json").read_text())
        del cfg["addition_embed_type"]
        (folder / "unet" / "config.json").write_text(json.dumps(cfg))
        want = "unet/config.json has no addition_embed_type 'text_time'"
    else:
        shutil.rmtree(folder / broken)
        want = f"{folder / broken}/{'config.json' if broken.startswith('text') else 'vocab.json'} is missing"
    cfg = TrainConfig(method="lora", model=str(folder), data=str(shapes_dir), output=str(tmp_path / "runs"),
                      resolution=64, steps=1)
    with pytest.raises(ConfigError) as e:
        train(cfg)
    assert any(p.startswith("model: ") and want in p for p in e.value.problems), e.value.problems
    assert not (tmp_path / "runs").exists()  # refused before the run started
