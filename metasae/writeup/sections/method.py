"""Method: in the main text, how a claim is decided (`method`); in the appendix, every statistic, criterion
and rule in one sentence (`definitions`), with the thresholds and rules study.json records, so that the
definitions the reader sees are the ones the aggregate stage applied.
"""

from __future__ import annotations

from metasae.writeup.data import ReportData
from metasae.writeup.format import plural

# What a study whose study.json predates the recorded rules gets (the aggregate stage records its own).
VERDICT_RULE = "per configuration and claim, from a statistic over seeds; see the aggregate stage's rules."
INTERVAL_RULE = "confidence intervals over seeds."
OPTIMUM_RULE = "each seed's best depth, summarised over seeds"


def method(report: ReportData) -> str:
    """The main text's Method: the two modes, the headline statistics and how a verdict is reached (the
    rest is in `definitions`)."""
    alpha = report.rule("alpha", 0.05)
    few = report.rule("min_seeds", 5)
    dense = report.rule("dense_routed_fraction", 0.5)
    return (
        "Each stack trains on its probe's fit images and is analysed on the probe's eval images, which "
        "no SAE of the stack saw: its reconstruction of the layer (stack FVU), the log's activation count, "
        "and the label purity of each latent's ten top-activating images, read from the image codes of "
        "each depth (Appendix B says which). A claim is tested per configuration (classifier, probe, "
        "layer, SAE, mode) over classifier seeds (further SAE seeds of one classifier measure stability, "
        "not replicates): trends by the mean over seeds of each seed's Spearman correlation of the statistic "
        "with depth, *depth 2 is optimal* by the share of seeds whose plateau is depth 2 alone, each with "
        "an exact p-value for the claim and one for its opposite. Both are Holm-corrected over every test "
        f"of the study; a claim holds or fails when one corrected p-value is below {alpha:g}, and is "
        f"inconclusive with fewer than {few} seeds whatever its p-values. Statistics fixed by "
        f"construction and image statistics of dense routed codes (more than {dense:.0%} of the dictionary "
        "active per image) enter no test; a claim that needs them is untested. Every statistic, criterion "
        "and rule is defined in Appendix B.\n"
    )


