"""Norms in bf16 under bf16 autocast (models/norms.py): every GroupNorm/LayerNorm of the UNet
hands bf16 to the next layer instead of an fp32 copy, the UNet's prediction stays within bf16
rounding of autocast's own, and the weights and state dict are untouched."""
import torch
from torch import nn

from sd_trainplan.models.norms import norms_in
from sd_trainplan.models.tiny_diffusers import UNET


def _unet():
    from diffusers import UNet2DConditionModel
    torch.manual_seed(0)
    return UNet2DConditionModel(**UNET).eval()


def _run(unet):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 16, generator=g)
    cond = torch.randn(2, 77, UNET["cross_attention_dim"], generator=g)
    dtypes = []
    hooks = [m.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype)) for m in unet.modules()
             if isinstance(m, (nn.GroupNorm, nn.LayerNorm))]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = unet(x, torch.tensor([10, 900]), encoder_hidden_states=cond).sample.float()
    for h in hooks:
        h.remove()
    return out, dtypes


def test_norms_compute_in_bf16_and_predict_the_same():
    unet = _unet()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    ref, _ = _run(unet)  # (CPU autocast already keeps norms in bf16; CUDA autocast runs them in fp32)
    n = norms_in(unet, torch.bfloat16)
    out, dtypes = _run(unet)
    assert n == len(dtypes) > 0 and set(dtypes) == {torch.bfloat16}
    rel = (out - ref).norm() / ref.norm()
    assert rel < 2e-2, rel  # bf16 rounding, not a different model
    after = unet.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)


def test_a_norm_hands_on_bf16_under_autocast_and_matches_fp32_math():
    gn, ln = nn.GroupNorm(4, 16), nn.LayerNorm(16)
    with torch.no_grad():
        for m in (gn, ln):
            m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 16, 8, 8) * 3 + 1
    y = torch.randn(3, 5, 16) * 3 + 1
    ref_g, ref_l = gn(x), ln(y)
    assert norms_in(nn.Sequential(gn, ln), torch.bfloat16) == 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got_g, got_l = gn(x), ln(y)
    assert got_g.dtype == got_l.dtype == torch.bfloat16
    torch.testing.assert_close(got_g.float(), ref_g, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(got_l.float(), ref_l, rtol=2e-2, atol=2e-2)


def test_outside_autocast_an_fp32_unet_predicts_as_before():
    """Validation and sampling run without autocast; a Dreambooth UNet keeps fp32 weights. The norms
    must not hand bf16 to its fp32 convolutions there (that raised a dtype error on CUDA)."""
    unet = _unet()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 16, 16, generator=g)
    cond = torch.randn(1, 77, UNET["cross_attention_dim"], generator=g)
    with torch.no_grad():
        ref = unet(x, torch.tensor([500]), encoder_hidden_states=cond).sample
        norms_in(unet, torch.bfloat16)
        out = unet(x, torch.tensor([500]), encoder_hidden_states=cond).sample
    assert out.dtype == torch.float32
    assert torch.equal(out, ref)  # the plain fp32 layers, bit for bit
