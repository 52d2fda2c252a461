rule adapt:
    input:
        unpack(adapt_inputs),
    output:
        f"{OUT}/adapt/{{pde}}/{{method}}/seed{{seed}}.nc",
    log:
        f"{LOGS}/adapt/{{pde}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmark/adapt/{{pde}}/{{method}}/seed{{seed}}.tsv"
    params:
        hydra=hydra_args_gpu,
        digest=config_digest("adapt-tasks", DEVICE),
        init=lambda wc, input: f"init={input.init}" if "init" in input.keys() else "",
        thresholds=lambda wc, input: (f"threshold_file={input.thresholds}"
                                      if "thresholds" in input.keys() else ""),
    threads: THREADS
    resources:
        gpu=GPUS,
    conda:
        "../envs/metapinn.yaml"
    shell:
        TORCH_JOB + " adapt-tasks {params.hydra} threads={threads} method={wildcards.method}"
        " seed={wildcards.seed} tasks_file={input.tasks} lr_file={input.lr} {params.init}"
        " {params.thresholds} out={output} > {log} 2>&1"
