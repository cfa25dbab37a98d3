rule check_data:
    """Load every dataset the config names, first: a missing real dataset fails here, saying what to download."""
    conda:
        "../envs/metasae.yaml"
    output:
        f"{R}/data_check.json",
    params:
        config=as_json(study_config()),
    log:
        f"{R}/logs/check_data.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "metasae check-data --config-json {params.config:q} --out {output} > {log} 2>&1"
