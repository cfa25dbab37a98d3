"""The works the write-up cites: one entry each, cited in the text by `cite` and listed by `reference_list`.

One table, so that an in-text link and its entry in References cannot disagree, and a test can check that
every work cited is listed with a link.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Work:
    """A cited work: how the text names it (`short`), its full entry and its link."""

    short: str
    authors: str
    year: int
    title: str
    venue: str
    url: str


WORKS = {
    "meta_saes": Work(
        "Bussmann, Pearce, Leask et al. 2024",
        "Bart Bussmann, Michael Pearce, Patrick Leask, Joseph Bloom, Lee Sharkey, Neel Nanda",
        2024,
        "Showing SAE latents are not atomic using meta-SAEs",
        "LessWrong / AI Alignment Forum",
        "https://www.alignmentforum.org/posts/TMAmHh4DdMr4nCSr5/showing-sae-latents-are-not-atomic-using-meta-saes",
    ),
    "canonical": Work(
        "Leask et al. 2025",
        "Patrick Leask, Bart Bussmann, Michael Pearce, Joseph Bloom, Curt Tigges, Noura Al Moubayed, "
        "Lee Sharkey, Neel Nanda",
        2025,
        "Sparse Autoencoders Do Not Find Canonical Units of Analysis",
        "ICLR 2025, arXiv:2502.04878",
        "https://arxiv.org/abs/2502.04878",
    ),
    "saebench": Work(
        "Karvonen et al. 2025",
        "Adam Karvonen, Can Rager, Johnny Lin, Curt Tigges, Joseph Bloom, David Chanin et al.",
        2025,
        "SAEBench: A Comprehensive Benchmark for Sparse Autoencoders in Language Model Interpretability",
        "arXiv:2503.09532",
        "https://arxiv.org/abs/2503.09532",
    ),
    "batchtopk": Work(
        "Bussmann, Leask & Nanda 2024",
        "Bart Bussmann, Patrick Leask, Neel Nanda",
        2024,
        "BatchTopK Sparse Autoencoders",
        "arXiv:2412.06410",
        "https://arxiv.org/abs/2412.06410",
    ),
    "topk": Work(
        "Gao et al. 2024",
        "Leo Gao, Tom Dupré la Tour, Henk Tillman, Gabriel Goh, Rajan Troll, Alec Radford, Ilya Sutskever, "
        "Jan Leike, Jeffrey Wu",
        2024,
        "Scaling and evaluating sparse autoencoders",
        "arXiv:2406.04093",
        "https://arxiv.org/abs/2406.04093",
    ),
    "matryoshka": Work(
        "Bussmann et al. 2025",
        "Bart Bussmann, Noa Nabeshima, Adam Karvonen, Neel Nanda",
        2025,
        "Learning Multi-Level Features with Matryoshka Sparse Autoencoders",
        "ICML 2025, arXiv:2503.17547",
        "https://arxiv.org/abs/2503.17547",
    ),
    "matryoshka_lw": Work(
        "Nabeshima 2024",
        "Noa Nabeshima",
        2024,
        "Matryoshka Sparse Autoencoders",
        "LessWrong",
        "https://www.lesswrong.com/posts/zbebxYCqsryPALh8C/matryoshka-sparse-autoencoders",
    ),
    "same_data": Work(
        "Paulo & Belrose 2025",
        "Gonçalo Paulo, Nora Belrose",
        2025,
        "Sparse Autoencoders Trained on the Same Data Learn Different Features",
        "arXiv:2501.16615",
        "https://arxiv.org/abs/2501.16615",
    ),
}


def cite(key: str) -> str:
    """An in-text citation: the work's short name linked to it (a KeyError names an unlisted work)."""
    work = WORKS[key]
    return f"[{work.short}]({work.url})"


def reference_list() -> str:
    """References: every work of WORKS, with its link, in the order the introduction cites them."""
    return (
        "\n".join(
            f"- {w.authors} ({w.year}). *{w.title}*. {w.venue}. [{w.url}]({w.url})" for w in WORKS.values()
        )
        + "\n"
    )
