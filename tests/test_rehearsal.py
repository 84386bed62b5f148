"""The first update rehearsed on a stand-in UNet while the model loads (train/rehearsal.py, issue 16):
it is the run's architecture, it hands back exactly the model the load gives (or the load's error),
it draws no random number, and a run with it computes what a run without it computes."""
import json
import shutil

import pytest
import torch

from sd_trainplan.models.diffusers_adapter import ModelLoadError, load_diffusers
from sd_trainplan.models.plain.parts import unet_config_of
from sd_trainplan.models.single_file import ARCHS
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.data import load_dataset
from sd_trainplan.train.rehearsal import Rehearsal
from test_plain_models import SD1_LIKE, TEXT, library_folder


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory):
    return library_folder(tmp_path_factory.mktemp("rehearsal") / "model",
                          dict(SD1_LIKE, cross_attention_dim=TEXT["hidden_size"]))


def test_the_stand_in_has_the_architecture_the_run_will_load(plain_folder, tmp_path):
    assert unet_config_of(str(plain_folder))["block_out_channels"] == [32, 64, 64, 64]
    assert unet_config_of("random-sd2") == ARCHS["sd2"][0]
    # not our plain UNet, or nothing to read: no stand-in (the load itself reports a bad path)
    assert unet_config_of("tiny") is None
    assert unet_config_of(str(tmp_path / "missing")) is None
    other = tmp_path / "other"
    shutil.copytree(plain_folder, other)
    config = json.loads((other / "unet" / "config.json").read_text())
    (other / "unet" / "config.json").write_text(json.dumps(dict(config, class_embed_type="timestep")))
    assert unet_config_of(str(other)) is None  # a config the plain UNet does not cover: diffusers' classes


def cfg_for(folder, shapes_dir, tmp_path, **kw):
    return TrainConfig(method="lora", model=str(folder), data=str(shapes_dir), output=str(tmp_path), resolution=64,
                       batch_size=2, steps=4, token="zwx", **kw)


def test_the_load_comes_back_unchanged_and_nothing_random_is_drawn(plain_folder, shapes_dir, tmp_path):
    cfg = cfg_for(plain_folder, shapes_dir, tmp_path)
    data = load_dataset(cfg.data, cfg.resolution, cfg.buckets, False, 0.0, 0)
    rehearsal = Rehearsal.of(cfg, data, torch.device("cpu"))
    torch.manual_seed(3)
    rng = torch.get_rng_state()
    adapter = rehearsal.beside(lambda: load_diffusers(str(plain_folder)))
    assert torch.equal(torch.get_rng_state(), rng)
    assert rehearsal.note.startswith("first update rehearsed"), rehearsal.note
    expected = load_diffusers(str(plain_folder))
    for (name, a), (_, b) in zip(adapter.unet().state_dict().items(), expected.unet().state_dict().items()):
        assert torch.equal(a, b), name
    assert rehearsal.unet is None  # the stand-in is let go before the run goes on


def test_a_load_error_reaches_the_caller_with_its_message(plain_folder, shapes_dir, tmp_path):
    cfg = cfg_for(plain_folder, shapes_dir, tmp_path)
    data = load_dataset(cfg.data, cfg.resolution, cfg.buckets, False, 0.0, 0)

    def broken():
        raise ModelLoadError(f"model: {plain_folder}/unet has no weights file")

    with pytest.raises(ModelLoadError, match="has no weights file"):
        Rehearsal.of(cfg, data, torch.device("cpu")).beside(broken)


def test_no_rehearsal_on_the_cpu_or_when_compiling(plain_folder, shapes_dir, tmp_path):
    cfg = cfg_for(plain_folder, shapes_dir, tmp_path)
    data = load_dataset(cfg.data, cfg.resolution, cfg.buckets, False, 0.0, 0)
    assert Rehearsal.for_run(cfg, data, torch.device("cpu")) is None
    assert Rehearsal.for_run(cfg.replace(compile=True), data, torch.device("cuda")) is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["dreambooth", "lora"])
def test_a_rehearsed_run_trains_exactly_as_one_without(plain_folder, shapes_dir, tmp_path, method):
    from sd_trainplan.train.loop import train
    cfg = cfg_for(plain_folder, shapes_dir, tmp_path, device="cuda", log_every=1).replace(method=method, steps=6)
    events = []
    with_it = train(cfg, sinks=[events.append])
    without = train(cfg, rehearse=False)
    assert any((e.message or "").startswith("first update rehearsed") for e in events)
    losses = [(tmp.run_dir / "metrics.jsonl").read_text() for tmp in (with_it, without)]
    strip = [[line.split('"elapsed_s"')[0] for line in text.splitlines()] for text in losses]
    assert strip[0] == strip[1]
