"""models/plain: SD1/SD2's UNet, VAE and CLIP text encoder in plain torch compute what diffusers'
and transformers' models compute from the same folder, and a run on such a folder imports neither
library (its tokenizer is models/clip_tokenizer.py) nor torch._dynamo (issue 16: those imports were
5-7 s of a run's start)."""
import subprocess
import sys

import pytest
import torch

from sd_trainplan.models.diffusers_adapter import load_diffusers

# SD1's and SD2's block structure (4 blocks, 2 layers, 3 cross-attention blocks, SD2's per-block
# head counts and linear projections, its gelu text encoder) at widths a CPU runs in seconds
SD1_LIKE = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64, 64, 64),
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=48,
                attention_head_dim=8, norm_num_groups=32)
SD2_LIKE = dict(SD1_LIKE, attention_head_dim=(2, 4, 4, 4), use_linear_projection=True, upcast_attention=True)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32, 64, 64),
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
           layers_per_block=2, norm_num_groups=32, sample_size=64, scaling_factor=0.18215)
TEXT = dict(vocab_size=49408, hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
            max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=48)


def library_folder(root, unet_cfg, text_act="quick_gelu", seed=0):
    """A diffusers folder written by diffusers and transformers themselves, random weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from sd_trainplan.models.clip_vocab import clip_tokenizer
    from sd_trainplan.models.diffusers_adapter import DiffusersAdapter
    from sd_trainplan.models.tiny_diffusers import SCHEDULER
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_cfg)
    for p in unet.parameters():  # diffusers zero-inits some outputs: random everywhere, so every path counts
        torch.nn.init.normal_(p, std=0.05)
    text = CLIPTextModel(CLIPTextConfig(**dict(TEXT, hidden_act=text_act)))
    return DiffusersAdapter(unet, AutoencoderKL(**VAE), text, clip_tokenizer(), SCHEDULER).save_folder(root)


@pytest.fixture(scope="module", params=["sd1", "sd2"])
def pair(request, tmp_path_factory):
    cfg, act = (SD1_LIKE, "quick_gelu") if request.param == "sd1" else (SD2_LIKE, "gelu")
    cfg = dict(cfg, cross_attention_dim=TEXT["hidden_size"])
    folder = library_folder(tmp_path_factory.mktemp(request.param) / "model", cfg, act)
    return load_diffusers(str(folder)), load_diffusers(str(folder), plain=False)


def close(a, b, tol=2e-5):
    assert a.shape == b.shape
    err = ((a - b).abs().max() / b.abs().max().clamp_min(1e-6)).item()
    assert err < tol, err


def test_the_plain_models_are_loaded_and_hold_the_same_tensors(pair):
    plain, lib = pair
    assert "plain torch UNet" in plain.describe() and "diffusers UNet" in lib.describe()
    assert type(plain.unet()).__module__.startswith("sd_trainplan.models.plain")
    for a, b in ((plain.unet(), lib.unet()), (plain.vae(), lib.vae()), (plain.text_encoder(), lib.text_encoder())):
        sa, sb = a.state_dict(), b.state_dict()
        sb.pop("text_model.embeddings.position_ids", None)  # transformers' buffer, not in the file
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        # in the same order: a checkpoint's optimizer state is stored by parameter position
        assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]


@pytest.mark.parametrize("hw", [(8, 8), (9, 12)])  # (9, 12): sizes that do not halve evenly
def test_unet_predicts_what_diffusers_predicts(pair, hw):
    plain, lib = pair
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, *hw, generator=g)
    t = torch.tensor([10, 900])
    cond = torch.randn(2, 77, TEXT["hidden_size"], generator=g)
    close(plain.predict(x, t, cond), lib.predict(x, t, cond))


def test_unet_gradients_match_with_and_without_checkpointing(pair):
    plain, lib = pair
    g = torch.Generator().manual_seed(2)
    x, cond = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, TEXT["hidden_size"], generator=g)
    grads = []
    for adapter, ckpt in ((lib, False), (plain, False), (plain, True)):
        unet = adapter.unet()
        unet.requires_grad_(True)
        adapter.set_gradient_checkpointing(ckpt)
        adapter.predict(x, torch.tensor([500]), cond).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in unet.parameters()]))
        unet.zero_grad(set_to_none=True)
        adapter.set_gradient_checkpointing(False)
        unet.requires_grad_(False).eval()
    close(grads[1], grads[0], 1e-4)
    assert torch.equal(grads[2], grads[1])  # recomputation gives the very same gradients


def assert_same_vae(plain, lib, seed: int, close=close) -> None:
    """Both adapters encode random pixels and decode random latents alike."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    for a, b in zip(plain.encode_images(pixels), lib.encode_images(pixels)):
        close(a, b)
    z = torch.randn(1, 4, 8, 8, generator=g)
    close(plain.decode_latents(z), lib.decode_latents(z))


