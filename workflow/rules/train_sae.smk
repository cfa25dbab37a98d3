def stack_source(w, folder):
    """The same depth of the stack this run is encoded through instead of training (its classifier's
    `stack_from` probe), as a one-item list; empty where the run trains its own stack."""
    source = study.stack_source(config, study.Run(w.clf, int(w.seed), w.probe, w.layer, w.sae))
    return [f"{R}/sae/{source.path}/{folder.format(**dict(w.items()))}/metrics.json"] if source else []


def apply_flag(w, folder):
    return flags(apply=[str(Path(p).parent) for p in stack_source(w, folder)] or None)


def fit_cache(w):
    """The fit cache a run's depth 1 trains on, as a one-item list; empty for a planted tree (its one cache is
    both) and for an applied stack (it trains nothing)."""
    if w.clf == study.SYNTH or stack_source(w, "depth1"):
        return []
    return [f"{R}/fit_acts/{w.clf}/seed{w.seed}/{w.probe}/{w.layer}/manifest.json"]


def base_acts_flags(w, input):
    """--acts: the cache depth 1 trains on (or encodes, applied); --eval-acts: the probe's eval cache."""
    eval_dir = str(Path(input.manifest).parent)
    if not input.fit:
        return flags(acts=eval_dir)
    return flags(acts=str(Path(input.fit[0]).parent), eval_acts=eval_dir)


def sae_seed_flag(w):
    return flags(sae_seed=study.parse_run_sae(w.sae).sae_seed)


def base_train_command(w, input):
    """The train-sae command of depth 1 (or of a width-matched control): on the fit cache, or the
    stack_from probe's depth 1 applied to the eval cache."""
    return "train-sae " + " ".join(
        [
            base_acts_flags(w, input),
            flags(spec=as_json(study_names.run_spec(config, w.sae)), seed=w.seed),
            sae_seed_flag(w),
            apply_flag(w, "depth1"),
            device_flags(),
            flags(out=depth_folder(w, "sae", "depth1")),
        ]
    )


def train_meta_command(w, mode, depth):
    """The train-sae command of one depth >= 2 of one mode."""
    return "train-sae " + " ".join(
        [
            flags(
                parent=depth_folder(w, "sae", stack_folder(mode, depth - 1)),
                mode=mode,
                depth=depth,
                spec=as_json(config["meta"]["modes"][mode]),
                stop=as_json(study.stop_rules(config, w.clf, w.probe)),
                seed=w.seed,
            ),
            sae_seed_flag(w),
            apply_flag(w, stack_folder(mode, depth)),
            device_flags(),
            flags(out=depth_folder(w, "sae", stack_folder(mode, depth))),
        ]
    )


def train_stack_chain(w, input):
    """Depth 1, then each mode's depths 2..max_depth, one after another in one process."""
    meta = [train_meta_command(w, mode, d) for mode in META_MODES for d in META_DEPTHS]
    return chained([base_train_command(w, input)] + meta)


rule train_stack:
    """A run's whole stack in one job: depth 1, an SAE on the probe's fit activations with codes of its eval
    images (shared by both meta modes), then per mode each meta-SAE on the depth before it (its decoder rows
    or its activations); or the stack_from probe's stack applied to this probe's images."""
    conda:
        "../envs/metasae.yaml"
    wildcard_constraints:
        sae=study_names.STACK_SAE_REGEX,
    input:
        manifest=rules.cache_acts.output.manifest,
        fit=fit_cache,
        source=lambda w: [p for folder in STACK_FOLDERS for p in stack_source(w, folder)],
    output:
        metrics=[f"{R}/sae/{RUN}/{folder}/metrics.json" for folder in STACK_FOLDERS],
    params:
        chain=train_stack_chain,
    log:
        f"{R}/logs/sae/{RUN}/stack.log",
    benchmark:
        f"{R}/benchmarks/sae/{RUN}/stack.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60 * len(STACK_FOLDERS),
    shell:
        "metasae --threads {threads} {params.chain} > {log} 2>&1"


rule train_control_sae:
    """A width-matched control (`<sae>__w<width>`): a direct SAE of a meta depth's width, trained like
    depth 1 on the same fit activations."""
    conda:
        "../envs/metasae.yaml"
    wildcard_constraints:
        sae=study_names.CONTROL_SAE_REGEX,
    input:
        manifest=rules.cache_acts.output.manifest,
        fit=fit_cache,
        source=lambda w: stack_source(w, "depth1"),
    output:
        metrics=f"{R}/sae/{RUN}/depth1/metrics.json",
    params:
        command=base_train_command,
    log:
        f"{R}/logs/sae/{RUN}/depth1.log",
    benchmark:
        f"{R}/benchmarks/sae/{RUN}/depth1.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    shell:
        "metasae --threads {threads} {params.command} > {log} 2>&1"
