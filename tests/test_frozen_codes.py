"""Decoder mode's image codes from the depth's own frozen dictionary (issue 27), against routed codes, on a
planted two-level hierarchy built by hand: child atoms = parent direction + noise, a depth-1 "SAE" whose
decoder rows are the child atoms, a depth-2 meta-SAE whose decoder rows are the parents."""

import pandas as pd
import pytest
import torch
from depth_folders import write_cache, write_depth

from metasae.errors import MetasaeError
from metasae.frozen_codes import (
    FrozenEncoder,
    depth1_k,
    encode_rows,
    fit_frozen_encoder,
    mean_l0,
    pursuit_codes,
    strongest_routed,
    topk_shifted,
    unit_rows,
)
from metasae.groundtruth import mcc
from metasae.io import read_json, write_json
from metasae.layout import FROZEN_CODES_FILE, FROZEN_ENCODER_FILE, METRICS_FILE, SHA256_KEY
from metasae.metrics import fvu
from metasae.models import build_classifier, save_classifier
from metasae.sae import SAEConfig, build_sae
from metasae.seeds import generator
from metasae.stack import Depth
from metasae.stages import train_sae as stages
from metasae.stages.analyse import analyse
from metasae.stages.cache_acts import cache_activations
from metasae.statistics.columns import derived_columns
from metasae.statistics.exclusions import DENSE, FIXED, ROUTED, excluded_as

D_IN, PARENTS, CHILDREN, IMAGES, K = 64, 16, 4, 600, 3  # K parents (one child each) active per image
META_K = 2  # meta-latents per child row: the second one is spurious, as a meta-SAE's k forces


def topk_relu(pre: torch.Tensor, k: int) -> torch.Tensor:
    """A meta-SAE's TopK codes: the k largest pre-activations, ReLU'd."""
    vals, idx = pre.topk(k, dim=1)
    return torch.zeros_like(pre).scatter(1, idx, vals.relu())


