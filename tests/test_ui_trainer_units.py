"""The trainer page's pure parts, without a browser or a model: fields <-> TrainConfig, the job
runner and the host's hooks, and what a job looks like on the page."""
import threading
import time
from types import SimpleNamespace

import pytest

from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.events import Emitter
from sd_trainplan.train.lr_range import CAUTION, Suggestion
from sd_trainplan.ui.charts import nice_ticks
from sd_trainplan.ui.hooks import UiHooks
from sd_trainplan.ui.job_view import loss_chart_html, progress_html, range_html, result_html
from sd_trainplan.ui.jobs import LR_RANGE, TRAIN, Busy, JobRunner
from sd_trainplan.ui.train_fields import field_values, hidden_values, read_fields, split_problems


def test_fields_round_trip_a_config():
    cfg = TrainConfig(method="lora", data="/d", steps=123, lr=3e-4, batch_size=2, scheduler="cosine", warmup=10,
                      rank=8, val_split=0.1, val_every=6, lr_min=1e-6, weight_decay=0.0)
    check = read_fields(field_values(cfg), hidden_values(cfg))
    assert check.ok and check.cfg == cfg


def test_bad_values_are_reported_by_field_and_blank_means_default():
    values = field_values(TrainConfig(data="/d"))
    values.update(batch_size="two", resolution="60", lr="-1", sample_seed="")
    check = read_fields(values)
    assert check.cfg is None  # a value that does not parse: nothing can run
    assert "whole number" in check.messages["batch_size"]
    assert "multiple of 8" in check.messages["resolution"]
    assert "must be a number > 0" in check.messages["lr"]
    assert "sample_seed" not in check.messages
    values.update(batch_size="2", resolution="64", lr="1e-3", method="ti", token="two words")
    check = read_fields(values, base=TrainConfig(output="/host/out"))
    assert check.cfg is not None and not check.ok and set(check.messages) == {"token"}
    values["output"] = ""
    assert read_fields(values, base=TrainConfig(output="/host/out")).cfg.output == "/host/out"


def test_long_problem_lists_are_shortened_and_unknown_settings_kept_whole():
    lines = [f"data: img{i}.png is 64x64, smaller than 512" for i in range(12)] + ["weight_decay: bad", "oops"]
    check = split_problems(lines)
    assert check.messages["data"].count("img") == 2 and check.messages["data"].endswith("and 10 more like these")
    assert check.other == ("weight_decay: bad", "oops")


def fake_train(steps, pause=0.0, export=True, fail=None):
    """Work that behaves like train(): events through the sinks, a stop check after each update."""
    def work(adapter, sinks, stop):
        emit = Emitter(sinks)
        emit("start", total=steps, message="fake -> /tmp/fake-run")
        for u in range(1, steps + 1):
            time.sleep(pause)
            if fail and u == fail:
                raise ValueError("boom")
            emit("step", step=u, total=steps, loss=1.0 / u, lr=1e-3)
            if stop() and u < steps:
                emit("stopped", step=u, total=steps, path="/tmp/fake-run/checkpoints/step.pt")
                return SimpleNamespace(stopped=True, export_path=None, run_dir="/tmp/fake-run", val_loss=None)
        emit("done", step=steps, total=steps, path="/tmp/fake-run/x.safetensors")
        return SimpleNamespace(stopped=False, export_path="/tmp/fake-run/x.safetensors" if export else None,
                               run_dir="/tmp/fake-run", val_loss=0.5)
    return work


def wait(job, timeout=10):
    deadline = time.time() + timeout
    while job.running and time.time() < deadline:
        time.sleep(0.01)
    assert not job.running


def test_a_job_runs_under_the_hosts_hooks():
    calls, seen = [], []

    def wrap(fn):
        def wrapped():
            calls.append("lock")
            try:
                return fn()
            finally:
                calls.append("unlock")
        return wrapped

    def after(cfg, result):
        calls.append(("after", result.export_path))
        return "/webui/models/Lora/x.safetensors"  # where the host put it

    hooks = UiHooks(load_adapter=lambda cfg: "host-model", wrap_job=wrap, sinks=[seen.append], after_job=after,
                    restore=lambda: calls.append("restore"))
    runner = JobRunner(hooks)
    got = {}

    def work(adapter, sinks, stop):
        got["adapter"] = adapter
        return fake_train(3)(adapter, sinks, stop)

    job = runner.start(TRAIN, TrainConfig(), work)
    wait(job)
    assert job.status == "done" and got["adapter"] == "host-model"
    assert calls == ["lock", ("after", "/tmp/fake-run/x.safetensors"), "restore", "unlock"]  # all in the queue
    assert [e.kind for e in seen] == [e.kind for e in job.events] == ["start", "step", "step", "step", "done"]
    assert runner.resumable() is job
    assert "/webui/models/Lora/x.safetensors" in result_html(job)


