"""The Train Planner tab: three tabs in one Blocks — Plan (the live formula tables), Train (the
trainer that runs the plan) and LR range test — wired together ("Apply to trainer" fills the
trainer, "Use these bounds" feeds the range test back into the plan).

`build_planner(hooks=...)` returns the gr.Blocks that the WebUI's on_ui_tabs hands back (the host
passes its own UiHooks) and that the standalone app serves; `build_page(hooks)` builds the same
inside a Blocks the caller has open. Host-agnostic: gradio 3.41.2 and 4.40.0, no `modules.*`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import gradio as gr

from .hooks import STANDALONE, UiHooks
from .jobs import JobRunner
from .planner_panel import DEFAULT_PRESET, PlannerPanel, build_planner_panel
from .trainer_events import wire_trainer
from .trainer_panel import RangePanel, TrainerPanel, build_range_tab, build_train_tab


@dataclass
class Page:
    planner: PlannerPanel
    trainer: TrainerPanel
    ranger: RangePanel
    tabs: Any
    runner: JobRunner


def build_page(hooks: Optional[UiHooks] = None, preset: Optional[str] = DEFAULT_PRESET, model: str = "") -> Page:
    """Build the page inside the current Blocks (or WebUI tab) and wire its events. `model`: what
    the trainer's Model field starts on (standalone: empty or 'tiny' is the demo)."""
    hooks = hooks or STANDALONE
    runner = JobRunner(hooks)
    with gr.Column(elem_id="stp_root", elem_classes=["stp-root"]):
        # `selected` named: gradio 4.40's Tabs (tabs/shared/Tabs.svelte) checks its selected id whenever its
        # list of tabs changes, and logs "Attempted to select a non-interactive or hidden tab" while that id
        # is not registered: once at start when named, once per tab registered when not (None is not sent)
        with gr.Tabs(elem_id="stp_tabs", selected="plan") as tabs:
            with gr.Tab("Plan", id="plan", elem_id="stp_tab_plan"):
                planner = build_planner_panel(preset, root=False)
            with gr.Tab("Train", id="train", elem_id="stp_tab_train"):
                trainer = build_train_tab(hooks, model)
            with gr.Tab("LR range test", id="lr_range", elem_id="stp_tab_lr_range"):
                ranger = build_range_tab(hooks)
    wire_trainer(planner, trainer, ranger, tabs, runner, hooks)
    return Page(planner, trainer, ranger, tabs, runner)


def build_planner(css: Optional[str] = None, theme: Any = None, title: str = "Train Planner",
                  hooks: Optional[UiHooks] = None, model: str = "") -> gr.Blocks:
    """A Blocks with the whole page; `css`/`theme` are for the standalone app (the WebUI brings its own)."""
    with gr.Blocks(css=css, theme=theme, title=title, analytics_enabled=False) as blocks:
        build_page(hooks, model=model)
    return blocks