def planted(tmp_path, noise=0.6, seed=0):
    """Depth 1 (TopK k=K, rows = child atoms, codes = the true child codes) and decoder-mode depth 2 (rows =
    the parents, meta-codes = each child row's META_K largest correlations with them, as a meta-SAE encoder
    reading with its decoder's transpose gives), with the true parent activations."""
    g = torch.Generator().manual_seed(seed)
    parents = unit_rows(torch.randn(PARENTS, D_IN, generator=g))
    offset = unit_rows(torch.randn(PARENTS * CHILDREN, D_IN, generator=g))
    children = unit_rows(parents.repeat_interleave(CHILDREN, 0) + noise * offset)
    active = torch.stack([torch.randperm(PARENTS, generator=g)[:K] for _ in range(IMAGES)])
    child = active * CHILDREN + torch.randint(CHILDREN, (IMAGES, K), generator=g)
    value = 0.5 + torch.rand(IMAGES, K, generator=g)
    codes1 = torch.zeros(IMAGES, PARENTS * CHILDREN).scatter(1, child, value)
    truth = torch.zeros(IMAGES, PARENTS).scatter(1, active, value)
    acts = write_cache(tmp_path / "acts", codes1 @ children)
    sae1 = build_sae(SAEConfig("topk", D_IN, PARENTS * CHILDREN, k=K), g)
    meta = build_sae(SAEConfig("topk", D_IN, PARENTS, k=META_K), g)
    with torch.no_grad():
        sae1.W_dec.copy_(children), sae1.b_dec.zero_(), meta.W_dec.copy_(parents), meta.b_dec.zero_()
    depth1_metrics = {"width": len(children), "alive_latents_images": len(children), "l0_images": float(K)}
    d1 = write_depth(tmp_path / "depth1", sae1, codes1, 1, "base", acts, metrics=depth1_metrics)
    meta_codes = topk_relu(children @ parents.T, META_K)
    x = codes1 @ children
    encoder = fit_frozen_encoder(x[: IMAGES * 4 // 5], parents, torch.zeros(D_IN), K, seed=1)
    routed = codes1 @ meta_codes
    d2 = write_depth(
        tmp_path / "depth2", meta, routed, 2, "decoder", acts, d1, meta_codes, {"width": PARENTS}, encoder
    )
    return Depth.load(d2), truth, x


def test_frozen_codes_recover_the_planted_parents_and_routed_codes_do_not(tmp_path):
    depth, truth, x = planted(tmp_path)
    frozen, routed = depth.image_codes.to_dense(), depth.routed_codes.to_dense()
    assert depth.codes_used == "frozen_topk"
    assert mean_l0(frozen) == pytest.approx(K)  # depth 1's k, not k x the meta-SAE's
    assert mean_l0(routed) > 1.5 * K  # routing multiplies L0 by about the meta-SAE's k
    assert mcc(frozen, truth) >= 0.9
    assert mcc(routed, truth) < mcc(frozen, truth)
    # the layer rebuilt from the frozen codes: better than the mean, and than routing's rebuild
    frozen_fvu, routed_fvu = fvu(x, depth.reconstruction()(x)), fvu(x, depth.routed_reconstruction()(x))
    assert frozen_fvu < 1 and frozen_fvu < routed_fvu
    torch.testing.assert_close(depth.encoder()(x), depth.frozen_encoder.encode(x))
    routed_x = depth.parent.sae.encode(x) @ depth.meta_codes
    torch.testing.assert_close(depth.routed_encoder()(x), routed_x)


def test_the_pursuit_reference_and_the_strongest_routing(tmp_path):
    depth, truth, x = planted(tmp_path)
    encoder = depth.frozen_encoder
    pursuit = pursuit_codes(x, encoder.dictionary, encoder.b_dec, K)
    assert ((pursuit != 0).sum(1) <= K).all() and (pursuit >= 0).all()
    assert (
        fvu(x, encoder.decode(pursuit)) <= fvu(x, encoder.reconstruct(x)) + 0.05
    )  # a fit near the reference
    assert mcc(pursuit, truth) >= 0.9
    # each child latent routes to its own parent: depth 1's L0 kept, the parents recovered
    strongest = strongest_routed(depth.parent.codes, depth.meta_codes).to_dense()
    assert mean_l0(strongest) == pytest.approx(mean_l0(depth.parent.codes))
    assert mcc(strongest, truth) >= 0.9


def test_shifted_topk_keeps_exactly_k_non_negative_codes():
    pre = torch.tensor([[3.0, -1.0, -2.0, 0.5], [-4.0, -3.0, -2.0, -1.0]])
    codes = topk_shifted(pre, 2)
    assert codes.tolist() == [[4.0, 0.0, 0.0, 1.5], [0.0, 0.0, 1.0, 2.0]]  # minus the third largest
    random = topk_shifted(torch.randn(50, 12, generator=generator(0, "shift")), 5)
    assert ((random > 0).sum(1) == 5).all() and (random >= 0).all()
    torch.testing.assert_close(topk_shifted(pre, 4), pre.relu())  # the whole dictionary: ReLU'd


def _pursuit_by_dense_lstsq(x, dictionary, k):
    """The pursuit as first written: a dense least-squares refit over the chosen atoms at every step."""
    atoms, n = unit_rows(dictionary), len(x)
    support, coef, residual = torch.empty(n, 0, dtype=torch.int64), torch.empty(n, 0), x
    for _ in range(k):
        score = (residual @ atoms.T).scatter(1, support, -torch.inf)
        support = torch.cat([support, score.argmax(1, keepdim=True)], 1)
        chosen = atoms[support]
        coef = torch.linalg.lstsq(chosen.transpose(1, 2), x.unsqueeze(2)).solution.squeeze(2).clamp_min(0)
        residual = x - (coef.unsqueeze(2) * chosen).sum(1)
    return torch.zeros(n, len(atoms)).scatter(1, support, coef)


def test_pursuit_through_the_gram_matrix_equals_the_dense_refit():
    g = generator(0, "pursuit")
    dictionary, x = torch.randn(40, 16, generator=g), torch.randn(30, 16, generator=g)
    for k in (6, 14):  # the Cholesky factor grown one atom a step, through 14 steps
        fast = pursuit_codes(x, dictionary, torch.zeros(16), k)
        torch.testing.assert_close(fast, _pursuit_by_dense_lstsq(x, dictionary, k), atol=1e-4, rtol=1e-4)
    twins = torch.cat([dictionary[:1], dictionary[:1], dictionary[1:3]])  # a dependent pair: lstsq fallback
    target = unit_rows(twins[:1]) * 2
    codes = pursuit_codes(target, twins, torch.zeros(16), 3)
    assert (codes @ unit_rows(twins) - target).norm() < 1e-4 and (codes >= 0).all()


def test_strongest_routing_by_hand():
    parent = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]]).to_sparse()
    meta = torch.tensor([[0.2, 0.9], [0.7, 0.1], [0.0, 0.0]])  # parent latent 2 has no meta-code
    assert strongest_routed(parent, meta).to_dense().tolist() == [[2.0, 1.0], [0.0, 0.0]]


