"""Matryoshka SAE: nested-prefix loss against a dense reference, coarse features in the first prefix on
planted two-level data, save/load, prefix settings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from metasae.cli import build_parser
from metasae.errors import MetasaeError
from metasae.io import read_json
from metasae.layout import CFG_FILE
from metasae.sae import SAEConfig, build_sae, export_saelens, load_sae, sparse
from metasae.sae.matryoshka import default_prefixes
from metasae.sae.trainer import spec_to_configs, train_sae
from metasae.settings import flags_to_dict


def _dense_reference_loss(sae, x: torch.Tensor, dead: torch.Tensor, k_aux: int) -> torch.Tensor:
    """Plain autograd: BatchTopK codes, then the mean over prefixes (whole width last) of each prefix's
    sum_dims MSE, plus AuxK on the whole code's residual."""
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    flat = pre.relu().flatten()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.topk(sae.cfg.k * len(x)).indices] = True
    z = (flat * keep).view_as(pre)
    prefix_losses = [
        (z[:, :m] @ sae.W_dec[:m] + sae.b_dec - x).pow(2).sum(1).mean()
        for m in [*sae.cfg.prefixes, sae.cfg.width]
    ]
    x_hat = z @ sae.W_dec + sae.b_dec
    av, ai = pre.masked_fill(~dead, -math.inf).topk(k_aux, dim=1)
    za = torch.zeros_like(pre).scatter(1, ai, av.relu())
    aux = ((x - x_hat).detach() - za @ sae.W_dec).pow(2).sum(1).mean()
    return sum(prefix_losses) / len(prefix_losses) + sae.cfg.aux_coeff * aux


@pytest.mark.parametrize("chunk_elements", [1 << 20, 32])  # one chunk; 2 rows per chunk (pooled selection)
def test_loss_and_gradients_equal_the_mean_of_prefix_losses(chunk_elements, monkeypatch):
    monkeypatch.setattr(sparse, "CPU_CHUNK_ELEMENTS", chunk_elements)
    cfg = SAEConfig("matryoshka", 5, 16, k=3, k_aux=2, prefixes=[2, 5, 9])
    sae = build_sae(cfg, torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        sae.b_enc.normal_(generator=torch.Generator().manual_seed(1))
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(2))
    x = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    dead = torch.zeros(16, dtype=torch.bool)
    dead[1::2] = True
    parts = sae.loss(x, dead=dead)
    parts.total.backward()
    grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    reference = _dense_reference_loss(sae, x, dead, k_aux=2)
    reference.backward()
    torch.testing.assert_close(parts.total.detach(), reference.detach())
    for n, p in sae.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, msg=n)
    # the logged MSE is the whole dictionary's, as for every other architecture
    torch.testing.assert_close(parts.mse, sae.sum_dims_mse(x, parts.x_hat))


def test_one_prefix_level_less_is_batchtopk():
    """With no prefixes below the width the objective is BatchTopK's, term for term."""
    kwargs = dict(d_in=6, width=12, k=2)
    plain = build_sae(SAEConfig("batchtopk", **kwargs), torch.Generator().manual_seed(0))
    nested = build_sae(SAEConfig("matryoshka", prefixes=[], **kwargs), torch.Generator().manual_seed(0))
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(nested.loss(x).total, plain.loss(x).total)


def _two_level_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x = s * (u * coarse[a] + v * fine[a, b]), s = +-1: 8 signed coarse directions, each with 4 children
    that only ever fire with it, the corners of a tetrahedron in 3 dimensions of their own (they average to
    0, so the parent alone is the best one-latent reconstruction of its examples; the signs centre the data,
    so the decoder bias cannot stand in for a parent); returns (data, the 8 signed coarse directions)."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(32, 16, generator=g)).Q.t().reshape(4, 4, 32)
    corners = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / math.sqrt(3)
    coarse, fine = basis[:, 0], corners @ basis[:, 1:]  # fine [4 parents, 4 children, 32]
    a, b = torch.randint(4, (n,), generator=g), torch.randint(4, (n,), generator=g)
    sign = torch.randint(2, (n, 1), generator=g) * 2.0 - 1
    u, v = (0.5 + torch.rand(n, 1, generator=g) for _ in range(2))
    return sign * (u * coarse[a] + v * fine[a, b]), torch.cat([coarse, -coarse])


PREFIX = 16  # twice the 8 coarse directions: slack for the first level


