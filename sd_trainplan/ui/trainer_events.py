"""What the trainer's buttons do, and how the page follows a job.

Apply fills the trainer fields from the plan; Start / Resume / the LR range test check every
field (and the dataset) first and show each problem beside its field, then hand the work to
the JobRunner and return at once. The page then follows the job with a generator that redraws
what changed about twice a second and ends with the job (`follow`): the same code on gradio
3.41 and 4.40. (A `load(..., every=1)` timer would do on gradio 4.40, where it is a client-side
gr.Timer, but on 3.41 it is an endless server-side generator per open page that keeps a queue
worker busy even while nothing runs.) A page opened later attaches to a running job on load.
"""
from __future__ import annotations

import os
import time
from html import escape
from typing import Any, Callable, Dict, List, Optional, Tuple

import gradio as gr

from ..plan.quantity import fmt
from ..train.apply import plan_to_train_config
from ..train.config import ConfigError, TrainConfig
from . import compat
from .hooks import UiHooks
from .job_view import loss_chart_html, progress_html, range_html, result_html, samples
from .jobs import LR_RANGE, TRAIN, Busy, JobRunner
from .planner_panel import KEYS, PlannerPanel, planner_outputs, redraw
from .train_fields import (ALL_TRAIN, FROM_PLAN, TRAIN_KEYS, FieldCheck, field_values, hidden_values, merge,
                           read_fields, shown_for, split_problems)
from .trainer_panel import RangePanel, TrainerPanel
from .dataset import image_sizes
from .view import make_view, msg, small_images_note

POLL_S = 0.5


# ---- checks before anything starts -------------------------------------------------------------

def check_start(values: Dict[str, Any], hidden: Dict[str, Any], hooks: UiHooks) -> FieldCheck:
    """Every field, then the model path and the dataset (train.loop.prepare_checks): all problems at once."""
    check = read_fields(values, hidden, base_config(hooks))
    cfg = check.cfg
    if cfg is None:
        return check
    from ..train.loop import prepare_checks
    try:
        prepare_checks(cfg)
    except ConfigError as e:
        return merge(check, split_problems(e.problems), cfg)
    except Exception as e:  # noqa: BLE001 - an unreadable folder must not show a traceback
        return merge(check, FieldCheck(None, {}, (f"{type(e).__name__}: {e}",)), cfg)
    return FieldCheck(cfg, check.messages, check.other)


def base_config(hooks: UiHooks) -> TrainConfig:
    """What an empty field means: the defaults, the host's output folder, and in a host that loads
    the model itself an empty Model (the model the host has loaded)."""
    return TrainConfig(output=hooks.output_dir, model="" if hooks.load_adapter is not None else "tiny")


