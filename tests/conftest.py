"""Shared fixtures: tiny real models built from configs, and small synthetic datasets.

Nothing is downloaded: HF_HUB_OFFLINE is set for the whole test session, and the CLIP
vocabulary comes from an installed PyPI package.
"""
import hashlib
import os
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_harness import ENVS, env_python, have_chromium, launch_browser, open_planner, running_app  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models: one thread each, here and in subprocesses
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _torch():
    try:
        import torch
        return torch
    except ImportError:  # the planner tests run without torch
        return None


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """The tiny models' ops are too small to share across cores; one thread is as fast and
    does not stall when the browser tests' processes want the other core."""
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    os.environ["SD_TRAINPLAN_CACHE"] = str(tmp_path_factory.mktemp("stp-cache"))


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
    """18 images: red/green/blue circles, squares and triangles at 64 px, with captions."""
    from sd_trainplan.train.sample_data import make_shapes
    return make_shapes(tmp_path_factory.mktemp("shapes"), colors=("red", "green", "blue"))


def colored_backgrounds(folder: Path, colors, per: int, seed: int) -> Path:
    """White shapes on a background of the named colour: the colour is in every caption."""
    from sd_trainplan.train.sample_data import COLORS, draw
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for c in colors:
        for k in range(per):
            draw(rng.choice(["circle", "square"]), (255, 255, 255), 64, rng, background=COLORS[c]).save(
                folder / f"{c}_{k}.png")
            (folder / f"{c}_{k}.txt").write_text(f"{c} background")
    return folder


@pytest.fixture(scope="session")
def new_concept_dir(tmp_path_factory):
    """8 images of a colour the base model never saw (for Textual Inversion)."""
    return colored_backgrounds(tmp_path_factory.mktemp("yellow"), ["yellow"], 8, seed=1)


@pytest.fixture(scope="session")
def v_base_model(tmp_path_factory):
    """A tiny v-prediction model fine-tuned for 150 updates on captioned colours, saved as a
    diffusers folder. v-prediction weighs the high-noise end, where only the text tells the
    image's colour, so a learned token visibly lowers its loss."""
    from sd_trainplan.models.diffusers_adapter import load_diffusers
    from sd_trainplan.train.config import TrainConfig
    from sd_trainplan.train.loop import train
    root = tmp_path_factory.mktemp("v-base")
    data = colored_backgrounds(root / "data", ["red", "green", "blue"], 4, seed=0)
    adapter = load_diffusers("tiny", prediction_type="v_prediction")
    train(TrainConfig(method="dreambooth", data=str(data), output=str(root / "runs"), resolution=64, steps=150,
                      batch_size=4, lr=2e-3, instance_prompt="[filewords]", log_every=50), adapter=adapter)
    return adapter.save_folder(root / "model")


def tensor_hashes(*modules):
    """sha256 of every base tensor (parameters and buffers) of the modules, by name. A spliced
    token embedding is read through to the table it wraps; added vectors are not base tensors."""
    out = {}
    for i, m in enumerate(modules):
        for name, t in m.state_dict().items():
            if ".extras." in name:
                continue
            name = name.replace("token_embedding.base.", "token_embedding.")
            out[f"{i}.{name}"] = hashlib.sha256(t.detach().cpu().contiguous().view(-1).view(_torch().uint8).numpy()
                                                .tobytes()).hexdigest()
    return out


# --- the browser tests: the real app served from each gradio environment, one headless Chromium ---

def _missing(what: str) -> None:
    pytest.fail(f"{what}: `make test` provides it")


@pytest.fixture(scope="session")
def browser():
    if not have_chromium():
        _missing("no /usr/bin/chromium")
    with launch_browser() as b:
        yield b


@pytest.fixture(scope="session", params=list(ENVS), ids=["gradio4", "gradio3"])
def app_url(request):
    env = request.param
    if not env_python(env).exists():
        _missing(f"no {env} environment ({ENVS[env]})")
    with running_app(env) as url:
        yield url


@pytest.fixture(scope="session")
def shots(tmp_path_factory):
    """Where the browser tests put their screenshots: docs/ only when asked (`make screenshots` sets
    SD_TRAINPLAN_SCREENSHOTS), a temporary folder otherwise, so a test run leaves the checkout as it was."""
    folder = os.environ.get("SD_TRAINPLAN_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser, app_url):
    p = open_planner(browser, app_url)
    yield p
    p.close()
