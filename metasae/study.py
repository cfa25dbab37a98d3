"""The study configuration: validation with readable errors, and the runs and depths it asks for.

Snakemake (the conductor) imports this at parse time, so it stays light: no torch import here.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import yaml

from metasae.errors import MetasaeError
from metasae.settings import K_ARCHITECTURES
from metasae.study_names import (  # noqa: F401  (fit_ref, probe_ref: read as study.<name> by the workflow)
    RUN_SAE_PATTERN,
    SEP,
    fit_ref,
    parse_run_sae,
    probe_ref,
    probe_sets,
    run_sae_name,
)

SCHEMA = Path(__file__).resolve().parent / "schema.yaml"  # package data: works from a wheel
MODEL_LAYERS = {"mlp": ("fc1", "fc2", "fc3"), "cnn": ("conv1", "conv2", "fc1", "fc2")}
MAX_DEPTH = 64  # meta.max_depth; checked before any width schedule is built
MAX_WIDTH = 2**31 - 1  # latents of any depth; also keeps width schedules clear of float overflow
MAX_MESSAGE = 200  # a config error is one line shorter than this


@dataclass(frozen=True)
class Run:
    """One SAE stack: a classifier (per seed) probed on one dataset at one layer with one depth-1 SAE.

    `sae` is the run's SAE folder name (`run_sae_name`): a configured SAE, `__w<width>` for its width-matched
    control, `__s<n>` for SAE seed n > 0."""

    classifier: str
    seed: int
    probe: str
    layer: str
    sae: str

    @property
    def path(self) -> str:
        return f"{self.classifier}/seed{self.seed}/{self.probe}/{self.layer}/{self.sae}"

    @property
    def is_control(self) -> bool:
        return parse_run_sae(self.sae).control_width is not None


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _clip(message: str) -> str:
    """One line, shorter than MAX_MESSAGE characters (the key comes first, so it survives the cut)."""
    line = " ".join(message.splitlines())
    return line if len(line) < MAX_MESSAGE else line[: MAX_MESSAGE - 2] + "…"


def _show(value: object, limit: int = 24) -> str:
    """repr of a user's value, cut short: a message never echoes a whole list or a 400-digit number."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _few(values: Sequence[object], n: int = 4) -> str:
    """The first `n` values, comma-separated, then `…` and how many there are in all."""
    shown = ", ".join(str(v) for v in values[:n])
    return shown if len(values) <= n else f"{shown}, … ({len(values)} in all)"


def _widths(widths: Sequence[int], n: int = 5) -> str:
    """A width schedule, its middle elided past `n` widths: the first ones and the last stay readable."""
    if len(widths) <= n:
        return ", ".join(map(str, widths))
    return f"{', '.join(map(str, widths[: n - 2]))}, …, {widths[-1]}"


def _fail(key: str, detail: str) -> NoReturn:
    raise MetasaeError(_clip(f"config key {key}: {detail}"))


def validate_schema(config: dict, schema_path: str | Path = SCHEMA) -> None:
    """JSON-schema check whose error names the offending key and the allowed values."""
    import jsonschema
    from jsonschema.exceptions import best_match

    schema = yaml.safe_load(Path(schema_path).read_text())
    error = best_match(_strict_validator(jsonschema)(schema).iter_errors(config))
    if error is not None:
        raise MetasaeError(_clip(f"config key {_key(error.absolute_path)}: {_schema_detail(error)}"))


def _strict_validator(jsonschema):
    """Draft 2020-12 whose "integer" is a whole number written as one: JSON Schema counts 3.0 as an integer,
    and `epochs: 3.0` or `seeds: [0.0]` would reach range() and a CLI flag as floats."""
    base = jsonschema.Draft202012Validator
    integer = base.TYPE_CHECKER.redefine("integer", lambda _checker, v: type(v) is int)
    return jsonschema.validators.extend(base, type_checker=integer)


def _schema_detail(error) -> str:
    """jsonschema's message (it states the allowed enum, pattern or type), the offending value cut short."""
    return error.message.replace(repr(error.instance), _show(error.instance), 1)


def width_schedule(start: int, factor: float, max_depth: int) -> list[int]:
    """Widths of depths 1..max_depth: width_d = round(width_{d-1} * factor)."""
    widths = [start]
    while len(widths) < max_depth:
        widths.append(int(round(widths[-1] * factor)))
    return widths


