"""A standalone SD2 Dreambooth file's text encoder, read as AUTOMATIC1111 reads SD2's: our export
writes SD2's OpenCLIP text encoder under `cond_stage_model.model.` in open_clip's layout (the SD2
single-file layout), and here ldm's own FrozenOpenCLIPEmbedder (ldm/modules/encoders/modules.py,
the class SD2's v2-inference.yaml names, built on open_clip's ViT-S-32-alt text tower and its
penultimate layer, as the yaml asks) loads those keys the way the WebUI loads a checkpoint
(load_state_dict, strict=False) and conditions the same prompts as the trained model did in memory
before it was written.

The standalone half (sd2_standalone_files.py) trains and writes in the standalone environment."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from standalone_env import run_standalone

PREFIX = "cond_stage_model.model."


@pytest.fixture(scope="module")
def written(tmp_path_factory, dataset):
    out = tmp_path_factory.mktemp("sd2-standalone")
    run_standalone("sd2_standalone_files.py", out, dataset)
    return json.loads((out / "files.json").read_text()), load_file(str(out / "computed.safetensors"))


def test_the_webuis_sd2_text_encoder_reads_our_export_and_conditions_as_we_do(written):
    from ldm.modules.encoders.modules import FrozenOpenCLIPEmbedder
    import open_clip
    files, computed = written
    state = {k[len(PREFIX):]: v for k, v in load_file(files["dreambooth"]).items() if k.startswith(PREFIX)}
    embedder = FrozenOpenCLIPEmbedder(arch="ViT-S-32-alt", version=None, device="cpu", layer="penultimate")
    missing, unexpected = embedder.model.load_state_dict(state, strict=False)
    assert unexpected == []
    # what a diffusers SD2 folder does not hold, and the penultimate layer never reads: the last block
    # and the projection to the image space
    last = len(embedder.model.transformer.resblocks) - 1
    assert set(missing) == {k for k in embedder.model.state_dict()
                            if k.startswith(f"transformer.resblocks.{last}.") or k == "text_projection"}
    ids = computed["ids"]
    assert torch.equal(open_clip.tokenize(files["prompts"]), ids)  # the WebUI's SD2 tokens are ours
    with torch.no_grad():
        cond = embedder.encode_with_transformer(ids)
    torch.testing.assert_close(cond, computed["cond"], rtol=1e-4, atol=1e-5)
