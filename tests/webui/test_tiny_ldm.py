"""The tiny ldm model is the WebUI's own model class, built offline, seeded; the adapter reads it right."""
from __future__ import annotations

import hashlib
import os

import pytest
import torch

from sd_trainplan.models.adapter import sd_alphas_cumprod
from sd_trainplan.models.ldm_adapter import LdmAdapter
from sd_trainplan.models.tiny_ldm import build_tiny_ldm


def digest(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def test_same_seed_same_model_and_the_global_rng_is_left_alone():
    state = torch.random.get_rng_state()
    a, b, c = build_tiny_ldm(0), build_tiny_ldm(0), build_tiny_ldm(1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert digest(a) == digest(b) != digest(c)


def test_it_is_the_webui_model_class_built_without_the_hub():
    from ldm.models.diffusion.ddpm import LatentDiffusion
    from ldm.modules.encoders.modules import FrozenCLIPEmbedder
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    model = build_tiny_ldm(0)
    assert isinstance(model, LatentDiffusion) and isinstance(model.cond_stage_model, FrozenCLIPEmbedder)
    assert model.cond_stage_model.device == "cpu"  # not ldm's default "cuda"
    # the real CLIP vocabulary: the ids every SD1 checkpoint was trained with
    ids = model.cond_stage_model.tokenizer("a photo of a cat").input_ids
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert model.cond_stage_model(["a photo of a cat"]).shape == (1, 77, 32)


def test_load_model_tiny_is_the_ldm_model_in_the_webui_environment():
    from sd_trainplan.models.load import has_diffusers, load_model
    assert not has_diffusers()  # AUTOMATIC1111 1.10 installs none
    adapter = load_model("tiny", "cpu")
    assert isinstance(adapter, LdmAdapter) and adapter.family == "ldm"
    assert "ldm" in adapter.describe()


@pytest.mark.parametrize("param,prediction", [("eps", "epsilon"), ("v", "v_prediction")])
def test_the_adapter_reads_schedule_prediction_and_sizes(param, prediction):
    adapter = LdmAdapter(build_tiny_ldm(0, parameterization=param), "cpu")
    assert adapter.prediction_type == prediction
    assert torch.allclose(adapter.alphas_cumprod, sd_alphas_cumprod(), rtol=1e-6)  # SD1's schedule
    assert (adapter.latent_scale, adapter.base_resolution) == (8, 64)
    pixels = torch.rand(2, 3, 64, 64) * 2 - 1
    mean, std = adapter.encode_images(pixels)
    assert mean.shape == std.shape == (2, 4, 8, 8) and bool((std > 0).all())
    raw = adapter.model.first_stage_model.encode(pixels).mean
    assert torch.allclose(mean, raw * 0.18215)  # the scaled latent distribution, as DiffusersAdapter's
    out = adapter.decode_latents(mean)
    assert out.shape == pixels.shape and out.min() >= -1 and out.max() <= 1


def test_unsupported_parameterization_is_refused_with_a_message():
    model = build_tiny_ldm(0)
    model.parameterization = "x0"
    with pytest.raises(ValueError, match="parameterization"):
        LdmAdapter(model, "cpu")


def test_neither_fault_that_hides_training_is_there():
    """A UNet with ldm's zero-initialised output layers predicts 0 whatever the prompt, and a random CLIP's
    output mean of ~0 makes the WebUI's emphasis divide by ~0 (make_tiny_sd1.py avoids both too)."""
    model = build_tiny_ldm(0)
    with torch.no_grad():
        cond = model.cond_stage_model(["a red circle", "a blue square on grey"])
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)).repeat(2, 1, 1, 1)
        t = torch.tensor([500, 500])
        pred = model.apply_model(x, t, cond)
    assert cond.mean().abs() > 0.1  # the emphasis's divisor
    assert pred.abs().mean() > 1e-2 and not torch.allclose(pred[0], pred[1])  # output, and it depends on the prompt
    for m in model.model.diffusion_model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            assert m.weight.any()
