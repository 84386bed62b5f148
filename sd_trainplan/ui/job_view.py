"""A job as the page shows it (pure Python, no gradio): the progress bar with ETA, the live loss
chart, the result line, and the LR range test's curve with its bounds.

Everything is rendered from the job's event log (ui/jobs.py), so any browser session can draw
any job at any moment: a page opened in the middle of a run shows the run so far.
"""
from __future__ import annotations

import os
import time
from html import escape
from typing import Any, List, Optional, Tuple

from ..plan.quantity import fmt
from ..train.events import _fmt_time
from .charts import Line, Mark, legend_html, line_chart, short
from .jobs import LR_RANGE, Job

IDLE = {"train": "No run yet. Fill in the fields (or Apply the plan) and press Start.",
        LR_RANGE: "No range test yet. It sweeps the LR from 0 up to the maximum over a short run and reads the"
                  " bounds off the validation loss (seed 004)."}


def eta_seconds(job: Job) -> Optional[float]:
    """From the pace of the updates since training began (model loading and resuming excluded)."""
    steps = [ev for ev in job.events if ev.kind == "step"]
    if len(steps) < 2 or not steps[-1].total:
        return None
    first, last = steps[0], steps[-1]
    if last.step <= first.step or last.elapsed <= first.elapsed:
        return None
    rate = (last.step - first.step) / (last.elapsed - first.elapsed)
    return max(0.0, (last.total - last.step) / rate)


def _bar(frac: float, state: str, label: str) -> str:
    pct = max(0.0, min(1.0, frac)) * 100
    return (f'<div class="stp-bar stp-bar-{state}" role="progressbar" aria-valuenow="{pct:.0f}" aria-valuemin="0"'
            f' aria-valuemax="100"><div class="stp-bar-fill" style="width:{pct:.1f}%"></div>'
            f'<div class="stp-bar-label">{escape(label)}</div></div>')


def progress_html(job: Optional[Job], kind: str = "train") -> str:
    if job is None:
        return f'<div class="stp-progress stp-progress-idle" data-state="idle"><p>{escape(IDLE[kind])}</p></div>'
    step = job.last("step")  # the last logged update (loss, LR)
    at = job.last("step", "stopped", "done")  # where the run is (a stop can fall between log updates)
    done, total = (at.step, at.total) if at else (0, getattr(job.cfg, "steps", 0))
    frac = done / total if total else 0.0
    facts: List[str] = []
    if step is not None and step.loss is not None:
        facts.append(f"loss {step.loss:.4f}")
    if step is not None and step.lr is not None:
        facts.append(f"LR {short(step.lr)}")
    elapsed = (job.ended or time.time()) - job.started
    facts.append(f"elapsed {_fmt_time(elapsed)}")
    if job.running:
        eta = eta_seconds(job)
        facts.append(f"ETA {_fmt_time(eta)}" if eta is not None else "ETA …")
        phase = job.last("prepare", "start", "step")
        now = ("stopping after this update…" if job.stop_requested else "starting" if phase is None
               else "training" if phase.kind == "step" else phase.message)
        head = f'<span class="stp-phase">{escape(now)}</span>'
        state = "running"
    else:
        state = job.status
        head = {"done": '<span class="stp-phase">finished</span>',
                "stopped": f'<span class="stp-phase">stopped at update {done} of {total}</span>',
                "error": '<span class="stp-phase">failed</span>'}[job.status]
    label = f"{done} / {total} updates · {frac * 100:.0f}%"
    task = f' data-task="{escape(job.host_task)}"' if job.host_task else ""
    return (f'<div class="stp-progress stp-progress-{state}" data-state="{state}" data-job="{job.id}"'
            f' data-step="{done}" data-total="{total}"{task}>{_bar(frac, state, label)}<div class="stp-progress-facts">{head}'
            f'<span>{" · ".join(escape(f) for f in facts)}</span></div></div>')


def loss_chart_html(job: Optional[Job]) -> str:
    """Training loss (per log interval), stabilised training loss and validation loss by update."""
    events = (job.history + job.events) if job else []
    train = [(ev.step, ev.loss) for ev in events if ev.kind == "step" and ev.loss is not None]
    vals = [ev for ev in events if ev.kind == "val"]
    lines = [Line("training loss", train, "stp-s-train"),
             Line("stabilised training loss", [(ev.step, ev.stable_loss) for ev in vals if ev.stable_loss is not None],
                  "stp-s-stable", dots=True),
             Line("validation loss", [(ev.step, ev.val_loss) for ev in vals if ev.val_loss is not None],
                  "stp-s-val", dots=True)]
    now = job.last("step", "start", "stopped", "done") if job else None  # this job's length (not the stopped run's)
    total = (now.total if now and now.total else getattr(job.cfg, "steps", 1)) if job else 1
    note = ""
    if job is not None and not vals and not getattr(job.cfg, "val_every", 0):
        note = '<span class="stp-legend-note">set "Validate every N" for the validation curves</span>'
    svg = line_chart(lines, "weight update", "loss by weight update", x_range=(0, total),
                     x_label=lambda x: str(int(round(x))),
                     empty="the loss appears here once training starts" if job else "no run yet", size=(480, 220))
    return (f'<div class="stp-plot stp-loss-plot"><div class="stp-plot-title">Loss</div>'
            f'{legend_html(lines, note)}{svg}</div>')


