"""Exports load in real consumers: diffusers' load_textual_inversion, load_lora_weights and
from_single_file, and the WebUI's own embedding layout."""
import pytest
import torch

from sd_trainplan.models.diffusers_adapter import load_diffusers
from sd_trainplan.models.tiny_diffusers import save_tiny_folder
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.loop import train


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_folder(tmp_path_factory.mktemp("tiny") / "model")


def pipeline(folder):
    from diffusers import StableDiffusionPipeline
    return StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True, safety_checker=None)


def test_embedding_loads_with_diffusers_load_textual_inversion(tiny_folder, shapes_dir, tmp_path):
    adapter = load_diffusers(str(tiny_folder))
    cfg = TrainConfig(method="ti", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=5, batch_size=2,
                      lr=5e-2, token="zwx", init_word="shape", vectors=2, name="zwx")
    result = train(cfg, adapter=adapter)
    pipe = pipeline(tiny_folder)
    pipe.load_textual_inversion(str(result.export_path), token="zwx")
    prompt = pipe.maybe_convert_prompt("a photo of zwx", pipe.tokenizer)
    assert prompt == "a photo of zwx zwx_1"  # diffusers expands a 2-vector token as we write it
    ids = pipe.tokenizer("zwx zwx_1", add_special_tokens=False).input_ids
    table = pipe.text_encoder.get_input_embeddings().weight
    ours = adapter.text_encoder().text_model.embeddings.token_embedding.extras[0]
    torch.testing.assert_close(table[ids], ours.detach())
    # and the text encoder gives the same conditioning for a prompt with the token
    theirs = pipe.text_encoder(pipe.tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids)[0]
    with torch.no_grad():
        mine = adapter.encode_prompts([prompt])
    torch.testing.assert_close(theirs, mine, rtol=1e-4, atol=1e-5)


def test_webui_pt_layout(shapes_dir, tmp_path):
    adapter = load_diffusers("tiny")
    cfg = TrainConfig(method="ti", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=2, batch_size=2,
                      lr=5e-3, token="zwx", vectors=3, export_format="pt", name="emb")
    result = train(cfg, adapter=adapter)
    data = torch.load(result.export_path, weights_only=False)
    assert data["string_to_param"]["*"].shape == (3, 32) and data["step"] == 2 and data["name"] == "emb"


def test_lora_loads_with_diffusers_load_lora_weights(tiny_folder, shapes_dir, tmp_path):
    adapter = load_diffusers(str(tiny_folder))
    cfg = TrainConfig(method="lora", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=15,
                      batch_size=2, lr=2e-2, rank=4, alpha=2, train_text_encoder=True)
    result = train(cfg, adapter=adapter)
    # our hooked model's output, with the trained LoRA attached again
    from sd_trainplan.train.methods import LoRAMethod
    from safetensors.torch import load_file
    sd = load_file(result.export_path)
    x, t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([500])
    prompt = ["red circle"]
    method = LoRAMethod(adapter, cfg)
    with torch.no_grad():
        for name, lora in zip(method.set.names, method.set.loras):
            lora.down.weight.copy_(sd[f"{name}.lora_down.weight"].float())
            lora.up.weight.copy_(sd[f"{name}.lora_up.weight"].float())
        ours = adapter.predict(x, t, adapter.encode_prompts(prompt))
        method.close()
        base = adapter.predict(x, t, adapter.encode_prompts(prompt))
    pipe = pipeline(tiny_folder)
    # The tiny UNet's layout is not SD's (one ResBlock a level), so the file names its modules after their
    # ldm paths, which the WebUI maps home on any layout; diffusers' SD1 loader reads only its own block
    # names: rename them for it.
    assert any(k.startswith("lora_unet_input_blocks_1_1_") for k in sd)
    assert not any(k.startswith("lora_unet_down_blocks_") for k in sd)
    from safetensors.torch import save_file
    from sd_trainplan.models.kohya_names import diffusers_style
    save_file(diffusers_style(sd, pipe.unet), str(tmp_path / "diffusers-names.safetensors"))
    pipe.load_lora_weights(str(tmp_path), weight_name="diffusers-names.safetensors")
    with torch.no_grad():
        cond = pipe.text_encoder(pipe.tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids)[0]
        theirs = pipe.unet(x, t, encoder_hidden_states=cond).sample
    assert (ours - base).abs().max() > 1e-3  # the LoRA does something
    torch.testing.assert_close(theirs, ours, rtol=1e-3, atol=1e-4)


def test_dreambooth_checkpoint_loads_with_from_single_file(tiny_folder, shapes_dir, tmp_path):
    from diffusers import StableDiffusionPipeline
    adapter = load_diffusers(str(tiny_folder))
    cfg = TrainConfig(method="dreambooth", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=5,
                      batch_size=2, lr=1e-3, name="db")
    result = train(cfg, adapter=adapter)
    pipe = StableDiffusionPipeline.from_single_file(str(result.export_path), config=str(tiny_folder),
                                                    local_files_only=True, safety_checker=None)
    trained = adapter.unet().state_dict()
    loaded = pipe.unet.state_dict()
    assert set(trained) == set(loaded)
    for k, v in trained.items():
        assert torch.equal(loaded[k], v), k  # the folder is fp32: so is the checkpoint, nothing rounded
    original = load_diffusers(str(tiny_folder)).unet().state_dict()
    assert any(not torch.equal(original[k], v) for k, v in trained.items())


