rule meta_train:
    input:
        tasks=f"{OUT}/tasks/{{pde}}.nc",
    output:
        init=f"{OUT}/meta/{{pde}}/{{method}}/seed{{seed}}/init.pt",
        history=f"{OUT}/meta/{{pde}}/{{method}}/seed{{seed}}/history.nc",
    log:
        f"{LOGS}/meta_train/{{pde}}/{{method}}/seed{{seed}}.log",
    params:
        hydra=hydra_args_gpu,
        out_dir=lambda wc, output: Path(output.init).parent,
    threads: THREADS
    resources:
        gpu=GPUS,
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn meta-train {params.hydra} method={wildcards.method} seed={wildcards.seed}"
        " tasks_file={input.tasks} out_dir={params.out_dir} resume=true > {log} 2>&1"
