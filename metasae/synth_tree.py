"""Synthetic activations with planted feature hierarchies of known depth: ground truth for meta-SAE depth.

A tree of depth L has one root feature (level 1); every feature of level l < L has `branching` children at
level l + 1, so a tree holds b^(l-1) features at level l and its leaves are level L. Within a level the
features of all trees are numbered tree by tree: feature j of level l + 1 is a child of feature j // b of
level l. Every node draws a random direction. Two regimes say what fires (each tree independently active
with probability p_active, active on one uniform leaf; siblings are mutually exclusive):

- `leaf` (the default): only the leaf fires, with one magnitude, along its atom = unit(sum of the random
  directions of its root-to-leaf path). Two leaves whose deepest common ancestor is at level c then have
  cosine ~ c / L, so the hierarchy lives in the geometry of one layer of atoms, which a stack of halving
  SAEs can recover level by level: the truth of level L is the atoms, of level l < L the unit mean of its
  children's truth (the centroid a merged latent learns).
- `path`: every feature of the root-to-leaf path fires, each with its own magnitude, along its own
  direction. An SAE then learns root-to-leaf path latents (see tests/test_synth_tree.py), so no stack can
  recover the levels; kept to reproduce the first study.

A sample's activation is the sum over active trees plus Gaussian noise. A node is active in a sample when
one of its leaves fires; its code is then its tree's magnitude (the leaf regime) or its own (the path regime).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from metasae.errors import MetasaeError
from metasae.seeds import generator

MAX_DEPTH = 4
REGIMES = ("leaf", "path")


@dataclass(frozen=True)
class TreeSpec:
    """What to plant. child_parent_mix = 0: every feature direction is an independent random unit vector
    (the hierarchy lives only in which features fire together); mix > 0: each child direction is
    normalise(mix * parent + sqrt(1 - mix^2) * random unit vector orthogonal to the parent), so its cosine
    with the parent is exactly mix and the hierarchy shows in the geometry too."""

    regime: str  # "leaf" or "path" (module docstring)
    n_trees: int
    depth: int
    branching: int
    d: int
    n_samples: int
    p_active: float  # probability that a tree is active in a sample, independently per tree
    magnitude: tuple[float, float]  # each magnitude ~ Uniform(low, high): per tree (leaf), per feature (path)
    noise: float  # std of the isotropic Gaussian noise added to every activation
    child_parent_mix: float
    seed: int  # the data seed: draws the tree and the samples, not the SAE (several SAE seeds share a tree)

    def __post_init__(self) -> None:
        object.__setattr__(self, "magnitude", tuple(self.magnitude))  # configs give lists
        if self.regime not in REGIMES:
            raise MetasaeError(f"synth_tree.regime={self.regime!r}: must be one of {', '.join(REGIMES)}")
        _check_int("n_trees", self.n_trees, 1)
        _check_int("depth", self.depth, 1, MAX_DEPTH)
        _check_int("branching", self.branching, 1)
        _check_int("d", self.d, 2)
        _check_int("n_samples", self.n_samples, 1)
        _check_int("seed", self.seed, 0)
        if not 0 < self.p_active <= 1:
            raise MetasaeError(f"synth_tree.p_active={self.p_active}: must be in (0, 1]")
        low_high = self.magnitude
        if len(low_high) != 2 or not (0 < low_high[0] <= low_high[1] < math.inf):
            raise MetasaeError(f"synth_tree.magnitude={list(low_high)}: must be [low, high], 0 < low <= high")
        if not 0 <= self.noise < math.inf:
            raise MetasaeError(f"synth_tree.noise={self.noise}: must be >= 0 and finite")
        if not 0 <= self.child_parent_mix < 1:
            raise MetasaeError(f"synth_tree.child_parent_mix={self.child_parent_mix}: must be in [0, 1)")

    def n_features(self, level: int) -> int:
        """Features at `level` (1 = roots) over all trees."""
        return self.n_trees * self.branching ** (level - 1)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if not (is_int and value >= low and (high is None or value <= high)):
        allowed = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        raise MetasaeError(f"synth_tree.{name}={value!r}: must be {allowed}")


@dataclass
class SynthTree:
    """Generated activations and their ground truth. Index level l (1 = roots, depth = leaves) as l - 1."""

    spec: TreeSpec
    acts: Tensor  # float32 [n, d]
    features: list[
        Tensor
    ]  # per level: the truth's unit directions [n_features_l, d] (leaf regime: centroids)
    codes: list[Tensor]  # per level: float32 [n, n_features_l], each node's code (0 = inactive)
    labels: Tensor  # int64 [n, depth]: active node per level of the first active tree, -1 = no tree

    @property
    def active(self) -> list[Tensor]:
        """Per level: bool [n, n_features_l], the active nodes of each sample (every active tree's path: the
        multi-label truth; codes are > 0 exactly there)."""
        return [c > 0 for c in self.codes]

    def level_labels(self, level: int) -> Tensor:
        """int64 [n]: the node of `level` on the first active tree's path, -1 where no tree is active. One
        label per sample, as an activation cache holds: it hides every other active tree (use `active`)."""
        if not 1 <= level <= self.spec.depth:
            raise MetasaeError(f"level={level}: must be in [1, {self.spec.depth}]")
        return self.labels[:, level - 1]

    def path_directions(self) -> Tensor:
        """[n_leaves, d]: unit direction of each root-to-leaf path's contribution: the leaf atoms (leaf
        regime); the unit sum of the path's features (path regime: every level draws from the same
        magnitudes, so this is what one latent per active tree learns when a TopK SAE has no room to code
        the levels separately)."""
        if self.spec.regime == "leaf":
            return self.features[-1]
        return _path_sums(self.features, self.spec.branching)


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _path_sums(levels: list[Tensor], branching: int) -> Tensor:
    """[n_leaves, d]: unit(sum of the directions of each leaf's ancestors, its own included)."""
    depth, leaves = len(levels), len(levels[-1])
    total = sum(f[torch.arange(leaves) // branching ** (depth - 1 - i)] for i, f in enumerate(levels))
    return _unit(total)


def centroids(rows: Tensor, parents: Tensor, n_parents: int) -> Tensor:
    """[n_parents, d]: unit(mean of the rows each parent is given; parents[i] = row i's parent). The direction
    a latent learns when it stands for its children, so both the truth above the leaves and the analytic
    stacks of metasae.stages.synth_oracle are built with it."""
    total = torch.zeros(n_parents, rows.shape[1], dtype=rows.dtype).index_add_(0, parents, rows)
    return total / total.norm(dim=1, keepdim=True).clamp_min(1e-12)


def centroid_levels(leaves: Tensor, branching: int, depth: int) -> list[Tensor]:
    """The leaf regime's truth per level: T_depth = the leaf atoms, T_l = centroids of T_(l+1) by parent."""
    levels = [leaves]
    for _ in range(depth - 1):
        child = levels[0]
        parents = torch.arange(len(child)) // branching
        levels.insert(0, centroids(child, parents, len(child) // branching))
    return levels


def _directions(spec: TreeSpec, g: torch.Generator) -> list[Tensor]:
    """Unit directions per level; children mixed with their parent's direction when child_parent_mix > 0."""
    mix = spec.child_parent_mix
    levels = [_unit(torch.randn(spec.n_features(1), spec.d, generator=g))]
    for level in range(2, spec.depth + 1):
        raw = torch.randn(spec.n_features(level), spec.d, generator=g)
        if mix == 0:
            levels.append(_unit(raw))
            continue
        parent = levels[-1].repeat_interleave(spec.branching, dim=0)
        orth = _unit(raw - (raw * parent).sum(1, keepdim=True) * parent)
        levels.append(_unit(mix * parent + math.sqrt(1 - mix * mix) * orth))
    return levels


def _codes(spec: TreeSpec, g: torch.Generator) -> tuple[list[Tensor], Tensor]:
    """Per-level codes and labels. A uniform leaf per tree is a uniform child at every level (its base-b
    digits are independent), and its ancestor at level l is leaf // b^(depth - l). The path regime draws a
    magnitude per level, the leaf regime one per tree, which every active node of the tree carries."""
    n, trees, b, depth = spec.n_samples, spec.n_trees, spec.branching, spec.depth
    on = torch.rand(n, trees, generator=g) < spec.p_active
    leaf = torch.randint(b ** (depth - 1), (n, trees), generator=g)
    low, high = spec.magnitude
    draws = depth if spec.regime == "path" else 1
    mags = (low + (high - low) * torch.rand(draws, n, trees, generator=g)).expand(depth, n, trees)
    first = on.int().argmax(1)  # the first active tree (0 where none; masked below)
    any_on = on.any(1)
    rows = torch.arange(n)
    codes, labels = [], torch.full((n, depth), -1, dtype=torch.int64)
    for level in range(1, depth + 1):
        per_tree = b ** (level - 1)
        index = torch.arange(trees) * per_tree + leaf // b ** (depth - level)  # [n, trees]
        code = torch.zeros(n, trees * per_tree)
        code.scatter_(1, index, mags[level - 1] * on)
        codes.append(code)
        labels[any_on, level - 1] = index[rows, first][any_on]
    return codes, labels


def generate(spec: TreeSpec) -> SynthTree:
    """Activations and ground truth, a pure function of `spec` (directions are drawn before samples, so
    they depend on the tree shape, d, mix and seed only, not on n_samples, p_active or the noise)."""
    g = generator(spec.seed, "synth-tree")
    directions = _directions(spec, g)
    codes, labels = _codes(spec, g)
    if spec.regime == "path":
        features = directions
        acts = sum(c @ f for c, f in zip(codes, features, strict=True))
    else:
        features = centroid_levels(_path_sums(directions, spec.branching), spec.branching, spec.depth)
        acts = codes[-1] @ features[-1]
    acts = acts + spec.noise * torch.randn(spec.n_samples, spec.d, generator=g)
    return SynthTree(spec=spec, acts=acts.float(), features=features, codes=codes, labels=labels)