def test_vae_and_text_encoder_match_the_libraries(pair):
    plain, lib = pair
    assert_same_vae(plain, lib, 3)
    prompts = ["a photo of a dog", "a red cube on a table, studio light"]
    close(plain.encode_prompts(prompts), lib.encode_prompts(prompts))


def test_a_folder_saved_from_the_plain_models_loads_in_the_libraries(pair, tmp_path):
    plain, _ = pair
    folder = plain.save_folder(tmp_path / "again")
    back = load_diffusers(str(folder), plain=False)
    assert "diffusers UNet" in back.describe()
    for a, b in ((plain.unet(), back.unet()), (plain.vae(), back.vae())):
        assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_a_config_the_plain_models_do_not_cover_loads_with_diffusers(tmp_path):
    import json
    folder = library_folder(tmp_path / "m", dict(SD1_LIKE, cross_attention_dim=TEXT["hidden_size"]))
    cfg = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps(dict(cfg, center_input_sample=True)))
    from sd_trainplan.models.plain.parts import unsupported_folder
    assert unsupported_folder(folder) == "unet: center_input_sample = True"
    said = load_diffusers(str(folder)).describe()  # (the log's "loaded" line: a user sees why the start is slower)
    assert "diffusers UNet" in said and "diffusers' model code because of unet: center_input_sample = True" in said


def single_file(adapter, path):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in adapter.checkpoint_state().items()}, str(path))
    return path


def test_an_sd1_single_file_loads_into_the_plain_models_as_diffusers_loads_it(tmp_path):
    folder = library_folder(tmp_path / "m", dict(SD1_LIKE, cross_attention_dim=TEXT["hidden_size"]))
    path = single_file(load_diffusers(str(folder), plain=False), tmp_path / "model.safetensors")
    plain = load_diffusers(str(path), config=str(folder))
    lib = load_diffusers(str(path), config=str(folder), plain=False)
    assert "plain torch UNet" in plain.describe() and "diffusers UNet" in lib.describe()
    for a, b in ((plain.unet(), lib.unet()), (plain.vae(), lib.vae()), (plain.text_encoder(), lib.text_encoder())):
        sb = b.state_dict()
        assert all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())
    g = torch.Generator().manual_seed(4)
    x, cond = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, TEXT["hidden_size"], generator=g)
    close(plain.predict(x, torch.tensor([250]), cond), lib.predict(x, torch.tensor([250]), cond))
    assert plain.scheduler_config["prediction_type"] == lib.scheduler_config["prediction_type"] == "epsilon"


def test_a_single_file_missing_a_tensor_loads_with_diffusers_instead(tmp_path):
    from safetensors.torch import load_file, save_file

    from sd_trainplan.models.plain.single_file import load_single_file_parts
    folder = library_folder(tmp_path / "m", dict(SD1_LIKE, cross_attention_dim=TEXT["hidden_size"]))
    path = single_file(load_diffusers(str(folder), plain=False), tmp_path / "model.safetensors")
    state = load_file(str(path))
    del state["first_stage_model.quant_conv.bias"]
    save_file(state, str(path))
    assert load_single_file_parts(path, folder, torch.device("cpu"), dict.fromkeys(("unet", "vae", "text_encoder"),
                                                                                   torch.float32)) is None


@pytest.mark.parametrize("kind", ["folder", "single file"])
def test_a_run_imports_neither_diffusers_nor_transformers_nor_dynamo(tiny_folder_plain, shapes_dir, tmp_path, kind):
    model = tiny_folder_plain
    if kind == "single file":  # (the tiny model's architecture is detected and its shipped configs used)
        model = single_file(load_diffusers(str(tiny_folder_plain)), tmp_path / "tiny.safetensors")
    assert "plain torch UNet" in train_importing_nothing(model, shapes_dir, tmp_path / "out")