def test_train_sae_writes_frozen_codes_beside_the_routed_ones(tmp_path):
    depth, _, x = planted(tmp_path)
    spec = {"architecture": "topk", "k": 2, "width": {"factor": 0.25, "min": 2}, "steps": 300, "lr": 0.003}
    keep = stages.StopRules(min_alive=1, max_fvu=1e6)
    metrics = stages.train_meta(tmp_path / "depth1", "decoder", 2, spec, tmp_path / "t2", 0, keep)
    deeper = stages.train_meta(tmp_path / "t2", "decoder", 3, spec, tmp_path / "t3", 0, keep)
    for folder, m in ((tmp_path / "t2", metrics), (tmp_path / "t3", deeper)):
        assert {FROZEN_CODES_FILE, FROZEN_ENCODER_FILE} <= set(m[SHA256_KEY])
        assert m["codes_used"] == "frozen_topk" and m["frozen_k"] == min(K, m["width"])
        assert m["frozen_l0_images"] == pytest.approx(m["frozen_k"]) and m["strongest_routed_l0_images"] <= K
        assert m["pursuit_l0_images"] <= m["frozen_k"] and m["pursuit_rows"] == min(256, IMAGES)
        loaded = Depth.load(folder)
        assert mean_l0(loaded.image_codes) == pytest.approx(m["frozen_l0_images"])
        assert fvu(x, loaded.reconstruction()(x)) == pytest.approx(m["frozen_fvu"], abs=1e-5)
    assert fvu(x, Depth.load(tmp_path / "t2").reconstruction()(x)) < 1
    again = stages.train_meta(
        tmp_path / "depth1", "decoder", 2, spec, tmp_path / "again", 0, keep, resume=False
    )
    assert again[SHA256_KEY][FROZEN_CODES_FILE] == metrics[SHA256_KEY][FROZEN_CODES_FILE]  # seeded


def test_a_decoder_depth_without_frozen_codes_asks_for_a_rerun(tmp_path):
    depth, _, _ = planted(tmp_path)
    (depth.path / FROZEN_CODES_FILE).unlink()
    record = read_json(depth.path / METRICS_FILE)
    del record[SHA256_KEY][FROZEN_CODES_FILE]
    write_json(depth.path / METRICS_FILE, record)
    with pytest.raises(MetasaeError, match="rerun `metasae train-sae`"):
        _ = Depth.load(depth.path).image_codes
    (depth.path / FROZEN_ENCODER_FILE).write_bytes(b"not safetensors")
    with pytest.raises(MetasaeError, match="bytes differ"):
        Depth.load(depth.path)


def test_encoder_round_trip_and_bad_input(tmp_path):
    rows = torch.randn(5, 4)
    start = FrozenEncoder.initial(rows, torch.zeros(4), k=9)
    assert start.k == 5  # a dictionary smaller than k is used whole
    x = torch.randn(7, 4)
    torch.testing.assert_close(start.encode(x), (x @ unit_rows(rows).T).relu())
    digest = start.save(tmp_path / "enc.safetensors")
    back = FrozenEncoder.load(tmp_path / "enc.safetensors", {"enc.safetensors": digest}, "train-sae")
    torch.testing.assert_close(back.reconstruct(x), start.reconstruct(x))
    assert encode_rows(back, x).is_sparse
    with pytest.raises(MetasaeError, match="k=0 must be >= 1"):
        FrozenEncoder.initial(rows, torch.zeros(4), k=0)
    with pytest.raises(MetasaeError, match="b_dec has shape"):
        FrozenEncoder.initial(rows, torch.zeros(3), k=2)
    with pytest.raises(MetasaeError, match="no training activations"):
        fit_frozen_encoder(torch.zeros(0, 4), rows, torch.zeros(4), 2, seed=0)
    assert depth1_k(4, 9.0) == 4 and depth1_k(None, 6.6) == 7  # ReLU depth 1: its measured L0
    with pytest.raises(MetasaeError, match="neither k nor l0_images"):
        depth1_k(None, None)


