import pytest
import torch

from metasae import optim
from metasae.optim import Adam


def _run(make_opt, steps=6, lr_schedule=(1e-2, 5e-3)):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 3))
    opt = make_opt([w])
    for step in range(steps):
        opt.param_groups[0]["lr"] = lr_schedule[step % 2]
        loss = (w.sin() * torch.arange(15.0).reshape(5, 3)).sum() + w.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach()


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_matches_torch_adam_and_adamw(wd, fused, monkeypatch):
    if not fused:  # the loop that runs where torch has no fused kernel
        monkeypatch.setattr(optim, "_fusable", lambda params: False)
    ours = _run(lambda p: Adam(p, betas=(0.9, 0.99), weight_decay=wd))
    theirs = _run(lambda p: torch.optim.Adam(p, betas=(0.9, 0.99), weight_decay=wd, foreach=False))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)
    ours = _run(lambda p: Adam(p, weight_decay=wd, decoupled=True))
    theirs = _run(lambda p: torch.optim.AdamW(p, weight_decay=wd, foreach=False))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)


def test_state_roundtrip_continues_identically():
    torch.manual_seed(1)
    a = torch.nn.Parameter(torch.randn(4))
    opt = Adam([a], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        a.pow(3).sum().backward()
        opt.step()
    b = torch.nn.Parameter(a.detach().clone())
    resumed = Adam([b], lr=0.5)
    resumed.load_state_dict(
        {
            "state": {0: {k: v.clone() for k, v in opt.state[a].items()}},
            "param_groups": [{**opt.param_groups[0], "params": [0]}],
        }
    )
    for o, p in ((opt, a), (resumed, b)):
        o.zero_grad()
        p.pow(3).sum().backward()
        o.step()
    assert torch.equal(a, b) and resumed.param_groups[0]["lr"] == 0.1
