"""A trainer's process timed from its own output (bench/peer_bench.py): each line or carriage-return
segment stamped as it arrives, the update numbers read off the progress bars (ours and tqdm's), the
newest result file's time, and the GPU's memory in use (NVML) while the process runs."""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional


class GpuPeak(threading.Thread):
    """Device memory in use, every 50 ms (NVML), while the process runs; None without NVML."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.base, self.running = None, None, True
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
            self.base = self.used()
        except Exception:  # noqa: BLE001 - no NVML (a CPU machine): no memory figure
            self.nvml = None

    def used(self) -> int:
        return self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used

    def run(self) -> None:
        while self.running and self.nvml is not None:
            u = self.used()
            self.peak = u if self.peak is None else max(self.peak, u)
            time.sleep(0.05)

    def gib(self) -> Optional[float]:
        return None if self.peak is None else round((self.peak - self.base) / 2**30, 2)


def run_process(cmd: List[str], env: dict, cwd: Path, limit: float):
    """(exit code, start, end, [(time, text)] for each line or carriage-return segment of the output,
    GPU peak GiB). A run still going after `limit` seconds is killed."""
    mem = GpuPeak()
    mem.start()
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    killer = threading.Timer(limit, proc.kill)
    killer.start()
    # A segment is stamped when its first bytes arrive, not when the separator after it does: a
    # progress bar's "\r[###] 120/120" stays unterminated until the process writes something else.
    segs, buf, began = [], b"", 0.0
    while True:
        chunk = os.read(proc.stdout.fileno(), 65536)
        now = time.time()
        if not chunk:
            break
        parts = re.split(rb"[\r\n]", buf + chunk)
        rest = parts.pop()
        for i, part in enumerate(parts):
            if part.strip():
                segs.append((began if i == 0 and buf else now, part.decode("utf-8", "replace")))
        began = now if parts or not buf else began  # when the unterminated rest began to arrive
        buf = rest
    rc = proc.wait()
    killer.cancel()
    t1 = time.time()
    if buf.strip():
        segs.append((began, buf.decode("utf-8", "replace")))
    mem.running = False
    mem.join()
    return rc, t0, t1, segs, mem.gib()


TQDM = re.compile(r"(?:Steps|steps):\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")
OURS = re.compile(r"^\[[# ]*\] (\d+)/(\d+)")


def progress(trainer: str, segs, total: int) -> Dict[int, float]:
    """Update number -> the time it was first shown."""
    pat = OURS if trainer.startswith(("ours", "base")) else TQDM
    seen: Dict[int, float] = {}
    for t, text in segs:
        m = pat.search(text)
        if m and int(m.group(2)) == total:
            seen.setdefault(int(m.group(1)), t)
    seen.pop(0, None)
    return seen


def newest_file(folder: Path, skip=("logs", "checkpoints", "timings.json", "metrics.jsonl", "config.toml",
                                    "config.json")) -> Optional[float]:
    times = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()
             and not any(part in skip for part in p.relative_to(folder).parts)]
    return max(times) if times else None


def measure(trainer: str, segs, t0: float, t1: float, total: int, out: Path) -> dict:
    seen = progress(trainer, segs, total)
    first = next((t for t, s in segs if s.startswith("prepare: first update done")), None) \
        if trainer.startswith(("ours", "base")) else None
    first_n = 1 if first is not None else min(seen, default=None)  # the baseline logs every 10th only
    first = first or (seen[first_n] if seen else None)
    last = seen.get(total)
    start_n = min((n for n in seen if n >= total / 4 and n < total), default=None)
    steady = None if last is None or start_n is None else 1000 * (last - seen[start_n]) / (total - start_n)
    newest = newest_file(out)
    return {"first_update_s": None if first is None else round(first - t0, 2), "first_update_read_at": first_n,
            "steady_ms": None if steady is None else round(steady, 1),
            "steady_from": start_n,
            "last_update_to_file_s": None if last is None or newest is None else round(newest - last, 2),
            "last_update_to_exit_s": None if last is None else round(t1 - last, 2),
            "wall_s": round(t1 - t0, 2)}
