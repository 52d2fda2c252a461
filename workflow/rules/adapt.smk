rule adapt:
    input:
        tasks=f"{OUT}/tasks/{{pde}}.nc",
    output:
        f"{OUT}/adapt/{{pde}}/{{method}}/seed{{seed}}.nc",
    log:
        f"{LOGS}/adapt/{{pde}}/{{method}}/seed{{seed}}.log",
    params:
        hydra=hydra_args,
    threads: THREADS
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn adapt-tasks {params.hydra} method={wildcards.method} seed={wildcards.seed}"
        " tasks_file={input.tasks} out={output} > {log} 2>&1"