def test_one_job_at_a_time_and_stop_from_the_page_or_the_host():
    host_stop = threading.Event()
    runner = JobRunner(UiHooks(should_stop=host_stop.is_set))
    job = runner.start(TRAIN, TrainConfig(), fake_train(1000, pause=0.005))
    with pytest.raises(Busy):
        runner.start(LR_RANGE, TrainConfig(), fake_train(3))
    assert runner.stop() is job
    wait(job)
    assert job.status == "stopped" and job.last("stopped").step < 1000
    job2 = runner.start(TRAIN, TrainConfig(), fake_train(1000, pause=0.005))
    host_stop.set()  # e.g. the WebUI's Interrupt
    wait(job2)
    assert job2.status == "stopped" and runner.stop() is None


def test_a_failure_ends_the_job_with_its_message_even_inside_a_swallowing_wrapper():
    restored = []

    def swallowing(fn):  # like the WebUI's wrap_gradio_call: exceptions become a return value
        def wrapped():
            try:
                return fn()
            except Exception:
                return ["<div class='error'>...</div>"]
        return wrapped

    runner = JobRunner(UiHooks(wrap_job=swallowing, restore=lambda: restored.append(1),
                               after_job=lambda c, r: restored.append("after")))
    job = runner.start(TRAIN, TrainConfig(), fake_train(5, fail=2))
    wait(job)
    assert job.status == "error" and "boom" in job.error and job.last("error").message == "ValueError: boom"
    assert restored == [1]  # restored, and no after_job for a run that wrote nothing
    html = progress_html(job) + result_html(job)
    assert 'data-state="error"' in html and "boom" in html and "Traceback" not in html


def test_progress_loss_chart_and_result_as_the_page_shows_them():
    runner = JobRunner()
    assert 'data-state="idle"' in progress_html(None)
    job = runner.start(TRAIN, TrainConfig(steps=4), fake_train(4))
    wait(job)
    html = progress_html(job)
    assert 'data-state="done"' in html and "4 / 4 updates · 100%" in html
    assert "polyline" in loss_chart_html(job) and "stp-s-train" in loss_chart_html(job)
    assert "x.safetensors" in result_html(job)


def test_range_view_draws_the_bounds_and_the_caution():
    points = [{"step": s, "lr": s * 1e-3, "val_loss": 1.0 - 0.05 * min(s, 8), "train_smooth": 1.0} for s in range(11)]
    sug = {k: Suggestion(k, lr, step, "how") for k, lr, step in
           (("lower", 2e-3, 2), ("upper", 8e-3, 8), ("steepest", 3e-3, 3), ("midpoint", 5e-3, -1))}
    result = SimpleNamespace(points=points, suggestions=sug, max_lr=1e-2, mode="linear", diverged=False,
                             caution=CAUTION, message="")
    job = SimpleNamespace(result=result, cfg=TrainConfig(lr=1e-2), events=[])
    html = range_html(job)
    for mark in ("lower", "upper", "steepest", "midpoint"):
        assert f'data-mark="{mark}"' in html and f'data-suggestion="{mark}"' in html
    assert 'class="stp-band"' in html and "under-trained" in html


def test_nice_ticks():
    assert nice_ticks(0, 1) == [0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(0.52, 1.21) == pytest.approx([0.6, 0.8, 1.0, 1.2])


def test_resume_of_a_finished_run_without_a_final_checkpoint_starts_at_its_last_one(shapes_dir, tmp_path):
    """A big Dreambooth run keeps no checkpoint after its export (final_checkpoint): Resume says it
    continues from the last one it has (update 2 here), not from where the run ended (4)."""
    from sd_trainplan.train.checkpoint import latest_checkpoint
    from sd_trainplan.ui.trainer_events import resume_job, train_work
    cfg = TrainConfig(method="dreambooth", model="tiny", data=str(shapes_dir), output=str(tmp_path), resolution=64,
                      steps=4, batch_size=2, save_every=2, final_checkpoint="off", token="zwx")
    runner = JobRunner(UiHooks())
    job = runner.start(TRAIN, cfg, train_work(cfg))
    wait(job, timeout=300)
    assert job.status == "done" and job.position() == 4 and latest_checkpoint(job.run_dir)[0] == 2
    text = resume_job(runner, {"steps": "6"})
    assert "at update 2, up to 6" in text and "kept none after update 4" in text
    wait(runner.latest[TRAIN], timeout=300)
    assert runner.latest[TRAIN].status == "done"
    assert any(e.message.startswith("resumed at update 2") for e in runner.latest[TRAIN].events)