def train_importing_nothing(model, data, out) -> str:
    """A 2-update LoRA run through the CLI in a fresh interpreter: it imports none of diffusers,
    transformers, torch._dynamo and succeeds. Returns its output."""
    code = ("import sys\n"
            "from sd_trainplan.cli import main\n"
            f"sys.argv = ['sd_trainplan', 'train', '--method', 'lora', '--model', {str(model)!r},"
            f" '--data', {str(data)!r}, '--output', {str(out)!r}, '--steps', '2', '--resolution', '64',"
            " '--batch-size', '2']\n"
            "rc = main()\n"
            "print('IMPORTED', sorted(m for m in ('diffusers', 'torch._dynamo', 'transformers')"
            " if m in sys.modules), rc)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert "IMPORTED [] 0" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    return run.stdout + run.stderr


@pytest.fixture(scope="module")
def tiny_folder_plain(tmp_path_factory):
    from sd_trainplan.models.tiny_diffusers import save_tiny_folder
    return save_tiny_folder(tmp_path_factory.mktemp("tiny") / "model", seed=5)


def test_keys_a_config_leaves_out_take_the_libraries_defaults(tmp_path):
    import json
    folder = library_folder(tmp_path / "m", dict(SD1_LIKE, cross_attention_dim=TEXT["hidden_size"]))
    left_out = {"unet": ("in_channels", "out_channels", "norm_eps", "downsample_padding", "use_linear_projection"),
                "vae": ("scaling_factor", "latent_channels", "in_channels"),
                "text_encoder": ("layer_norm_eps", "max_position_embeddings", "hidden_act")}
    for part, keys in left_out.items():
        cfg = json.loads((folder / part / "config.json").read_text())
        (folder / part / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k not in keys}))
    plain, lib = load_diffusers(str(folder)), load_diffusers(str(folder), plain=False)
    assert "plain torch UNet" in plain.describe() and plain.vae_scaling == lib.vae_scaling == 0.18215
    g = torch.Generator().manual_seed(6)
    x, cond = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, TEXT["hidden_size"], generator=g)
    close(plain.predict(x, torch.tensor([100]), cond), lib.predict(x, torch.tensor([100]), cond))
    close(plain.encode_prompts(["a dog"]), lib.encode_prompts(["a dog"]))


def test_an_sd2_model_exports_its_text_encoder_in_sd2s_layout_and_loads_back(tmp_path):
    """SD2's files (and the WebUI's FrozenOpenCLIPEmbedder) keep the OpenCLIP text encoder under
    cond_stage_model.model. in open_clip's layout: our export writes it so, and such a file loads
    into the plain models as diffusers' from_single_file loads it."""
    cfg = dict(SD2_LIKE, cross_attention_dim=TEXT["hidden_size"])
    folder = library_folder(tmp_path / "m", cfg, "gelu")
    lib = load_diffusers(str(folder), plain=False)
    state = lib.checkpoint_state()
    assert not any(k.startswith("cond_stage_model.transformer.") for k in state)
    layers = TEXT["num_hidden_layers"]
    assert {f"cond_stage_model.model.transformer.resblocks.{layers - 1}.attn.in_proj_weight",
            "cond_stage_model.model.positional_embedding", "cond_stage_model.model.ln_final.weight",
            "cond_stage_model.model.token_embedding.weight"} <= set(state)
    # as an SD2 file holds it: the projection too (diffusers reads the width off it)
    state["cond_stage_model.model.text_projection"] = torch.eye(TEXT["hidden_size"])
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "sd2.safetensors"))
    plain = load_diffusers(str(tmp_path / "sd2.safetensors"), config=str(folder))
    back = load_diffusers(str(tmp_path / "sd2.safetensors"), config=str(folder), plain=False)
    assert "plain torch UNet" in plain.describe()
    for a, b in ((plain.text_encoder(), lib.text_encoder()), (back.text_encoder(), lib.text_encoder())):
        sb = b.state_dict()
        assert all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())
    close(plain.encode_prompts(["a red cube"]), lib.encode_prompts(["a red cube"]))
