"""WebUI installer hook: AUTOMATIC1111 and Forge run this file at each launch, in its own process.

Rules (the Dreambooth extension's installer breaking the WebUI's pins is the complaint we answer):
- A launch where everything is present does nothing at all: no pip call, no output.
- A package is added only when it is missing, and only when pip's resolver says that installing
  it changes no installed package (`pip install --dry-run --report`): nothing is upgraded,
  downgraded or replaced. Otherwise it says what is missing and why it was not installed.
- torch and gradio are the WebUI's own: never installed from here.
- 8-bit Adam (bitsandbytes) is offered, not forced: installed only when the WebUI is started with
  SD_TRAINPLAN_8BIT_ADAM=1 in its environment, under the same rule.
The trainer uses only what the WebUI already has (torch, safetensors, numpy, PIL, gradio), so a
normal launch installs nothing.
"""
import importlib.util
import json
import os
import subprocess
import sys

NEEDED = {"safetensors": "safetensors", "numpy": "numpy", "PIL": "pillow"}  # import name -> requirement
HOST_OWNED = ("torch", "gradio")
OPTIONAL = {"bitsandbytes": "bitsandbytes"}
OPT_IN = "SD_TRAINPLAN_8BIT_ADAM"


def say(text):
    print(f"[sd_trainplan] {text}")


def missing(names):
    return [n for n in names if importlib.util.find_spec(n) is None]


def _norm(name):
    return name.lower().replace("_", "-").replace(".", "-")


def installed(python=sys.executable):
    """What the environment has installed, as pip sees it (not this process's sys.path, where
    vendored copies can appear)."""
    out = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    return {_norm(d["name"]): d["version"] for d in json.loads(out.stdout)}


def would_change(requirement, python=sys.executable):
    """(ok, detail): ok when installing `requirement` adds packages and changes none installed;
    detail lists the changes it would make, or why it cannot tell."""
    cmd = [python, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return False, f"pip cannot resolve {requirement} with this environment: {proc.stderr.strip()[-400:]}"
    try:
        plan = json.loads(proc.stdout)["install"]
    except (ValueError, KeyError):
        return False, "pip gave no install report (pip 22.2 or newer is needed to check)"
    have = installed(python)
    changes = [f"{i['metadata']['name']} {have[_norm(i['metadata']['name'])]} -> {i['metadata']['version']}"
               for i in plan if _norm(i["metadata"]["name"]) in have]
    if changes:
        return False, "it would change installed packages: " + ", ".join(changes)
    return True, ", ".join(f"{i['metadata']['name']} {i['metadata']['version']}" for i in plan)


def pip_install(requirement):
    try:
        import launch  # the WebUI's installer helpers, in its launch process
        launch.run_pip(f"install {requirement}", f"sd_trainplan requirement: {requirement}")
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", requirement], check=True)


def add_if_safe(requirement):
    ok, detail = would_change(requirement)
    if not ok:
        say(f"{requirement} is missing and was not installed: {detail}")
        return False
    say(f"installing {detail} (missing, and it changes no installed package)")
    pip_install(requirement)
    return True


def main(environ=os.environ):
    gone = missing(HOST_OWNED)
    if gone:
        say(f"the WebUI environment lacks {', '.join(gone)}, which the WebUI installs itself; repair its environment")
    for name in missing(NEEDED):
        add_if_safe(NEEDED[name])
    if environ.get(OPT_IN) == "1":
        for name in missing(OPTIONAL):
            add_if_safe(OPTIONAL[name])


if __name__ in ("__main__", "install"):
    main()