@dataclass(frozen=True)
class KnownDataset:
    """What the config door knows of a registered dataset without loading it."""

    splits: tuple[str, ...]
    sizes: Mapping[str, int] = field(default_factory=dict)  # split -> images, where known without loading
    real: bool = False  # read from data_dir (not embedded nor generated)


Known = Mapping[str, KnownDataset] | Collection[str]


def validate_semantics(config: dict, known_datasets: Known | None = None) -> None:
    """What a schema cannot say: references between sections, dataset names, splits and slices, k against
    widths, width schedules. `known_datasets`: `known_datasets()`, or bare names (then splits go unchecked)
    """
    from metasae.data.refs import parse_ref

    _check_synth(config)
    for key, ref in _config_refs(config):
        _check_ref(parse_ref, ref, key, known_datasets)
    _check_held_out(config, known_datasets)
    for sae_name in config["sae"]:
        if not RUN_SAE_PATTERN.match(sae_name) or parse_run_sae(sae_name).sae != sae_name:
            _fail(
                f"sae.{sae_name}",
                f"a name may not hold {SEP!r} nor start or end with '_' (run folders use {SEP}w<width> "
                f"for controls and {SEP}s<seed> for SAE seeds)",
            )
    probes = config["probes"]
    for name, clf in config["classifiers"].items():
        for probe in clf["probes"]:
            if probe not in probes:
                _fail(
                    f"classifiers.{name}.probes",
                    f"unknown probe {_show(probe)}; defined probes: {_few(sorted(probes))}",
                )
        for sae_name in clf.get("saes", []):
            if sae_name not in config["sae"]:
                _fail(
                    f"classifiers.{name}.saes",
                    f"unknown SAE {_show(sae_name)}; defined: {_few(sorted(config['sae']))}",
                )
        if (
            config["meta"].get("stack_from") == "in_distribution"
            and in_distribution_probe(config, name) is None
        ):
            _fail(
                "meta.stack_from",
                f"in_distribution: classifier {name} has no probe of its training dataset "
                f"{_show(clf['train'].split(':')[0])} to train its stack on",
            )
        for layer in clf["layers"]:
            if layer not in MODEL_LAYERS[clf["model"]]:
                _fail(
                    f"classifiers.{name}.layers",
                    f"{clf['model']} has no layer {_show(layer)}; "
                    f"allowed: {list(MODEL_LAYERS[clf['model']])}",
                )
    _check_meta(config)


SYNTH = "synth"  # classifier and layer name of a planted-tree run: results/sae/synth/seed<N>/<tree>/synth/
TREE_SAES = ("sae", "reference")  # the SAEs a planted tree may name
PAST_PLANTED_DEPTHS = 2  # a planted tree's stacks (trained and analytic) end this many depths past its roots


def _check_synth(config: dict) -> None:
    """A study trains classifiers or planted trees (or both); synth names an SAE of `sae`, and no classifier
    may take the name the synth runs use."""
    synth = config.get("synth")
    if not config["classifiers"] and not synth:
        _fail("classifiers", "empty: a study needs a classifier, or planted trees under synth")
    if not synth:
        return
    if SYNTH in config["classifiers"]:
        _fail(f"classifiers.{SYNTH}", "the name is reserved for the planted-tree runs (synth)")
    trees = synth["trees"].items()
    named = [(f"synth.trees.{t}.{k}", tree[k]) for t, tree in trees for k in TREE_SAES if k in tree]
    for key, name in [("synth.sae", synth["sae"]), *named]:
        if name not in config["sae"]:
            _fail(key, f"unknown SAE {_show(name)}; defined: {_few(sorted(config['sae']))}")


def synth_runs(config: dict) -> list[Run]:
    """The planted-tree runs: one per tree and seed with the tree's SAE (synth.sae unless it names one), and
    one with its `reference` SAE where it names one (a Matryoshka SAE: the one-SAE answer to a hierarchy that
    a stack is compared with), each stacked and scored alike."""
    synth = config.get("synth") or {}
    return [
        Run(SYNTH, seed, tree, SYNTH, sae)
        for tree, spec in synth.get("trees", {}).items()
        for sae in [spec.get("sae", synth["sae"]), *([spec["reference"]] if "reference" in spec else [])]
        for seed in config["seeds"]
    ]


