"""The glossary: one short definition per term the main text uses, so that a reader who skipped Method can
still read the results (a test keeps the list of terms that must be defined here).

The thresholds in it are the rules the aggregate stage recorded in study.json (`ReportData.rule`).
"""

from __future__ import annotations

from metasae.writeup.data import ReportData

GLOSSARY = {
    "latent, meta-latent, sibling": "a latent is one direction of an SAE's dictionary; a meta-latent is a "
    "latent of the SAE one depth down; siblings are latents that share a meta-latent.",
    "decoder mode, activations mode": "the two meanings of an SAE on an SAE: depth d trains on depth "
    "d-1's decoder rows (the published method) or on its latent activations over the probe images (the "
    "research log's).",
    "routed codes": "in decoder mode, an image's depth-d code: its depth-(d-1) code passed through the "
    "meta-codes of its active latents. Dense routed codes (more than {dense:.0%} of the dictionary "
    "active per image) say more about the dictionary's size than about the image, so their image "
    "statistics are left out.",
    "width schedule": "how the dictionary shrinks with depth (a factor per depth, with a floor).",
    "stop rule": "a stack stops growing when its deepest SAE has too few alive latents or rebuilds its "
    "input no better than its mean.",
    "stand-in": "an embedded dataset generated offline in place of a real one (digits, glyphs, patches); "
    "glyphs and patches are out-of-distribution probes of a digits classifier.",
    "purity": "the largest share of one label among a latent's ten top-activating images.",
    "lift": "purity above chance, (purity - chance) / (1 - chance), where chance is the purity of random "
    "top images.",
    "activation count": "the log's statistic: the latents whose ten top activations are all non-zero, as "
    "a share of the dictionary.",
    "stack FVU": "fraction of the layer's variance left unexplained when it is rebuilt from depth d "
    "(0: perfect; 1: no better than the mean).",
    "plateau": "the depths tied for a seed's best value; a seed counts for depth 2 only when its plateau is "
    "depth 2 alone.",
    "knee (Kneedle)": "the depth of the stack-FVU curve farthest from the chord joining its ends.",
    "fixed by construction": "a statistic the architecture sets (TopK keeps k latents per input), which "
    "enters no verdict.",
    "Holm": "the Holm-Bonferroni correction of p-values for the number of tests in the study.",
    "verdict": "holds or fails when the corrected p-value of the claim or of its opposite is below "
    "{alpha:g}; inconclusive when neither is, or with fewer than {seeds} seeds; untested when the "
    "statistic is excluded or the depths were not reached.",
    "planted trees": "synthetic activations built from a known hierarchy of features of known depth, on "
    "which an optimal-depth criterion must find that depth.",
}


def glossary(report: ReportData) -> str:
    """The terms as a list (a definition list would not survive LessWrong's Markdown), with the study's
    thresholds."""
    rules = {
        "dense": report.rule("dense_routed_fraction", 0.5),
        "alpha": report.rule("alpha", 0.05),
        "seeds": report.rule("min_seeds", 5),
    }
    return "\n".join(f"- **{term}**: {text.format(**rules)}" for term, text in GLOSSARY.items()) + "\n"
