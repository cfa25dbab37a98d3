# Planted feature hierarchies of known depth (issue 16): synth-acts writes an activation cache in place of
# train_classifier + cache_acts (results/acts/synth/seed<N>/<tree>/synth/), the usual train_base_sae and
# train_meta_sae rules train the stack on it, score-synth scores every depth against the planted levels, and
# synth-summary tabulates each optimal-depth criterion's estimate against the planted depth. Beside every
# trained stack, synth-oracle writes the oracle stack (the planted levels) and the shuffled control (a wrong
# hierarchy of the same widths), scored and summarised the same way (criteria.csv's `stack`).
SYNTH_RUNS = study.synth_runs(config)
SYNTH_RUN = "synth/seed{seed}/{probe}/synth/{sae}"
SYNTH_DEPTHS = ["depth1"] + [f"{mode}/depth{d}" for mode in config["meta"]["modes"] for d in META_DEPTHS]
# The analytic stacks (synth-oracle) have folders 1..6 (stopped past L + 2): those the trained stacks have
ANALYTIC_KINDS = ["oracle", "shuffled"]
ANALYTIC_DEPTHS = [f for f in SYNTH_DEPTHS if f == "depth1" or int(f.rsplit("depth", 1)[1]) <= 6]
ANALYTIC_RUN = "synth/seed{seed}/{probe}/synth/{kind}"

ruleorder: synth_acts > cache_acts
ruleorder: synth_oracle > train_base_sae
if META_DEPTHS:

    ruleorder: synth_oracle > train_meta_sae


rule synth_acts:
    """A forest of planted trees (config synth.trees.<probe>) as an activation cache, with its truth."""
    conda:
        "../envs/metasae.yaml"
    output:
        acts=f"{R}/acts/synth/seed{{seed}}/{{probe}}/synth/acts.safetensors",
        manifest=f"{R}/acts/synth/seed{{seed}}/{{probe}}/synth/manifest.json",
    params:
        tree=lambda w: as_json(study.synth_tree_params(config, w.probe)),
        out=lambda w, output: str(Path(output.manifest).parent),
    log:
        f"{R}/logs/synth_acts/seed{{seed}}/{{probe}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "metasae --threads {threads} synth-acts --tree {params.tree:q} --seed {wildcards.seed}"
        " --out {params.out} > {log} 2>&1"


rule synth_oracle:
    """The oracle (the planted levels themselves) or shuffled (a wrong hierarchy of the same widths) stack of
    one tree, as ordinary depth folders beside the trained ones; --seed draws the shuffle."""
    conda:
        "../envs/metasae.yaml"
    wildcard_constraints:
        kind="oracle|shuffled",
    input:
        manifest=rules.synth_acts.output.manifest,
    output:
        metrics=[f"{R}/sae/{ANALYTIC_RUN}/{f}/metrics.json" for f in ANALYTIC_DEPTHS],
    params:
        acts=lambda w, input: str(Path(input.manifest).parent),
        out=lambda w, output: str(Path(output.metrics[0]).parent.parent),
    log:
        f"{R}/logs/synth_oracle/seed{{seed}}/{{probe}}/{{kind}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "metasae --threads {threads} synth-oracle --acts-dir {params.acts} --kind {wildcards.kind}"
        " --seed {wildcards.seed} --out {params.out} > {log} 2>&1"


def synth_score_command(w, folder, run=SYNTH_RUN):
    run = run.format(**dict(w.items()))
    return "score-synth " + flags(depth_dir=f"{R}/sae/{run}/{folder}", out=f"{R}/synth_scores/{run}/{folder}")


rule score_synth:
    """Every depth of one planted-tree stack (both modes) scored against the planted levels."""
    conda:
        "../envs/metasae.yaml"
    input:
        sae=lambda w: [f"{R}/sae/{SYNTH_RUN.format(**dict(w.items()))}/{f}/metrics.json" for f in SYNTH_DEPTHS],
    output:
        scores=[f"{R}/synth_scores/{SYNTH_RUN}/{f}/score.json" for f in SYNTH_DEPTHS],
    params:
        chain=lambda w: chained(synth_score_command(w, f) for f in SYNTH_DEPTHS),
    log:
        f"{R}/logs/synth_scores/seed{{seed}}/{{probe}}/{{sae}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "metasae --threads {threads} {params.chain} > {log} 2>&1"


rule score_synth_analytic:
    """Every depth of one analytic stack, scored exactly as a trained one."""
    conda:
        "../envs/metasae.yaml"
    wildcard_constraints:
        kind="oracle|shuffled",
    input:
        sae=lambda w: [f"{R}/sae/{ANALYTIC_RUN.format(**dict(w.items()))}/{f}/metrics.json" for f in ANALYTIC_DEPTHS],
    output:
        scores=[f"{R}/synth_scores/{ANALYTIC_RUN}/{f}/score.json" for f in ANALYTIC_DEPTHS],
    params:
        chain=lambda w: chained(synth_score_command(w, f, ANALYTIC_RUN) for f in ANALYTIC_DEPTHS),
    log:
        f"{R}/logs/synth_scores/seed{{seed}}/{{probe}}/{{kind}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "metasae --threads {threads} {params.chain} > {log} 2>&1"


ruleorder: score_synth_analytic > score_synth


def synth_score_files():
    trained = [f"{R}/synth_scores/{run.path}/{f}/score.json" for run in SYNTH_RUNS for f in SYNTH_DEPTHS]
    analytic = [
        f"{R}/synth_scores/{ANALYTIC_RUN.format(seed=run.seed, probe=run.probe, kind=kind)}/{f}/score.json"
        for run in SYNTH_RUNS
        for kind in ANALYTIC_KINDS
        for f in ANALYTIC_DEPTHS
    ]
    return trained + sorted(set(analytic))


rule synth_summary:
    """Stack x criterion x planted depth: criteria.csv, synth_depth.csv, synth_accuracy.csv, synth_scores.csv,
    and per-level recovery: synth_recovery.csv."""
    conda:
        "../envs/metasae.yaml"
    input:
        scores=synth_score_files(),
    output:
        criteria=report(f"{R}/synth_summary/criteria.csv", category="Summary"),
        depth=f"{R}/synth_summary/synth_depth.csv",
        accuracy=f"{R}/synth_summary/synth_accuracy.csv",
        scores=f"{R}/synth_summary/synth_scores.csv",
        recovery_table=f"{R}/synth_summary/synth_recovery.csv",
        figure=report(f"{R}/synth_summary/synth_depth.png", category="Figures vs depth"),
        recovery=report(f"{R}/synth_summary/synth_recovery.png", category="Figures vs depth"),
    params:
        out=lambda w, output: str(Path(output.criteria).parent),
        config=as_json(config),
    log:
        f"{R}/logs/synth_summary.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "metasae --threads {threads} synth-summary --config-json {params.config:q} --out {params.out}"
        " {input.scores:q} > {log} 2>&1"


def synth_targets():
    return rules.synth_summary.output if SYNTH_RUNS else []
