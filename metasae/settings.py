"""The one list of SAE settings: `SAESpec`. A config block (`sae.<name>`, `meta.modes.<mode>`,
`dsprites.sae`), the `train-sae` / `probe-sae` flags and the config schema all come from its fields.

Each field carries its help text and its JSON-schema type (allowed values included); `None` means "the
architecture's or trainer's default" (`SAEConfig`, `TrainConfig`). Light on purpose: no torch import, so
the CLI can build its parser and the workflow can read the allowed values without loading torch.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from metasae.errors import MetasaeError

# metasae.sae.registry.ARCHITECTURES's keys, and those whose class has `needs_k` (tests hold them together)
ARCHITECTURE_NAMES = ("relu", "topk", "batchtopk", "jumprelu", "matryoshka")
K_ARCHITECTURES = ("topk", "batchtopk", "matryoshka")
L1_REDUCTIONS = ("decoder_norm", "sum")
SAMPLINGS = ("epoch", "replacement")
B_DEC_INITS = ("geometric_median", "mean", "zeros")
DECODER_INITS = ("random", "data")
AUTOCAST = ("bf16",)

POSITIVE_INT = {"$ref": "#/$defs/positive_int"}
COUNT = {"type": "integer", "minimum": 0}
NON_NEGATIVE = {"type": "number", "minimum": 0}
SCHEDULE_KEYS = ("factor", "min")  # depth >= 2: width = round(parent width * factor), stop below min


def setting(help: str, schema: dict, sae: bool = False, stack: bool = False) -> Any:
    """A field of SAESpec: `sae` settings build the SAEConfig, `stack` settings are train-sae's own (how a
    depth of the stack is set up), the others build the TrainConfig."""
    return field(default=None, metadata={"help": help, "schema": schema, "sae": sae, "stack": stack})


@dataclass(frozen=True)
class SAESpec:
    """What to train: architecture, width (or width schedule), sparsity and training settings."""

    architecture: str | None = setting("SAE architecture", {"enum": list(ARCHITECTURE_NAMES)}, sae=True)
    width: int | dict | None = setting(
        "number of latents (depth 1); from depth 2 a schedule {factor, min}: latents = round(parent latents "
        "* factor), the stack stops below min",
        {},
    )
    k: int | None = setting(
        "topk / batchtopk / matryoshka: active latents per example (a mean, for the batch-wide two)",
        POSITIVE_INT,
        sae=True,
    )
    l1_coeff: float | None = setting("relu: L1 coefficient; jumprelu: L0 coefficient", NON_NEGATIVE, sae=True)
    l1_reduction: str | None = setting(
        "relu: decoder_norm (April update) | sum (the research log)", {"enum": list(L1_REDUCTIONS)}, sae=True
    )
    k_aux: int | None = setting(
        "AuxK latents per example (default d_in // 2; 0 turns AuxK off)", COUNT, sae=True
    )
    aux_coeff: float | None = setting("AuxK loss coefficient", NON_NEGATIVE, sae=True)
    prefixes: list[int] | None = setting(
        "matryoshka: ascending latent counts m_1 < m_2 < ... < width whose first m_i latents must each "
        "reconstruct the input alone (default width/8, width/4, width/2)",
        {"type": "array", "items": POSITIVE_INT},
        sae=True,
    )
    normalize_decoder: bool | None = setting("keep decoder rows at unit norm", {"type": "boolean"}, sae=True)
    pre_encoder_bias: bool | None = setting("subtract b_dec before encoding", {"type": "boolean"}, sae=True)
    lr: float | None = setting("Adam learning rate", {"type": "number", "exclusiveMinimum": 0})
    decoder_lr_scale: float | None = setting(
        "the decoder's learning rate / lr (default 3 for topk / batchtopk / matryoshka, 1 for relu / "
        "jumprelu; 10 turns decoder rows per step as SAELens's do)",
        {"type": "number", "exclusiveMinimum": 0},
    )
    encoder_lr_scale: float | None = setting(
        "the encoder's (W_enc, b_enc) learning rate / lr (default 1; below 1 fewer TopK latents die)",
        {"type": "number", "exclusiveMinimum": 0},
    )
    encoder_init_scale: float | None = setting(
        "W_enc starts as this x the decoder's transpose (default 1; below 1 it learns faster per step)",
        {"type": "number", "exclusiveMinimum": 0},
    )
    batch_size: int | None = setting("examples per step", POSITIVE_INT)
    epochs: int | None = setting("passes over the data (exactly one of epochs / steps)", POSITIVE_INT)
    steps: int | None = setting("optimizer steps (exactly one of epochs / steps)", POSITIVE_INT)
    sampling: str | None = setting(
        "epoch (permutations) | replacement (uniform draws, SAEBench meta-SAE)", {"enum": list(SAMPLINGS)}
    )
    warmup_steps: int | None = setting("linear learning-rate warm-up steps", COUNT)
    decay_steps: int | None = setting("linear learning-rate decay to 0 over the last steps", COUNT)
    sparsity_warmup_steps: int | None = setting("steps over which the sparsity coefficient ramps up", COUNT)
    dead_after_examples: int | None = setting(
        "a latent is dead after this many examples without firing", POSITIVE_INT
    )
    balance_fraction: float | None = setting(
        "topk: the share of training steps (from the start) in which latents firing below their share "
        "k/width of a batch rank higher, those above it lower (auxiliary-loss-free load balancing); 0 = off",
        {"type": "number", "minimum": 0, "maximum": 1},
    )
    balance_rate: float | None = setting(
        "how far a step of balance_fraction moves a latent's rank bias (pre-activation units of the "
        "normalised input)",
        {"type": "number", "exclusiveMinimum": 0},
    )
    b_dec_init: str | None = setting("decoder bias initialisation", {"enum": list(B_DEC_INITS)})
    decoder_init: str | None = setting(
        "random (unit Gaussian rows) | data (distinct training rows minus b_dec, unit norm); the encoder "
        "starts as the decoder's transpose (divided by k for data)",
        {"enum": list(DECODER_INITS)},
    )
    log_every: int | None = setting("steps between train_log.csv rows", POSITIVE_INT)
    checkpoint_every: int | None = setting("steps between resumable checkpoints", POSITIVE_INT)
    autocast: str | None = setting(
        "bf16: training matmuls in bfloat16 (fast on AMX CPUs and GPUs)", {"enum": [*AUTOCAST, None]}
    )
    normalize_inputs: bool | None = setting(
        "train on inputs scaled to unit mean squared norm", {"type": "boolean"}
    )
    seed_per_depth: bool | None = setting(
        "each depth its own seed (default); false: one seed for every depth of a run, as the research log "
        "(torch.manual_seed(42) in every SAE, so same-shape depths start from identical weights)",
        {"type": "boolean"},
        stack=True,
    )

    @classmethod
    def from_dict(cls, d: dict, where: str = "sae spec") -> SAESpec:
        """A spec from a config block or JSON flag; unknown keys are a one-line error naming them."""
        unknown = sorted(set(d) - set(NAMES))
        if unknown:
            raise MetasaeError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(NAMES)}")
        return cls(**d)

    def given(self) -> dict[str, Any]:
        """The settings that were set (the others take the architecture's or trainer's defaults)."""
        return {name: getattr(self, name) for name in NAMES if getattr(self, name) is not None}

    def merged(self, overrides: dict[str, Any]) -> SAESpec:
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def sae_settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.given().items() if _FIELDS[k].metadata["sae"]}

    def train_settings(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.given().items()
            if not _FIELDS[k].metadata["sae"] and not _FIELDS[k].metadata["stack"] and k != "width"
        }


_FIELDS = {f.name: f for f in dataclasses.fields(SAESpec)}
NAMES = tuple(_FIELDS)


def schema_properties() -> dict[str, dict]:
    """The JSON-schema property of every setting but `width` (its form differs by depth), as
    config/schema.yaml must list them under `$defs.training_properties`."""
    return {name: f.metadata["schema"] for name, f in _FIELDS.items() if name != "width"}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting (`--l1-coeff`, `--no-normalize-decoder`, ...); the width becomes --width for
    depth 1 and --width-factor / --width-min for a schedule."""
    for name, f in _FIELDS.items():
        flag, schema, help_text = f"--{name.replace('_', '-')}", f.metadata["schema"], f.metadata["help"]
        if name == "width":
            parser.add_argument(flag, type=int, help="depth 1: number of latents")
            parser.add_argument(
                "--width-factor", type=float, help="depth >= 2: latents = round(parent * factor)"
            )
            parser.add_argument(
                "--width-min", type=int, help="depth >= 2: stop when the schedule gives fewer"
            )
        elif schema.get("type") == "boolean":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif "enum" in schema:
            choices = [c for c in schema["enum"] if c is not None]
            parser.add_argument(flag, choices=choices, help=help_text)
        elif schema.get("type") == "array":
            parser.add_argument(flag, type=int, nargs="+", help=help_text)
        else:
            number = schema.get("type") == "number"
            parser.add_argument(flag, type=float if number else int, help=help_text)


def flags_to_dict(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, as a spec dict (the schedule flags fold into `width`)."""
    given = {name: getattr(args, name) for name in NAMES if getattr(args, name, None) is not None}
    schedule = {
        key: getattr(args, f"width_{key}")
        for key in SCHEDULE_KEYS
        if getattr(args, f"width_{key}", None) is not None
    }
    if schedule:
        given["width"] = schedule
    return given