def with_ui_logging(cfg: TrainConfig) -> TrainConfig:
    """Log often enough for a live curve (every update on short runs, at most every 10)."""
    return cfg.replace(log_every=max(1, min(10, cfg.steps // 100)))


def problems_html(check: FieldCheck, what: str = "nothing was started") -> str:
    items = [f"<li><b>{w.label}</b>: {escape(check.messages[w.key])}</li>" for w in ALL_TRAIN if w.key in check.messages]
    items += [f"<li>{escape(line)}</li>" for line in check.other]
    n = check.count()
    return (f'<div class="stp-status stp-status-error"><b>{n} setting{"s" if n != 1 else ""} to fix</b> (marked beside'
            f' {"each" if n != 1 else "the"} field); {what}.<ul>{"".join(items)}</ul></div>')


def note(kind: str, text: str) -> str:
    cls = {"error": "stp-status-error", "warn": "stp-status-warn"}.get(kind, "stp-status-ok")
    return f'<div class="stp-status {cls}">{text}</div>'


def message_updates(check: Optional[FieldCheck]) -> List[Any]:
    out = []
    for k in TRAIN_KEYS:
        text = check.messages.get(k, "") if check else ""
        out.append(gr.update(value=msg("error", text) if text else "", visible=bool(text)))
    return out


# ---- the work each job runs ---------------------------------------------------------------------

def train_work(cfg: TrainConfig, resume: Optional[str] = None) -> Callable:
    def work(adapter, sinks, stop):
        from ..train.loop import train
        return train(cfg, adapter=adapter, sinks=sinks, stop=stop, resume=resume)
    return work


def range_work(cfg: TrainConfig, max_lr: float, steps: int) -> Callable:
    def work(adapter, sinks, stop):
        from ..train.lr_range import lr_range_test
        return lr_range_test(cfg, mode="linear", max_lr=max_lr, min_lr=0.0, steps=steps, adapter=adapter,
                             sinks=sinks, stop=stop)
    return work


def sweep_settings(max_text: str, steps_text: str, planner_values: Dict[str, Any],
                   cfg: TrainConfig) -> Tuple[Optional[float], Optional[int], List[str]]:
    """The sweep's maximum LR and length: the fields, else the planner's, else the trainer's."""
    result = make_view(planner_values).result
    problems: List[str] = []
    max_lr, steps = None, None
    try:
        max_lr = float(max_text) if str(max_text or "").strip() else (
            result.inputs.sweep_max_lr if result.inputs and result.inputs.sweep_max_lr else cfg.lr)
        if not max_lr > 0:
            raise ValueError
    except ValueError:
        problems.append(f"Maximum LR: must be a number > 0 (got {max_text!r})")
    try:
        planned = result.value("sweep_steps")
        steps = int(float(steps_text)) if str(steps_text or "").strip() else int(planned or cfg.steps)
        if steps < 5:
            problems.append(f"Sweep length: at least 5 updates, for a curve to read (got {steps})")
    except ValueError:
        problems.append(f"Sweep length: must be a whole number of updates (got {steps_text!r})")
    return max_lr, steps, problems


# ---- following a job ----------------------------------------------------------------------------

def render(runner: JobRunner, seen: Dict[str, Any]) -> List[Any]:
    """Updates for the job outputs of both tabs, only what changed since `seen` (updated in place):
    train progress, loss plot, result, samples; range progress, curve, the bounds button."""
    keep = gr.update()
    out: List[Any] = []
    job = runner.latest.get(TRAIN)
    key = (job.id, job.version) if job else None
    out.append(progress_html(job) if job is None or job.running or seen.get("train") != key else keep)
    if seen.get("train") != key:
        out += [loss_chart_html(job), result_html(job)]
    else:
        out += [keep, keep]
    n = (job.id, len(job.samples)) if job else None
    out.append(samples(job) if seen.get("samples") != n else keep)
    seen["train"], seen["samples"] = key, n
    rj = runner.latest.get(LR_RANGE)
    rkey = (rj.id, rj.version) if rj else None
    out.append(progress_html(rj, LR_RANGE) if rj is None or rj.running or seen.get("lr") != rkey else keep)
    if seen.get("lr") != rkey:
        bounds = bool(rj and rj.status == "done" and getattr(rj.result, "suggestions", None))
        out += [range_html(rj), gr.update(visible=bounds)]
    else:
        out += [keep, keep]
    seen["lr"] = rkey
    return out


def follower(runner: JobRunner) -> Callable:
    def follow(seen: Optional[Dict[str, Any]]):
        seen = dict(seen or {})
        while True:
            busy = runner.busy()  # read before drawing: once it is False, this drawing is the job's last
            out = render(runner, seen)
            yield out + [dict(seen)]
            if not busy:
                return
            time.sleep(POLL_S)
    return follow


# ---- wiring --------------------------------------------------------------------------------------

def wire_trainer(planner: PlannerPanel, trainer: TrainerPanel, ranger: RangePanel, tabs: Any, runner: JobRunner,
                 hooks: UiHooks) -> None:
    pcomps = planner.input_list()
    tcomps = trainer.input_list()
    tmsgs = [trainer.messages[k] for k in TRAIN_KEYS]
    cells = [trainer.cells[w.key] for w in ALL_TRAIN]
    seen = gr.State(None)
    follow_out = [trainer.progress, trainer.loss_plot, trainer.result, trainer.samples, ranger.progress, ranger.plot,
                  ranger.use_bounds, seen]  # the order of render()'s updates
    follow = follower(runner)
    quick = dict(queue=False, api_name=False, show_progress="hidden")
    stream = compat.stream_event()

    def on_method(method: str) -> List[Any]:
        return [gr.update(visible=shown_for(w, method)) for w in ALL_TRAIN]

    trainer.inputs["method"].change(on_method, [trainer.inputs["method"]], cells, **quick)

    def on_apply(hidden: Dict[str, Any], *vals: Any) -> List[Any]:
        pvals, tvals = dict(zip(KEYS, vals[:len(KEYS)])), dict(zip(TRAIN_KEYS, vals[len(KEYS):]))
        view = make_view(pvals)
        nothing = [gr.update() for _ in TRAIN_KEYS] + [gr.update() for _ in TRAIN_KEYS]
        if view.result.errors:
            text = msg("error", "Fix the marked inputs first; nothing was sent to the trainer.")
            return nothing + [gr.update(value=text, visible=True), gr.update(), gr.update(), hidden]
        base = read_fields(tvals, hidden, base_config(hooks), lenient=True).cfg
        cfg = plan_to_train_config(view.result, base)
        folder = str(pvals.get("dataset") or "").strip()
        if folder:
            cfg = cfg.replace(data=folder)
        new = field_values(cfg)
        sent = set(FROM_PLAN) | ({"data"} if folder else set())
        fields = [new[k] if k in sent else gr.update() for k in TRAIN_KEYS]
        check = read_fields({**tvals, **{k: new[k] for k in sent}}, hidden_values(cfg),
                            base_config(hooks))
        summary = (f"{cfg.steps} weight updates of {cfg.method} at LR {fmt(cfg.lr)}, BS {cfg.batch_size}, GA"
                   f" {cfg.grad_accum}, {cfg.scheduler} schedule, {cfg.resolution} px")
        text = msg("info", f"Sent to the trainer (Train tab): {summary}. Each field stays editable.")
        status = note("ok", f"Filled from the plan: {summary}. Check the dataset folder and prompts, then Start.")
        small = small_images_note(image_sizes(os.path.abspath(os.path.expanduser(cfg.data))), cfg.resolution) \
            if cfg.data else ""
        if small:  # e.g. the demo's 64 px sample images under a 512 px plan: say it now, not at Start
            status = note("warn", f"Filled from the plan: {summary}. {escape(small)}.")
        return (fields + message_updates(check) + [gr.update(value=text, visible=True), status,
                                                   compat.select_tab("train"), hidden_values(cfg)])

    planner.apply.click(on_apply, [trainer.hidden] + pcomps + tcomps,
                        tcomps + tmsgs + [planner.apply_message, trainer.status, tabs, trainer.hidden],
                        scroll_to_output=True, **quick)  # to the top of the Train tab's fields

    def on_start(hidden: Dict[str, Any], *vals: Any) -> List[Any]:
        check = check_start(dict(zip(TRAIN_KEYS, vals)), hidden, hooks)
        if not check.ok:
            return message_updates(check) + [problems_html(check)]
        cfg = with_ui_logging(check.cfg)
        try:
            runner.start(TRAIN, cfg, train_work(cfg))
        except Busy as e:
            return message_updates(None) + [note("error", f"Not started: {escape(str(e))}.")]
        return message_updates(None) + [note("ok", f"Started: {check.cfg.method} for {check.cfg.steps} updates.")]

    trainer.start.click(on_start, [trainer.hidden] + tcomps, tmsgs + [trainer.status], **quick).then(
        follow, [seen], follow_out, **stream)

    def on_stop() -> str:
        job = runner.stop()
        if job is None:
            return note("warn", "Nothing is running.")
        return note("ok", "Stopping after the current update; a checkpoint is saved for Resume.")

    trainer.stop.click(on_stop, None, [trainer.status], **quick)
    ranger.stop.click(on_stop, None, [ranger.status], **quick)

    def on_resume(*vals: Any) -> List[Any]:
        return [resume_job(runner, dict(zip(TRAIN_KEYS, vals)))]

    trainer.resume.click(on_resume, tcomps, [trainer.status], **quick).then(follow, [seen], follow_out, **stream)

    def on_range(hidden: Dict[str, Any], max_text: str, steps_text: str, *vals: Any) -> List[Any]:
        pvals, tvals = dict(zip(KEYS, vals[:len(KEYS)])), dict(zip(TRAIN_KEYS, vals[len(KEYS):]))
        check = check_start(tvals, hidden, hooks)
        if not check.ok:
            return message_updates(check) + [problems_html(check, "fix them on the Train tab; the test was not started")]
        max_lr, steps, problems = sweep_settings(max_text, steps_text, pvals, check.cfg)
        if problems:
            return message_updates(None) + [note("error", "<br>".join(escape(p) for p in problems))]
        cfg = check.cfg.replace(lr=max_lr, steps=steps)
        try:
            runner.start(LR_RANGE, cfg, range_work(cfg, max_lr, steps))
        except Busy as e:
            return message_updates(None) + [note("error", f"Not started: {escape(str(e))}.")]
        return message_updates(None) + [note("ok", f"Sweeping the LR from 0 to {fmt(max_lr)} over {steps} updates"
                                             f" ({check.cfg.method}, BS {check.cfg.batch_size}, GA 1).")]

    ranger.start.click(on_range, [trainer.hidden, ranger.max_lr, ranger.steps] + pcomps + tcomps,
                       tmsgs + [ranger.status], **quick).then(follow, [seen], follow_out, **stream)

    def on_use_bounds(*vals: Any) -> List[Any]:
        job = runner.latest.get(LR_RANGE)
        sug = getattr(job.result, "suggestions", None) if job else None
        if not sug:
            return [gr.update() for _ in planner_outputs(planner)] + [gr.update(), gr.update(), gr.update(),
                                                                        note("warn", "No bounds to use yet.")]
        lo, hi = (float(f"{sug[k].lr:.3g}") for k in ("lower", "upper"))
        mid = float(f"{(lo + hi) / 2:.3g}")
        values = dict(zip(KEYS, vals))
        values.update(lr_bounds=f"{fmt(lo)},{fmt(hi)}", lr=fmt(mid))
        text = (f"The plan now uses the bounds {fmt(lo)} .. {fmt(hi)} and LR {fmt(mid)} (the midpoint). Apply to"
                " trainer sends it to the Train tab.")
        return redraw(values) + [values["lr_bounds"], values["lr"], compat.select_tab("plan"), note("ok", text)]

    ranger.use_bounds.click(on_use_bounds, pcomps, planner_outputs(planner) + [
        planner.inputs["lr_bounds"], planner.inputs["lr"], tabs, ranger.use_message], **quick)

    compat.on_load(follow, [seen], follow_out, **stream)


def resume_job(runner: JobRunner, values: Dict[str, Any]) -> str:
    """Continue the last stopped or finished run from its checkpoint, up to Weight updates."""
    job = runner.resumable()
    if job is None:
        return note("warn", "Nothing to resume yet: Start a run, then Stop it (or let it finish); Resume continues"
                    " it from its last checkpoint.")
    from ..train.checkpoint import read_run_config
    try:
        cfg = read_run_config(job.run_dir)
    except (OSError, ConfigError, ValueError) as e:
        return note("error", f"Cannot resume {escape(job.run_dir)}: {escape(str(e))}")
    done = job.position()
    try:
        wanted = int(float(str(values.get("steps") or "").strip() or 0))
    except ValueError:
        wanted = 0
    steps = wanted if wanted > done else cfg.steps
    if steps <= done:
        return note("warn", f"The last run finished all its {done} updates. Raise Weight updates above {done} to"
                    " train it further, then Resume.")
    cfg = with_ui_logging(cfg.replace(steps=steps))
    from ..train.checkpoint import latest_checkpoint
    found = latest_checkpoint(job.run_dir)  # a finished run may keep none (final_checkpoint)
    at = found[0] if found else 0
    try:
        runner.start(TRAIN, cfg, train_work(cfg, resume=job.run_dir), resume=job.run_dir, before=job)
    except Busy as e:
        return note("error", f"Not resumed: {escape(str(e))}.")
    since = "" if at == done else (f" (its last checkpoint: the run kept none after update {done}; the result is"
                                    " the same as training straight through)")
    return note("ok", f"Resuming {escape(job.run_dir)} at update {at}, up to {steps}.{since}")
