"""The real WebUIs, booted offline on the CPU, with this extension installed as a user installs it.

`make hosts` builds them (tests/hosts/build_host.sh, from ../shared/hosts) under `build/hosts/`:
  build/hosts/a1111/         AUTOMATIC1111 v1.10.1 and the repositories it pins, venv/ with torch 2.1.2
  build/hosts/forge/         Forge dfdcbab6 and its repositories, venv/ with torch 2.3.1
  build/hosts/<kind>-models/ the tiny checkpoints each loads (made by the shared makers)

A test session never writes into those trees: each launch gets a data folder of its own
(`--data-dir`: config.json, models/, embeddings/, extensions/, outputs/ live there), with
  extensions/sd_trainplan   a `git clone` of this repository (the README's install: a clone into
                            extensions/; uncommitted changes of a working checkout come along, so a
                            developer tests what they have)
  models/Stable-diffusion/  the tiny checkpoint (a copy; Forge's 573 MB one is a symbolic link)
The WebUI is started the way shared/hosts/README.md says (flags, offline environment, one process),
watched through its log (never an HTTP request before `Startup time:`: an earlier one breaks the
WebUI's API for the whole run) and stopped by its process id.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]
# Not under a folder whose name starts with a dot: gradio refuses to serve files from such paths (the
# WebUI serves its own script.js with file=..., gradio 3.41 routes.py: is_dotfile -> 403).
HOSTS = Path(os.environ.get("SD_TRAINPLAN_HOSTS", ROOT / "build" / "hosts"))
EXTENSION = "sd_trainplan"
COMMON_FLAGS = ["--skip-torch-cuda-test", "--skip-python-version-check", "--skip-version-check", "--use-cpu", "all",
                "--no-half", "--precision", "full", "--api", "--no-download-sd-model"]


@dataclass(frozen=True)
class Kind:
    name: str            # a1111 | forge
    title: str
    checkpoint: str      # file name under models/Stable-diffusion
    extra_flags: Sequence[str] = ()
    linked: bool = False  # the checkpoint is linked, not copied (Forge's is 573 MB)
    extra_files: Sequence[str] = ()  # files beside the checkpoint that go with it

    @property
    def tree(self) -> Path:
        return HOSTS / self.name

    @property
    def python(self) -> Path:
        return self.tree / "venv" / "bin" / "python"

    @property
    def models(self) -> Path:
        return HOSTS / f"{self.name}-models" / "models" / "Stable-diffusion"

    def missing(self) -> Optional[str]:
        if not self.python.exists():
            return f"{self.title} is not built: {self.python} is missing (run `make hosts`)"
        if not (self.models / self.checkpoint).exists():
            return f"{self.title}'s tiny checkpoint {self.models / self.checkpoint} is missing (run `make hosts`)"
        return None


A1111 = Kind("a1111", "AUTOMATIC1111 v1.10.1", "tiny-sd1.safetensors", extra_files=("tiny-sd1.yaml",))
FORGE = Kind("forge", "Forge dfdcbab6", "rand-sd15-small.safetensors", extra_flags=("--always-cpu",), linked=True)
KINDS = {k.name: k for k in (A1111, FORGE)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment shared/hosts/README.md boots the WebUIs in: offline, no local pip config
    (the launch script and Forge's built-in extensions run pip), no analytics."""
    drop = ("PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "VIRTUAL_ENV", "PYTHONPATH",
            "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(COMMANDLINE_ARGS="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               DO_NOT_TRACK="1", PIP_CONFIG_FILE="/dev/null", PIP_RETRIES="0", PIP_DEFAULT_TIMEOUT="5",
               PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def pip_freeze(kind: Kind) -> List[str]:
    out = subprocess.run([str(kind.python), "-m", "pip", "freeze", "--all"], capture_output=True, text=True,
                         check=True, env=host_env())
    return sorted(out.stdout.splitlines())


# ---- the data folder: the extension as a user installs it, the tiny checkpoint ------------------

def install_extension(extensions: Path, source: Path = ROOT) -> Path:
    """`git clone` of `source` into extensions/sd_trainplan, as the README's install does. A working
    checkout's uncommitted changes (tracked ones through `git stash create`, new files copied) come
    along; in CI (a clean clone) this is exactly a clone of HEAD."""
    dest = extensions / EXTENSION
    extensions.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "--quiet", "--shared", str(source), str(dest)], check=True)
    stash = subprocess.run(["git", "stash", "create"], cwd=source, capture_output=True, text=True,
                           check=True).stdout.strip()
    if stash:  # on a branch, as a clone is (the WebUI reads the extension's branch)
        subprocess.run(["git", "checkout", "--quiet", "-B", "working-tree", stash], cwd=dest, check=True)
    new = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "-z"], cwd=source, capture_output=True,
                         text=True, check=True).stdout.split("\0")
    for rel in filter(None, new):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, dest / rel)
    return dest


PROBE = Path(__file__).resolve().parent / "probe"  # the test-only extension that reads the WebUI's state


def make_data_dir(kind: Kind, data: Path, extension: bool = True) -> Path:
    models = data / "models" / "Stable-diffusion"
    models.mkdir(parents=True, exist_ok=True)
    for name in (kind.checkpoint, *kind.extra_files):
        target = models / name
        if not target.exists():
            (target.symlink_to if kind.linked else lambda src: shutil.copy2(src, target))(kind.models / name)
    if extension and not (data / "extensions" / EXTENSION).exists():
        install_extension(data / "extensions")
    if not (data / "extensions" / "stp_probe").exists():
        shutil.copytree(PROBE, data / "extensions" / "stp_probe")
    return data


# ---- one running WebUI ------------------------------------------------------------------------

