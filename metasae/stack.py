"""`Depth`: one depth folder of an SAE stack, read once, and what the stack does with it.

A depth folder (see DESIGN.md's contracts) holds `metrics.json` (written last; status `trained` or `stopped`),
and, when trained, `cfg.json`, `sae.safetensors`, `codes.safetensors` (of the probe's eval images; where the
stack trained on a fit set of its own, `fit_codes.safetensors` of the fit images) and, from depth 2, the
meta-codes and lineage. Every consumer (training the next depth, analysis, aggregation) takes a `Depth`: its
files are read on first use and kept, and its parent is the same kind of value, so a whole stack is read once.

- `decoder` mode: depth d's image codes (`image_codes`, what every image statistic reads) are TopK codes on
  its own frozen dictionary (metasae.frozen_codes; the layer is rebuilt from them); the routed codes,
  code_d = code_{d-1} @ C_d, are kept apart (`routed_codes`, `routed_reconstruction`): they are dense.
- `activations` mode: encode down the stack, decode back up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
import torch

from metasae.codes import load_codes
from metasae.errors import MetasaeError
from metasae.frozen_codes import FrozenEncoder, unit_rows
from metasae.io import read_json, verify_file
from metasae.layout import (
    BASE_MODE,
    CFG_FILE,
    CODES_FILE,
    DEPTH_MODES,
    FIT_CODES_FILE,
    FROZEN_CODES_FILE,
    FROZEN_ENCODER_FILE,
    LINEAGE_FILE,
    META_CODES_FILE,
    METRICS_FILE,
    SHA256_KEY,
)
from metasae.sae import SAE, load_sae
from metasae.sae.sparse_rows import SparseRows

STATUSES = ("trained", "stopped")
PRODUCER = "train-sae"  # the command that writes a depth folder (named when one of its files is corrupt)
CFG_KEYS = ("depth", "mode", "acts_dir")  # and `parent` from depth 2
LINEAGE_COLUMNS = ("parent_latent", "meta_latent", "weight")

Encoder = Callable[[torch.Tensor], torch.Tensor]


def trained_record(depth: int, mode: str, width: int, checksums: dict[str, str]) -> dict:
    """The metrics.json fields of every trained depth folder, whoever writes it (train-sae, synth-oracle):
    what `Depth.load` reads and the sha256 of each data file, for every reader to verify."""
    return {
        "status": "trained",
        "stop_reason": None,
        "depth": depth,
        "mode": mode,
        "width": width,
        SHA256_KEY: dict(sorted(checksums.items())),
    }


@dataclass(eq=False)
class Depth:
    """A depth folder: its cfg and metrics (read at load, when its data files' recorded sha256 are checked
    too), its SAE, codes, meta-codes, lineage and parent (read on first use, once)."""

    path: Path
    metrics: dict
    cfg: dict  # empty for a stopped depth (it has no cfg.json)

    @classmethod
    def load(cls, path: str | Path) -> Depth:
        """Read and check a depth folder's metrics.json and (when trained) cfg.json."""
        path = Path(path)
        metrics = read_json(path / METRICS_FILE)
        if metrics.get("status") not in STATUSES:
            raise MetasaeError(
                f"{path / METRICS_FILE}: status={metrics.get('status')!r}; allowed: {', '.join(STATUSES)}"
            )
        if metrics["status"] == "stopped":
            return cls(path, metrics, {})
        cfg = read_json(path / CFG_FILE)
        for key in CFG_KEYS:
            if key not in cfg:
                raise MetasaeError(f"{path / CFG_FILE}: missing key {key!r}")
        if cfg["mode"] not in DEPTH_MODES:
            raise MetasaeError(f"{path / CFG_FILE}: mode={cfg['mode']!r}; allowed: {', '.join(DEPTH_MODES)}")
        if cfg["mode"] != BASE_MODE and not cfg.get("parent"):
            raise MetasaeError(f"{path / CFG_FILE}: mode={cfg['mode']!r} needs a parent depth folder")
        depth = cls(path, metrics, cfg)
        data_files = (CODES_FILE, FIT_CODES_FILE, META_CODES_FILE, LINEAGE_FILE)
        data_files += (FROZEN_CODES_FILE, FROZEN_ENCODER_FILE)
        for name in data_files:  # every data file, whoever reads which
            if name in depth.checksums or (path / name).exists() or name == CODES_FILE:
                verify_file(path / name, depth.checksums, PRODUCER)
        return depth

    @property
    def stopped(self) -> bool:
        return self.metrics["status"] == "stopped"

    @property
    def depth(self) -> int:
        return int(self.cfg["depth"] if self.cfg else self.metrics.get("depth"))

    @property
    def mode(self) -> str:
        return self.cfg["mode"] if self.cfg else self.metrics.get("mode")

    @property
    def width(self) -> int:
        return int(self.metrics.get("width") or 0)

    @property
    def checksums(self) -> dict:
        """{file: sha256} of the codes, meta-codes and lineage, recorded when they were written."""
        return self.metrics.get(SHA256_KEY) or {}

    @property
    def acts_dir(self) -> Path:
        """The eval cache: the probe images the depth's codes (and every statistic) are of."""
        return Path(self.cfg["acts_dir"])

    @property
    def fit_acts_dir(self) -> Path:
        """The cache the stack trained on (a folder written before fit sets existed: the eval cache)."""
        return Path(self.cfg.get("fit_acts_dir") or self.cfg["acts_dir"])

    @property
    def has_fit_codes(self) -> bool:
        return FIT_CODES_FILE in self.checksums

    def _trained(self, what: str) -> None:
        if self.stopped:
            raise MetasaeError(f"{self.path}: a stopped depth has no {what}")

    @cached_property
    def sae(self) -> SAE:
        self._trained("SAE")
        return load_sae(self.path, cfg=self.cfg).eval()

    @cached_property
    def codes(self) -> torch.Tensor:
        """Codes of the probe images, sparse COO [images, latents]."""
        self._trained("codes")
        return load_codes(self.path / CODES_FILE)

    @property
    def frozen(self) -> bool:
        """Whether image statistics read frozen-dictionary codes: a decoder-mode depth >= 2 written with them
        (train-sae records their sha256; an analytic stack of synth-oracle has none, and its routed codes
        are already the planted node codes)."""
        written = {FROZEN_CODES_FILE, FROZEN_ENCODER_FILE} & set(self.checksums)
        return self.mode == "decoder" and self.depth >= 2 and bool(written)

    @property
    def codes_used(self) -> str:
        """summary.json's `codes_used`: `frozen_topk`, `routed` (a decoder depth without frozen codes) or
        `own` (metasae.frozen_codes.CODES_USED)."""
        if self.frozen:
            return "frozen_topk"
        return "routed" if self.mode == "decoder" and self.depth >= 2 else "own"

    @cached_property
    def image_codes(self) -> torch.Tensor:
        """The codes every image statistic uses, sparse [images, latents]: decoder mode d >= 2 the frozen
        dictionary's TopK codes, otherwise the depth's own codes."""
        if not self.frozen:
            return self.codes
        self._trained("frozen codes")
        verify_file(self.path / FROZEN_CODES_FILE, self.checksums, PRODUCER)
        return load_codes(self.path / FROZEN_CODES_FILE)

    @property
    def routed_codes(self) -> torch.Tensor | None:
        """Decoder mode d >= 2: code_{d-1} @ C_d (codes.safetensors), reported as routed, never a verdict."""
        return self.codes if self.frozen else None

    @cached_property
    def frozen_encoder(self) -> FrozenEncoder:
        """Decoder mode d >= 2: the TopK encoder onto this depth's frozen decoder rows."""
        if not self.frozen:
            raise MetasaeError(f"{self.path}: only a decoder-mode depth >= 2 has a frozen-dictionary encoder")
        self._trained("frozen-dictionary encoder")
        return FrozenEncoder.load(self.path / FROZEN_ENCODER_FILE, self.checksums, PRODUCER)

    @cached_property
    def fit_codes(self) -> torch.Tensor:
        """Codes of the fit images, sparse COO (what an activations-mode child trains on): the codes
        themselves where the stack trained on its eval cache."""
        self._trained("fit codes")
        if self.has_fit_codes:
            return load_codes(self.path / FIT_CODES_FILE)
        if self.fit_acts_dir != self.acts_dir:
            raise MetasaeError(f"{self.path}: no {FIT_CODES_FILE}, though it trained on {self.fit_acts_dir}")
        return self.codes

    @cached_property
    def meta_codes(self) -> torch.Tensor:
        """C_d, dense [parent latents, latents] (depth >= 2)."""
        self._trained("meta-codes")
        return load_codes(self.path / META_CODES_FILE).to_dense()

    @cached_property
    def lineage(self) -> pd.DataFrame | None:
        """(parent_latent, meta_latent, weight) rows, or None where the folder has no lineage (depth 1)."""
        path = self.path / LINEAGE_FILE
        if not path.is_file():
            return None
        table = pd.read_parquet(path)
        missing = set(LINEAGE_COLUMNS) - set(table.columns)
        if missing:
            raise MetasaeError(f"{path}: missing column(s) {sorted(missing)}")
        return table

    @cached_property
    def parent(self) -> Depth | None:
        return Depth.load(self.cfg["parent"]) if self.cfg.get("parent") else None

    @property
    def root(self) -> Depth:
        return self if self.parent is None else self.parent.root

    def directions(self) -> torch.Tensor:
        """[latents, d]: each latent's direction in the cached layer's space (depth 1 and decoder mode: its
        decoder row; activations mode: its decoder row decoded up the stack, bias removed)."""
        if self.mode != "activations":
            return self.sae.W_dec.detach().float()
        decode = self.decoder()
        with torch.no_grad():
            eye = torch.eye(self.sae.W_dec.shape[0])
            return (decode(eye) - decode(torch.zeros(1, eye.shape[1]))).float()

    def decoder_rows(self) -> torch.Tensor:
        """Unit-normed decoder rows [latents, d_in]: the training set of a decoder-mode meta-SAE."""
        return unit_rows(self.sae.W_dec.detach())

    def encoder(self) -> Encoder:
        """A differentiable map from layer activations to this depth's image codes (feature visualisation
        uses it)."""
        if self.parent is None:
            return self.sae.encode
        if self.frozen:
            return self.frozen_encoder.encode
        if self.mode == "decoder":
            return self.routed_encoder()
        parent, sae = self.parent.encoder(), self.sae
        return lambda x: sae.encode(SparseRows.from_dense(parent(x)))  # products over the codes' non-zeros

    def routed_encoder(self) -> Encoder:
        """Decoder mode: layer activations to routed codes, code_d = code_{d-1} @ C_d down the stack."""
        if self.parent is None:
            return self.sae.encode
        parent, meta_codes = self.parent.routed_encoder(), self.meta_codes
        return lambda x: parent(x) @ meta_codes

    def decoder(self) -> Encoder:
        """activations mode: depth-d codes back to layer activations through every decoder of the stack."""
        if self.parent is None:
            return self.sae.decode
        parent, sae = self.parent.decoder(), self.sae
        return lambda z: parent(sae.decode(z))

    def reconstruction(self) -> Encoder:
        """Layer activations rebuilt from this depth's latents: what a depth keeps of the layer.

        activations mode: encode down the stack, decode back up. decoder mode: depth 1's b_dec + the frozen
        codes @ this depth's decoder rows.
        """
        if self.parent is None:
            return self.sae.forward
        if self.frozen:
            return self.frozen_encoder.reconstruct
        if self.mode == "decoder":
            return self.routed_reconstruction()
        encode, decode = self.encoder(), self.decoder()
        return lambda x: decode(encode(x))

    def routed_reconstruction(self) -> Encoder:
        """Decoder mode d >= 2, as routing rebuilds the layer: the parent's codes applied to its decoder rows
        *as this depth's meta-SAE rebuilds them* (exact at depth 2; deeper, the routed parent codes stand in
        for the parent's own)."""
        with torch.no_grad():
            rebuilt = self.sae(self.parent.decoder_rows())
        root_bias = self.root.sae.b_dec.detach()
        parent_encode = self.parent.routed_encoder()
        return lambda x: parent_encode(x) @ rebuilt + root_bias

    @torch.no_grad()
    def splice_metrics(
        self,
        model: torch.nn.Module,
        layer: str,
        acts: torch.Tensor,
        images: torch.Tensor,
        labels: torch.Tensor,
        label_source: str = "dataset_labels",
        reconstruction: Encoder | None = None,
        baselines: dict[str, float] | None = None,
    ) -> dict:
        """FVU of the layer rebuilt from this depth (`reconstruction`, default the image codes'), and the
        classifier with that rebuild spliced in (`baselines`: metrics.splice_baselines, if known)."""
        from metasae.metrics import fvu, spliced_metrics

        splice = StackSplice(reconstruction or self.reconstruction())
        with torch.no_grad():
            rebuilt = splice(acts)  # once, for the FVU and the splice's head
        spliced = spliced_metrics(
            model, layer, splice, images, labels, baselines=baselines, acts=acts, rebuilt=rebuilt
        )
        return {
            "stack_fvu": fvu(acts, rebuilt),
            "spliced_accuracy": spliced["accuracy_sae"],
            "clean_accuracy": spliced["accuracy_clean"],
            "loss_recovered": spliced["loss_recovered"],
            "spliced_label_source": label_source,
        }


class StackSplice(torch.nn.Module):
    """A stack's reconstruction as a module, so it can be spliced into a classifier layer."""

    def __init__(self, reconstruct: Encoder) -> None:
        super().__init__()
        self.reconstruct = reconstruct

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(x)
