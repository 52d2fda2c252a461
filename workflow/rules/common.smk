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


def hydra_args(wildcards, device="cpu"):
    """The Hydra overrides every job of this experiment shares."""
    return (
        f"--config-dir={CONFIG_DIR} experiment={EXPERIMENT} pde={wildcards.pde}"
        f" threads={THREADS} device={device}"
    )


def hydra_args_gpu(wildcards):
    """For the rules that ask for a GPU when ``device: cuda`` (meta_train, tune_scratch_lr,
    adapt): they run on the configured device; every other rule runs on the CPU."""
    return hydra_args(wildcards, DEVICE)


GPUS = 1 if DEVICE == "cuda" else 0


def adapt_inputs(wildcards):
    """Every method adapts with the learning rate tuned for scratch; every method but
    scratch from its meta-trained init.pt."""
    inputs = {"tasks": f"{OUT}/tasks/{wildcards.pde}.nc", "lr": f"{OUT}/tune/{wildcards.pde}.nc"}
    if wildcards.method != "scratch":
        inputs["init"] = f"{OUT}/meta/{wildcards.pde}/{wildcards.method}/seed{wildcards.seed}/init.pt"
    return inputs


# the per-family figures of metapinn.plots.FAMILY_FIGURES, each with its report caption
FAMILY_FIGURES = {
    "convergence": "u_rel_l2 against step",
    "coef_error": "coefficient error against step",
    "wall_time": "u_rel_l2 against wall time",
    "steps_to_threshold": "steps to threshold",
}


def family_figure_outputs():
    """Named outputs of the family_figures step: ``<stem>_pdf`` and ``<stem>_png`` (in the report)."""
    out = {}
    for stem, title in FAMILY_FIGURES.items():
        out[f"{stem}_pdf"] = f"{OUT}/figures/{{pde}}/{stem}.pdf"
        out[f"{stem}_png"] = report(
            f"{OUT}/figures/{{pde}}/{stem}.png",
            caption=f"../report/{stem}.rst",
            category="Figures",
            subcategory="{pde}",
            labels={"family": "{pde}", "figure": title},
        )
    return out


def all_targets():
    figures = list(FAMILY_FIGURES) + (["meta_training"] if META_METHODS else [])
    return (
        expand(f"{OUT}/figures/{{pde}}/{{fig}}.{{ext}}", pde=PDES, fig=figures, ext=["pdf", "png"])
        + expand(f"{OUT}/figures/speedup_overview.{{ext}}", ext=["pdf", "png"])
        + expand(f"{OUT}/taylor/{{pde}}.{{ext}}", pde=PDES, ext=["nc", "pdf", "png"])
        + [f"{OUT}/convergence.nc"]
        + expand(f"{OUT}/tables/speedup.{{ext}}", ext=["csv", "md", "tex"])
    )