def _row(**values) -> pd.DataFrame:
    base = {"architecture": "batchtopk", "status": "trained", "mode": "decoder", "depth": 3, "width": 32}
    base |= {"fvu": 0.5, "alive_latents": 30, "count_all_top10_nonzero": 3, "mean_active_per_image": 31.8}
    return derived_columns(pd.DataFrame([{**base, **values}]))


def test_frozen_codes_are_never_excluded_as_dense_routed_codes():
    frozen = _row(mean_active_per_image=4.0, codes_used="frozen_topk").iloc[0]
    assert not frozen["routed_codes_dense"] and frozen["codes_used"] == "frozen_topk"
    assert excluded_as(frozen, "purity_mean") is None
    assert excluded_as(frozen, "mean_active_fraction") == FIXED  # TopK at depth 1's k
    assert excluded_as(frozen, "routed_stack_fvu") == ROUTED  # reported beside, never a verdict
    legacy = _row().iloc[0]  # analysed before `codes_used`: its decoder-mode codes were routed
    assert legacy["codes_used"] == "routed" and excluded_as(legacy, "purity_mean") == DENSE
    assert _row(mode="activations").iloc[0]["codes_used"] == "own"


def test_analyse_reads_the_image_codes_and_labels_the_routed_ones(tmp_path):
    torch.manual_seed(0)  # test-only: fixed weights for the tiny classifier
    model = build_classifier("mlp", 10, (1, 28, 28))
    save_classifier(
        model, tmp_path / "model", {"model": "mlp", "num_classes": 10, "input_shape": [1, 28, 28]}
    )
    acts = cache_activations(tmp_path / "model", "digits:test[:60]", "fc1", tmp_path / "acts").acts
    with torch.no_grad():
        sae1 = build_sae(SAEConfig("topk", 256, 24, k=4), generator("test", 1))
        codes1 = sae1.encode(acts)
        d1 = write_depth(tmp_path / "depth1", sae1, codes1, 1, "base", tmp_path / "acts")
        meta = build_sae(SAEConfig("topk", 256, 6, k=2), generator("test", 2))
        meta_codes = meta.encode(unit_rows(sae1.W_dec))
        frozen = FrozenEncoder.initial(meta.W_dec, sae1.b_dec, 4)
        d2 = write_depth(
            tmp_path / "depth2",
            meta,
            codes1 @ meta_codes,
            2,
            "decoder",
            tmp_path / "acts",
            d1,
            meta_codes,
            None,
            frozen,
        )
    own = analyse(d1, tmp_path / "a1", top_n=5, figures="none")
    summary = analyse(d2, tmp_path / "a2", top_n=5, figures="none")
    assert own["codes_used"] == "own" and not any(k.startswith("routed_") for k in own)
    assert summary["codes_used"] == "frozen_topk"
    assert summary["mean_active_per_image"] == pytest.approx(mean_l0(frozen.encode(acts)))
    assert summary["stack_fvu"] == pytest.approx(fvu(acts, frozen.reconstruct(acts)), abs=1e-6)
    assert summary["routed_mean_active_per_image"] == pytest.approx(mean_l0(codes1 @ meta_codes))
    with torch.no_grad():  # the SAE's weights need no gradient here
        routed_fvu = fvu(acts, Depth.load(d2).routed_reconstruction()(acts))
    assert summary["routed_stack_fvu"] == pytest.approx(routed_fvu, abs=1e-6)
    assert {"routed_loss_recovered", "routed_spliced_accuracy"} <= set(summary)
