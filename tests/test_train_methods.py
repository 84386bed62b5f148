"""Each method trains, and touches only what it should (tiny models, CPU)."""
import json
import statistics

import pytest
import torch

from conftest import tensor_hashes
from sd_trainplan.models.diffusers_adapter import load_diffusers
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.loop import train


def run(cfg, adapter):
    events = []
    result = train(cfg, adapter=adapter, sinks=[events.append])
    losses = [e.loss for e in events if e.kind == "step" and e.loss is not None]
    vals = [(e.val_loss, e.stable_loss) for e in events if e.kind == "val"]
    return result, losses, vals


def test_dreambooth_trains_the_unet(shapes_dir, tmp_path):
    adapter = load_diffusers("tiny")
    before = tensor_hashes(adapter.vae(), adapter.text_encoder())
    unet0 = {k: v.clone() for k, v in adapter.unet().state_dict().items()}
    cfg = TrainConfig(method="dreambooth", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=40,
                      batch_size=4, lr=2e-3, log_every=1, val_split=0.2, val_every=20, instance_prompt="[filewords]")
    result, losses, vals = run(cfg, adapter)
    assert statistics.mean(losses[-10:]) < 0.8 * statistics.mean(losses[:10])
    assert vals[-1][0] < vals[0][0] and vals[-1][1] < vals[0][1]  # held-out and stabilised losses fall
    assert tensor_hashes(adapter.vae(), adapter.text_encoder()) == before
    assert any(not torch.equal(v, adapter.unet().state_dict()[k]) for k, v in unet0.items())
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["step"] == 0 and "val_loss" in lines[0]
    assert [x["step"] for x in lines if "loss" in x] == list(range(1, 41))
    assert lines[-1]["images_seen"] == 40 * 4


def test_textual_inversion_changes_only_its_vectors(v_base_model, new_concept_dir, tmp_path):
    adapter = load_diffusers(str(v_base_model))
    before = tensor_hashes(adapter.unet(), adapter.vae(), adapter.text_encoder())
    cfg = TrainConfig(method="ti", data=str(new_concept_dir), output=str(tmp_path), resolution=64, steps=60,
                      batch_size=3, lr=5e-2, log_every=10, token="zwx", init_word="red", vectors=1,
                      instance_prompt="[name] background", val_split=0.25, val_every=30)
    result, losses, vals = run(cfg, adapter)
    (val0, stable0), (val1, stable1) = vals[0], vals[-1]
    assert stable1 < 0.99 * stable0, vals  # deterministic stabilised training loss falls clearly
    assert val1 < 0.99 * val0, vals        # and the held-out loss with it
    spliced = adapter.text_encoder().text_model.embeddings.token_embedding
    base_table = spliced.base
    after = tensor_hashes(adapter.unet(), adapter.vae(), adapter.text_encoder())
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == set(), changed  # every base tensor bit-identical (the vectors live beside them)
    assert spliced.extras[0].shape == (1, 32)
    init = base_table.weight[adapter.tokenizer("red", add_special_tokens=False).input_ids[0]]
    assert not torch.allclose(spliced.extras[0][0], init)
    assert result.export_path.suffix == ".safetensors"


def test_lora_leaves_base_weights_bit_identical(shapes_dir, tmp_path):
    adapter = load_diffusers("tiny")
    before = tensor_hashes(adapter.unet(), adapter.vae(), adapter.text_encoder())
    cfg = TrainConfig(method="lora", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=40,
                      batch_size=4, lr=8e-3, log_every=1, rank=4, alpha=4, val_split=0.2, val_every=20,
                      train_text_encoder=True, instance_prompt="[filewords]")
    result, losses, vals = run(cfg, adapter)
    assert statistics.mean(losses[-10:]) < 0.9 * statistics.mean(losses[:10])
    assert vals[-1][0] < vals[0][0]
    assert tensor_hashes(adapter.unet(), adapter.vae(), adapter.text_encoder()) == before
    from safetensors.torch import load_file
    sd = load_file(result.export_path)
    names = {k.rsplit(".", 2)[0] for k in sd if k.endswith(".lora_down.weight")}
    # the tiny UNet's layout (one ResBlock a level) is not SD's: ldm-path names, which the WebUI maps home
    assert any(n.startswith("lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q") for n in names)
    assert any(n.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj") for n in names)
    assert all(f"{n}.alpha" in sd and f"{n}.lora_up.weight" in sd for n in names)


def test_prior_preservation_generates_class_images(shapes_dir, tmp_path):
    adapter = load_diffusers("tiny")
    cfg = TrainConfig(method="dreambooth", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=4,
                      batch_size=2, lr=1e-3, num_class_images=5, class_prompt="a shape", sample_steps=2,
                      class_data=str(tmp_path / "class"), prior_loss_weight=1.0)
    result, losses, _ = run(cfg, adapter)
    assert len(list((tmp_path / "class").glob("*.png"))) == 5
    assert result.steps_done == 4


def test_several_concepts_in_one_run(shapes_dir, new_concept_dir, tmp_path):
    from sd_trainplan.train.config import Concept
    adapter = load_diffusers("tiny")
    events = []
    cfg = TrainConfig(method="dreambooth", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=3,
                      batch_size=2, lr=1e-3, concepts=(Concept(str(new_concept_dir), "zwx [filewords]"),))
    train(cfg, adapter=adapter, sinks=[events.append])
    assert "26 images" in events[0].message  # 18 + 8 frames: steps are planned over the sum


@pytest.mark.parametrize("method", ["dreambooth", "lora"])
def test_gradient_checkpointing_gives_the_same_result(shapes_dir, tmp_path, method):
    out = []
    for gc in (False, True):
        adapter = load_diffusers("tiny")
        cfg = TrainConfig(method=method, data=str(shapes_dir), output=str(tmp_path / str(gc)), resolution=64,
                          steps=3, batch_size=2, lr=1e-3, gradient_checkpointing=gc, log_every=1)
        out.append(run(cfg, adapter)[1])
    assert out[0] == pytest.approx(out[1], rel=1e-5)
