"""The sgm adapter reads SDXL's DiffusionEngine as sgm itself does: the real sgm code (the commit
AUTOMATIC1111 1.10.1 pins, unpacked from the shared generative-models source by `make`), the tiny
SDXL of tests/hosts/make_tiny_sdxl.py, on CPU."""
from __future__ import annotations

import copy

import pytest
import torch

from sd_trainplan.models.sgm_adapter import SgmAdapter, pack, unpack
from sd_trainplan.models.split_attention import split
from webui_host import tiny_sdxl

PROMPTS = ["a red circle", "a blue square on grey"]


@pytest.fixture()
def model():
    return copy.deepcopy(tiny_sdxl(0))


def test_conditioning_and_prediction_are_what_sgms_own_conditioner_gives(model):
    """Our packed conditioning + the size embeddings made in predict = GeneralConditioner's dict for
    the WebUI's txt2img batch of that size (original = target = the picture, crop 0, 0)."""
    adapter = SgmAdapter(model, "cpu")
    x = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(0))  # 64 x 96 px: not square
    t = torch.tensor([10, 700])
    batch = {"txt": PROMPTS, "original_size_as_tuple": torch.tensor([[64, 96]] * 2),
             "crop_coords_top_left": torch.tensor([[0, 0]] * 2), "target_size_as_tuple": torch.tensor([[64, 96]] * 2)}
    with torch.no_grad():
        c = model.conditioner(batch)
        want = model.model(x, t, c)
        cond = adapter.encode_prompts(PROMPTS)
        got = adapter.predict(x, t, cond)
    crossattn, pooled = unpack(cond, adapter.vector_rows, adapter.pooled_dim)
    assert torch.equal(crossattn, c["crossattn"]) and torch.equal(pooled, c["vector"][:, :adapter.pooled_dim])
    assert torch.allclose(got, want, atol=1e-6), (got - want).abs().max()
    with torch.no_grad():  # the size embeddings matter: the same text at another size predicts otherwise
        other = adapter.predict(x[..., :8], t, cond)
    assert not torch.allclose(other, got[..., :8], atol=1e-4)


def test_the_adapter_reads_prediction_schedule_and_sizes_from_the_model(model):
    from sgm.modules.diffusionmodules.discretizer import LegacyDDPMDiscretization
    adapter = SgmAdapter(model, "cpu")
    webui = torch.asarray(LegacyDDPMDiscretization().alphas_cumprod, dtype=torch.float32)  # sd_models_xl.extend_sdxl
    assert adapter.prediction_type == "epsilon" and torch.allclose(adapter.alphas_cumprod, webui, rtol=1e-5)
    assert (adapter.context_dim, adapter.pooled_dim, adapter.base_resolution, adapter.latent_scale) == (1024, 256, 1024, 8)
    v = SgmAdapter(copy.deepcopy(tiny_sdxl(0, "v")), "cpu")
    assert v.prediction_type == "v_prediction"
    empty = adapter.encode_prompts(["", "a red circle"])  # an empty prompt: zeros, as sgm drops a caption
    assert not empty[0].any() and empty[1].any()
    c, vec = torch.randn(3, 77, 8), torch.randn(3, 11)
    assert [torch.equal(a, b) for a, b in zip(unpack(pack(c, vec, 2), 2, 11), (c, vec))] == [True, True]


def test_a_refiner_or_other_sgm_model_is_refused_by_name(model):
    model.conditioner.embedders[2].input_key = "aesthetic_score"
    with pytest.raises(ValueError, match="not an SDXL base model"):
        SgmAdapter(model, "cpu")


def test_openclip_attention_split_into_projections_matches_the_webuis_merge(model):
    """A LoRA on OpenCLIP's q/k/v/out, added through the split projections while training, gives the
    text encoder the WebUI gets by merging the same deltas into in_proj_weight and out_proj."""
    from sd_trainplan.train.lora import LoRASet
    merged = copy.deepcopy(model)  # before the split: a copy would keep forwards bound to the original
    adapter = SgmAdapter(model, "cpu")
    clip_g = adapter.text_encoders()[1]
    with torch.no_grad():
        before = adapter.encode_prompts(PROMPTS)
    targets = {k: m for k, m in adapter.lora_targets(text_encoder=True, conv=False).items()
               if k.startswith("lora_te2_") and "self_attn" in k}
    assert len(targets) == 4 * len(clip_g.transformer.resblocks)
    with torch.no_grad():
        assert torch.equal(adapter.encode_prompts(PROMPTS), before)  # split, no hook: the fused path, bit for bit
    loras = LoRASet(targets, rank=4, alpha=4, device="cpu", seed=0)
    with torch.no_grad():
        for lora in loras.loras:
            lora.up.weight.normal_(0, 0.05)
    loras.attach()
    with torch.no_grad():
        hooked = adapter.encode_prompts(PROMPTS)
    loras.detach()
    # network_apply_weights: q, k, v stacked into in_proj_weight, out into out_proj
    blocks = SgmAdapter(merged, "cpu").text_encoders()[1].transformer.resblocks
    with torch.no_grad():
        for i, block in enumerate(blocks):
            full = {}
            for w in ("q", "k", "v", "out"):
                m = loras.loras[loras.names.index(f"lora_te2_text_model_encoder_layers_{i}_self_attn_{w}_proj")]
                full[w] = (m.up.weight @ m.down.weight) * m.scale
            block.attn.in_proj_weight += torch.cat([full["q"], full["k"], full["v"]])
            block.attn.out_proj.weight += full["out"]
        want = SgmAdapter(merged, "cpu").encode_prompts(PROMPTS)
    assert not torch.allclose(hooked, before, atol=1e-3)
    assert torch.allclose(hooked, want, atol=1e-5), (hooked - want).abs().max()


def test_split_projections_are_views_and_the_module_comes_back_whole():
    mha = torch.nn.MultiheadAttention(16, 4)
    parts = split(mha)
    assert parts["k"].weight.data_ptr() == mha.in_proj_weight[16:32].data_ptr()
    assert parts["out"].weight is mha.out_proj.weight and not list(parts["q"].parameters())
    assert "forward" in vars(mha)
    del mha.forward
    x = torch.randn(5, 2, 16)
    assert torch.equal(mha(x, x, x)[0], torch.nn.MultiheadAttention.forward(mha, x, x, x)[0])
