"""Our AdamW (train/adamw.py) makes torch's AdamW updates without importing torch._dynamo, and its
checkpoints resume in either direction."""
import io
import subprocess
import sys

import pytest
import torch

from sd_trainplan.train.adamw import AdamW


def params(seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(5, 3, generator=g).to(device)),
            torch.nn.Parameter(torch.randn(7, generator=g).to(device)),
            torch.nn.Parameter(torch.randn(2, 2, generator=g).to(device))]


def groups(ps):  # two groups as a run builds them (methods.py: an lr_scale, its own weight decay)
    return [{"params": ps[:2], "lr": 1e-2, "weight_decay": 0.1},
            {"params": ps[2:], "lr": 3e-3, "weight_decay": 0.0, "lr_scale": 0.3}]


def run(opt, ps, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g).to(p.device)
        opt.step()
        opt.zero_grad(set_to_none=True)


def test_same_updates_as_torchs_adamw():
    ours_p, ref_p = params(), params()
    ours = AdamW(groups(ours_p), betas=(0.9, 0.999), eps=1e-8)
    ref = torch.optim.AdamW(groups(ref_p), betas=(0.9, 0.999), eps=1e-8, foreach=True)
    run(ours, ours_p, 12)
    run(ref, ref_p, 12)
    for a, b in zip(ours_p, ref_p):
        assert torch.equal(a, b)  # the same foreach operations in the same order: bit for bit
    assert ours_p[0].grad is None


def saved(opt):  # through bytes, as a checkpoint file holds it
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def resumed_alike(make, old, old_p, seed, steps):
    """A new optimizer from `make` resumes `old`'s checkpoint (weights and state) and then makes the
    same updates as `old` going on."""
    new_p = params()
    with torch.no_grad():
        for a, b in zip(new_p, old_p):
            a.copy_(b)
    new = make(groups(new_p))
    new.load_state_dict(saved(old))
    run(new, new_p, steps, seed=seed)
    run(old, old_p, steps, seed=seed)
    assert all(torch.equal(a, b) for a, b in zip(new_p, old_p))
    return new, new_p


def test_checkpoints_resume_across_torchs_adamw_and_ours():
    ref_p = params()
    ref = torch.optim.AdamW(groups(ref_p), foreach=True)
    run(ref, ref_p, 5)
    ours, ours_p = resumed_alike(AdamW, ref, ref_p, seed=2, steps=4)  # an old checkpoint (torch's) with ours
    resumed_alike(lambda g: torch.optim.AdamW(g, foreach=True), ours, ours_p, seed=3, steps=3)  # and back


def test_a_checkpoint_of_other_parameters_is_refused():
    ours = AdamW(groups(params()))
    other = AdamW([{"params": params()}])
    run(other, other.param_groups[0]["params"], 1)
    with pytest.raises(ValueError, match="optimizer: the checkpoint's parameter groups differ"):
        ours.load_state_dict(other.state_dict())


def test_building_and_stepping_it_never_imports_dynamo():
    code = ("import sys, torch\n"
            "from sd_trainplan.train.optim import build_optimizer\n"
            "p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3)\n"
            "opt = build_optimizer('adamw', [{'params': [p]}], 1e-3, 0.01, torch.device('cpu'))\n"
            "opt.step(); opt.zero_grad()\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fused_kernel_matches_torchs_fused_adamw_on_the_gpu():
    ours_p, ref_p = params(device="cuda"), params(device="cuda")
    ours = AdamW(groups(ours_p))
    ref = torch.optim.AdamW(groups(ref_p), fused=True)
    run(ours, ours_p, 12)
    run(ref, ref_p, 12)
    for a, b in zip(ours_p, ref_p):
        assert torch.equal(a, b)
