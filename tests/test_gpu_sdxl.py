"""An SDXL folder on a GPU (skipped in CI, which has none): models/plain's SDXL classes, loaded
straight onto the device, predict what diffusers' and transformers' classes from the same folder
predict, in fp32 and in bf16, and train through the fast path (bf16 autocast, CUDA graphs) as they
train in eager mode. tests/test_plain_sdxl.py checks the same models on the CPU; what differs on a GPU
is the dtype each part loads in, channels-last, and the recorded graphs."""
import pytest
import torch

from sd_trainplan.models.diffusers_adapter import load_diffusers
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.loop import train
from test_fast_path import final_state, losses
from test_plain_sdxl import difference, library_folder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
PROMPTS = ["a red circle", "zwx, a blue square on grey!"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return library_folder(tmp_path_factory.mktemp("sdxl") / "model")


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_plain_sdxl_predicts_as_the_libraries_on_the_gpu(folder, dtype, tol):
    plain = load_diffusers(str(folder), device="cuda", dtype=dtype)
    lib = load_diffusers(str(folder), device="cuda", dtype=dtype, plain=False)
    assert "plain torch UNet" in plain.describe() and "plain torch UNet" not in lib.describe()
    assert next(plain.unet().parameters()).dtype == dtype
    assert next(plain.unet().parameters()).device.type == "cuda"
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(2, 4, 8, 12, generator=g, device="cuda", dtype=dtype)
    t = torch.tensor([10, 700], device="cuda")
    with torch.no_grad():
        cond, cond_lib = plain.encode_prompts(PROMPTS), lib.encode_prompts(PROMPTS)
        assert difference(cond.float(), cond_lib.float()) < tol
        ours, theirs = plain.predict(x, t, cond), lib.predict(x, t, cond_lib)
    assert torch.isfinite(ours).all()
    assert difference(ours.float(), theirs.float()) < tol


@pytest.mark.parametrize("method", ["dreambooth", "lora", "ti"])
def test_plain_sdxl_trains_graphed_as_in_eager_mode(shapes_dir, tmp_path, folder, method, monkeypatch):
    # the graph's bookkeeping, compared weight by weight: PyTorch's kernels in both (ours, on by default
    # in the graphed update only, round bf16 sums in another order: tests/test_triton_default.py)
    monkeypatch.setenv("SD_TRAINPLAN_TRITON", "off")
    cfg = TrainConfig(method=method, model=str(folder), data=str(shapes_dir), output=str(tmp_path), resolution=64,
                      steps=10, batch_size=2, lr=1e-3, log_every=1, token="zwx", init_word="shape", device="cuda",
                      noise_scale=False)
    events = []
    graphed = train(cfg, sinks=[events.append])
    assert not any("CUDA graphs off" in e.message for e in events)
    assert any("plain torch UNet" in e.message for e in events)
    eager = train(cfg.replace(cuda_graphs=False, name="eager"))
    assert all(map(lambda v: v == v, losses(graphed.run_dir)))  # no NaN
    assert losses(graphed.run_dir) == pytest.approx(losses(eager.run_dir), rel=1e-3)
    a, b = final_state(eager.run_dir), final_state(graphed.run_dir)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-5)
    assert graphed.export_path.is_file() and graphed.export_path.stat().st_size > 0
