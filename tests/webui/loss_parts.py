"""The training loss exactly as train/step.py computes it, and its parts, for one adapter: shared by
the two sides of the cross-family test (the ldm side here, the diffusers side in a subprocess of the
standalone environment, cross_family_diffusers.py)."""
import torch

from sd_trainplan.models.adapter import add_noise, target_for


def loss_parts(adapter, x: dict, prompts) -> dict:
    with torch.no_grad():
        cond = adapter.encode_prompts(prompts)
        noisy = add_noise(adapter.alphas_cumprod, x["latents"], x["noise"], x["t"])
        pred = adapter.predict(noisy, x["t"], cond)
        target = target_for(adapter, adapter.prediction_type, x["latents"], x["noise"], x["t"])
        loss = torch.nn.functional.mse_loss(pred.float(), target.float())
    return {"cond": cond, "pred": pred, "loss": loss.reshape(1)}
