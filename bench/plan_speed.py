"""Time to compute the full plan (validation + every figure), per preset: median and p95 over many runs.

Run with `make bench-plan`. Not a test: the figure goes in README's performance section.
"""
import platform
import statistics
import time

from sd_trainplan.plan import plan_from_raw
from sd_trainplan.plan.presets import load_presets

RUNS = 2000


def main() -> None:
    presets = load_presets()
    print(f"python {platform.python_version()} on {platform.processor() or platform.machine()}, {RUNS} runs each")
    print(f"{'preset':<24} {'median ms':>10} {'p95 ms':>8} {'figures':>8}")
    all_times = []
    for name, preset in presets.items():
        raw = dict(preset.inputs)
        plan_from_raw(raw)  # warm-up
        times = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            result = plan_from_raw(raw)
            times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        all_times += times
        print(f"{name:<24} {statistics.median(times):>10.3f} {times[int(0.95 * len(times))]:>8.3f}"
              f" {len(result.quantities):>8}")
    all_times.sort()
    print(f"{'all presets':<24} {statistics.median(all_times):>10.3f} {all_times[int(0.95 * len(all_times))]:>8.3f}")


if __name__ == "__main__":
    main()
