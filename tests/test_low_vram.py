"""The low-VRAM option's offloading (train/offload.py) moves exactly the parts a phase never calls, only
under gradient checkpointing on a CUDA device, and puts each back. Measured on a GPU in
docs/PERFORMANCE.md (SDXL LoRA at BS 1: 13.0 -> 11.7 GiB); here the decisions, on the tiny SDXL: the
device is declared CUDA to the gate, and each part's moves are recorded."""
import pytest
import torch

from sd_trainplan.models.tiny_sdxl_diffusers import tiny_sdxl
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.offload import park_frozen_parts, unet_parked


@pytest.fixture()
def adapter(monkeypatch):
    a = tiny_sdxl(0)
    a.device = torch.device("cuda")  # what the gate reads; the parts stay on the CPU, their .to recorded
    moves = []
    for name, part in (("unet", a.unet()), ("text", a.text_encoder()), ("vae", a.vae())):
        monkeypatch.setattr(part, "to", lambda dev, name=name: moves.append((name, str(dev))))
    a.moves = moves
    return a


LOW = TrainConfig(method="lora", gradient_checkpointing=True)


def test_while_the_unet_trains_the_text_encoders_and_vae_wait_on_the_cpu_and_come_back(adapter):
    restore = park_frozen_parts(LOW, adapter, cacheable=True, prior=None)
    assert adapter.moves == [("text", "cpu"), ("vae", "cpu")]
    restore()
    restore()  # called again (the end of the loop, then the caller's finally): once is enough
    assert adapter.moves[2:] == [("text", "cpu"), ("vae", "cpu")]  # back where they were (the tiny model's CPU)


@pytest.mark.parametrize("why", ["no checkpointing", "prompts change", "prior", "validation", "samples", "cpu"])
def test_nothing_moves_when_a_part_is_needed_during_the_loop_or_memory_was_not_asked_for(adapter, why):
    cfg = {"no checkpointing": TrainConfig(method="lora"), "validation": LOW.replace(val_every=5),
           "samples": LOW.replace(sample_every=5)}.get(why, LOW)
    if why == "cpu":
        adapter.device = torch.device("cpu")
    assert park_frozen_parts(cfg, adapter, cacheable=why != "prompts change",
                             prior=object() if why == "prior" else None) is None
    assert adapter.moves == []


def test_the_unet_waits_on_the_cpu_while_images_are_encoded_and_comes_back_on_failure(adapter):
    with pytest.raises(RuntimeError):
        with unet_parked(LOW, adapter):
            assert adapter.moves == [("unet", "cpu")]
            raise RuntimeError("an unreadable image")
    assert adapter.moves == [("unet", "cpu"), ("unet", "cpu")]  # and back to its device (here the CPU)
    with unet_parked(TrainConfig(method="lora"), adapter):
        pass
    assert len(adapter.moves) == 2
