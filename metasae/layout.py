"""The names of the results folders' files and the meta modes, defined once, and how an analysis path
names its run.

Kept free of heavy imports: the workflow reads it at parse time (through `metasae.study`).
"""

import re
from pathlib import Path

from metasae.errors import MetasaeError

MODES = ("decoder", "activations")  # what depth d >= 2 trains on: depth d-1's decoder rows, or its codes
BASE_MODE = "base"  # the `mode` recorded by depth 1, which both modes share
DEPTH_MODES = (BASE_MODE, *MODES)

CFG_FILE = "cfg.json"  # beside every weights file: how it was made
SHA256_KEY = "sha256"  # in cfg.json / metrics.json: {file name: sha256 of its bytes when written}
METRICS_FILE = "metrics.json"  # written last: a folder without it is incomplete
SAE_WEIGHTS = "sae.safetensors"
TRAIN_LOG_FILE = "train_log.csv"
CODES_FILE = "codes.safetensors"  # depth codes of the probe images, sparse
FIT_CODES_FILE = "fit_codes.safetensors"  # depth codes of the fit images (an SAE's own training images)
FROZEN_CODES_FILE = "frozen_codes.safetensors"  # decoder-mode depth d >= 2: frozen-dictionary image codes
FROZEN_ENCODER_FILE = "frozen_encoder.safetensors"  # W_enc, b_enc, b_dec, dictionary, k of those codes
META_CODES_FILE = "meta_codes.safetensors"  # C_d: [parent latents, latents], sparse
LINEAGE_FILE = "lineage.parquet"  # one row per (parent latent, meta-latent) pair with non-zero weight

ACTS_FILE = "acts.safetensors"
MANIFEST_FILE = "manifest.json"

LATENTS_FILE = "latents.parquet"  # analysis: one row per latent
SUMMARY_FILE = "summary.json"  # analysis: the depth's summary, written last
FIGURES_DIR = "figures"

# probes.csv of the dSprites branch (stage `probe`): one row per checkpoint x layer x factor x probe x metric
PROBE_COLUMNS = [
    "train_set",
    "checkpoint",
    "step",
    "layer",
    "factor",
    "probe",
    "metric",
    "value",
    "ci_low",
    "ci_high",
]

SUMMARY_PATH = re.compile(
    r"analysis/(?P<model>[a-z0-9_]+)/seed(?P<seed>\d+)/(?P<dataset>[a-z0-9_]+)/(?P<layer>[a-z0-9_]+)/"
    r"(?P<sae>[a-z0-9_]+)/(?:(?P<mode>decoder|activations)/)?depth(?P<depth>\d+)/summary\.json$"
)


def parse_summary_path(path: str | Path) -> dict:
    """The run, mode and depth an analysis summary belongs to, read from its path (DESIGN.md's contract)."""
    match = SUMMARY_PATH.search(Path(path).as_posix())
    if not match:
        raise MetasaeError(
            f"{path}: not an analysis summary path (analysis/<model>/seed<N>/<probe>/<layer>/"
            "<sae>/[<mode>/]depth<d>/summary.json)"
        )
    fields = match.groupdict()
    return {**fields, "seed": int(fields["seed"]), "depth": int(fields["depth"])}
