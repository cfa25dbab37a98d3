"""The config door (what Snakefile runs at parse time): bad configs that used to pass it are rejected there,
each with one short line naming the key; the shipped configs still pass."""

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from metasae import study
from metasae.data.refs import parse_ref
from metasae.data.sizes import REAL_SPLIT_SIZES
from metasae.errors import MetasaeError

ROOT = Path(__file__).resolve().parent.parent
KNOWN = study.known_datasets()


def base_config() -> dict:
    """config/test.yaml, the config every bad one below is built from."""
    return yaml.safe_load((ROOT / "config" / "test.yaml").read_text())


def door(config: dict) -> None:
    """What Snakefile runs before any job (its jsonschema `validate` repeats validate_schema's check)."""
    study.validate_schema(study.drop_nulls(config))
    study.validate_semantics(config, KNOWN)


def put(key: str, value) -> Callable[[dict], None]:
    """An edit setting a dotted config key (config keys hold no dots)."""
    *parents, last = key.split(".")

    def edit(config: dict) -> None:
        node = config
        for part in parents:
            node = node[part]
        node[last] = value

    return edit


def assert_rejected(run: Callable[[], None], key: str) -> str:
    with pytest.raises(MetasaeError) as info:
        run()
    message = str(info.value)
    assert "\n" not in message and len(message) < 200, message
    assert f"config key {key}:" in message, message
    return message


def bad(key: str, value) -> tuple[str, Callable[[dict], None]]:
    """A case whose edit sets the very key the message must name."""
    return key, put(key, value)


DSPRITES = {
    **yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["dsprites"],
    "probe_set": "dsprites_gen:sample[4000:3000]",
}
CLF = "classifiers.mlp_digits"
BAD = {  # id: (key the message must name, edit of config/test.yaml)
    "sae_k_above_width": bad("sae.topk.k", 64),
    "meta_k_above_depth2_width": bad("meta.modes.decoder.k", 9),  # widths 32, 8
    "meta_k_above_depth3_width": bad("meta.modes.activations.k", 9),  # widths 32, 16, 8
    "slice_reversed": bad(f"{CLF}.train", "digits:train[5:2]"),
    "slice_empty": bad(f"{CLF}.train", "digits:train[5:5]"),
    "slice_stop_0": bad(f"{CLF}.test", "digits:test[:0]"),
    "slice_past_digits": bad(f"{CLF}.test", "digits:test[:360]"),
    "slice_start_at_end": bad("probes.digits", "digits:test[359:]"),
    "slice_past_glyphs": bad("probes.digits", "glyphs:test[:941]"),
    "slice_past_dsprites": bad("probes.digits", "dsprites_gen:sample[737000:737281]"),
    "dsprites_branch_slice": ("dsprites.probe_set", put("dsprites", DSPRITES)),
    "unknown_split": bad("probes.digits", "digits:bogus"),
    "width_growth": bad("meta.modes.activations.width.factor", 1.5),
    "max_depth_65": bad("meta.max_depth", 65),
    "max_depth_2000": bad("meta.max_depth", 2000),
    "slice_past_mnist": bad("probes.digits", "mnist:test[:20000]"),  # 10,000 images, files or not
    "slice_past_emnist": bad(f"{CLF}.train", "emnist_letters:train[124000:124801]"),
    "seeds_float": ("seeds.1", put("seeds", [0.0, 1.0])),  # JSON Schema's "integer" takes 1.0
    "max_depth_float": bad("meta.max_depth", 3.0),
    "width_float": bad("sae.topk.width", 32.0),
    "epochs_float": bad("sae.topk.epochs", 3.0),
    "max_depth_bool": bad("meta.max_depth", True),
    "no_meta_sae": bad("meta.modes.decoder.width.min", 9),  # 32 -> 8 latents at depth 2: below 9
    "long_schedule_k_exceeds": (
        "meta.modes.activations.k",
        lambda c: (
            put("meta.max_depth", 64)(c),
            put("meta.modes.activations.width.factor", 0.5)(c),
            put("meta.modes.activations.width.min", 1)(c),
        ),
    ),
}


def bad_config(case: str) -> tuple[str, dict]:
    key, edit = BAD[case]
    config = base_config()
    edit(config)
    return key, config


