"""The WebUI host path runs on the host's Python 3.10 and torch 2.1 (DESIGN §5, issue 6).

Neither can be the interpreter of this test run, so both are checked statically over every file
the host path imports: vermin for the Python version, and an AST scan for torch APIs that torch
2.1 does not have (or where its behaviour differs, as torch.load's weights_only default).
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "sd_trainplan"
HOST_PATH = ["models/ldm_adapter.py", "models/sgm_adapter.py", "models/split_attention.py", "models/tiny_ldm.py",
             "train", "plan", "models/adapter.py",
             "models/token_splice.py", "models/clip_vocab.py", "models/ldm_names.py", "host", "ui"]
# run by the WebUI itself: its installer hook and the script it loads at start-up
HOST_ENTRY = ["install.py", "scripts/trainplan.py"]

# torch APIs newer than 2.1: the release each first appeared in, and the 2.1 spelling where there
# is one. Checked against the torch 2.1.2 wheel, where none of them resolves (run this file under
# torch 2.1 and test_each_banned_name_is_new_in_its_release proves it again).
NEWER_THAN_TORCH_2_1: Dict[str, Tuple[Tuple[int, int], str]] = {
    "torch.amp.GradScaler": ((2, 3), "torch 2.1 spells it torch.cuda.amp.GradScaler"),
    "torch.amp.custom_fwd": ((2, 4), "torch 2.1 spells it torch.cuda.amp.custom_fwd"),
    "torch.amp.custom_bwd": ((2, 4), "torch 2.1 spells it torch.cuda.amp.custom_bwd"),
    "torch.nn.attention": ((2, 2), "sdpa_kernel; torch 2.1 has torch.backends.cuda.sdp_kernel"),
    "torch.library.custom_op": ((2, 4), "torch 2.1 has torch.library.Library"),
    "torch.compiler.is_compiling": ((2, 3), "torch 2.1 has torch._dynamo.is_compiling"),
    "torch.get_default_device": ((2, 3), ""),
    "torch.serialization.add_safe_globals": ((2, 4), "torch 2.1's torch.load has no allow-list"),
    "torch.utils.swap_tensors": ((2, 3), ""),
    "torch.distributed.device_mesh": ((2, 2), ""),
    "torch.accelerator": ((2, 6), "torch 2.1 has torch.cuda"),
}
# Calls whose meaning changed after 2.1: leave nothing to the version's default.
MUST_PASS = {"torch.load": ("weights_only", "default flipped from False to True in torch 2.6")}


def host_files() -> List[Path]:
    files: List[Path] = [ROOT / rel for rel in HOST_ENTRY]
    for rel in HOST_PATH:
        p = PKG / rel
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return files


def test_the_host_path_needs_no_python_newer_than_3_10():
    if importlib.util.find_spec("vermin") is None:
        pytest.fail("vermin is not installed: it is in requirements/test.txt (make envs)")
    run_vermin = "import sys, vermin; sys.argv[0] = 'vermin'; sys.exit(vermin.main())"  # it has no __main__
    proc = subprocess.run([sys.executable, "-c", run_vermin, "--target=3.10-", "--no-tips", "--violations",
                           *map(str, host_files())],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def dotted_uses(tree: ast.AST) -> Iterator[Tuple[str, ast.AST]]:
    """Every dotted name the module uses, with import aliases resolved: `import torch.nn as nn`
    then `nn.attention.sdpa_kernel` gives `torch.nn.attention.sdpa_kernel`."""
    alias: Dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                alias[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                yield a.name, node
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                alias[a.asname or a.name] = f"{node.module}.{a.name}"
                yield f"{node.module}.{a.name}", node
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) or isinstance(node, ast.Name):
            parts, cur = [], node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id in alias:
                yield ".".join([alias[cur.id]] + parts[::-1]), node


def violations(source: str, filename: str = "<src>") -> List[str]:
    tree = ast.parse(source, filename)
    found = set()
    for name, node in dotted_uses(tree):
        for api, (since, note) in NEWER_THAN_TORCH_2_1.items():
            if name == api or name.startswith(api + "."):
                found.add(f"{filename}:{node.lineno}: {api} is new in torch {since[0]}.{since[1]}"
                          + (f"; {note}" if note else ""))
    calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for name, node in dotted_uses(tree):
        call = calls.get(id(node))
        if call is not None and name in MUST_PASS:
            kw, why = MUST_PASS[name]
            if not any(k.arg == kw for k in call.keywords):
                found.add(f"{filename}:{node.lineno}: {name} without {kw}= ({why})")
    return sorted(found)


def test_the_host_path_uses_no_torch_api_newer_than_2_1():
    problems = []
    for path in host_files():
        problems += violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not problems, "\n".join(problems)


def test_the_scan_catches_what_it_should():
    bad = """
import torch
import torch.nn as nn
from torch.amp import GradScaler
from torch.nn.attention import sdpa_kernel
scaler = torch.amp.GradScaler("cuda")
with nn.attention.sdpa_kernel([]):
    pass
state = torch.load("x.pt")
if torch.compiler.is_compiling():
    pass
"""
    found = "\n".join(violations(bad))
    for api in ("torch.amp.GradScaler", "torch.nn.attention", "torch.load without weights_only",
                "torch.compiler.is_compiling"):
        assert api in found, (api, found)
    good = """
import torch
scaler = torch.cuda.amp.GradScaler()
state = torch.load("x.pt", map_location="cpu", weights_only=False)
"""
    assert violations(good) == []


def resolves(api: str) -> bool:
    parts = api.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("api", list(NEWER_THAN_TORCH_2_1))
def test_each_banned_name_is_new_in_its_release(api):
    """Present in the torch installed here when it is at least that release (a misspelt entry would
    ban nothing), absent when it is older (under torch 2.1 this checks the whole list)."""
    import torch
    since = NEWER_THAN_TORCH_2_1[api][0]
    installed = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    assert resolves(api) == (installed >= since), (api, torch.__version__)