def stop_rules(config: dict, classifier: str, probe: str) -> dict:
    """A run's meta-SAE stop rules: meta.stop, and for a planted tree of depth L the last depth L + 2 (as its
    oracle stack's), so a trained stack is judged on the depths its oracle and shuffled control have."""
    rules = dict(config["meta"].get("stop", {}))
    if classifier == SYNTH:
        rules["max_depth"] = config["synth"]["trees"][probe]["depth"] + PAST_PLANTED_DEPTHS
    return rules


def synth_tree_params(config: dict, tree: str) -> dict:
    """A tree's synth-acts parameters (its config entry without the SAEs it names)."""
    return {k: v for k, v in config["synth"]["trees"][tree].items() if k not in TREE_SAES}


def _config_refs(config: dict) -> list[tuple[str, str]]:
    """(config key, dataset reference) of every reference in the study, the dSprites branch included."""
    refs = [
        (f"classifiers.{name}.{key}", clf[key])
        for name, clf in config["classifiers"].items()
        for key in ("train", "test")
    ]
    refs += [
        (f"probes.{name}{where}", ref)
        for name, entry in config["probes"].items()
        for where, ref in _probe_refs(entry)
    ]
    dsprites = config.get("dsprites") or {}
    if "probe_set" in dsprites:
        refs.append(("dsprites.probe_set", dsprites["probe_set"]))
    refs += [
        (f"dsprites.runs.{name}.{key}", run[key])
        for name, run in (dsprites.get("runs") or {}).items()
        for key in ("train", "test")
        if key in run
    ]
    return refs


def _probe_refs(entry: str | dict) -> list[tuple[str, str]]:
    """(where under the probe's key, reference) of its eval and fit sets: a mapping's keys, or a string as
    written, then the set derived from it (see `_probe`)."""
    if isinstance(entry, dict):
        return [(".dataset", entry["dataset"]), (".fit", entry["fit"])]
    probe = probe_sets({"probes": {"p": entry}}, "p")
    derived = "fit" if probe["dataset"] == entry else "eval"
    return [("", entry), (f" (its derived {derived} set)", probe[derived if derived == "fit" else "dataset"])]


def _check_held_out(config: dict, known: Known | None) -> None:
    """A probe's fit and eval images are disjoint: other datasets, other splits, or slices that do not
    overlap (a slice's open end runs to the split's size where known, else to the end)."""
    from metasae.data.refs import parse_ref

    for name in config["probes"]:
        fit, ev = parse_ref(fit_ref(config, name)), parse_ref(probe_ref(config, name))
        if (fit.name, fit.split) != (ev.name, ev.split):
            continue
        facts = known.get(fit.name) if isinstance(known, Mapping) else None
        size = (facts.sizes.get(fit.split) if facts else None) or math.inf
        low, high = max(fit.start or 0, ev.start or 0), min(fit.stop or size, ev.stop or size)
        if low < high:
            _fail(
                f"probes.{name}",
                f"fit {fit} and eval {ev} share images [{low}:{high if high < math.inf else ''}]; an SAE "
                "must be analysed on images it never trained on",
            )


def _check_ref(parse_ref, ref: str, key: str, known: Known | None) -> None:
    """The reference parses, names a known dataset and split, and its slice selects images that exist."""
    try:
        parsed = parse_ref(ref)
    except MetasaeError as exc:
        _fail(key, str(exc))
    _check_slice(parsed, key, None)
    if known is None:
        return
    if parsed.name not in known:
        allowed = _few(_closest_first(parsed.name, known))
        _fail(key, f"unknown dataset {_show(parsed.name)}; allowed: {allowed}")
    facts = known.get(parsed.name) if isinstance(known, Mapping) else None
    if facts is None:
        return
    if parsed.split not in facts.splits:
        allowed = ", ".join(facts.splits)
        _fail(key, f"dataset {parsed.name} has no split {_show(parsed.split)}; allowed: {allowed}")
    _check_slice(parsed, key, facts.sizes.get(parsed.split))