@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_config_is_rejected_in_one_short_line_naming_the_key(case):
    key, config = bad_config(case)
    assert_rejected(lambda: door(config), key)


def test_messages_say_what_is_allowed_and_cap_what_they_list():
    config = base_config()
    put("probes.digits", "digits:bogus")(config)
    assert "allowed: train, test" in assert_rejected(lambda: door(config), "probes.digits")
    config = base_config()
    put("probes.digits", "digits:test[:360]")(config)
    assert "359 images" in assert_rejected(lambda: door(config), "probes.digits")
    config = base_config()
    put("meta.max_depth", 1000)(config)
    assert "maximum 64" in assert_rejected(lambda: door(config), "meta.max_depth")
    config = base_config()
    put("meta.max_depth", 64)(config)
    put("meta.modes.activations.width.factor", 0.5)(config)
    put("meta.modes.activations.width.min", 1)(config)  # 32, 16, 8, 4, 2, 1: k 2 exceeds depth 6's width
    message = assert_rejected(lambda: door(config), "meta.modes.activations.k")
    assert "(from sae.topk.width: 32, 16, 8, …, 1)" in message
    config = base_config()
    put("seeds", [*range(300), 0])(config)
    assert_rejected(lambda: door(config), "seeds")


def test_width_growth_needs_allow_growth_a_boolean():
    """width.allow_growth: checked in study.py until config/schema.yaml names it (the schema rejects it
    now)."""
    config = base_config()
    mode = "meta.modes.activations"

    def semantics() -> None:
        study.validate_semantics(config, KNOWN)

    put(f"{mode}.width.factor", 1.5)(config)
    put(f"{mode}.width.allow_growth", True)(config)
    semantics()
    put(f"{mode}.width.factor", 1e300)(config)  # would overflow a float: a message instead
    assert_rejected(semantics, f"{mode}.width.factor")
    put(f"{mode}.width.factor", 1.5)(config)
    put("meta.max_depth", 2000)(config)  # 1.5 ** 2000 overflows a float too: the depth bound comes first
    assert_rejected(semantics, "meta.max_depth")
    put("meta.max_depth", 3)(config)
    put(f"{mode}.width.allow_growth", "yes")(config)
    assert_rejected(semantics, f"{mode}.width.allow_growth")


def test_edges_that_stay_valid():
    """k equal to a width, k above only a depth that stops (width < width.min), slices ending at a split's end
    (a real one's too, from the official sizes, without its files), depth 2 at exactly width.min."""
    edits = [
        put("sae.topk.k", 32),
        put("meta.modes.decoder.k", 8),
        put("meta.modes.activations.k", 9),
        put("meta.modes.activations.width", {"factor": 0.5, "min": 9}),
        put(f"{CLF}.test", "digits:test[300:359]"),
        put("probes.digits", "mnist:test[:10000]"),
        put("meta.modes.decoder.width.min", 8),  # depth 2 has exactly width.min latents
    ]
    config = base_config()
    for edit in edits:
        edit(config)
    door(config)


@pytest.mark.parametrize("name", sorted(REAL_SPLIT_SIZES))
def test_every_real_slice_is_checked_against_the_official_size(name):
    for split, size in REAL_SPLIT_SIZES[name].items():
        study._check_ref(parse_ref, f"{name}:{split}[{size - 1}:]", "probes.x", KNOWN)
        with pytest.raises(MetasaeError, match=f"config key probes.x: .*has {size} images"):
            study._check_ref(parse_ref, f"{name}:{split}[:{size + 1}]", "probes.x", KNOWN)


def test_every_real_dataset_of_the_registry_has_its_official_sizes():
    from metasae.data.registry import REGISTRY

    real = {name: e.splits for name, e in REGISTRY.items() if e.is_real and name != "dsprites"}
    assert {name: tuple(REAL_SPLIT_SIZES[name]) for name in real} == real
    assert all(KNOWN[name].real and KNOWN[name].sizes for name in real)


