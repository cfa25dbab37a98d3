"""Statistics that the study's design decides are never evidence.

- fixed by construction: a TopK SAE keeps exactly k latents per input and a BatchTopK SAE k on average over
  its training inputs, so where such an SAE produces the image codes (depth 1, and every depth in
  `activations` mode) the active-latent statistics (`L0_STATISTICS`) are set by k and the width schedule;
  in `decoder` mode the meta-SAE's L0 (meta-latents per parent row) is set the same way.
- frozen-dictionary codes: in `decoder` mode depth d >= 2 encodes an image with TopK at depth 1's k on its
  own frozen decoder rows (`codes_used` frozen_topk, metasae.frozen_codes), so its active latents per image
  are fixed by construction too; its other image statistics are evidence.
- dense routed codes: a results folder analysed before the frozen codes (no `codes_used`, or `routed`) read
  decoder-mode image statistics off codes routed through the meta-codes; where more than
  `DENSE_ROUTED_FRACTION` of the dictionary is active per image on average, image-level statistics
  (`IMAGE_STATISTICS`) measure the dictionary size, not the images, and are excluded. Stability matched on
  code columns is image-level too: dense columns all follow the data's main directions. Routed statistics
  reported beside frozen ones (`routed_*` in summary.json) are never evidence.
"""

from __future__ import annotations

import math

import pandas as pd

from metasae.statistics.seed_stability import STABILITY_COLUMNS

DENSE_ROUTED_FRACTION = (
    0.5  # decoder mode: routed codes with more of the dictionary active per image are dense
)
FIXED_L0 = {  # architectures whose L0 the training fixes, and how
    "topk": "TopK keeps exactly k latents per input",
    "batchtopk": "BatchTopK keeps k latents per input on average over its training inputs",
    "matryoshka": "Matryoshka (BatchTopK) keeps k latents per input on average over its training inputs",
}
IMAGE_L0_STATISTICS = ("mean_active_per_image", "mean_active_fraction")
L0_STATISTICS = ("l0", *IMAGE_L0_STATISTICS)
ROUTED_PREFIX = "routed_"  # summary.json's statistics of routed codes, beside the frozen ones
IMAGE_STATISTICS = (  # computed from the image codes of a depth (routed codes in decoder mode)
    "alive_latents",
    "alive_fraction",
    "dead_fraction",
    "purity_mean",
    "purity_median",
    "purity_rated_mean",
    "purity_lift",
    "purity_lift_minus_control",
    "superclass_purity_mean",
    "entropy_mean",
    "count_all_top10_nonzero",
    "count_fraction",
    "mean_active_per_image",
    "mean_active_fraction",
    "abstraction_gap",
)
EXCLUSION_COLUMNS = [  # exclusions()'s
    "codes_used",
    "routed_codes_dense",
    "fixed_by_construction",
    "excluded_because",
]
FIXED, DENSE, ROUTED = "fixed by construction", "dense routed codes", "routed codes"
FROZEN_L0 = "frozen-dictionary TopK keeps depth 1's k latents per image"


def codes_used(row: object) -> str:
    """The image codes a depth row's statistics were read from: its summary's `codes_used`, else (analysed
    before it was recorded) what the analysis read then: routed codes in decoder mode d >= 2, its own else."""
    used = getattr(row, "codes_used", None)
    if isinstance(used, str) and used:
        return used
    return "routed" if row.mode == "decoder" and row.depth >= 2 else "own"


def exclusions(table: pd.DataFrame) -> pd.DataFrame:
    """Per depth row: which image codes its statistics read, whether they are dense routed codes, which
    statistics the architecture fixes (space-separated names) and why, in words (see the module docstring)."""
    out = []
    for row in table.itertuples(index=False):
        fixed: list[str] = []
        why: list[str] = []
        dense = False
        how = FIXED_L0.get(row.architecture)
        used = codes_used(row)
        if row.status == "trained":
            if row.mode == "decoder" and row.depth >= 2:
                if how:
                    fixed += ["l0", "meta_latents_per_parent"]
                    why.append(f"{how}: meta-latents per parent row")
                share = row.mean_active_fraction
                if used == "frozen_topk":
                    fixed += IMAGE_L0_STATISTICS
                    why.append(f"{FROZEN_L0}: active latents per image")
                elif share is not None and not math.isnan(share) and share > DENSE_ROUTED_FRACTION:
                    dense = True
                    why.append(
                        f"routed codes dense: {row.mean_active_per_image:.3g} of {row.width} latents "
                        f"active per image ({share:.0%} > {DENSE_ROUTED_FRACTION:.0%})"
                    )
            elif how:
                fixed += [*L0_STATISTICS, *(["meta_latents_per_parent"] if row.depth >= 2 else [])]
                why.append(f"{how}: active latents per image")
        out.append((used, dense, " ".join(fixed), "; ".join(why)))
    return pd.DataFrame(out, columns=EXCLUSION_COLUMNS, index=table.index)


def excluded_as(row: pd.Series, column: str) -> str | None:
    """Why `column` of a trained depth row must not be used (FIXED, DENSE or ROUTED), or None."""
    if column.startswith(ROUTED_PREFIX) and column != "routed_codes_dense":
        return ROUTED
    if column in str(row.get("fixed_by_construction") or "").split():
        return FIXED
    if bool(row.get("routed_codes_dense")) and (
        column in IMAGE_STATISTICS or (column in STABILITY_COLUMNS and row.get("stability_basis") == "codes")
    ):
        return DENSE
    return None


def excluded_depths(group: pd.DataFrame, column: str) -> str:
    """The depths of a group where `column` is excluded, and why (one phrase per reason)."""
    trained = group[group["status"] == "trained"]
    reasons: dict[str, set[int]] = {}
    for _, row in trained.iterrows():
        kind = excluded_as(row, column)
        if kind:
            reasons.setdefault(kind, set()).add(int(row["depth"]))
    return "; ".join(
        f"{kind} at depth {' '.join(map(str, sorted(d)))}" for kind, d in sorted(reasons.items())
    )


def blank_dense(depths: pd.DataFrame) -> pd.DataFrame:
    """The table the figures draw: image-level statistics of dense routed codes blanked (they measure the
    dictionary size, not the images); values fixed by construction are drawn (they are what the SAE did)."""
    out = depths.copy()
    dense = out["routed_codes_dense"].astype(bool)
    for column in IMAGE_STATISTICS:
        if column in out:
            out[column] = out[column].astype(float).where(~dense)
    on_codes = dense & (out["stability_basis"] == "codes")
    for column in ("stability_mean_cosine", "stability_fraction_matched"):
        out[column] = out[column].astype(float).where(~on_codes)
    return out
