rule generate_tasks:
    output:
        f"{OUT}/tasks/{{pde}}.nc",
    log:
        f"{LOGS}/generate_tasks/{{pde}}.log",
    benchmark:
        f"{LOGS}/benchmark/generate_tasks/{{pde}}.tsv"
    params:
        hydra=hydra_args,
        digest=config_digest("generate-tasks"),
    threads: THREADS
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn generate-tasks {params.hydra} threads={threads} out={output} > {log} 2>&1"


rule tune_scratch_lr:
    input:
        f"{OUT}/tasks/{{pde}}.nc",
    output:
        f"{OUT}/tune/{{pde}}.nc",
    log:
        f"{LOGS}/tune_scratch_lr/{{pde}}.log",
    benchmark:
        f"{LOGS}/benchmark/tune_scratch_lr/{{pde}}.tsv"
    params:
        hydra=hydra_args_gpu,
        digest=config_digest("tune-lr", DEVICE),
    threads: THREADS
    resources:
        gpu=GPUS,
    conda:
        "../envs/metapinn.yaml"
    shell:
        TORCH_JOB + " tune-lr {params.hydra} threads={threads} tasks_file={input} out={output}"
        " > {log} 2>&1"
