rule generate_tasks:
    output:
        f"{OUT}/tasks/{{pde}}.nc",
    log:
        f"{LOGS}/generate_tasks/{{pde}}.log",
    params:
        hydra=hydra_args,
    threads: THREADS
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn generate-tasks {params.hydra} out={output} > {log} 2>&1"


rule tune_scratch_lr:
    input:
        f"{OUT}/tasks/{{pde}}.nc",
    output:
        f"{OUT}/tune/{{pde}}.nc",
    log:
        f"{LOGS}/tune_scratch_lr/{{pde}}.log",
    params:
        hydra=hydra_args_gpu,
    threads: THREADS
    resources:
        gpu=GPUS,
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn tune-lr {params.hydra} tasks_file={input} out={output} > {log} 2>&1"
