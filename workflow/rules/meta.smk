rule meta_train:
    input:
        unpack(meta_inputs),
    output:
        init=f"{OUT}/meta/{{pde}}/{{method}}/seed{{seed}}/init.pt",
        history=f"{OUT}/meta/{{pde}}/{{method}}/seed{{seed}}/history.nc",
    log:
        f"{LOGS}/meta_train/{{pde}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmark/meta_train/{{pde}}/{{method}}/seed{{seed}}.tsv"
    params:
        hydra=hydra_args_gpu,
        digest=config_digest("meta-train", DEVICE),
        out_dir=lambda wc, output: Path(output.init).parent,
        lr=lambda wc, input: f"lr_file={input.lr}" if "lr" in input.keys() else "",
    threads: THREADS
    resources:
        gpu=GPUS,
    conda:
        "../envs/metapinn.yaml"
    shell:
        # resume=true continues an interrupted job's checkpoint only if it was written for
        # the same settings (its digest); otherwise the job starts afresh and logs why
        TORCH_JOB + " meta-train {params.hydra} threads={threads} method={wildcards.method}"
        " seed={wildcards.seed} tasks_file={input.tasks} out_dir={params.out_dir} resume=true"
        " {params.lr}"
        " > {log} 2>&1"