def check_data_dir(config: dict, known: Mapping[str, KnownDataset]) -> None:
    """A `data_dir` that is set must exist where the study reads a real dataset from it (a typo would
    otherwise plan the whole study and fail its first job). Relative paths are from the working directory,
    as the stages resolve them."""
    data_dir = config.get("data_dir")
    if data_dir is None or Path(data_dir).is_dir():
        return
    from metasae.data.refs import parse_ref

    for key, ref in _config_refs(config):
        facts = known.get(parse_ref(ref).name)
        if facts is not None and facts.real:
            where = data_dir if len(data_dir) <= 80 else "…" + data_dir[-79:]
            _fail("data_dir", f"{where} is not a folder, and {key} ({_show(ref, 40)}) reads from it")


def _closest_first(name: str, names: Collection[str]) -> list[str]:
    """Sorted names, those spelled most like `name` first (for a message that cannot list them all)."""
    import difflib

    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.6)
    return close + sorted(set(names) - set(close))


def _check_slice(ref, key: str, size: int | None) -> None:
    """`[start:stop]` must select at least one image and, where the split's size is known, stay inside it."""
    start = ref.start or 0
    stop = ref.stop if ref.stop is not None else size
    split = f"{ref.name}:{ref.split}"
    if stop is not None and start >= stop:
        why = f"start {start} >= stop {stop}" if ref.stop is not None else f"{split} has {size} images"
        _fail(key, f"{_show(str(ref), 40)} selects no images ({why}); need 0 <= start < stop")
    if size is not None and stop > size:
        _fail(key, f"{_show(str(ref), 40)} runs past {split}, which has {size} images (need stop <= {size})")


def _check_meta(config: dict) -> None:
    """meta.max_depth bounded first (nothing below may build a schedule before), then every mode's schedule
    from every depth-1 SAE."""
    meta = config["meta"]
    max_depth = meta["max_depth"]
    if max_depth > MAX_DEPTH:
        _fail("meta.max_depth", f"{_show(max_depth)} exceeds the maximum {MAX_DEPTH}")
    for mode, spec in meta["modes"].items():
        _check_mode(spec, f"meta.modes.{mode}")
    for sae_name, sae in config["sae"].items():
        key = f"sae.{sae_name}"
        if sae["width"] > MAX_WIDTH:
            _fail(f"{key}.width", f"{_show(sae['width'])} exceeds the maximum {MAX_WIDTH}")
        _check_k(sae, key)
        if _uses_k(sae) and sae["k"] > sae["width"]:
            _fail(
                f"{key}.k",
                f"{_show(sae['k'])} exceeds {key}.width {sae['width']} "
                f"(a {sae['architecture']} SAE keeps k of its latents active)",
            )
        for mode, spec in meta["modes"].items():
            _check_schedule(spec, f"meta.modes.{mode}", sae["width"], key, max_depth)
    for mode, spec in meta["modes"].items():
        _check_some_meta_depth_trains(config["sae"], spec, f"meta.modes.{mode}", max_depth)


def _check_some_meta_depth_trains(saes: dict, spec: dict, key: str, max_depth: int) -> None:
    """A mode whose depth 2 is below width.min from every depth-1 SAE (the widest is checked: widths grow
    with it) trains no meta-SAE at all, and the study would report depth 1 alone. One small SAE stopping at
    depth 2 is a result, not a config error."""
    if max_depth < 2 or not saes:
        return
    factor, min_width = spec["width"]["factor"], spec["width"]["min"]
    name, sae = max(saes.items(), key=lambda item: item[1]["width"])
    depth2 = width_schedule(sae["width"], factor, 2)[1]
    if depth2 < min_width:
        _fail(
            f"{key}.width.min",
            f"{_show(min_width)} is above every depth-2 width (sae.{name}.width {sae['width']} gives "
            f"{depth2}): no meta-SAE would train; lower width.min, raise width.factor, or set "
            "meta.max_depth: 1",
        )


def _check_mode(spec: dict, key: str) -> None:
    """What a meta mode must say whatever the depth-1 SAE: k where needed, a finite factor, a boolean
    width.allow_growth (optional; checked here until config/schema.yaml names it)."""
    _check_k(spec, key)
    factor = spec["width"]["factor"]
    if not math.isfinite(factor):
        _fail(f"{key}.width.factor", f"must be a finite number, got {_show(factor)}")
    allow = spec["width"].get("allow_growth", False)
    if not isinstance(allow, bool):
        _fail(f"{key}.width.allow_growth", f"must be true or false, got {_show(allow)}")


