"""The one list of SAE settings: the config schema, the CLI flags and the trainer's configs agree with it."""

import dataclasses

import pytest
import yaml

from metasae import settings
from metasae.cli import build_parser
from metasae.errors import MetasaeError
from metasae.sae import ARCHITECTURES, SAEConfig
from metasae.sae.trainer import TrainConfig, spec_to_configs
from metasae.study import SCHEMA


def test_schema_training_properties_are_the_settings():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["$defs"]["training_properties"] == settings.schema_properties()
    modes = schema["properties"]["meta"]["properties"]["modes"]["additionalProperties"]["properties"]
    dsprites = schema["properties"]["dsprites"]["properties"]["sae"]["properties"]
    base = schema["properties"]["sae"]["additionalProperties"]["properties"]
    for block in (modes, dsprites):
        assert set(block) == set(settings.NAMES)
    assert set(base) == {*settings.NAMES, "controls"}  # the width-matched controls: a study key of depth 1


def test_allowed_values_match_the_library():
    assert tuple(ARCHITECTURES) == settings.ARCHITECTURE_NAMES
    sae_fields = {f.name for f in dataclasses.fields(SAEConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for f in dataclasses.fields(settings.SAESpec):
        if f.name != "width" and not f.metadata["stack"]:  # stack settings are train-sae's own
            assert f.name in (sae_fields if f.metadata["sae"] else train_fields), f.name


def test_every_setting_is_a_train_sae_flag_and_reaches_the_configs():
    args = build_parser().parse_args(
        [
            "train-sae",
            "--acts",
            "x",
            "--out",
            "y",
            "--architecture",
            "relu",
            "--width",
            "8",
            "--l1-coeff",
            "0.5",
            "--no-normalize-decoder",
            "--epochs",
            "2",
            "--sampling",
            "replacement",
        ]
    )
    spec = settings.flags_to_dict(args)
    assert spec == {
        "architecture": "relu",
        "width": 8,
        "l1_coeff": 0.5,
        "normalize_decoder": False,
        "epochs": 2,
        "sampling": "replacement",
    }
    sae_cfg, train_cfg = spec_to_configs(spec, d_in=4, width=8, seed=3)
    assert (
        sae_cfg.l1_coeff,
        sae_cfg.normalize_decoder,
        train_cfg.epochs,
        train_cfg.sampling,
        train_cfg.seed,
    ) == (0.5, False, 2, "replacement", 3)
    dests = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["train-sae"]._actions}
    assert set(settings.NAMES) <= dests


def test_schedule_flags_update_the_spec_schedule():
    from metasae.cli.flags import merged_spec as _spec

    args = build_parser().parse_args(
        [
            "train-sae",
            "--parent",
            "p",
            "--mode",
            "decoder",
            "--depth",
            "2",
            "--out",
            "o",
            "--spec",
            '{"architecture": "topk", "width": {"factor": 0.5, "min": 4}}',
            "--width-min",
            "2",
        ]
    )
    assert _spec(args)["width"] == {"factor": 0.5, "min": 2}


def test_unknown_setting_is_one_line_naming_it():
    with pytest.raises(MetasaeError, match=r"sae spec: unknown key\(s\) \['d_sae'\]"):
        spec_to_configs({"architecture": "topk", "d_sae": 8}, d_in=4, width=8, seed=0)