class HostError(RuntimeError):
    pass


@dataclass
class Host:
    kind: Kind
    data: Path
    port: int
    log_path: Path
    proc: subprocess.Popen
    auth: Optional[str] = None  # "user:pass" when started with --api-auth
    started: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tracebacks(self, after: int = 0) -> List[str]:
        """Each traceback in the log (from character `after`), but for one that is no program's error:
        a browser page that went away while gradio's queue was waiting for its next message
        (gradio/routes.py, join_queue: the websocket's close, code 1001, raised as
        starlette.websockets.WebSocketDisconnect and logged by uvicorn). A user closing a tab gets
        the same log line; the tests close their pages at moments no user chooses."""
        found, block = [], None
        for line in self.log()[after:].splitlines():
            if line.startswith("Traceback (most recent call last):"):
                block = [line]
            elif block is not None:
                block.append(line)
                if line and not line[0].isspace():  # the exception's own line ends the block
                    if not line.startswith("starlette.websockets.WebSocketDisconnect"):
                        found.append("\n".join(block))
                    block = None
        return found

    def log_tail(self, n: int = 6000) -> str:
        return self.log()[-n:]

    def wait_for_log(self, text: str, timeout: float, after: int = 0) -> int:
        """Wait until `text` appears in the log after character `after`; returns where it ends."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            i = log.find(text, after)
            if i >= 0:
                return i + len(text)
            if self.proc.poll() is not None:
                raise HostError(f"{self.kind.title} exited ({self.proc.returncode}) before '{text}':\n{log[-6000:]}")
            if time.monotonic() > deadline:
                raise HostError(f"{self.kind.title}: no '{text}' in its log within {timeout:.0f} s:\n{log[-6000:]}")
            time.sleep(0.2)

    # HTTP: JSON in, (status, JSON or text) out
    def request(self, method: str, path: str, body=None, auth: Optional[str] = "default", timeout: float = 300):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        creds = self.auth if auth == "default" else auth
        if creds:
            import base64
            req.add_header("Authorization", "Basic " + base64.b64encode(creds.encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, body=None, **kw):
        return self.request("POST", path, body if body is not None else {}, **kw)

    def api(self, method: str, path: str, body=None, **kw):
        """A request that must succeed (2xx): its JSON."""
        status, out = self.request(method, path, body, **kw)
        if not 200 <= status < 300:
            raise HostError(f"{method} {path} -> {status}: {str(out)[:2000]}\n--- log ---\n{self.log_tail(3000)}")
        return out

    def txt2img(self, prompt: str, seed: int = 1234, **kw) -> bytes:
        """One 64x64 image (4 steps, Euler) as PNG bytes: what txt2img makes of `prompt`."""
        return self.txt2img_info(prompt, seed, **kw)[0]

    def txt2img_info(self, prompt: str, seed: int = 1234, **kw):
        """(PNG bytes, infotext) of one 64x64 txt2img of `prompt` (4 steps, Euler)."""
        import base64
        body = dict(prompt=prompt, seed=seed, steps=4, width=64, height=64, cfg_scale=7, sampler_name="Euler",
                    batch_size=1, n_iter=1)
        body.update(kw)
        out = self.api("POST", "/sdapi/v1/txt2img", body)
        return base64.b64decode(out["images"][0]), json.loads(out["info"])["infotexts"][0]

    def hashes(self) -> Dict[str, str]:
        """sha256 (and dtype) of every tensor of the loaded model, by name (the probe extension)."""
        return self.api("GET", "/stp_probe/hashes")["hashes"]

    def py(self, code: str):
        """Run `code` in the WebUI's process (the probe extension); returns its `result`."""
        out = self.api("POST", "/stp_probe/exec", {"code": code})
        if "error" in out:
            raise HostError(f"probe code failed in {self.kind.title}:\n{out['error']}")
        return out["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the WebUI exits in about 2-3 s and frees its port
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_host(kind: Kind, data: Path, extra_flags: Sequence[str] = (), env: Optional[Dict[str, str]] = None,
               timeout: float = 600, wait_model: bool = True, auth: Optional[str] = None,
               drop_flags: Sequence[str] = ()) -> Host:
    """Launch `kind` with `data` as its data folder; return once it serves (and, for AUTOMATIC1111,
    once the checkpoint is loaded: it loads at start; Forge loads at the first generation)."""
    problem = kind.missing()
    if problem:
        raise HostError(problem)
    port = free_port()
    log_path = data / f"webui-{port}.log"
    flags = [f for f in COMMON_FLAGS if f not in drop_flags]
    flags += [*kind.extra_flags, "--data-dir", str(data), "--port", str(port)]
    if kind is FORGE:
        flags += ["--ckpt", str(data / "models" / "Stable-diffusion" / kind.checkpoint),
                  # Forge lets gradio serve files from the data folder only (cmd_args.py: --gradio-allowed-path
                  # defaults to [data_path]); with the data folder outside its tree its own script.js would be
                  # refused. A user's data folder is the tree: allow the tree, as then.
                  "--gradio-allowed-path", str(kind.tree)]
    if auth:
        flags += ["--api-auth", auth]
    flags += list(extra_flags)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(kind.python), "launch.py", *flags], cwd=kind.tree, stdout=log,
                                stderr=subprocess.STDOUT, env=host_env(env), start_new_session=True)
    host = Host(kind, data, port, log_path, proc, auth=auth)
    try:
        end = host.wait_for_log("Startup time:", timeout)
        if wait_model and kind is A1111:
            host.wait_for_log("Model loaded in", timeout, after=0)
    except BaseException:
        host.stop()
        raise
    host.ready_at = end
    return host