def _check_schedule(spec: dict, key: str, start: int, sae_key: str, max_depth: int) -> None:
    """One mode's widths from one depth-1 SAE: no growth unless allowed, no overflow, and the mode's k within
    the width of every depth the schedule trains (width.min >= 1 stops a schedule before it reaches 0)."""
    width = spec["width"]
    try:
        widths: list[int] | None = width_schedule(start, width["factor"], max_depth)
    except OverflowError:
        widths = None
    if width["factor"] > 1 and not width.get("allow_growth", False):
        grows = f"{_show(width['factor'])} > 1 grows the stack{_preview(widths, sae_key)}"
        _fail(f"{key}.width.factor", f"{grows}; lower it to <= 1, or set width.allow_growth: true")
    if widths is None or max(widths) > MAX_WIDTH:
        _fail(
            f"{key}.width.factor",
            f"the schedule from {sae_key}.width {start} passes {MAX_WIDTH} latents by meta.max_depth",
        )
    if _uses_k(spec):
        _check_meta_k(spec["k"], key, widths, width["min"], sae_key)


def _preview(widths: list[int] | None, sae_key: str) -> str:
    """The first three widths of a schedule (later ones may run to hundreds of digits), if it has any."""
    if not widths:
        return ""
    return f" (from {sae_key}.width: {', '.join(map(str, widths[:3]))}{', …' if len(widths) > 3 else ''})"


def _check_meta_k(k: int, key: str, widths: list[int], min_width: int, sae_key: str) -> None:
    """A meta mode's k may not exceed the width of any depth its schedule trains."""
    for depth, w in _trained_depths(widths, min_width):
        if k > w:
            _fail(
                f"{key}.k",
                f"{_show(k)} exceeds the depth-{depth} width {w} (from {sae_key}.width: "
                f"{_widths(widths[:depth])}); lower k, or raise width.factor or width.min",
            )


def _trained_depths(widths: list[int], min_width: int) -> list[tuple[int, int]]:
    """(depth, width) of the meta depths a schedule trains: from depth 2 until a width falls below
    width.min (that depth stops, and so does every depth below it)."""
    trained = []
    for depth, w in enumerate(widths[1:], start=2):
        if w < min_width:
            break
        trained.append((depth, w))
    return trained


def _uses_k(spec: dict) -> bool:
    return spec["architecture"] in K_ARCHITECTURES and "k" in spec


def _check_k(spec: dict, key: str) -> None:
    needs_k = spec["architecture"] in K_ARCHITECTURES
    if needs_k and "k" not in spec:
        _fail(f"{key}.k", f"required for architecture {spec['architecture']!r}")


def runs(config: dict) -> list[Run]:
    """classifiers x their seeds x probes x layers x SAEs x their `sae_seeds` (a classifier's own, else the
    top-level ones), each SAE followed by its width-matched controls (`controls: matched`)."""
    return [
        Run(clf_name, seed, probe, layer, run_sae_name(sae_name, width, sae_seed))
        for clf_name, clf in config["classifiers"].items()
        for seed in clf.get("seeds", config["seeds"])
        for probe in clf["probes"]
        for layer in clf["layers"]
        for sae_name in classifier_saes(config, clf)
        for sae_seed in clf.get("sae_seeds", config.get("sae_seeds", [0]))
        for width in [None, *matched_controls(config, sae_name)[0]]
    ]


def matched_controls(config: dict, sae_name: str) -> tuple[list[int], list[int]]:
    """(control widths, widths skipped) of an SAE with `controls: matched`: one direct SAE per distinct width
    a meta depth of any mode trains (its schedule until width.min), at depth 1's k; a width below that k
    cannot hold k active latents and is skipped. Empty for an SAE without controls."""
    sae = config["sae"][sae_name]
    if sae.get("controls") != "matched":
        return [], []
    widths = {
        width
        for spec in config["meta"]["modes"].values()
        for _, width in _trained_depths(
            width_schedule(sae["width"], spec["width"]["factor"], config["meta"]["max_depth"]),
            spec["width"]["min"],
        )
    }
    k = sae.get("k", 0) if _uses_k(sae) else 0
    return sorted(w for w in widths if w >= k), sorted(w for w in widths if w < k)


