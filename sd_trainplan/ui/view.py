"""From the panel's widget values to everything the page shows (pure Python, no gradio).

`make_view` validates and computes the plan once, then renders the cards, the LR plot,
the tables, a status line, and one message per widget: an input error or a warning is
shown beside the field it names. With input errors the figures are not recomputed
(`cards`, `plot` and `tables` are None: the page keeps the last valid ones and says so).
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..plan import PlanResult, plan_from_raw
from ..plan.presets import Preset
from ..train.buckets import MAX_UPSCALE, largest_resolution, too_small
from .dataset import FolderCount, count_images, image_sizes
from .fields import ALL, BY_KEY, DATASET, raw_inputs
from .plot import lr_plot_html
from .tables import cards_html, tables_html


@dataclass(frozen=True)
class View:
    result: PlanResult
    values: Dict[str, Any]          # widget values the view was made from
    cards: Optional[str]            # None: keep the last valid ones (inputs have errors)
    plot: Optional[str]
    tables: Optional[str]
    status: str
    messages: Dict[str, str]        # widget key -> HTML beside the field ('' when there is nothing to say)
    images: Optional[str] = None    # a new value for the images field, counted in the dataset folder


def msg(kind: str, text: str) -> str:
    return f'<div class="stp-msg stp-msg-{kind}">{escape(text)}</div>'


def make_view(values: Mapping[str, Any], from_folder: bool = False) -> View:
    """Compute and render the plan for these widget values.

    from_folder: the dataset folder was just edited, so its image count fills `images`.
    """
    values = dict(values)
    notes: Dict[str, List[str]] = {w.key: [] for w in ALL}
    folder = count_images(values.get(DATASET) or "")
    images_update = None
    if folder.ok and folder.images:
        if from_folder:
            images_update = values["images"] = str(folder.images)
        elif str(values.get("images") or "").strip() != str(folder.images):
            notes["images"].append(msg("info", f"the dataset folder has {folder.images} images"))
    notes[DATASET].append(_folder_note(folder))

    result = plan_from_raw(raw_inputs(values))
    for e in result.errors:  # every error is also listed in the status line above the figures
        if e.field in notes:
            notes[e.field].append(msg("error", e.message))
    for w in result.warnings:
        if w.field in notes:
            notes[w.field].append(msg("warning", w.message))
    if result.inputs is not None and folder.ok and folder.images:
        small = small_images_note(image_sizes(folder.path), result.inputs.resolution)
        if small:
            notes["resolution"].append(msg("warning", small))
    messages = {k: "".join(v) for k, v in notes.items()}
    status = status_html(result)
    if result.errors:
        return View(result, values, None, None, None, status, messages, images_update)
    method = result.inputs.method if result.inputs else None
    plot = lr_plot_html(result.schedule, _plot_missing(result))
    return View(result, values, cards_html(result, method), plot, tables_html(result), status, messages,
                images_update)


def small_images_note(sizes, resolution: int) -> str:
    """The trainer refuses images that would need more than MAX_UPSCALE enlarging at this resolution:
    say so before it does, with a resolution at which the whole folder trains ('' when all fit)."""
    small = set(too_small(set(sizes), resolution))
    if not small:
        return ""
    n = sum(1 for s in sizes if s in small)
    w, h = min(small, key=lambda s: s[0] * s[1])
    fits = largest_resolution(sizes)
    how = f"use {fits} px or less, or larger images" if fits else "use larger images"
    return (f"{n} of the {len(sizes)} images in the dataset folder are too small to train at {resolution} px (the"
            f" smallest is {w}x{h}); the trainer refuses images that need more than {MAX_UPSCALE:g}x enlarging: {how}")


def _folder_note(folder: FolderCount) -> str:
    if not folder.path:
        return ""
    if folder.problem:
        return msg("error", folder.problem)
    if not folder.images:
        return msg("warning", folder.summary())
    return msg("info", folder.summary())


def _plot_missing(result: PlanResult) -> str:
    for id in ("planned_lr", "planned_updates"):
        q = result.quantities.get(id)
        if q is not None and q.value is None:
            return f"The plot appears once the plan has a {q.label}: it {q.formula}."
    return ""


def label_of(field: Optional[str]) -> str:
    w = BY_KEY.get(field or "")
    return w.label if w else (field or "plan")


def status_html(result: PlanResult) -> str:
    """One line above the figures: input problems, or the warnings, or that all is well."""
    if result.errors:
        items = "".join(f"<li><b>{escape(label_of(e.field))}</b>: {escape(e.message)}</li>" for e in result.errors)
        n = len(result.errors)
        return (f'<div class="stp-status stp-status-error"><b>{n} input{"s" if n > 1 else ""} to fix</b> (marked'
                f' beside {"each" if n > 1 else "the"} field); the figures below are from your last valid inputs.'
                f"<ul>{items}</ul></div>")
    if result.warnings:
        items = "".join(f"<li><b>{escape(label_of(w.field))}</b>: {escape(w.message)}</li>" for w in result.warnings)
        n = len(result.warnings)
        return (f'<div class="stp-status stp-status-warn"><b>{n} note{"s" if n > 1 else ""} on this plan</b>'
                f"<ul>{items}</ul></div>")
    known = sum(1 for q in result.quantities.values() if q.value is not None)
    return (f'<div class="stp-status stp-status-ok">All inputs valid: {known} of {len(result.quantities)} figures'
            " computed; the rest say which input they need.</div>")


def preset_note(preset: Optional[Preset], kept: Tuple[str, ...] = ()) -> str:
    if preset is None:
        return ""
    keep = (f'<div class="stp-preset-kept">Kept from your dataset folder: {escape(", ".join(kept))}.</div>'
            if kept else "")
    return (f'<div class="stp-preset-note"><div>{escape(preset.description)}</div>'
            f'<div class="stp-preset-source">Source: {escape(preset.source)}</div>{keep}</div>')
