"""``metapinn <command> [hydra overrides]``: the command-line interface.

Commands taking Hydra overrides (``key=value``, see ``config/``):

    metapinn generate-tasks pde=burgers [out=PATH]      the family's task dataset (NetCDF)
    metapinn solve pde=burgers task=3 ['coefficients={nu:0.02}'] [method=M init=PATH] [out=PATH]
    metapinn meta-train pde=burgers method=maml seed=0 [resume=true]
    metapinn adapt-tasks pde=cdr method=scratch tasks_file=PATH out=PATH
    metapinn classical pde=darcy tasks_file=PATH threshold_file=TUNE.nc [out=PATH]

(``metapinn <command> --help``: the keys a command reads, listed in :data:`HYDRA_HELP`)
and plain commands (``metapinn --help`` lists them all):

    metapinn collect --out convergence.nc ADAPT.nc [ADAPT.nc ...]
    metapinn plot-family --convergence convergence.nc --pde burgers --out-dir DIR
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import ConfigError

# Each command imports its implementation when it runs (below, and torch, Hydra and the
# configuration in _run): together they cost ~2.5 s of CPU, which `--help`, `--version`
# and the plain commands do not need. tests/test_cli.py checks that they stay unimported.
if TYPE_CHECKING:
    from omegaconf import DictConfig

    from .runconfig import RunConfig

log = logging.getLogger("metapinn")

PLAIN_COMMANDS = ("collect", "tables", "plot-family", "plot-meta-training", "plot-speedups",
                  "plot-threshold-sweep", "amortised-cost", "meta-budget")
HYDRA_COMMANDS = ("generate-tasks", "tune-lr", "solve", "meta-train", "adapt-tasks",
                  "taylor-check", "export-observations", "identify", "config", "classical")


def _experiment_dir(cfg: DictConfig) -> Path:
    return Path(cfg.results_dir) / str(cfg.experiment.name)


def cmd_generate_tasks(cfg: DictConfig, rc: RunConfig) -> None:
    from .ncio import check_writable, write_netcdf
    from .tasks import generate_tasks, tasks_to_dataset

    out = check_writable(cfg.out or _experiment_dir(cfg) / "tasks" / f"{rc.pde.name}.nc")
    log.info("generating %d %s tasks → %s", rc.tasks.n_tasks, rc.pde.name, out)
    tasks = generate_tasks(rc.pde, rc.tasks)
    ds = tasks_to_dataset(rc.pde, tasks, rc.tasks)
    write_netcdf(ds, out, title=f"{rc.pde.name} inverse-problem tasks", config=rc.yaml,
                 history="metapinn generate-tasks")
    print(f"wrote {out}")


def cmd_solve(cfg: DictConfig, rc: RunConfig) -> None:
    """One task from ``method``'s initialisation (``init=``: its init.pt; scratch and its
    variants: from the seed) with the method's adaptation (scratch_lbfgs: Adam, then
    L-BFGS), as ``adapt-tasks`` runs it. ``init=`` without ``method=``: the method that
    wrote the file, with the settings stored in it (``method=`` given: the command's
    ``method.*`` settings, as ``adapt-tasks`` uses)."""
    from .evaluate import initialiser, method_run_config, solve_task, task_history
    from .ncio import check_writable, write_netcdf

    if cfg.out:
        check_writable(cfg.out)
    task = _task_from_cfg(cfg, rc)
    ms, checked = _start_method(cfg)
    init_fn = initialiser(rc, cfg.init, checked)
    method, rc = method_run_config(rc, ms if checked else init_fn.settings)
    result = solve_task(rc, task, init_fn, label=f"{rc.pde.name} task {task.index}")
    last = result.records[-1]
    steps = f"{last['step']} steps" if not rc.adapt.lbfgs_steps else \
        f"{rc.adapt.steps} Adam steps + {rc.adapt.lbfgs_steps} L-BFGS iterations"
    print(f"{rc.pde.name} task {task.index} ({task.split}) after {steps} from {method}"
          f"{f' ({cfg.init})' if cfg.init else ''}, {result.wall_time:.1f} s adaptation "
          f"time:")
    print(f"  u_rel_l2 = {last['u_rel_l2']:.3e}   loss = {last['loss']:.3e}")
    for name, true, est in zip(rc.pde.coef_names, task.coefficients, last["coef"], strict=True):
        err = (f"rel. err {abs(est - true) / abs(true):.2e}" if true != 0
               else f"abs. err {abs(est - true):.2e}")
        print(f"  {name:>8s}: identified {est:.6g}   true {true:.6g}   {err}")
    if rc.pde.field:
        print(f"  field a: relative L2 error {last['coef_rel_err'][0]:.3e}")
    if cfg.out:
        ds = task_history(rc, task, result)
        ds.attrs.update({"method": method, "init": str(cfg.init or "none (from the seed)"),
                         "adam_steps": rc.adapt.steps, "lbfgs_steps": rc.adapt.lbfgs_steps})
        write_netcdf(ds, cfg.out, title=f"solve of one {rc.pde.name} task", config=rc.yaml,
                     history="metapinn solve")
        print(f"wrote {cfg.out}")


def _with_tuned_lr(cfg: DictConfig, rc: RunConfig) -> RunConfig:
    """``lr_file=PATH``: adapt with the learning rate tuned there (for scratch: the same for
    every method; the own-rate table gives each method's own file), and where
    ``pde.threshold`` is unset, with the validation thresholds of ``threshold_file``
    (default: ``lr_file``; the own-rate table keeps scratch's)."""
    if not cfg.lr_file:
        return rc
    from dataclasses import replace

    from .evaluate import tuned_lr, validation_thresholds

    lr = tuned_lr(cfg.lr_file, rc.pde.name)
    log.info("adaptation learning rate %.3g (tuned: %s)", lr, cfg.lr_file)
    rc = replace(rc, adapt=replace(rc.adapt, lr=lr))
    if rc.threshold_u is None:
        source = cfg.threshold_file or cfg.lr_file
        eps_u, eps_c = validation_thresholds(source, rc.pde.name)
        log.info("thresholds from the val runs of %s: u_rel_l2 %.3g, coef_rel_err %.3g",
                 source, eps_u, eps_c)
        rc = replace(rc, threshold_u=eps_u, threshold_coef=eps_c)
    return rc


def cmd_tune_lr(cfg: DictConfig, rc: RunConfig) -> None:
    from .config import method_config
    from .evaluate import tune_scratch_lr
    from .ncio import check_writable

    exp = _experiment_dir(cfg)
    tasks_file = _tasks_file(cfg, rc)
    ms = method_config(cfg)
    method = ms.name  # scratch, or a method's init (its own best rate)
    init = cfg.init
    if method == "scratch":
        default = exp / "tune" / f"{rc.pde.name}.nc"
    else:
        init = init or _meta_dir(cfg, rc, method) / "init.pt"
        default = exp / "own_lr" / "tune" / rc.pde.name / method / f"seed{rc.seed}.nc"
    out = check_writable(cfg.out or default)
    best = tune_scratch_lr(rc, tasks_file, cfg.experiment.lr_grid, out, method=ms,
                           init=init)
    from .ncio import read_netcdf

    grid = [float(x) for x in read_netcdf(out).lr.values]
    print(f"{rc.pde.name}: best {method} learning rate {best:g} of {grid}"
          f" (experiment.lr_grid {list(cfg.experiment.lr_grid)}, extended while the best was"
          f" on an edge); wrote {out}")


def cmd_adapt_tasks(cfg: DictConfig, rc: RunConfig) -> None:
    from .config import method_config
    from .evaluate import solve_tasks
    from .ncio import check_writable

    rc = _with_tuned_lr(cfg, rc)
    if rc.threshold_u is None:
        log.warning("no thresholds: pde.threshold is unset and no lr_file= gives the "
                    "validation thresholds of tune-lr, so the output records none and "
                    "`collect` will refuse it; set both pde.threshold values or give lr_file=")
    ms = method_config(cfg)
    method = ms.name
    exp = _experiment_dir(cfg)
    tasks_file = _tasks_file(cfg, rc)
    out = check_writable(cfg.out or exp / "adapt" / rc.pde.name / method / f"seed{rc.seed}.nc")
    init = cfg.init
    if init is None and method != "scratch":
        init = _meta_dir(cfg, rc, method) / "init.pt"
    splits = tuple(cfg.experiment.splits)
    solve_tasks(rc, tasks_file, ms, out, init=init, splits=splits,
                attrs={"budget_scale": float(cfg.budget_scale)})
    print(f"wrote {out}")


def cmd_classical(cfg: DictConfig, rc: RunConfig) -> None:
    """The ``classical`` baseline on every task of ``classical.splits``: the reference
    solver in the loop of ``scipy.optimize.least_squares`` → ``classical/<pde>.nc``."""
    from dataclasses import replace

    from .classical import solve_classical
    from .config import family, settings
    from .ncio import check_writable
    from .stats import classical_summary
    from .tables import classical_markdown

    s = settings(cfg)
    threshold = rc.threshold_coef
    source = cfg.threshold_file or cfg.lr_file
    if threshold is None:
        if not source:
            raise ConfigError("classical needs the family's coefficient threshold: give "
                              "threshold_file=TUNE.nc (the val thresholds of tune-lr) or set "
                              "both pde.threshold values")
        from .evaluate import validation_thresholds

        threshold = validation_thresholds(source, rc.pde.name)[1]
    solver = family(replace(s.pde, grid=dict(s.classical.grid))) if s.classical.grid \
        else rc.pde
    tasks_file = _tasks_file(cfg, rc)
    out = check_writable(cfg.out or _experiment_dir(cfg) / "classical" / f"{rc.pde.name}.nc")
    log.info("classical: %s tasks of %s (splits %s), coefficient threshold %.3g, at most %d "
             "solver calls each", rc.pde.name, tasks_file, " ".join(s.classical.splits),
             threshold, s.classical.max_evals)
    ds = solve_classical(solver, tasks_file, s.classical, out, threshold, config=rc.yaml,
                         progress=log.info)
    print(classical_markdown(classical_summary([ds])), end="")
    print(f"wrote {out}")


def _tasks_file(cfg: DictConfig, rc: RunConfig) -> Path:
    """``tasks_file=`` or the experiment's ``tasks/<pde>.nc``."""
    return Path(cfg.tasks_file or _experiment_dir(cfg) / "tasks" / f"{rc.pde.name}.nc")


def _meta_dir(cfg: DictConfig, rc: RunConfig, method: str) -> Path:
    return _experiment_dir(cfg) / "meta" / rc.pde.name / method / f"seed{rc.seed}"


def cmd_meta_train(cfg: DictConfig, rc: RunConfig) -> None:
    from .config import method_config
    from .meta import TUNED_RATE_METHODS
    from .metatrain import meta_train
    from .ncio import check_writable_dir

    ms = method_config(cfg)
    if cfg.lr_file and ms.name in TUNED_RATE_METHODS:  # the baselines train at the tuned rate
        rc = _with_tuned_lr(cfg, rc)  # transfer's solve runs at adapt.lr
        ms = ms.at_tuned_rate(rc.adapt.lr)
    tasks_file = _tasks_file(cfg, rc)
    out_dir = check_writable_dir(cfg.out_dir or _meta_dir(cfg, rc, ms.name))
    exp = cfg.experiment
    budget = None if exp.meta_budget is None else exp.meta_budget * cfg.budget_scale
    path = meta_train(rc, ms, tasks_file, out_dir, resume=bool(cfg.resume),
                      second_order_cost=exp.second_order_cost, meta_budget=budget,
                      budget_scale=float(cfg.budget_scale))
    print(f"wrote {path} and {out_dir / 'history.nc'}")


def cmd_taylor_check(cfg: DictConfig, rc: RunConfig) -> None:
    from .ncio import check_writable, write_netcdf
    from .plots import taylor_figure
    from .taylor import taylor_check

    out = check_writable(cfg.out or _experiment_dir(cfg) / "taylor" / f"{rc.pde.name}.nc")
    ds = taylor_check(rc, k=3)
    write_netcdf(ds, out, title=f"Taylor check of meta-gradients on {rc.pde.name}",
                 config=rc.yaml, history="metapinn taylor-check")
    taylor_figure(out, out.with_suffix(".pdf"), out.with_suffix(".png"))
    for m, slope in zip(ds.method.values, ds.slope.values, strict=True):
        print(f"  {m:>8s}: log-log slope {slope:.2f} (expected 2)")
    print(f"wrote {out} and its figure")


def _task_from_cfg(cfg: DictConfig, rc: RunConfig):
    import numpy as np
    from omegaconf import OmegaConf

    from .tasks import load_tasks, make_task, task_from_dataset

    if cfg.tasks_file:
        if cfg.coefficients:
            raise ConfigError("give either tasks_file= or coefficients=, not both")
        return task_from_dataset(load_tasks(cfg.tasks_file, rc.pde.name), int(cfg.task))
    coefs = None
    if cfg.coefficients:
        given = OmegaConf.to_container(cfg.coefficients)
        if set(given) != set(rc.pde.coef_names):
            raise ConfigError(f"coefficients must set exactly {list(rc.pde.coef_names)}, "
                              f"e.g. coefficients={{{rc.pde.coef_names[0]}:0.5,...}}")
        coefs = np.array([float(given[n]) for n in rc.pde.coef_names])
    if not 0 <= int(cfg.task) < rc.tasks.n_tasks:
        raise ConfigError(f"task={cfg.task} outside 0..{rc.tasks.n_tasks - 1}")
    return make_task(rc.pde, int(cfg.task), rc.tasks, coefs)


def cmd_export_observations(cfg: DictConfig, rc: RunConfig) -> None:
    from .identify import export_observations
    from .ncio import check_writable

    if not cfg.out:
        raise ConfigError("export-observations needs out=PATH")
    check_writable(cfg.out)
    task = _task_from_cfg(cfg, rc)
    export_observations(rc.pde, task, cfg.out, config=rc.yaml)
    print(f"wrote {cfg.out}: {len(task.obs_values)} observations of {rc.pde.name} task "
          f"{task.index} (true coefficients "
          + ", ".join(f"{n}={v:.6g}" for n, v in zip(rc.pde.coef_names, task.coefficients,
                                                     strict=True)) + ")")


def _start_method(cfg: DictConfig):
    """``(method settings, the method the start is checked to come from)``: ``init=`` with
    ``method`` left at its default (scratch) starts as the file's method (``None``: not
    checked); otherwise ``method``, whose ``init=`` must match it (or, without ``init=``,
    which makes its start from the seed)."""
    from .config import method_config

    ms = method_config(cfg)
    return ms, None if cfg.init is not None and ms.name == "scratch" else ms.name


def cmd_identify(cfg: DictConfig, rc: RunConfig) -> None:
    """The identify runs (``identify.*``: their own Adam + L-BFGS schedule) from ``init=``
    or from the initialisation ``method`` makes from the seed (scratch, scratch_alt); a
    meta-learned method needs its ``init=``, and ``init=`` alone is used as it is."""
    from .config import identify_run_config, settings
    from .identify import identify
    from .ncio import check_writable

    if not cfg.observations:
        raise ConfigError("identify needs observations=PATH (see `metapinn export-observations`)")
    if cfg.out:
        check_writable(cfg.out)
    _, checked = _start_method(cfg)
    runs = settings(cfg).identify
    rc = identify_run_config(rc, runs)
    ds = identify(rc, cfg.observations, init=cfg.init, out=cfg.out,
                  label=f"identify {rc.pde.name}", seeds=runs.seeds,
                  collocation=runs.collocation, weight=runs.residual_weight,
                  method=checked)
    n = len(runs.seeds)
    print(f"{rc.pde.name}: identified from {cfg.observations} ({runs.steps} Adam steps + "
          f"{runs.lbfgs_steps} L-BFGS iterations, {ds.attrs['dtype']}, residual weight "
          f"{ds.attrs['residual_weight']:g}, {n} run(s), "
          f"{float(ds['wall_time'].sum()):.0f} s; final loss "
          f"{float(ds['loss'].min()):.3e} at best):")
    for name in rc.pde.coef_names:
        v = float(ds["coefficients"].sel(coef=name))
        if n > 1:
            r = ds["coefficients_run"].sel(coef=name).values
            print(f"  {name:>8s} = {v:.6g}  (median of {n} runs; range {r.min():.6g} to "
                  f"{r.max():.6g}, std {float(ds['coefficients_std'].sel(coef=name)):.2g})")
        else:
            print(f"  {name:>8s} = {v:.6g}")
    if cfg.out:
        print(f"wrote {cfg.out}")


def cmd_config(cfg: DictConfig, rc: RunConfig) -> None:
    print(rc.yaml, end="")


def _plain_parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"metapinn {command}")
    if command in ("tables", "plot-family", "plot-speedups", "plot-threshold-sweep",
                   "amortised-cost"):
        p.add_argument("--convergence", required=True, help="convergence.nc (from collect)")
    if command in ("plot-meta-training", "plot-speedups", "plot-threshold-sweep",
                   "amortised-cost"):
        p.add_argument("--pdf", required=True)
        p.add_argument("--png", required=True)
    if command == "plot-family":
        p.add_argument("--pde", required=True)
        p.add_argument("--out-dir", required=True)
    elif command == "collect":
        p.add_argument("--out", required=True, help="convergence.nc")
        p.add_argument("inputs", nargs="+", help="adaptation NetCDFs")
    elif command == "amortised-cost":
        p.add_argument("--csv", required=True)
        p.add_argument("--classical", nargs="*", default=[],
                       help="the classical baseline's files (metapinn classical), if run")
        p.add_argument("inputs", nargs="*", help="meta-training history.nc files")
    elif command == "meta-budget":
        p.add_argument("--pdf", required=True)
        p.add_argument("--png", required=True)
        p.add_argument("--csv", required=True)
        p.add_argument("--adapt", nargs="+", required=True,
                       help="adaptation NetCDFs: scratch's and every budget multiple's")
        p.add_argument("--histories", nargs="*", default=[],
                       help="meta-training history.nc files (the compute spent)")
    elif command == "tables":
        p.add_argument("--csv", required=True)
        p.add_argument("--md", required=True)
        p.add_argument("--tex", required=True)
        p.add_argument("inputs", nargs="*",
                       help="meta-training history.nc files (for the break-even count)")
    elif command == "plot-meta-training":
        p.add_argument("inputs", nargs="+", help="meta-training history.nc files of a family")
    return p


def run_plain(command: str, rest: list[str]) -> None:
    a = _plain_parser(command).parse_args(rest)
    if command == "collect":
        from .ncio import write_netcdf
        from .stats import collect

        ds = collect(a.inputs)
        write_netcdf(ds, a.out, title="convergence of every adaptation run",
                     config=ds.attrs["config"], history="metapinn collect")
        print(f"wrote {a.out}: " + ", ".join(f"{k}={v}" for k, v in ds.sizes.items()))
    elif command == "tables":
        from .ncio import read_netcdf
        from .stats import meta_train_times, speedup_table
        from .tables import markdown, write_tables

        df = speedup_table(read_netcdf(a.convergence, "collect"), meta_train_times(a.inputs))
        write_tables(df, a.csv, a.md, a.tex)
        print(markdown(df), end="")
    elif command == "plot-family":
        from .plots import family_figures

        for path in family_figures(a.convergence, a.pde, a.out_dir):
            print(f"wrote {path}")
    elif command == "plot-meta-training":
        from .plots import meta_training_figure

        meta_training_figure(a.inputs, a.pdf, a.png)
        print(f"wrote {a.pdf} and {a.png}")
    elif command == "plot-speedups":
        from .plots import speedup_overview_figure

        speedup_overview_figure(a.convergence, a.pdf, a.png)
        print(f"wrote {a.pdf} and {a.png}")
    elif command == "amortised-cost":
        from .plots import amortised_cost_outputs

        amortised_cost_outputs(a.convergence, a.inputs, a.csv, a.pdf, a.png, a.classical)
        print(f"wrote {a.csv}, {a.pdf} and {a.png}")
    elif command == "meta-budget":
        from .plots import meta_budget_outputs

        meta_budget_outputs(a.adapt, a.histories, a.csv, a.pdf, a.png)
        print(f"wrote {a.csv}, {a.pdf} and {a.png}")
    elif command == "plot-threshold-sweep":
        from .plots import threshold_sweep_figure

        threshold_sweep_figure(a.convergence, a.pdf, a.png)
        print(f"wrote {a.pdf} and {a.png}")


# What each Hydra command does (the usage's list and `metapinn <command> --help`), an example
# line, and the command-level keys of `Config` it reads (`node.*`: the settings of that
# node; `method`: the method and its `method.*` settings). tests/test_cli.py derives the
# keys from each command's code and checks this table against them.
HYDRA_HELP: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "generate-tasks": (
        "draw a family's tasks and write tasks/<pde>.nc",
        "metapinn generate-tasks pde=darcy out=darcy.nc",
        ("out", "results_dir")),
    "tune-lr": (
        "the learning rate best for scratch on the val tasks (experiment.lr_grid)",
        "metapinn tune-lr pde=burgers tasks_file=burgers.nc out=tune.nc",
        ("tasks_file", "init", "out", "results_dir", "method")),
    "solve": (
        "solve one task from method=...'s initialisation (scratch: from the seed;\n"
        "a meta-learned method: init=PATH) with the method's adaptation, print the\n"
        "identified coefficients",
        "metapinn solve pde=burgers task=3 'coefficients={nu:0.02}' out=solve.nc",
        ("task", "coefficients", "tasks_file", "init", "out", "method")),
    "meta-train": (
        "meta-train method=... on the training tasks → init.pt + history.nc",
        "metapinn meta-train pde=burgers method=maml seed=0 resume=true",
        ("tasks_file", "lr_file", "threshold_file", "out_dir", "results_dir", "resume",
         "budget_scale", "method")),
    "adapt-tasks": (
        "solve every held-out task of a dataset, write adapt/<pde>/<method>/seed<s>.nc",
        "metapinn adapt-tasks pde=cdr method=scratch tasks_file=cdr.nc lr_file=tune.nc "
        "out=adapt.nc",
        ("tasks_file", "init", "lr_file", "threshold_file", "out", "results_dir",
         "budget_scale", "method")),
    "taylor-check": (
        "MAML/FOMAML/Reptile Taylor expansions vs exact meta-gradients → taylor.nc",
        "metapinn taylor-check pde=cdr",
        ("out", "results_dir")),
    "export-observations": (
        "write a task's observations as an observation file (out=PATH)",
        "metapinn export-observations pde=burgers 'coefficients={nu:0.05}' out=obs.nc",
        ("task", "coefficients", "tasks_file", "out")),
    "identify": (
        "observations=PATH [init=PATH] → identified coefficients (+ out=PATH NetCDF)",
        "metapinn identify pde=burgers observations=obs.nc out=identified.nc",
        ("observations", "init", "out", "identify.*", "method")),
    "classical": (
        "the solver-in-the-loop baseline on a family's test tasks (scipy least\n"
        "squares over θ; threshold_file=TUNE.nc) → classical/<pde>.nc",
        "metapinn classical pde=darcy threshold_file=tune/darcy.nc",
        ("tasks_file", "lr_file", "threshold_file", "out", "results_dir", "classical.*")),
    "config": (
        "print the resolved configuration",
        "metapinn config pde=cdr method=maml",
        ()),
}