def classifier_saes(config: dict, clf: dict) -> list[str]:
    """The depth-1 SAEs a classifier's runs train: its `saes`, else every entry under sae but those the
    planted trees name (a tree's SAE is sized to its leaves, not to a classifier's layer)."""
    if "saes" in clf:
        return list(clf["saes"])
    synth = config.get("synth") or {}
    planted = {synth.get("sae")} | {t.get(k) for t in (synth.get("trees") or {}).values() for k in TREE_SAES}
    return [name for name in config["sae"] if name not in planted]


def in_distribution_probe(config: dict, classifier: str) -> str | None:
    """The first of a classifier's probes drawn from its training dataset (any split), or None."""
    clf = config["classifiers"][classifier]
    trained_on = _dataset_name(clf["train"])
    same = [
        p
        for p in clf["probes"]
        if p in config["probes"] and _dataset_name(probe_ref(config, p)) == trained_on
    ]
    return same[0] if same else None


def _dataset_name(ref: str) -> str:
    return ref.split(":", 1)[0]


def stack_source(config: dict, run: Run) -> Run | None:
    """The run whose stack `run` is encoded through instead of training its own, or None where the run
    trains its own (`meta.stack_from: in_distribution`: its classifier's in-distribution probe's stack)."""
    if config["meta"].get("stack_from", "own") == "own" or run.classifier == SYNTH:
        return None
    source = in_distribution_probe(config, run.classifier)
    if source is None or source == run.probe:
        return None
    return Run(run.classifier, run.seed, source, run.layer, run.sae)


def depth_folders(config: dict, run: Run) -> list[str]:
    """Relative folders of every depth of a run: depth 1 is shared by the modes, deeper depths are per
    mode; a width-matched control is depth 1 alone."""
    folders = [f"{run.path}/depth1"]
    if run.is_control:
        return folders
    for mode in config["meta"]["modes"]:
        folders += [f"{run.path}/{mode}/depth{d}" for d in range(2, config["meta"]["max_depth"] + 1)]
    return folders


def drop_nulls(config: dict) -> dict:
    """Remove entries set to null, in place: how a preset drops an entry it inherits from the base config."""
    for key in [k for k, v in config.items() if v is None and k != "data_dir"]:
        del config[key]
    for value in config.values():
        if isinstance(value, dict):
            drop_nulls(value)
    return config


def known_datasets() -> dict[str, KnownDataset]:
    """Registered datasets: their splits, and split sizes where known without loading any image."""
    from metasae.data.registry import REGISTRY

    sizes = _split_sizes()
    return {name: KnownDataset(e.splits, sizes.get(name, {}), e.is_real) for name, e in REGISTRY.items()}


def _split_sizes() -> dict[str, Mapping[str, int]]:
    """Images per split from constants: the embedded modules' SPLIT_SIZES, the dSprites grid (real and
    generated alike) and the official sizes of the real MNIST family and CIFAR (data/sizes.py)."""
    from metasae.data import digits, dsprites_grid, glyphs, patches
    from metasae.data.sizes import REAL_SPLIT_SIZES

    grid = dict.fromkeys(dsprites_grid.SPLITS, dsprites_grid.N_GRID)
    return {
        **REAL_SPLIT_SIZES,
        "digits": digits.SPLIT_SIZES,
        "glyphs": glyphs.SPLIT_SIZES,
        "patches": patches.SPLIT_SIZES,
        "dsprites": grid,
        "dsprites_gen": grid,
    }


def dataset_refs(config: dict) -> list[str]:
    refs = [clf[k] for clf in config["classifiers"].values() for k in ("train", "test")]
    probes = [ref for name in config["probes"] for ref in (probe_ref(config, name), fit_ref(config, name))]
    return sorted(set(refs + probes))


def check_data_available(config: dict) -> list[dict]:
    """Load every dataset the study names once, so a missing real dataset fails the first job, naming what to
    download and where; returns what each reference resolved to."""
    from metasae.data import load_dataset

    found, missing = [], []
    for ref in dataset_refs(config):
        try:
            data = load_dataset(ref, config.get("data_dir"))
        except MetasaeError as exc:
            missing.append(str(exc))
            continue
        found.append(
            {"ref": ref, "n": len(data.labels), "is_real": data.is_real, "description": data.description}
        )
    if missing:
        raise MetasaeError("datasets not available offline:\n  " + "\n  ".join(missing))
    return found
