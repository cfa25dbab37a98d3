"""The names of the results folders' files and the meta modes, defined once.

Kept free of heavy imports: the workflow reads it at parse time (through `metasae.study`).
"""

MODES = ("decoder", "activations")  # what depth d >= 2 trains on: depth d-1's decoder rows, or its codes
BASE_MODE = "base"  # the `mode` recorded by depth 1, which both modes share
DEPTH_MODES = (BASE_MODE, *MODES)

CFG_FILE = "cfg.json"  # beside every weights file: how it was made
METRICS_FILE = "metrics.json"  # written last: a folder without it is incomplete
SAE_WEIGHTS = "sae.safetensors"
TRAIN_LOG_FILE = "train_log.csv"
CODES_FILE = "codes.safetensors"  # depth codes of the probe images, sparse
META_CODES_FILE = "meta_codes.safetensors"  # C_d: [parent latents, latents], sparse
LINEAGE_FILE = "lineage.parquet"  # one row per (parent latent, meta-latent) pair with non-zero weight

ACTS_FILE = "acts.safetensors"
MANIFEST_FILE = "manifest.json"

LATENTS_FILE = "latents.parquet"  # analysis: one row per latent
SUMMARY_FILE = "summary.json"  # analysis: the depth's summary, written last
FIGURES_DIR = "figures"
