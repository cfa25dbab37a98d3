"""Synthetic activations with planted feature hierarchies of known depth: ground truth for meta-SAE depth.

A tree of depth L has one root feature (level 1); every feature of level l < L has `branching` children at
level l + 1, so a tree holds b^(l-1) features at level l and its leaves are level L. Within a level the
features of all trees are numbered tree by tree: feature j of level l + 1 is a child of feature j // b of
level l. Siblings are mutually exclusive: a sample in which tree t is active activates exactly one
root-to-leaf path of t (one feature per level), each with its own random magnitude, and its activation is
the sum of magnitude * direction over the active paths plus Gaussian noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from metasae.errors import MetasaeError
from metasae.seeds import generator

MAX_DEPTH = 4


@dataclass(frozen=True)
class TreeSpec:
    """What to plant. child_parent_mix = 0: every feature direction is an independent random unit vector
    (the hierarchy lives only in which features fire together); mix > 0: each child direction is
    normalise(mix * parent + sqrt(1 - mix^2) * random unit vector orthogonal to the parent), so its cosine
    with the parent is exactly mix and the hierarchy shows in the geometry too."""

    n_trees: int
    depth: int
    branching: int
    d: int
    n_samples: int
    p_active: float  # probability that a tree is active in a sample, independently per tree
    magnitude: tuple[float, float]  # each active feature's magnitude ~ Uniform(low, high)
    noise: float  # std of the isotropic Gaussian noise added to every activation
    child_parent_mix: float
    seed: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "magnitude", tuple(self.magnitude))  # configs give lists
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
    features: list[Tensor]  # per level: unit directions [n_features_l, d]
    codes: list[Tensor]  # per level: float32 [n, n_features_l], the magnitude of each feature (0 = off)
    labels: Tensor  # int64 [n, depth]: active feature per level of the first active tree, -1 = no tree

    @property
    def active(self) -> list[Tensor]:
        """Per level: bool [n, n_features_l], which features fire in each sample (magnitudes are > 0)."""
        return [c > 0 for c in self.codes]

    def level_labels(self, level: int) -> Tensor:
        """int64 [n]: the feature of `level` on the first active tree's path, -1 where no tree is active."""
        if not 1 <= level <= self.spec.depth:
            raise MetasaeError(f"level={level}: must be in [1, {self.spec.depth}]")
        return self.labels[:, level - 1]

    def path_directions(self) -> Tensor:
        """[n_leaves, d]: unit direction of each root-to-leaf path's feature sum. Every level draws from the
        same magnitudes, so this is the mean direction of a path's contribution: what one latent per active
        tree learns when a TopK SAE has no room to code the levels separately."""
        leaves = self.spec.n_features(self.spec.depth)
        total = sum(
            f[torch.arange(leaves) // self.spec.branching ** (self.spec.depth - 1 - i)]
            for i, f in enumerate(self.features)
        )
        return total / total.norm(dim=1, keepdim=True)


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True)


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
    digits are independent), and its ancestor at level l is leaf // b^(depth - l)."""
    n, trees, b, depth = spec.n_samples, spec.n_trees, spec.branching, spec.depth
    on = torch.rand(n, trees, generator=g) < spec.p_active
    leaf = torch.randint(b ** (depth - 1), (n, trees), generator=g)
    low, high = spec.magnitude
    mags = low + (high - low) * torch.rand(depth, n, trees, generator=g)
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
    features = _directions(spec, g)
    codes, labels = _codes(spec, g)
    acts = sum(c @ f for c, f in zip(codes, features, strict=True))
    acts = acts + spec.noise * torch.randn(spec.n_samples, spec.d, generator=g)
    return SynthTree(spec=spec, acts=acts.float(), features=features, codes=codes, labels=labels)