def _listed(name: str, text: str, width: int = 16) -> str:
    """``  name   text`` with the text's further lines indented under its first."""
    lead = f"  {name:<{width}} " if len(name) <= width else f"  {name}  "
    indent = "\n" + " " * (width + 3)
    return lead + indent.join(text.splitlines())


USAGE = f"""metapinn {__version__}: meta-learned PINN initialisations for inverse PDE problems

usage: metapinn <command> [--config-dir=DIR] [key=value ...]
       metapinn <command> --help     the command's keys and an example

commands (Hydra overrides, see config/):
""" + "\n".join(_listed(c, text) for c, (text, _, _) in HYDRA_HELP.items()) + """

plain commands:
  collect --out convergence.nc ADAPT.nc ...       merge into dims (pde, method, seed, task, step)
  tables --convergence C --csv F --md F --tex F [HISTORY.nc ...]   speedup tables
  plot-family --convergence C --pde P --out-dir D  a family's convergence figures
  plot-meta-training --pdf F --png F HISTORY.nc ...  a family's meta-training curves
  plot-speedups --convergence C --pdf F --png F    speedups of every family and method
  plot-threshold-sweep --convergence C --pdf F --png F   speedup against the threshold
  amortised-cost --convergence C --csv F --pdf F --png F [history.nc ...]
                   total cost of N tasks (meta-training + N × adaptation) per method
  meta-budget --csv F --pdf F --png F --adapt ADAPT.nc ... [--histories H.nc ...]
                   speedup against meta-training compute (multiples of the budget)
"""

