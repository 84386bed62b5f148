"""Where the seconds before the first update go (issue 16 asks for under 8 s from the process's start).

Each case runs in a fresh process, as `python -m sd_trainplan train` runs it (peer_bench.py's model
folder and images), with Python's profiler on from the process's first line to the end of the first
update; the run then stops. The profiler adds its own cost to Python-heavy code (imports most), so
its figures say where the time goes, not how long a plain run takes (peer_bench.py says that). A
second process per machine times the start's imports alone (`-X importtime`, the top modules by their
own time).

  python bench/first_update_profile.py [--cases lora4-120,ti4-220,db1-120] [--work /tmp/peer] [--out FILE.json]
      [--no-bytecode]   without peer_bench.py's bytecode prefix
      [--tiny]   the tiny model on the CPU: checks the script only
"""
from __future__ import annotations

import time

T0 = time.monotonic()  # noqa: E402 - before any import, as __main__.py's STARTED

import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def child(case: str, work: Path, tiny: bool) -> dict:
    """One run up to its first update, under the profiler; its profile's top entries."""
    prof = cProfile.Profile()
    prof.enable()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    import argparse
    from peer_bench import ours_cmd
    from sd_trainplan.train_cli import add_train_flags, config_from_args
    from sd_trainplan.train.loop import train
    flags = argparse.ArgumentParser()
    add_train_flags(flags)  # the flags peer_bench gives `python -m sd_trainplan train`, read as it reads them
    argv = ours_cmd(case, work / "model", work / "images", work / "profile-out", 64 if tiny else 512, 2, [])[4:]
    cfg = config_from_args(flags.parse_args(argv + ["--final-checkpoint", "off", "--log-every", "1"]))
    marks = {}

    class FirstUpdate:  # a sink: stops the profiler when the first update is done, then the run
        done = False

        def __call__(self, ev) -> None:
            if ev.kind == "prepare" and ev.step == 1 and not self.done:
                prof.disable()
                self.done = True
                marks["first_update_s"] = round(time.monotonic() - T0, 3)

    sink = FirstUpdate()
    train(cfg, sinks=[sink], stop=lambda: sink.done, started=T0, export=False)  # a probe: writes nothing
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(60)
    stats.sort_stats("tottime").print_stats(30)
    stats.print_callers("_register_to_dispatcher|_cuda_getDeviceCount|builtins.compile|_do_compile")
    return {"case": case, **marks, "profile": out.getvalue()}


def import_times(env: dict) -> dict:
    """The start's imports in a process of their own: total, and the modules with the most own time."""
    code = ("import time; t = time.monotonic(); import torch; a = time.monotonic()\n"
            "import sd_trainplan.train_cli, sd_trainplan.cli, sd_trainplan.train.loop\n"
            "print(round(a - t, 3), round(time.monotonic() - a, 3))")
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                       cwd=ROOT, env=env)
    rows = []
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "self" not in line:
            own, cum, name = line[len("import time:"):].split("|")
            rows.append((int(own), int(cum), name.rstrip()))
    torch_s, ours_s = (float(x) for x in p.stdout.split()) if p.returncode == 0 else (None, None)
    top = sorted(rows, reverse=True)[:25]
    return {"import_torch_s": torch_s, "import_ours_after_torch_s": ours_s,
            "top_own_ms": [(round(o / 1000, 1), round(c / 1000, 1), n) for o, c, n in top]}


def main() -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="lora4-120,ti4-220,db1-120")
    ap.add_argument("--work", default="/tmp/peer")
    ap.add_argument("--out")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--child")
    ap.add_argument("--no-bytecode", action="store_true", help="no PYTHONPYCACHEPREFIX (the machine as it is)")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, work, args.tiny)), flush=True)
        os._exit(0)  # as __main__.py: no teardown
    sys.path.insert(0, str(ROOT / "bench"))
    from peer_bench import prepare
    from peer_machine import with_bytecode
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if not args.tiny and not args.no_bytecode:  # as peer_bench.py times every trainer
        env = with_bytecode(env, work)
    prepare(work, args.tiny, env)
    report = {"date": time.strftime("%Y-%m-%d"), "bytecode_prefix": env.get("PYTHONPYCACHEPREFIX"),
              "imports": import_times(env), "runs": []}
    imp = report["imports"]
    print(f"import torch {imp['import_torch_s']} s, ours after it {imp['import_ours_after_torch_s']} s; own ms:\n"
          + "\n".join(f"{o:8.1f} {c:8.1f} {n}" for o, c, n in imp["top_own_ms"]), flush=True)
    for case in args.cases.split(","):
        cmd = [sys.executable, __file__, "--child", case, "--work", str(work)] + (["--tiny"] if args.tiny else [])
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        found = [line[7:] for line in p.stdout.splitlines() if line.startswith("RESULT ")]
        if p.returncode != 0 or not found:
            raise SystemExit(f"{case}: the profiled run failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
        run = json.loads(found[0])
        report["runs"].append(run)
        print(f"== {case}: first update {run['first_update_s']} s (profiled)\n"
              f"{run['profile'][:6000]}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
