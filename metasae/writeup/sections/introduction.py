"""The introduction: the question, what SAEs and meta-SAEs are, the research log and its author's question,
and what this study adds; every work it leans on cited with a link (`metasae.writeup.references`).

Prose only: it states no result, so nothing in it depends on the results folder.
"""

from __future__ import annotations

from metasae.writeup.references import cite

LOG_CODE = "https://github.com/jain18ayush/mnist-sae"  # the research log's public code repository


def introduction() -> str:
    """Four paragraphs: SAEs and atomicity, meta-SAEs, the research log's question, what is new here."""
    return f"""A sparse autoencoder (SAE) rewrites a network's activations as a sparse sum of learned
directions, its *latents*, in the hope that each latent is one interpretable feature. Modern SAEs keep the
k largest activations per input (TopK, {cite("topk")}) or per batch (BatchTopK, {cite("batchtopk")}).
Whether their latents are *atomic*, units that do not split further, is doubtful: larger SAEs split
latents into several, SAEs of different sizes find different units ({cite("canonical")}), and SAEs trained
on the same data with different seeds learn different features ({cite("same_data")}).

{cite("meta_saes")} made the doubt testable with the *meta-SAE*: an SAE trained on the decoder directions of
another SAE, one training example per latent. A latent that the meta-SAE rebuilds from several
*meta-latents* is a composite of them, and latents sharing a meta-latent are *siblings*. SAEBench
({cite("saebench")}) turned the meta-SAE into a metric, and Matryoshka SAEs ({cite("matryoshka_lw")};
{cite("matryoshka")}) build such a hierarchy into one SAE by nesting its dictionaries.

The research log this study follows ([its author's notes and code]({LOG_CODE}), October to November 2024)
asked what happens if one keeps going: an SAE on the SAE, on that one, and so on, on an MNIST classifier.
Its author expected that where a classifier neuron fires on three digits, a depth-1 latent would fire on
two and a depth-2 one on one, so that "the features become more atomic as you go down"; its last entry
reports "preliminary findings that there is a optimal depth for meta-saes" (depth 2, where the most
latents fire on all ten of their top images). Hence this report's two questions: **is there an optimal
depth?** and **do latents get more atomic with depth?**

What is new here: both meanings of "an SAE on an SAE" run side by side (the published `decoder` method and
the log's `activations` method); every depth is analysed the same way; every claim gets a verdict from an
exact test over seeds, corrected for the number of tests, with statistics that the architecture fixes
left out; the criteria for an optimal depth are checked on planted trees of known depth; and the log's own
setup is rerun as a preset and compared with it number by number.
"""