# where a key means something particular for a command, its help says that instead of the
# general description (Config's docstring)
_ONE_TASK_FILE = ("a tasks file (generate-tasks) to take task= from; unset: the task is "
                  "drawn from the seed (coefficients= fixes them)")
KEY_NOTES: dict[tuple[str, str], str] = {
    ("solve", "tasks_file"): _ONE_TASK_FILE,
    ("export-observations", "tasks_file"): _ONE_TASK_FILE,
    ("identify", "method"): "the method whose initialisation the runs start from without "
                            "init= (scratch, scratch_alt; a meta-learned one needs init=); "
                            "the runs themselves follow identify.*",
    ("solve", "init"): "an init.pt written by meta-train: the initialisation to adapt from; "
                       "without method=, adapted with the method and settings stored in it",
}

# the settings every Hydra command reads (through run_config), named once in its help
COMMON_KEYS = "seed, dtype, device, threads, and the groups pde=, model=, adapt=, experiment="


def _key_descriptions() -> dict[str, str]:
    """The description of each key of :class:`metapinn.settings.Config`, from the ``Args:``
    section of its docstring, read from the source (help imports no omegaconf)."""
    import ast

    tree = ast.parse((Path(__file__).parent / "settings.py").read_text(encoding="utf-8"))
    config = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config")
    described: dict[str, str] = {}
    key = None
    for line in (ast.get_docstring(config) or "").split("Args:", 1)[-1].splitlines():
        head, sep, text = line.strip().partition(": ")
        if sep and line.startswith(" " * 4) and not line.startswith(" " * 8) \
                and head.isidentifier():
            key, described[head] = head, text.strip()
        elif key and line.strip():
            described[key] += " " + line.strip()
    described["method"] = ("the method (config/method/), whose initialisation and "
                           "adaptation it uses; method.* its settings")
    return described