def definitions(report: ReportData) -> str:
    """One sentence per statistic, criterion and rule, with the thresholds the aggregate stage used."""
    dense = report.rule("dense_routed_fraction", 0.5)
    stable = report.rule("stable_cosine", 0.9)
    few = report.rule("min_seeds", 5)
    fixed = report.rule("fixed_l0", {}) or {
        "topk": "TopK keeps exactly k latents per input",
        "batchtopk": "BatchTopK keeps k latents per input on average over its training inputs",
    }
    n_seeds = report.depths["seed"].nunique() if report.depths is not None else None
    seeds = ""
    if n_seeds:
        seeds = f" This study has {plural(n_seeds, 'seed')} per configuration" + (
            f", fewer than the {few} of a real study; each CI says so." if n_seeds < few else "."
        )
    lines = [
        "**Image codes** (what every image statistic of a depth reads, on the probe's eval images):",
        "",
        "- *Depth 1 and width-matched controls*: the SAE's own codes of the layer's activations.",
        "- *Activations mode*: the image encoded down the stack, each depth's SAE encoding its parent's "
        "codes.",
        "- *Decoder mode* (`frozen_topk`): the layer's activations encoded directly against depth $d$'s "
        "own decoder rows, which are directions in the layer's space: a TopK encoder fitted on the fit "
        "images with those rows and depth 1's bias frozen, keeping exactly depth 1's k latents per image "
        "(each chosen pre-activation minus the next largest), so every depth is compared at depth 1's L0. "
        "The routed codes (the parent's codes passed through the meta-codes, whose L0 multiplies with "
        "depth) are kept, labelled `routed`, and enter no verdict.",
        "- *Decoder FVE* and the lineage counts are latent-level: they read the meta-SAE's codes of its "
        "parent's decoder rows, in-sample (SAEBench's convention).",
        "",
        "**Statistics** (per depth; each count is also given as a share of that depth's dictionary, "
        "because the width schedule changes the dictionary from depth to depth):",
        "",
        "- *Stack FVU*: the FVU of the layer's activations rebuilt from depth $d$'s image codes "
        "(activations mode: decoded back up the stack; decoder mode: the frozen codes times depth $d$'s "
        "decoder rows plus depth 1's bias), the same input at every depth, so it is the headline "
        "reconstruction; each depth's own-input FVU (depth 1 fits the layer, decoder-mode depths fit "
        "decoder rows, activations-mode depths fit codes) is not comparable across depths.",
        "- *Loss recovered*: $(CE_\\text{zero} - CE_\\text{spliced}) / (CE_\\text{zero} - "
        "CE_\\text{clean})$ with the layer rebuilt from depth $d$ spliced into the classifier, against "
        "the baseline of zero-ablating the layer (1 = as good as the clean model, 0 = no better than "
        "zeros, negative = worse than zeros).",
        "- *Spliced accuracy*: the classifier's accuracy with the stack spliced in; on an "
        "out-of-distribution probe whose labels are not the classifier's classes it is the agreement "
        "with the clean classifier's own predictions.",
        "- *Density*: the share of probe images on which a latent is non-zero; a latent is *alive* when "
        "its density is above 0 and *dead* otherwise (dead fraction = dead latents / dictionary size).",
        "- *Mean active* (`mean_active_per_image`): the mean number of non-zero latents per probe image; "
        "*L0* is the same on the SAE's own inputs.",
        "- *Activation count* (`count_all_top10_nonzero`, the log's statistic): the number of latents "
        "whose ten highest activations over the probe images are all non-zero; `count_fraction` divides "
        "it by the dictionary size.",
        "- *Purity*: the largest share of one label among a latent's top-10 images, averaged over the "
        "latents with at least ten activations on the probe (rarer latents are counted apart: one image "
        "gives purity 1 by arithmetic); *purity lift* = (purity - chance) / (1 - chance), chance being the "
        "purity of random top images. Claims use the lift.",
        "- *Lineage weight*: the meta-code value linking parent latent $j$ to meta-latent $i$ (decoder "
        "mode: the meta-SAE's code of parent decoder row $j$; activations mode: its code of latent $j$ "
        "firing alone at its mean active value); parents per meta-latent and meta-latents per parent "
        "count the non-zero weights.",
        "- *Decoder FVE*: the fraction of the variance of depth $d-1$'s unit-normed decoder rows that "
        "depth $d$'s meta-SAE explains (decoder mode), SAEBench's `meta_structure` number "
        "(`summary/meta_structure.json`).",
        f"- *Stability*: each seed's alive latents are matched one-to-one with another seed's by the "
        f"Hungarian algorithm on cosine similarity (of decoder rows where the seeds share the layer's "
        f"space, else of the latents' centred activations over the same probe images, i.e. their "
        f"Pearson correlation); a seed's stability is the mean matched similarity, and the share of "
        f"matched pairs above {stable}, averaged over the other seeds.",
        "",
        f"**Optimal-depth criteria** ({report.rule('optimum_rule', OPTIMUM_RULE)}):",
        "",
        "- `max_purity`: the depth of highest mean purity.",
        "- `max_activation_count`: the depth of highest `count_fraction` (the log's criterion, as a "
        "share of the dictionary).",
        "- `max_mean_active`: the depth of highest mean active share of the dictionary.",
        "- `max_stability`: the depth of highest cross-seed stability: a depth is real if it is "
        "reproducible.",
        "- `fvu_knee`: the knee of the stack-FVU curve, the depth farthest from the chord joining its "
        "ends (Kneedle).",
        "",
        "**What never enters an optimum or a verdict:**",
        "",
        "- *Fixed by construction*: "
        + "; ".join(f"{name}: {how}" for name, how in fixed.items())
        + ", so where such an SAE produces the image codes (depth 1, every activations-mode depth) the "
        "mean active count, its share and L0 are set by k and the width schedule, not by the data; in "
        "decoder mode the meta-SAE's L0 (meta-latents per parent) is set the same way. ReLU and JumpReLU "
        "SAEs let L0 vary and get a real test.",
        f"- *Dense routed codes*: in decoder mode an image's depth-$d$ code is routed through the "
        f"meta-codes; where more than {dense:.0%} of the dictionary is active per image on average, its "
        "image-level statistics (alive, dead, counts, mean active, purity, entropy) measure the "
        "dictionary size, not the images.",
        "- *Raw counts*: only the shares of the dictionary are compared across depths.",
        "",
        f"**Verdicts**: {report.rule('verdict_rule', VERDICT_RULE)}",
        "",
        f"**Intervals**: {report.rule('interval_rule', INTERVAL_RULE)}" + seeds,
    ]
    return "\n".join(lines) + "\n"
