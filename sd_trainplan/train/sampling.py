"""Sample images from the model being trained (DDIM, classifier-free guidance), used for the
preview samples and for generating missing prior-preservation class images."""
from __future__ import annotations

from typing import List, Tuple

import torch


@torch.no_grad()
def ddim_sample(adapter, prompts: List[str], size: Tuple[int, int], seed: int, steps: int = 20,
                cfg_scale: float = 7.0, negative: str = "") -> torch.Tensor:
    """[B, 3, h, w] images in [-1, 1]; the same seed gives the same images."""
    w, h = size
    s = adapter.latent_scale
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn((len(prompts), 4, h // s, w // s), generator=gen).to(adapter.device)
    cond = adapter.encode_prompts(prompts)
    uncond = adapter.encode_prompts([negative] * len(prompts))
    ac = adapter.alphas_cumprod
    T = ac.shape[0]
    ts = list(range(T - 1, -1, -max(1, T // steps)))[:steps]
    dtype = next(adapter.unet().parameters()).dtype
    for i, t in enumerate(ts):
        a = ac[t]
        a_prev = ac[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, device=ac.device)
        tt = torch.full((len(prompts),), t, device=adapter.device, dtype=torch.long)
        both = adapter.predict(torch.cat([x, x]).to(dtype), torch.cat([tt, tt]), torch.cat([uncond, cond]).to(dtype))
        pu, pc = both.float().chunk(2)
        pred = pu + cfg_scale * (pc - pu)
        if adapter.prediction_type == "v_prediction":
            eps = a.sqrt() * pred + (1 - a).sqrt() * x
            x0 = a.sqrt() * x - (1 - a).sqrt() * pred
        else:
            eps = pred
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return adapter.decode_latents(x)
