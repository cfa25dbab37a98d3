"""Stage `synth-oracle`: analytic stacks on a planted tree of the leaf regime (metasae.synth_tree), written as
ordinary depth folders (depth1/, <mode>/depth<d>/, the files a trained depth has), so `score-synth` scores
them unchanged: the ceiling and the floor a trained stack is judged between.

- oracle: depth d holds the truth of level L - d + 1 (its decoder rows are the level's centroids) and its
  meta-codes are the child-to-parent indicator, so its codes are the level's node codes; past the roots it
  merges them in pairs for two more depths (what a halving stack past the planted depth can only do), so a
  depth criterion has depths to overshoot to.
- shuffled: the same widths, each depth's children handed to the parents in a random permutation (every
  parent keeps its number of children): the centroid stack of a wrong hierarchy, the null.

Both modes get the same stack: decoder mode's rows live in the activation space; an activations-mode row
reads its children in the parent's latent space, scaled so that it decodes to its unit centroid.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from metasae.codes import save_codes, write_lineage
from metasae.errors import MetasaeError
from metasae.io import provenance, stage_output, write_json
from metasae.layout import (
    BASE_MODE,
    CODES_FILE,
    LINEAGE_FILE,
    META_CODES_FILE,
    METRICS_FILE,
    MODES,
)
from metasae.sae import SAE, SAEConfig, build_sae, save_sae
from metasae.seeds import generator
from metasae.stack import trained_record
from metasae.study import PAST_PLANTED_DEPTHS
from metasae.synth_tree import MAX_DEPTH, SynthTree, TreeSpec, centroids
from metasae.synth_truth import STACK_KINDS, load_truth

EXTRA_DEPTHS = PAST_PLANTED_DEPTHS  # depths past the roots (merging them in pairs)
STACK_DEPTHS = MAX_DEPTH + EXTRA_DEPTHS  # every analytic stack has folders 1..this, stopped past L + 2


def oracle_parents(spec: TreeSpec, extra_depths: int = EXTRA_DEPTHS) -> list[Tensor]:
    """Parent maps of depths 2 .. L + extra_depths: entry i gives, for each latent of depth i + 1, its latent
    at depth i + 2. Up to the roots a node's parent (j // b); then pairs of roots, then pairs of pairs."""
    widths = [spec.n_features(level) for level in range(spec.depth, 0, -1)]
    maps = [torch.arange(w) // spec.branching for w in widths[:-1]]
    width = widths[-1]
    for _ in range(extra_depths):
        maps.append(torch.arange(width) // 2)
        width = (width + 1) // 2
    return maps


def shuffled_parents(parents: list[Tensor], g: torch.Generator) -> list[Tensor]:
    """The same maps with each depth's children permuted: the widths and child counts stay, the clades go."""
    return [p[torch.randperm(len(p), generator=g)] for p in parents]


def stack_rows(leaves: Tensor, parents: list[Tensor]) -> list[Tensor]:
    """Unit rows per depth in the activation space: the leaves, then the centroids of each depth's
    children (with the oracle's maps: the truth levels T_L, T_(L-1), ..., then merged roots)."""
    rows = [leaves]
    for p in parents:
        rows.append(centroids(rows[-1], p, int(p.max()) + 1))
    return rows


def indicator(parents: Tensor, width: int) -> Tensor:
    """Dense [len(parents), width] child-to-parent indicator: the meta-codes of a depth."""
    return torch.zeros(len(parents), width).index_put_(
        (torch.arange(len(parents)), parents), torch.tensor(1.0)
    )


def analytic_sae(w_dec: Tensor) -> SAE:
    """A ReLU SAE with these decoder rows and the pseudo-inverse as encoder (no bias): it rebuilds whatever
    lies in the rows' span, so the stack's reconstruction metrics are defined and near their best."""
    width, d_in = w_dec.shape
    sae = build_sae(SAEConfig("relu", d_in, width))
    weights = {"W_dec": w_dec, "W_enc": torch.linalg.pinv(w_dec), "b_enc": torch.zeros(width)}
    sae.load_state_dict({**weights, "b_dec": torch.zeros(d_in)})
    return sae.eval()


@stage_output(METRICS_FILE)
def write_depth_folder(sae: SAE, codes: Tensor, cfg: dict, meta_codes: Tensor | None, out_dir: Path) -> dict:
    """One depth folder: SAE + cfg.json, codes, meta-codes and lineage (depth >= 2), metrics.json last with
    the sha256 of every data file, as `train-sae` writes it."""
    save_sae(sae, out_dir, extra_cfg=cfg)
    checksums = {CODES_FILE: save_codes(out_dir / CODES_FILE, codes)}
    if meta_codes is not None:
        checksums[META_CODES_FILE] = save_codes(out_dir / META_CODES_FILE, meta_codes)
        checksums[LINEAGE_FILE] = write_lineage(out_dir / LINEAGE_FILE, meta_codes.to_sparse())
    metrics = {
        **trained_record(cfg["depth"], cfg["mode"], sae.cfg.width, checksums),
        "synthetic_stack": cfg["synthetic_stack"],
    }
    write_json(out_dir / METRICS_FILE, metrics)
    return metrics


def write_stack(
    tree: SynthTree, acts_dir: Path, out_dir: Path, parents: list[Tensor], kind: str
) -> list[Path]:
    """depth1/ and <mode>/depth<d>/ for both modes under out_dir, from the leaf atoms and parent maps (stopped
    folders past them, up to STACK_DEPTHS); returns the folders written. Codes route the true leaf codes
    through the indicators (in both modes: the analytic encoder of a depth's children is its indicator)."""
    rows = stack_rows(tree.path_directions(), parents)
    meta = [indicator(p, len(r)) for p, r in zip(parents, rows[1:], strict=True)]
    codes = [tree.codes[-1]]
    for m in meta:
        codes.append(codes[-1] @ m)
    cfg = {"acts_dir": str(acts_dir), "synthetic_stack": kind, "provenance": provenance({"stack": kind})}
    base = out_dir / "depth1"
    write_depth_folder(analytic_sae(rows[0]), codes[0], {**cfg, "depth": 1, "mode": BASE_MODE}, None, base)
    folders = [base]
    for mode in MODES:
        parent = base
        for depth in range(2, len(rows) + 1):
            m = meta[depth - 2]
            w_dec = (
                rows[depth - 1]
                if mode == "decoder"
                else m.T / (m.T @ rows[depth - 2]).norm(dim=1, keepdim=True)
            )
            path = out_dir / mode / f"depth{depth}"
            depth_cfg = {**cfg, "depth": depth, "mode": mode, "parent": str(parent)}
            write_depth_folder(analytic_sae(w_dec), codes[depth - 1], depth_cfg, m, path)
            folders.append(path)
            parent = path
        for depth in range(len(rows) + 1, STACK_DEPTHS + 1):
            path = out_dir / mode / f"depth{depth}"
            write_json(path / METRICS_FILE, _stopped(depth, mode, kind, acts_dir))
            folders.append(path)
    return folders


def _stopped(depth: int, mode: str, kind: str, acts_dir: Path) -> dict:
    """metrics.json of a depth past an analytic stack's end, as `train-sae` writes a stopped depth: every
    stack of a study then has the same folders, whatever its tree's depth."""
    reason = f"the {kind} stack ends {EXTRA_DEPTHS} depths past the planted roots"
    return {
        "status": "stopped",
        "stop_reason": reason,
        "depth": depth,
        "mode": mode,
        "acts_dir": f"{acts_dir}",
    }


def synth_oracle(
    acts_dir: str | Path, out_dir: str | Path, kind: str = "oracle", seed: int = 0
) -> list[Path]:
    """The oracle or shuffled stack (`seed` draws the shuffle) of a synth-acts folder, under out_dir."""
    if kind not in STACK_KINDS:
        raise MetasaeError(f"synth-oracle: kind={kind!r}; allowed: {', '.join(STACK_KINDS)}")
    acts_dir = Path(acts_dir)
    tree = load_truth(acts_dir)
    if tree.spec.regime != "leaf":
        raise MetasaeError(
            f"{acts_dir}: regime {tree.spec.regime!r}; the analytic stacks need the leaf regime"
        )
    parents = oracle_parents(tree.spec)
    if kind == "shuffled":
        parents = shuffled_parents(parents, generator(seed, "synth-shuffled"))
    return write_stack(tree, acts_dir, Path(out_dir), parents, kind)