def test_dreambooth_keeps_the_models_precision_unless_fp16_is_chosen(tiny_folder, shapes_dir, tmp_path):
    """The checkpoint is saved in the dtypes of the model trained (an fp32 folder: fp32; an fp16 file:
    fp16), the parts that did not train bit for bit as they were; fp16 is a choice (save_precision)."""
    from safetensors.torch import load_file
    base = dict(method="dreambooth", data=str(shapes_dir), resolution=64, steps=2, batch_size=2, lr=1e-3)
    source = load_diffusers(str(tiny_folder)).checkpoint_state()
    kept = load_file(str(train(TrainConfig(output=str(tmp_path / "keep"), **base),
                               adapter=load_diffusers(str(tiny_folder))).export_path))
    assert {v.dtype for v in kept.values() if v.is_floating_point()} == {torch.float32}
    frozen = [k for k in source if not k.startswith("model.diffusion_model.")]
    assert frozen and all(torch.equal(kept[k], source[k]) for k in frozen)  # VAE, text encoder untouched

    half = train(TrainConfig(output=str(tmp_path / "half"), save_precision="fp16", **base),
                 adapter=load_diffusers(str(tiny_folder))).export_path
    half_state = load_file(str(half))
    assert {v.dtype for k, v in half_state.items() if v.is_floating_point() and "." in k} == {torch.float16}
    # an fp16 file, trained with the default: fp16 again, its frozen parts bit for bit
    again = load_file(str(train(TrainConfig(model=str(half), output=str(tmp_path / "again"), **base)).export_path))
    assert {v.dtype for k, v in again.items() if v.is_floating_point() and "." in k} == {torch.float16}
    assert all(torch.equal(again[k], half_state[k]) for k in frozen if k in half_state)
    assert any(not torch.equal(again[k], half_state[k]) for k in half_state if k.startswith("model.diffusion_model."))


def test_exports_never_overwrite(shapes_dir, tmp_path):
    adapter = load_diffusers("tiny")
    cfg = TrainConfig(method="ti", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=1, batch_size=2,
                      token="zwx", name="same")
    first = train(cfg, adapter=adapter)
    method_dir = first.run_dir
    from sd_trainplan.train.methods import TextualInversion
    again = TextualInversion.export  # exporting twice into the same folder picks a new name
    adapter2 = load_diffusers("tiny")
    m = TextualInversion(adapter2, cfg.replace(token="zwy"))
    second = again(m, method_dir, 1)
    assert first.export_path.name == "same.safetensors" and second.name == "same-1.safetensors"


def test_single_file_loads_offline_with_shipped_configs(shapes_dir, tmp_path):
    """A single-file checkpoint needs no config argument and no download: the architecture is
    detected from the file and our shipped configs are used."""
    adapter = load_diffusers("tiny")
    result = train(TrainConfig(method="dreambooth", data=str(shapes_dir), output=str(tmp_path), resolution=64,
                               steps=2, batch_size=2), adapter=adapter)
    loaded = load_diffusers(str(result.export_path))
    assert "(tiny)" in loaded.describe() and loaded.prediction_type == "epsilon"
    for k, v in adapter.unet().state_dict().items():
        assert torch.equal(loaded.unet().state_dict()[k], v), k


@pytest.mark.parametrize("arch,unet_m,text_m,vae_m", [("sd1", 859.52, 123.06, 83.65), ("sd2", 865.91, 340.39, 83.65)])
def test_shipped_configs_are_the_real_architectures(arch, unet_m, text_m, vae_m):
    """Instantiated without memory (meta device), the shipped configs have SD's exact sizes."""
    import json
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    from sd_trainplan.models.single_file import write_config_folder
    folder = write_config_folder(arch, "epsilon")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads((folder / "unet" / "config.json").read_text()))
        vae = AutoencoderKL.from_config(json.loads((folder / "vae" / "config.json").read_text()))
        text = CLIPTextModel(CLIPTextConfig(**json.loads((folder / "text_encoder" / "config.json").read_text())))
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    assert (round(count(unet), 2), round(count(text), 2), round(count(vae), 2)) == (unet_m, text_m, vae_m)


@pytest.mark.parametrize("arch", ["sd1", "sd2"])
def test_lora_keys_on_sds_layouts_are_kohyas_usual_names(arch):
    """On SD's own layouts every key is kohya's usual diffusers-style name, and the WebUI's Lora extension
    (its rules mirrored in kohya_names.webui_unet_path) maps each to the module it belongs to."""
    import json
    from diffusers import UNet2DConditionModel
    from sd_trainplan.models.diffusers_adapter import DiffusersAdapter
    from sd_trainplan.models.kohya_names import webui_unet_path
    from sd_trainplan.models.ldm_names import unet_name_to_ldm, unet_pairs_for_state
    from sd_trainplan.models.single_file import write_config_folder
    folder = write_config_folder(arch, "epsilon")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads((folder / "unet" / "config.json").read_text()))
    adapter = DiffusersAdapter.__new__(DiffusersAdapter)  # only the UNet is needed (meta: no memory)
    adapter._unet, adapter.layers_per_block = unet, unet.config.layers_per_block
    targets = adapter.lora_targets(text_encoder=False, conv=True)
    assert len(targets) > 200 and all(k.startswith(("lora_unet_down_blocks_", "lora_unet_mid_block_",
                                                    "lora_unet_up_blocks_")) for k in targets)
    pairs = unet_pairs_for_state(unet.state_dict(), unet.config.layers_per_block)
    names = {id(m): n for n, m in unet.named_modules()}
    for key, module in targets.items():
        assert webui_unet_path(key[len("lora_unet_"):]) == unet_name_to_ldm(names[id(module)], pairs).replace(".", "_")
