"""install.py in an environment pinned like the WebUI's (this one: gradio 3.41.2, transformers 4.30.2,
huggingface_hub 0.25.2, pytorch_lightning 1.9.4): a launch with everything present does nothing
at all, and a missing package is only added when pip's resolver says it changes nothing installed."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from webui_host import ROOT, STANDIN


def freeze() -> str:
    return subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True,
                          check=True).stdout


def load_install():
    spec = importlib.util.spec_from_file_location("stp_install_hook", ROOT / "install.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_install_twice_changes_nothing_and_says_nothing_and_the_tab_imports():
    before = freeze()
    for _ in range(2):  # as the WebUI runs it at each launch: a process of its own, in the extension's folder
        run = subprocess.run([sys.executable, "install.py"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and run.stdout == "" and run.stderr == "", run.stdout + run.stderr
    assert freeze() == before
    load_tab = (f"import sys, runpy; sys.path.insert(0, {str(STANDIN)!r});"
                "from modules import script_callbacks as sc;"
                f"runpy.run_path({str(ROOT / 'scripts' / 'trainplan.py')!r});"
                "print([t[1:] for t in sc.ui_tabs_callback()])")
    out = subprocess.run([sys.executable, "-c", load_tab], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "('Train Planner', 'sd_trainplan')" in out.stdout


def test_a_package_is_added_only_when_it_changes_no_installed_one():
    hook = load_install()
    ok, detail = hook.would_change("numpy==1.26.4")  # the WebUI pins numpy 1.26.2
    assert not ok and "numpy 1.26.2 -> 1.26.4" in detail
    ok, detail = hook.would_change("tomli")  # new, with no dependencies
    assert ok and detail.startswith("tomli ")
    calls = []
    hook.pip_install = calls.append
    hook.would_change = lambda req: (False, "it would change installed packages: numpy")
    hook.missing = lambda names: list(names)  # pretend all are missing
    hook.main(environ={})
    assert calls == []  # nothing that changes a pin is installed, optional 8-bit Adam not asked for
    hook.would_change = lambda req: (True, req)
    hook.main(environ={})
    assert calls == ["safetensors", "numpy", "pillow"]
    hook.main(environ={"SD_TRAINPLAN_8BIT_ADAM": "1"})
    assert calls[-1] == "bitsandbytes"