def _train(arch: str, data: torch.Tensor, out: Path):
    # one learning rate for encoder and decoder, as measured when the test was written (the decoder's
    # default 3x rate of issue 29 changes which latent wins the race for a coarse direction)
    spec = {"architecture": arch, "k": 2, "steps": 600, "batch_size": 256, "lr": 3e-3, "log_every": 1000}
    spec["decoder_lr_scale"] = 1.0
    spec |= {"prefixes": [PREFIX]} if arch == "matryoshka" else {}
    sae_cfg, train_cfg = spec_to_configs(spec, d_in=32, width=48, seed=0)
    return train_sae(data, sae_cfg, train_cfg, out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A Matryoshka SAE and, on the same data and seed, a BatchTopK one (whose latent order means nothing)."""
    data, coarse = _two_level_data(4096, seed=0)
    out = tmp_path_factory.mktemp("matryoshka")
    return data, coarse, out, _train("matryoshka", data, out), _train("batchtopk", data, out / "batchtopk")


def _first_prefix_stats(sae, data: torch.Tensor, coarse: torch.Tensor) -> tuple[float, int]:
    """(FVU of the reconstruction by the first PREFIX latents alone, coarse directions with a cosine > 0.7
    match among those latents' decoder rows)."""
    with torch.no_grad():
        z = sae.encode(data)
        x_hat = z[:, :PREFIX] @ sae.W_dec[:PREFIX] + sae.b_dec
        fvu = float((x_hat - data).pow(2).sum() / (data - data.mean(0)).pow(2).sum())
        best = (F.normalize(sae.W_dec[:PREFIX], dim=1) @ coarse.t()).max(0).values
    return fvu, int((best > 0.7).sum())


def test_training_puts_the_coarse_directions_in_the_first_prefix(trained):
    """The first prefix alone reconstructs the data far better than BatchTopK's first latents and holds most
    coarse directions. Not all of them at this tiny scale: a later latent that learns a coarse direction
    first wins BatchTopK's selection and leaves the prefix latent ungraded (and the shared decoder bias can
    drift onto an uncovered parent), so rows tilt below a 0.9 match."""
    data, coarse, _, nested, plain = trained
    nested_fvu, nested_found = _first_prefix_stats(nested, data, coarse)
    plain_fvu, plain_found = _first_prefix_stats(plain, data, coarse)
    assert nested_fvu < 0.5 and nested_fvu < 0.6 * plain_fvu, (nested_fvu, plain_fvu)
    assert nested_found >= 6 and plain_found <= 4, (nested_found, plain_found)
    torch.testing.assert_close(nested.W_dec.norm(dim=1), torch.ones(48))
    assert float(nested.threshold) > 0  # BatchTopK's inference threshold was learned


def test_save_load_round_trip(trained, tmp_path):
    _, _, out, sae, _ = trained
    loaded = load_sae(out)
    assert type(loaded) is type(sae) and loaded.prefixes == [PREFIX] and loaded.cfg == sae.cfg
    for name, t in sae.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], t)
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded.encode(x), sae.encode(x))
    assert read_json(out / CFG_FILE)["architecture"] == "jumprelu"  # BatchTopK's shared threshold
    exported = export_saelens(out, tmp_path / "saelens")
    assert read_json(exported / CFG_FILE)["architecture"] == "jumprelu"


def test_default_prefixes_halve_the_width():
    assert default_prefixes(64) == [8, 16, 32]
    assert default_prefixes(3) == [1] and default_prefixes(1) == []
    sae = build_sae(SAEConfig("matryoshka", 4, 40, k=2))
    assert sae.prefixes == [5, 10, 20]


@pytest.mark.parametrize("prefixes", [[4, 2], [2, 2], [0, 4], [8], [2, 9], [2.5], 4])
def test_bad_prefixes_are_a_one_line_error(prefixes):
    with pytest.raises(MetasaeError, match=r"^sae\.prefixes=.*width=8$") as info:
        spec_to_configs({"architecture": "matryoshka", "k": 2, "prefixes": prefixes}, d_in=4, width=8, seed=0)
    assert "\n" not in str(info.value)


def test_prefixes_flag_reaches_the_config():
    args = build_parser().parse_args(
        ["train-sae", "--acts", "x", "--out", "y", "--architecture", "matryoshka", "--k", "2"]
        + ["--prefixes", "2", "4", "--width", "8", "--steps", "1"]
    )
    spec = flags_to_dict(args)
    assert spec["prefixes"] == [2, 4]
    assert spec_to_configs(spec, d_in=4, width=8, seed=0)[0].prefixes == [2, 4]
