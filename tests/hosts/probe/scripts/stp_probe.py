"""A test-only extension (tests/hosts/harness.py installs it beside sd_trainplan in a test
WebUI's data folder; never shipped): lets a test read the running WebUI's state over HTTP.

GET  /stp_probe/hashes  sha256 of every tensor of the loaded model, by name (AUTOMATIC1111:
                        shared.sd_model's state dict; Forge: its UNet, text encoder and VAE patchers'
                        models), and the model's class: "the loaded weights are unchanged" is read here.
POST /stp_probe/exec    {"code": "..."}: runs the code in the WebUI's process (`modules` importable,
                        `result = ...` sets what is returned as JSON). For reading what the WebUI
                        did (which LoRA modules it applied, which embeddings it has), not for setting
                        anything up behind the extension's back.
"""
import hashlib
import traceback

from fastapi import Body
from modules import script_callbacks


def _modules(model):
    import torch
    if isinstance(model, torch.nn.Module):
        return {"": model}
    objects = getattr(model, "forge_objects", None)  # Forge: the patchers hold the real modules
    if objects is None:
        return {}
    out = {}
    for name in ("unet", "clip", "vae"):  # UnetPatcher.model, CLIP.cond_stage_model, VAE.first_stage_model
        obj = getattr(objects, name, None)
        for attr in ("model", "cond_stage_model", "first_stage_model"):
            if isinstance(getattr(obj, attr, None), torch.nn.Module):
                out[name] = getattr(obj, attr)
                break
    return out


def hashes():
    from modules import shared
    model = shared.sd_model
    out = {}
    for prefix, module in _modules(model).items():
        for name, t in module.state_dict().items():
            data = t.detach().cpu().contiguous()
            out[f"{prefix}.{name}" if prefix else name] = hashlib.sha256(
                data.view(-1).view(__import__("torch").uint8).numpy().tobytes()).hexdigest() + f":{data.dtype}"
    return {"class": type(model).__name__, "hashes": out}


def run(body: dict = Body(...)):
    scope = {"result": None}
    try:
        exec(body["code"], scope)  # noqa: S102 - a test-only extension, on a loopback test WebUI
        return {"result": scope.get("result")}
    except Exception:
        return {"error": traceback.format_exc()}


def on_app_started(demo, app):
    app.add_api_route("/stp_probe/hashes", hashes, methods=["GET"])
    app.add_api_route("/stp_probe/exec", run, methods=["POST"])


script_callbacks.on_app_started(on_app_started)
