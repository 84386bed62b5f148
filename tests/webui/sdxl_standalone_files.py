"""The standalone half of test_sdxl_standalone_files.py, run in the standalone environment (.venv:
diffusers), since the WebUI-pinned one has none: the tiny diffusers SDXL (models/tiny_sdxl_diffusers.py,
the architecture of tests/hosts/make_tiny_sdxl.py), trained by `train()` on a folder of it as
`python -m sd_trainplan train` does, writes each method's file; and what our adapter computes on fixed
inputs, with the untrained model as a single file, for the WebUI's side to compare.

    python sdxl_standalone_files.py OUT_DIR DATA_DIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from sd_trainplan.models.diffusers_adapter import load_diffusers
from sd_trainplan.models.tiny_sdxl_diffusers import save_tiny_sdxl_folder
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.loop import train

PROMPTS = ["a red circle", "a blue square on grey"]


def main(out: Path, data: Path) -> None:
    folder = save_tiny_sdxl_folder(out / "tiny-sdxl")
    files = {}
    for method, kw in (("ti", dict(vectors=2, lr=5e-2)), ("lora", dict(train_text_encoder=True, lr=2e-2)),
                       ("dreambooth", dict(train_text_encoder=True, lr=1e-3))):
        cfg = TrainConfig(method=method, model=str(folder), data=str(data), output=str(out / "runs"), resolution=64,
                          batch_size=2, steps=2, token="zwx", init_word="shape", name=method, **kw)
        files[method] = str(train(cfg).export_path)
    adapter = load_diffusers(str(folder))
    save_file({k: v.contiguous() for k, v in adapter.checkpoint_state().items()}, str(out / "untrained.safetensors"))
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 8, 12, generator=g), torch.tensor([10, 700])
    with torch.no_grad():
        cond = adapter.encode_prompts(PROMPTS)
        pred = adapter.predict(x, t, cond)
    save_file({"x": x, "t": t, "cond": cond, "pred": pred}, str(out / "computed.safetensors"))
    (out / "files.json").write_text(json.dumps({"files": files, "prompts": PROMPTS, "vector_rows": adapter.vector_rows,
                                                "pooled_dim": adapter.pooled_dim}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
