"""Training the WebUI's loaded model through the host hooks, as the page runs a job: the WebUI's
queue wrapper, shared.state, Interrupt, and the loaded model left as it was (stand-in of the
WebUI's modules, v1.10.1; the real ldm LatentDiffusion, tiny, on CPU)."""
from __future__ import annotations

import pytest
import torch

from webui_host import flags, start_webui, tensor_hashes


@pytest.fixture()
def webui(tmp_path):
    return start_webui(tmp_path / "webui")


def config(dataset, tmp_path, **kw):
    from sd_trainplan.train.config import TrainConfig
    base = dict(data=str(dataset), output=str(tmp_path / "runs"), resolution=64, batch_size=4, log_every=1,
                instance_prompt="[name] [filewords]", precision="fp32", steps=4, name="run")
    return TrainConfig(**{**base, **kw})


def run_job(hooks, cfg, on_event=None):
    """What the page does with the hooks: the whole job inside wrap_job, restore always."""
    from sd_trainplan.train.loop import train
    events = []

    def sink(ev):
        events.append(ev)
        if on_event:
            on_event(ev)

    def job():
        try:
            adapter = hooks.load_adapter(cfg)
            result = train(cfg, adapter=adapter, sinks=list(hooks.sinks) + [sink], stop=hooks.should_stop)
            if result.export_path:
                hooks.after_job(cfg, result)
            return result
        finally:
            hooks.restore()
    return hooks.wrap_job(job)(), events


def test_a_job_runs_in_the_webui_queue_updates_shared_state_and_stops_on_interrupt(webui, dataset, tmp_path):
    from modules import call_queue, shared
    from sd_trainplan.host.hooks import STATUS, make_hooks
    hooks = make_hooks()
    seen = []

    def during(ev):
        if ev.kind == "step" and ev.step:
            seen.append((call_queue.queue_lock._lock.locked(), shared.state.job, shared.state.job_count,
                         shared.state.job_no, shared.state.textinfo, STATUS.snapshot()["state"]))
            if ev.step == 3:
                shared.state.interrupt()  # the WebUI's Interrupt button
    cfg = config(dataset, tmp_path, method="lora", steps=8, sample_every=2, sample_steps=2)
    result, events = run_job(hooks, cfg, during)

    assert result.stopped and result.steps_done == 3
    locked, job, count, no, info, state = seen[-1]
    assert locked and job.startswith("task(sd_trainplan-") and count == 8 and no == 3
    assert "Loss:" in info and "Step: 3/8" in info and state == "running"
    assert shared.state.current_image is not None and shared.state.id_live_preview == 1  # the sample at step 2
    assert not shared.state.interrupted and not call_queue.queue_lock._lock.locked()  # the WebUI's wrapper reset it
    status = STATUS.snapshot()
    assert status["state"] == "stopped" and status["task_id"] == job and status["step"] == 3


def test_dreambooth_puts_back_the_dtype_it_trained_in_fp32():
    from sd_trainplan.host.session import WeightBackup
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4)).half()
    before = tensor_hashes(m)
    backup = WeightBackup([m])
    m.float()
    with torch.no_grad():
        m[0].weight += 1
    backup.restore()
    assert tensor_hashes(m) == before and m[0].weight.dtype == torch.float16


def test_the_run_note_names_the_models_precision():
    from sd_trainplan.host.loaded_model import dtype_note
    assert dtype_note(torch.float32, "lora") is None
    assert dtype_note(torch.bfloat16, "ti") == ("the loaded model is bf16: the new vectors are trained in fp32 with bf16"
                                                " mixed precision")
    assert "held as fp32 masters for the run (put back to fp16 after)" in dtype_note(torch.float16, "dreambooth")


def test_what_cannot_be_trained_is_refused_with_a_reason_and_nothing_changes(webui, dataset, tmp_path):
    from modules import sd_hijack, shared
    from sd_trainplan.host.hooks import make_hooks
    from sd_trainplan.train.config import ConfigError
    _, model = webui
    base, base_flags = tensor_hashes(model), flags(model)
    hooks = make_hooks()

    shared.cmd_opts.lowvram = True
    with pytest.raises(ConfigError, match="--lowvram"):
        run_job(hooks, config(dataset, tmp_path, method="lora"))
    shared.cmd_opts.lowvram = False

    shared.opts.fp8_storage = "Enable"
    with pytest.raises(ConfigError, match="FP8"):
        run_job(hooks, config(dataset, tmp_path, method="lora"))
    shared.opts.fp8_storage = "Disable"

    db = sd_hijack.model_hijack.embedding_db
    db.register_embedding(type(db.word_embeddings.get("x", None) or _embedding())(torch.zeros(1, 32), "taken"), model)
    with pytest.raises(ValueError, match="already loaded"):
        run_job(hooks, config(dataset, tmp_path, method="ti", token="taken"))
    assert tensor_hashes(model) == base and flags(model) == base_flags

    shared.sd_model = type("DiffusionEngine", (), {"conditioner": object()})()
    with pytest.raises(ConfigError, match="not an SDXL DiffusionEngine this can train"):
        run_job(hooks, config(dataset, tmp_path, method="lora"))

    half = model.half()
    shared.sd_model = half
    with pytest.raises(ConfigError, match="precision: the loaded model is fp16"):
        run_job(hooks, config(dataset, tmp_path, method="lora", precision="fp32"))


def _embedding():
    from modules.textual_inversion.textual_inversion import Embedding
    return Embedding(torch.zeros(1, 32), "x")


def test_medvram_holds_the_parts_for_the_run_and_puts_its_swapping_back(dataset, tmp_path):
    from modules import lowvram
    from sd_trainplan.host.hooks import make_hooks
    _, model = start_webui(tmp_path / "webui", medvram=True)
    hooks_before = [(n, [getattr(f, "__name__", "") for f in m._forward_pre_hooks.values()])
                    for n, m in model.named_modules() if m._forward_pre_hooks]
    assert len(hooks_before) == 3 and "encode" in vars(model.first_stage_model)
    base = tensor_hashes(model)
    run_job(make_hooks(), config(dataset, tmp_path, method="ti", steps=2, token="zwq", init_word="shape"))
    after = [(n, [getattr(f, "__name__", "") for f in m._forward_pre_hooks.values()])
             for n, m in model.named_modules() if m._forward_pre_hooks]
    assert after == hooks_before and "encode" in vars(model.first_stage_model) and lowvram.module_in_gpu is None
    assert tensor_hashes(model) == base


def test_an_error_mid_run_puts_the_original_back_and_releases_the_queue(webui, dataset, tmp_path):
    from modules import call_queue
    from sd_trainplan.host.hooks import STATUS, make_hooks
    _, model = webui
    base, base_flags = tensor_hashes(model), flags(model)

    def during(ev):
        if ev.kind == "step" and ev.step == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
    with pytest.raises(RuntimeError, match="simulated"):
        run_job(make_hooks(), config(dataset, tmp_path, method="dreambooth", steps=5, lr=1e-3), during)
    assert tensor_hashes(model) == base and flags(model) == base_flags
    assert not call_queue.queue_lock._lock.locked()
    assert STATUS.snapshot()["state"] == "error" and "simulated" in STATUS.snapshot()["message"]
