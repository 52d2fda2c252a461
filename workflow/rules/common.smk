# Validation and helpers shared by every rule.
from pathlib import Path

import yaml
from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

EXPERIMENT = config["experiment"]
# every job reads the Hydra configuration of this checkout, not of wherever metapinn is installed
CONFIG_DIR = Path(workflow.basedir) / "config"
_exp_dir = Path(workflow.basedir) / "config" / "experiment"
_exp_file = _exp_dir / f"{EXPERIMENT}.yaml"
if not _exp_file.is_file():
    raise ValueError(
        f"config key 'experiment': unknown experiment {EXPERIMENT!r}; valid choices: "
        + ", ".join(sorted(p.stem for p in _exp_dir.glob("*.yaml")))
    )
EXP = yaml.safe_load(_exp_file.read_text())["experiment"]
PDES, METHODS, SEEDS = EXP["pdes"], EXP["methods"], [int(s) for s in EXP["seeds"]]
OUT = f"results/{EXPERIMENT}"
LOGS = f"logs/{EXPERIMENT}"
THREADS = int(config["threads"])
DEVICE = config.get("device", "cpu")
META_METHODS = [m for m in METHODS if m != "scratch"]


wildcard_constraints:
    pde="|".join(PDES),
    method="|".join(METHODS),
    seed=r"\d+",


def hydra_args(wildcards):
    """The Hydra overrides every job of this experiment shares."""
    return (
        f"--config-dir={CONFIG_DIR} experiment={EXPERIMENT} pde={wildcards.pde}"
        f" threads={THREADS} device={DEVICE}"
    )


def adapt_inputs(wildcards):
    """Every method adapts with the learning rate tuned for scratch; every method but
    scratch from its meta-trained init.pt."""
    inputs = {"tasks": f"{OUT}/tasks/{wildcards.pde}.nc", "lr": f"{OUT}/tune/{wildcards.pde}.nc"}
    if wildcards.method != "scratch":
        inputs["init"] = f"{OUT}/meta/{wildcards.pde}/{wildcards.method}/seed{wildcards.seed}/init.pt"
    return inputs


def all_targets():
    return (
        expand(f"{OUT}/figures/convergence_{{pde}}.{{ext}}", pde=PDES, ext=["pdf", "png"])
        + expand(f"{OUT}/taylor/{{pde}}.{{ext}}", pde=PDES, ext=["pdf", "png"])
        + [f"{OUT}/convergence.nc"]
        + expand(f"{OUT}/tables/speedup.{{ext}}", ext=["csv", "md", "tex"])
    )
