"""Training jobs behind the page: one at a time, in a background thread, with an event log the
page polls.

Pure Python (no gradio). A job is a training run or an LR range test. Start checks nothing
itself (the caller checks the config first) and returns at once; the job's thread runs the
whole job inside the host's `wrap_job` (the WebUI's GPU queue): load_adapter, the work,
after_job (when a file was written) and, whatever happens, restore. It feeds every event to the
job's log and to the host's sinks, and stops at the next update when the page's Stop or the
host's `should_stop` says so. The job ends as done, stopped or error: the page always learns how
a job ended, and the next job can start only once the host has its model back.
"""
from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..train.events import Event
from .hooks import STANDALONE, UiHooks

TRAIN, LR_RANGE = "train", "lr_range"
Work = Callable[[Any, List[Callable[[Event], None]], Callable[[], bool]], Any]  # (adapter, sinks, stop) -> result


class Busy(RuntimeError):
    """Another job is running (one GPU, one job)."""


@dataclass
class Job:
    id: int
    kind: str                       # train | lr_range
    cfg: Any                        # the TrainConfig it runs
    resume: Optional[str] = None    # the run folder it continues
    events: List[Event] = field(default_factory=list)      # sample images stripped (they are in `samples`)
    samples: List[Tuple[int, Any, str]] = field(default_factory=list)  # (update, PIL image, path)
    history: List[Event] = field(default_factory=list)     # the loss events of the run it continues
    status: str = "running"         # running | done | stopped | error
    result: Any = None              # RunResult or RangeResult
    error: str = ""
    stop_requested: bool = False
    placed: str = ""                # where the host's after_job put the file, when it says
    host_task: str = ""             # the host's own task id for this job (the WebUI's progress bar follows it)
    started: float = field(default_factory=time.time)
    ended: Optional[float] = None
    version: int = 0                # bumps on every change: the page redraws only what moved

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def run_dir(self) -> Optional[str]:
        d = getattr(self.result, "run_dir", None) or self.resume
        if d is None:
            for ev in self.events:
                if ev.kind == "start" and "-> " in ev.message:
                    return ev.message.rsplit("-> ", 1)[1]
        return None if d is None else str(d)

    def record(self, ev: Event) -> None:
        """The sink the loop feeds: keep the event (its image apart), bump the version."""
        if ev.kind == "sample" and "image" in ev.extra:
            self.samples.append((ev.step, ev.extra["image"], ev.path or ""))
            ev = replace(ev, extra={k: v for k, v in ev.extra.items() if k != "image"})
        self.events.append(ev)
        self.version += 1

    def last(self, *kinds: str) -> Optional[Event]:
        for ev in reversed(self.events):
            if ev.kind in kinds:
                return ev
        return None

    def position(self) -> int:
        """Updates done (a stop can fall between two logged updates)."""
        ev = self.last("step", "stopped", "done")
        return ev.step if ev else 0

    def end(self, status: str, result: Any = None, error: str = "") -> None:
        self.status, self.result, self.error, self.ended = status, result, error, time.time()
        self.version += 1


class JobRunner:
    """Shared by every browser session of the page: there is one model and one GPU."""

    def __init__(self, hooks: UiHooks = STANDALONE):
        self.hooks = hooks
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.current: Optional[Job] = None
        self.latest: Dict[str, Job] = {}     # the last job of each kind (what the page shows)
        self.thread: Optional[threading.Thread] = None

    def busy(self) -> bool:
        return self.current is not None and self.current.running

    def start(self, kind: str, cfg: Any, work: Work, resume: Optional[str] = None, before: Optional[Job] = None) -> Job:
        """Run `work` in a new thread. `before`: the job whose run this one continues (its loss curve
        and samples stay on the page)."""
        with self._lock:
            if self.busy():
                raise Busy(f"a {_name(self.current.kind)} is running (update {self.progress()}); stop it first")
            job = Job(next(self._ids), kind, cfg, resume)
            if before is not None:
                job.history = [ev for ev in before.history + before.events if ev.kind in ("step", "val")]
                job.samples = list(before.samples)
            self.current = self.latest[kind] = job
            self.thread = threading.Thread(target=self._run, args=(job, work), name=f"sd_trainplan-{kind}-{job.id}",
                                           daemon=True)
            self.thread.start()
        return job

    def stop(self) -> Optional[Job]:
        """Ask the running job to stop after its current update; returns it (None if none runs)."""
        job = self.current
        if job is None or not job.running:
            return None
        job.stop_requested = True
        job.version += 1
        return job

    def progress(self) -> str:
        job = self.current
        ev = job.last("step") if job else None
        return f"{ev.step}/{ev.total}" if ev else "0"

    def resumable(self) -> Optional[Job]:
        """The last training run that stopped or finished with a checkpoint to continue from."""
        job = self.latest.get(TRAIN)
        if job is None or job.running or job.status not in ("stopped", "done") or not job.run_dir:
            return None
        return job

    def _run(self, job: Job, work: Work) -> None:
        hooks = self.hooks
        sinks = [job.record, *hooks.sinks]
        stop = lambda: job.stop_requested or bool(hooks.should_stop())  # noqa: E731
        outcome: Dict[str, Any] = {}

        def body() -> None:
            # The whole job happens in here, inside the host's wrapper (the WebUI's queue lock): the
            # model, the run, after_job and restore, so nothing else uses the host's model before it
            # is back as it was. Results are kept here too: a host's wrapper may swallow exceptions
            # or replace the return value.
            try:
                if hooks.task_id is not None:  # inside the host's wrapper: the host has given the job its id
                    job.host_task = hooks.task_id() or ""
                    job.version += 1
                adapter = hooks.load_adapter(job.cfg) if hooks.load_adapter is not None else None
                result = work(adapter, sinks, stop)
                stopped = bool(getattr(result, "stopped", False)) or (job.kind == LR_RANGE and job.stop_requested)
                outcome.update(status="stopped" if stopped else "done", result=result)
                if not stopped and hooks.after_job is not None and getattr(result, "export_path", None):
                    placed = _safely(lambda: hooks.after_job(job.cfg, result))
                    if isinstance(placed, (str, os.PathLike)):  # where the host put the file (its folders)
                        job.placed = str(placed)
            except Exception as e:  # noqa: BLE001 - any failure ends the job with a message, never a hang
                problems = getattr(e, "problems", None)
                text = "; ".join(problems) if problems else f"{type(e).__name__}: {e}"
                traceback.print_exc(file=sys.stderr)
                _emit(sinks, Event("error", message=text))
                outcome.update(status="error", error=text)
            finally:
                if hooks.restore is not None:
                    _safely(hooks.restore)

        try:
            hooks.wrap_job(body)()
        except Exception as e:  # noqa: BLE001 - the host's wrapper itself failed (or re-raised ours)
            if not outcome:
                traceback.print_exc(file=sys.stderr)
                outcome.update(status="error", error=f"{type(e).__name__}: {e}")
        finally:
            if not outcome:  # the wrapper never called the job (e.g. a host queue that refused it)
                outcome.update(status="error", error="the host did not run the job")
            job.end(**outcome)  # only now may the next job start: the host has its model back


def _emit(sinks, ev: Event) -> None:
    for sink in sinks:
        _safely(lambda: sink(ev))


def _safely(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a host callback must not break the page's job bookkeeping
        traceback.print_exc(file=sys.stderr)
        return None


def _name(kind: str) -> str:
    return "training run" if kind == TRAIN else "LR range test"