def result_html(job: Optional[Job]) -> str:
    """The line under the progress: the file written, the checkpoint to resume, or what went wrong."""
    if job is None:
        return ""
    run = job.run_dir and os.path.abspath(job.run_dir)
    folder = f'<div class="stp-result-run">Run folder: <code>{escape(run)}</code></div>' if run else ""
    if job.status == "error":
        return (f'<div class="stp-result stp-result-error" data-state="error"><b>The run failed.</b> '
                f'{escape(job.error)}{folder}</div>')
    if job.status == "stopped":
        ck = job.last("stopped")
        path = f' Checkpoint: <code>{escape(ck.path)}</code>.' if ck and ck.path else ""
        return (f'<div class="stp-result stp-result-stopped" data-state="stopped"><b>Stopped</b> at update'
                f' {ck.step if ck else "?"}.{path} Resume continues it.{folder}</div>')
    if job.status == "done":
        path = getattr(job.result, "export_path", None)
        val = getattr(job.result, "val_loss", None)
        extra = f" Final validation loss {val:.4f}." if val is not None else ""
        if path:
            placed = (f' The host placed it at <code class="stp-placed-path">{escape(job.placed)}</code>.'
                      if job.placed and os.path.abspath(job.placed) != os.path.abspath(str(path)) else "")
            return (f'<div class="stp-result stp-result-done" data-state="done"><b>Done.</b> Wrote'
                    f' <code class="stp-export-path">{escape(os.path.abspath(str(path)))}</code>.{placed}{extra}'
                    f'{folder}</div>')
        return f'<div class="stp-result stp-result-done" data-state="done"><b>Done.</b>{extra}{folder}</div>'
    return f'<div class="stp-result stp-result-running" data-state="running">{folder}</div>' if folder else ""


def samples(job: Optional[Job]) -> List[Tuple[Any, str]]:
    return [(img, f"update {step}") for step, img, _ in (job.samples if job else [])]


def range_points(job: Job) -> List[dict]:
    """The sweep so far: validation loss by LR (the LR of the update each point follows)."""
    result = job.result
    if result is not None and getattr(result, "points", None) is not None:
        # before the first update the linear sweep's LR is 0 (the result files put it at the first LR,
        # for a log axis)
        linear = getattr(result, "mode", "linear") == "linear"
        return [dict(p, lr=0.0) if linear and p.get("step") == 0 else p for p in result.points]
    lr_at = {ev.step: ev.lr for ev in job.events if ev.kind == "step" and ev.lr is not None}
    return [{"step": ev.step, "lr": lr_at.get(ev.step, 0.0 if ev.step == 0 else None), "val_loss": ev.val_loss}
            for ev in job.events if ev.kind == "val" and ev.val_loss is not None]


MARKS = (("lower", "stp-m-bound"), ("upper", "stp-m-bound"), ("steepest", "stp-m-steep"), ("midpoint", "stp-m-mid"))


def range_html(job: Optional[Job]) -> str:
    """The curve with the bounds shaded, the suggestions table, the caution (seed 004)."""
    if job is None:
        return ""
    pts = [p for p in range_points(job) if p.get("lr") is not None]
    val = Line("validation loss", [(p["lr"], p["val_loss"]) for p in pts if p.get("val_loss") is not None],
               "stp-s-val", dots=True)
    smooth = Line("training loss (smoothed)", [(p["lr"], p["train_smooth"]) for p in pts
                                               if p.get("train_smooth") is not None], "stp-s-train")
    result = job.result
    sug = getattr(result, "suggestions", None) or {}
    marks = [Mark(sug[k].lr, f"{k} {short(sug[k].lr)}", css) for k, css in MARKS if k in sug]
    band = (sug["lower"].lr, sug["upper"].lr) if "lower" in sug and "upper" in sug else None
    max_lr = getattr(result, "max_lr", None) or getattr(job.cfg, "lr", None)
    svg = line_chart([smooth, val], "learning rate", "validation loss by learning rate",
                     x_range=(0.0, max_lr) if max_lr else None, band=band, marks=marks,
                     empty="the curve appears here as the sweep runs")
    parts = [f'<div class="stp-plot stp-range-plot"><div class="stp-plot-title">LR range test'
             f'<span>linear sweep 0 → {escape(short(max_lr or 0))}</span></div>'
             f'{legend_html([smooth, val], _band_legend(band))}{svg}</div>']
    if result is not None:
        parts.append(suggestions_html(result))
    return "".join(parts)


def _band_legend(band) -> str:
    return '<span class="stp-legend-item"><i class="stp-band-swatch"></i>suggested range</span>' if band else ""


def suggestions_html(result: Any) -> str:
    sug = result.suggestions
    if not sug:
        return (f'<div class="stp-range-result stp-msg stp-msg-warning" data-state="no-bounds">'
                f'{escape(result.message)}</div>')
    rows = "".join(f'<tr data-suggestion="{escape(k)}"><td class="label">{escape(k)}</td>'
                   f'<td class="value"><span class="stp-num">{escape(fmt(float(f"{s.lr:.3g}")))}</span></td>'
                   f'<td class="formula">{escape(s.method)}{_at(s.step)}</td></tr>'
                   for k, s in sug.items())
    diverged = ('<p class="stp-range-note">The sweep stopped early: the validation loss ran away.</p>'
                if result.diverged else "")
    return (f'<div class="stp-range-result" data-state="bounds"><table class="stp-table stp-suggestions"><thead><tr>'
            f'<th>Suggestion</th><th>LR</th><th>How it is read</th></tr></thead><tbody>{rows}</tbody></table>'
            f'{diverged}<div class="stp-msg stp-msg-warning stp-caution">{escape(result.caution)}</div></div>')


def _at(step: int) -> str:
    return f" (update {step})" if step is not None and step >= 0 else ""
