"""Do two runs of one study reach the same verdicts? The check of issue 26: runs whose floats differ only in
summation order (`--set-threads` 1 vs 2 for every job) must agree, or each verdict that changes must be
"inconclusive" in one of them, so that no verdict rests on the last digit.

    python benchmarks/compare_verdicts.py RESULTS_A RESULTS_B   # exit 1 if a verdict flips holds <-> fails
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

KEY = ["claim", "model", "dataset", "layer", "sae", "mode"]
SOFT = {"inconclusive"}  # a change to or from these is allowed: the verdict said the evidence was thin


def compare(a: Path, b: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(every claim with both verdicts, the changed ones, those changed not via inconclusive)."""
    left, right = (pd.read_csv(p / "summary" / "claims.csv", keep_default_na=False) for p in (a, b))
    both = left[KEY + ["verdict", "estimate", "p_holm"]].merge(
        right[KEY + ["verdict", "estimate", "p_holm"]],
        on=KEY,
        how="outer",
        suffixes=("_a", "_b"),
        indicator=True,
    )
    changed = both[both["verdict_a"] != both["verdict_b"]]
    hard = changed[~changed["verdict_a"].isin(SOFT) & ~changed["verdict_b"].isin(SOFT)]
    return both, changed, hard


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    both, changed, hard = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    print(
        f"{len(both)} claims; verdicts {both['verdict_a'].value_counts().to_dict()} vs "
        f"{both['verdict_b'].value_counts().to_dict()}; {len(changed)} changed, "
        f"{len(hard)} not via inconclusive"
    )
    if len(changed):
        print(changed.to_string(index=False, max_colwidth=48))
    sys.exit(1 if len(hard) else 0)
