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