def command_help(command: str) -> str:
    """``metapinn <command> --help``: what the command does, the keys it reads (with the
    descriptions of ``Config``'s docstring), the settings every command reads, an example."""
    import re
    import textwrap

    def plain(rst: str) -> str:  # ``x`` and :class:`X` of a docstring, for a terminal
        return re.sub(r"(:\w+:)?`+([^`]+)`+", r"\2", rst)

    text, example, keys = HYDRA_HELP[command]
    described = _key_descriptions()
    width = max((len(k) for k in keys), default=0)
    lines = [f"usage: metapinn {command} [--config-dir=DIR] [key=value ...]", "",
             *textwrap.wrap(" ".join(text.split()), 88), "", "keys of this command:"]
    for k in keys:
        text_k = KEY_NOTES.get((command, k)) or described.get(k.removesuffix(".*"), "")
        wrapped = textwrap.wrap(plain(text_k), 84 - width)
        lines.append(f"  {k:<{width}}  " + f"\n  {' ' * width}  ".join(wrapped or [""]))
    if not keys:
        lines.append("  (none besides those every command reads)")
    lines += textwrap.wrap(f"and, as every command: {COMMON_KEYS}. `metapinn config "
                           f"[key=value ...]` prints every key and its value. Quote a dict "
                           f"value in the shell: 'coefficients={{nu:0.02}}'.", 88)
    lines += ["", "example:", f"  {example}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if not argv or argv[0] in ("-h", "--help") or argv == ["help"]:
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        print(__version__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "help" or (command in HYDRA_COMMANDS
                             and any(a in ("-h", "--help") for a in rest)):
        # `metapinn help solve`, `metapinn solve --help`: cheap, nothing composed
        name = rest[0] if command == "help" else command
        if name in ("help", "-h", "--help"):
            print(USAGE)
            return 0
        if name not in HYDRA_COMMANDS:
            return _run(name, ["--help"])  # a plain command's argparse help, or the error
        print(command_help(name))
        return 0
    directory = None
    for arg in [a for a in rest if a.startswith("--config-dir=")]:
        directory = arg.split("=", 1)[1]
        rest.remove(arg)
    return _run(command, rest, directory)


COMMANDS = {"generate-tasks": cmd_generate_tasks, "tune-lr": cmd_tune_lr, "solve": cmd_solve,
            "meta-train": cmd_meta_train, "adapt-tasks": cmd_adapt_tasks,
            "taylor-check": cmd_taylor_check, "export-observations": cmd_export_observations,
            "identify": cmd_identify, "config": cmd_config, "classical": cmd_classical}


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def limit_threads(n: int):
    """Run the block on ``n`` threads: torch's pool and every BLAS and OpenMP pool loaded
    (NumPy's and SciPy's OpenBLAS, torch's OpenMP); libraries loaded inside the block
    (SciPy's OpenBLAS at its first import) read ``OMP_NUM_THREADS``,
    ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``, set for the block. Afterwards the
    pools, torch's thread count and the environment are as before.

    Bounding torch alone is not enough where nothing else bounds the libraries (a command
    run by hand, a script; Snakemake's shell jobs export those variables themselves):
    NumPy's OpenBLAS starts a thread per core at its first large call (the evaluation's
    ``np.linalg.norm``) and that thread busy-waits after every call, so a one-thread
    adaptation job run by hand used 1.6 cores (25.6 s of CPU in 16.1 s of wall time)."""
    import torch
    from threadpoolctl import threadpool_limits

    saved_env = {v: os.environ.get(v) for v in THREAD_VARIABLES}
    saved_torch = torch.get_num_threads()
    os.environ.update({v: str(n) for v in THREAD_VARIABLES})
    try:
        with threadpool_limits(limits=n):
            torch.set_num_threads(n)
            yield
    finally:
        torch.set_num_threads(saved_torch)
        for var, value in saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _run(command: str, rest: list[str], directory: str | None = None) -> int:
    try:
        if command in HYDRA_COMMANDS:
            from .config import DIGEST_KEYS, compose, run_config

            cfg = compose(rest, directory)
            rc = run_config(cfg, command if command in DIGEST_KEYS else None)
            with limit_threads(rc.threads) if rc.threads > 0 else nullcontext():
                COMMANDS[command](cfg, rc)
        elif command in PLAIN_COMMANDS:
            run_plain(command, rest)
        else:
            valid = ", ".join((*HYDRA_COMMANDS, *PLAIN_COMMANDS))
            print(f"error: unknown command {command!r}; valid commands: {valid}",
                  file=sys.stderr)
            return 2
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