def test_a_missing_data_dir_is_rejected_only_where_a_real_dataset_reads_it(tmp_path):
    config = base_config()
    put("data_dir", str(tmp_path / "no-such-folder"))(config)
    study.check_data_dir(config, KNOWN)  # embedded datasets only: nothing reads it
    put("probes.digits", "mnist:test")(config)
    message = assert_rejected(lambda: study.check_data_dir(config, KNOWN), "data_dir")
    assert "no-such-folder" in message and "probes.digits" in message
    put("data_dir", str(tmp_path))(config)
    study.check_data_dir(config, KNOWN)


def test_bare_names_still_check_only_names():
    config = base_config()
    put("probes.digits", "digits:bogus")(config)
    study.validate_semantics(config, {"digits"})


def test_embedded_split_sizes_match_the_loaders():
    from metasae.data import load_dataset

    sizes = KNOWN["digits"].sizes
    assert {split: len(load_dataset(f"digits:{split}").labels) for split in sizes} == dict(sizes)
    assert dict(KNOWN["glyphs"].sizes) == {"train": 2820, "test": 940}
    assert dict(KNOWN["patches"].sizes) == {"train": 2000, "test": 480}
    assert KNOWN["dsprites"].sizes["sample"] == 737280 and KNOWN["mnist"].splits == ("train", "test")


def _merge(base: dict, over: dict) -> dict:
    """Snakemake's --configfile merge: nested dicts merge, everything else replaces."""
    out = dict(base)
    for key, value in over.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if nested else value
    return out


def _shipped() -> dict[str, dict]:
    configs = {
        p.name: yaml.safe_load(p.read_text())
        for p in sorted((ROOT / "config").glob("*.yaml"))
        if p.name != "schema.yaml"
    }
    for preset in sorted((ROOT / "config" / "presets").glob("*.yaml")):
        over = yaml.safe_load(preset.read_text())
        configs[f"config.yaml+{preset.name}"] = _merge(configs["config.yaml"], over)
    return configs


@pytest.mark.parametrize("name", _shipped(), ids=str)
def test_shipped_configs_pass_the_door(name):
    door(_shipped()[name])


@pytest.mark.slow  # seven snakemake start-ups; the fast suite checks the same door in-process above
@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not installed")
def test_snakemake_dry_run_rejects_at_parse_time(tmp_path):
    """The seven bad configs that used to reach a job or run, through `snakemake -n`: each exits non-zero at
    parse time, printing the key."""
    seven = (
        "sae_k_above_width",
        "meta_k_above_depth2_width",
        "slice_reversed",
        "slice_empty",
        "unknown_split",
        "width_growth",
        "max_depth_2000",
    )
    for case in seven:
        key, config = bad_config(case)
        path = tmp_path / f"{case}.yaml"
        path.write_text(yaml.safe_dump(config))
        done = subprocess.run(
            ["snakemake", "-n", "--configfile", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = done.stdout + done.stderr
        assert done.returncode != 0, output
        assert f"metasae: config error: config key {key}:" in output, output
        assert "Traceback" not in output, output


NEW_AT_THE_DOOR = (  # issue: passed the door before, each now one line at parse time
    "slice_past_mnist",
    "seeds_float",
    "max_depth_float",
    "width_float",
    "epochs_float",
    "max_depth_bool",
    "no_meta_sae",
    "missing_data_dir",
)


def _snakemake_dry_run(config: dict, path: Path) -> tuple[int, str]:
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        ["snakemake", "-n", "--configfile", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow  # eight snakemake start-ups; the same door runs in-process above
@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not installed")
@pytest.mark.parametrize("case", NEW_AT_THE_DOOR, ids=str)
def test_snakemake_dry_run_rejects_new_cases_in_one_line(case, tmp_path):
    if case == "missing_data_dir":
        key, config = "data_dir", base_config()
        put("data_dir", str(tmp_path / "no-such-folder"))(config)
        put("probes.digits", "mnist:test")(config)
    else:
        key, config = bad_config(case)
    config["results"] = str(tmp_path / "results")
    rc, output = _snakemake_dry_run(config, tmp_path / f"{case}.yaml")
    errors = [line for line in output.splitlines() if line.startswith("metasae:")]
    assert rc != 0 and len(errors) == 1 and f"config key {key}:" in errors[0], output
    assert "Traceback" not in output and "Building DAG" not in output, output
