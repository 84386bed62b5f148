"""Input change -> updated table, in a real browser, for both gradio versions.

For each environment (.venv: gradio 4.40, .venv-a1111: gradio 3.41.2) this starts the real
app (`python -m sd_trainplan ui`), opens it in headless Debian Chromium, and times ~30
changes of the Images field: from the input event to the first animation frame after the
table row `frames` shows the new value (timed inside the page with performance.now(), so
Playwright's own polling does not count). Prints the median, p90 and max.

Run with `make bench-ui` (not a test: the figure goes in README's Performance section).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from ui_harness import ENVS, launch_browser, open_planner, running_app  # noqa: E402

# In the page: change the field as a user's keystroke does, then wait for the table row to
# show the new value and for the frame after it (what the user sees).
TIME_ONE_CHANGE = """async ([value]) => {
  const input = document.querySelector('#stp_images input, #stp_images textarea');
  const cell = () => document.querySelector('#stp_tables tr[data-quantity="frames"] td.value');
  return await new Promise((resolve) => {
    const t0 = performance.now();
    const done = () => requestAnimationFrame(() => resolve(performance.now() - t0));
    const obs = new MutationObserver(() => {
      const c = cell();
      if (c && c.textContent.trim().startsWith(value + ' ')) { obs.disconnect(); done(); }
    });
    obs.observe(document.querySelector('#stp_tables'), {childList: true, subtree: true, characterData: true});
    input.value = value;
    input.dispatchEvent(new Event('input', {bubbles: true}));
    setTimeout(() => { obs.disconnect(); resolve(NaN); }, 10000);
  });
}"""


def measure(env: str, changes: int) -> list:
    times = []
    with running_app(env) as url, launch_browser() as browser:
        page = open_planner(browser, url)
        for i in range(changes + 3):
            ms = page.evaluate(TIME_ONE_CHANGE, [str(40 + i)])
            if i >= 3:  # the first few warm the connection up
                times.append(ms)
            page.wait_for_timeout(150)  # a person does not type 30 values in one frame
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=30)
    ap.add_argument("--env", choices=list(ENVS), action="append")
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, {args.changes} changes of Images N per gradio version")
    print(f"{'environment':<34} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
    for env in args.env or list(ENVS):
        t = sorted(measure(env, args.changes))
        bad = [x for x in t if x != x]
        if bad:
            raise SystemExit(f"{env}: {len(bad)} changes never reached the table")
        print(f"{ENVS[env]:<34} {statistics.median(t):>10.1f} {t[int(0.9 * (len(t) - 1))]:>8.1f} {t[-1]:>8.1f}")


if __name__ == "__main__":
    main()
