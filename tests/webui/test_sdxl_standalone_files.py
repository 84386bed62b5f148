"""What the standalone SDXL trainer writes, read as AUTOMATIC1111 reads it (issue 15, item 5): the
tiny diffusers SDXL trained by tests/webui/sdxl_standalone_files.py in the standalone environment,
its files checked here against the real sgm DiffusionEngine of the same architecture
(tests/hosts/make_tiny_sdxl.py) loaded and hijacked as the WebUI does (webui_host.start_webui):
- the Dreambooth single file loads into the DiffusionEngine key for key (strict);
- the LoRA's every key finds its layer through the Lora extension's lookup (networks.match_lora_keys);
- the embedding is read by the WebUI's embedding database as an SDXL embedding (clip_l + clip_g);
- and the untrained model as a single file, in the WebUI's model, conditions and predicts as our
  standalone adapter does: the two paths train the same function.
"""
from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from standalone_env import run_standalone
from webui_host import start_webui, tiny_sdxl


@pytest.fixture(scope="module")
def written(tmp_path_factory, dataset):
    out = tmp_path_factory.mktemp("sdxl-standalone")
    run_standalone("sdxl_standalone_files.py", out, dataset)
    info = json.loads((out / "files.json").read_text())
    return out, info


def test_dreambooth_file_loads_into_the_webuis_diffusion_engine_key_for_key(written):
    out, info = written
    state = load_file(info["files"]["dreambooth"])
    model = copy.deepcopy(tiny_sdxl(0))
    model.load_state_dict(state, strict=True)
    key = "model.diffusion_model.label_emb.0.0.weight"  # the vector input's MLP, from diffusers' add_embedding
    assert torch.equal(model.state_dict()[key], state[key])
    assert torch.allclose(model.denoiser.sigmas, tiny_sdxl(0).denoiser.sigmas, rtol=1e-6)


def test_lora_keys_all_find_their_layer_in_the_lora_extension(written, tmp_path):
    import networks
    out, info = written
    _, model = start_webui(tmp_path / "webui", sdxl=True)
    state = load_file(info["files"]["lora"])
    layers = {k.split(".")[0] for k in state}
    assert {k.split("_")[1] for k in layers} == {"unet", "te1", "te2"}
    matched, failed = networks.match_lora_keys(model, state)
    assert not failed and len(matched) == len(layers)


def test_embedding_is_read_by_the_webuis_database_as_an_sdxl_embedding(written, tmp_path):
    from modules import sd_hijack
    out, info = written
    start_webui(tmp_path / "webui", sdxl=True)
    folder = tmp_path / "embeddings"  # a folder of the database's, read as at start-up (load_from_dir)
    folder.mkdir()
    shutil.copy(info["files"]["ti"], folder / "zwx.safetensors")
    db = sd_hijack.model_hijack.embedding_db
    db.add_embedding_dir(str(folder))
    db.load_textual_inversion_embeddings(force_reload=True)
    emb = db.word_embeddings["zwx"]
    assert set(emb.vec) == {"clip_l", "clip_g"} and emb.vectors == 2 and emb.shape == db.expected_shape == 1024


def test_the_webuis_model_from_our_file_conditions_and_predicts_as_our_standalone_adapter(written):
    from sd_trainplan.models.sgm_adapter import SgmAdapter
    out, info = written
    model = copy.deepcopy(tiny_sdxl(0))
    model.load_state_dict(load_file(str(out / "untrained.safetensors")), strict=True)
    ours = SgmAdapter(model, "cpu")
    x = load_file(str(out / "computed.safetensors"))
    with torch.no_grad():
        cond = ours.encode_prompts(info["prompts"])
        pred = ours.predict(x["x"], x["t"], cond)
    assert ours.vector_rows == info["vector_rows"] and ours.pooled_dim == info["pooled_dim"]
    torch.testing.assert_close(cond, x["cond"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pred, x["pred"], rtol=1e-4, atol=1e-5)
