"""What the page checks at Start with the WebUI's knowledge, and how a failed or finished run ends
there (issue 17, items 1, 3, 5): the stand-in of the WebUI's modules (v1.10.1) and the real tiny
ldm model, driven as the page drives them (trainer_events.check_start, ui.jobs.JobRunner)."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from webui_host import start_webui, tensor_hashes
from test_host_train import config, run_job


def start_values(cfg):
    from sd_trainplan.ui.train_fields import field_values, hidden_values
    return field_values(cfg), hidden_values(cfg)


def test_a_token_that_is_a_loaded_embedding_is_refused_beside_the_token_field(dataset, tmp_path):
    from modules import sd_hijack
    from modules.textual_inversion.textual_inversion import Embedding
    from sd_trainplan.host.hooks import make_hooks
    from sd_trainplan.ui.trainer_events import check_start
    _, model = start_webui(tmp_path / "webui")
    hooks = make_hooks()
    db = sd_hijack.model_hijack.embedding_db
    emb = Embedding(torch.zeros(1, 32), "taken")
    emb.filename = str(tmp_path / "webui" / "embeddings" / "taken.pt")
    db.register_embedding(emb, model)

    for method, token, words in (("ti", "taken", "is already a loaded embedding"),
                                 ("lora", "taken", "puts that embedding's vectors in its place"),
                                 ("dreambooth", "taken dog", "contains 'taken'")):
        values, hidden = start_values(config(dataset, tmp_path, method=method, token=token))
        check = check_start(values, hidden, hooks)
        assert not check.ok and set(check.messages) == {"token"}, (method, check.messages, check.other)
        assert words in check.messages["token"] and "taken.pt" in check.messages["token"]
    values, hidden = start_values(config(dataset, tmp_path, method="ti", token="fresh"))
    assert check_start(values, hidden, hooks).ok
    assert not (tmp_path / "runs").exists()  # nothing started, no empty run folder


def test_an_emptied_token_field_is_refused_not_trained_as_sks(dataset, tmp_path):
    from sd_trainplan.ui.hooks import UiHooks
    from sd_trainplan.ui.trainer_events import check_start
    for method in ("dreambooth", "ti", "lora"):
        values, hidden = start_values(config(dataset, tmp_path, method=method))
        values["token"] = "  "
        check = check_start(values, hidden, UiHooks())
        assert not check.ok and "is empty" in check.messages.get("token", ""), (method, check.messages)


def test_a_nan_run_ends_as_an_error_in_the_webuis_status_and_progress(dataset, tmp_path):
    from modules import shared
    from sd_trainplan.host.hooks import STATUS, make_hooks
    from sd_trainplan.ui.jobs import TRAIN, JobRunner
    from sd_trainplan.ui.trainer_events import train_work
    _, model = start_webui(tmp_path / "webui")
    base = tensor_hashes(model)
    runner = JobRunner(make_hooks())
    cfg = config(dataset, tmp_path, method="dreambooth", steps=8, lr=1e3, max_grad_norm=0.0)
    job = runner.start(TRAIN, cfg, train_work(cfg))
    runner.thread.join(120)
    assert job.status == "error" and "the training loss became nan" in job.error
    status = STATUS.snapshot()
    assert status["state"] == "error" and "a lower learning rate" in status["message"]  # what the page's JS shows
    assert "the training loss became nan" in shared.state.textinfo  # the WebUI's progress text, not "Loss: nan"
    assert tensor_hashes(model) == base  # the loaded model is back as it was
    assert not list((tmp_path / "webui" / "models").rglob("*.safetensors"))


def test_a_dreambooth_checkpoint_gets_the_loaded_ones_yaml_under_its_own_free_name(dataset, tmp_path):
    from sd_trainplan.host.hooks import make_hooks
    _, model = start_webui(tmp_path / "webui")
    folder = tmp_path / "webui" / "models" / "Stable-diffusion"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orig.safetensors").write_bytes(b"")
    (folder / "orig.yaml").write_text("model: {target: custom}\n")
    (folder / "mydb.yaml").write_text("a stale config of a deleted checkpoint\n")
    model.sd_checkpoint_info = SimpleNamespace(filename=str(folder / "orig.safetensors"))
    run_job(make_hooks(), config(dataset, tmp_path, method="dreambooth", steps=2, lr=1e-3, name="mydb"))
    assert (folder / "mydb-1.safetensors").is_file()  # neither file of the pair may overwrite one
    assert (folder / "mydb-1.yaml").read_text() == "model: {target: custom}\n"
    assert (folder / "mydb.yaml").read_text() == "a stale config of a deleted checkpoint\n"
    assert not (folder / "mydb.safetensors").exists()
