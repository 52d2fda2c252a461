"""Adaptation runs: solve held-out tasks from a method's initialisation (docs/design.md §4).

Every method's initialisation is adapted with the same :class:`AdaptSettings`; the log of
each task (loss parts, ``u_rel_l2``, ``coef_rel_err``, ``wall_time`` at the logged steps:
dense early, see :meth:`AdaptSettings.log_steps`) is gathered into
``results/<exp>/adapt/<pde>/<method>/seed<s>.nc``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .adapt import (
    EVAL_COMPILE_FROM,
    AdaptResult,
    CompiledSolution,
    Evaluator,
    adapt,
    adapt_batch,
    adapt_history,
)
from .errors import ConfigError
from .loss import loss_parts
from .meta import METHODS, get_method, method_class, method_settings
from .meta.base import Context, Initialiser, load_init
from .ncio import read_netcdf, write_netcdf
from .runconfig import RunConfig
from .tasks import Task, load_tasks, split_indices, task_from_dataset, task_tensors

log = logging.getLogger("metapinn")


def from_seed_methods() -> list[str]:
    """The methods whose initialisation is a function of the seed alone (``scratch``,
    ``scratch_alt``, ``scratch_lbfgs``): they need no ``init.pt``."""
    return [m for m in METHODS if getattr(method_class(m), "from_seed", False)]


def initialiser(rc: RunConfig, init: str | Path | None = None,
                method: str | None = None) -> Initialiser:
    """``task_data -> params`` (an :class:`Initialiser`): without ``init``, the
    initialisation of ``method`` (default ``scratch``) at ``rc.seed``, for a method that
    makes it from the seed alone (:func:`from_seed_methods`); else the ``init.pt`` file
    (checked to come from ``method``, if given), with the step multipliers it learned, if
    any.

    Raises:
        ConfigError: ``init`` is missing for a method that needs one, or does not fit.
    """
    if init is None:
        name = method or "scratch"
        if name not in from_seed_methods():
            raise ConfigError(
                f"method={name} needs init=PATH: the init.pt that metapinn meta-train "
                f"method={name} writes (meta/<pde>/{name}/seed<s>/init.pt); only "
                f"{', '.join(from_seed_methods())} start without one")
        ms = method_settings(name)
        params = get_method(name).fit(Context(rc, ms, rc.seed))
        return Initialiser(lambda data: {k: v.clone() for k, v in params.items()}, None, ms)
    return load_init(init, rc, method)


def method_run_config(rc: RunConfig, method) -> tuple[str, RunConfig]:
    """The method's name, and ``rc`` with the evaluation's inner loop as the method has it
    (``scratch_lbfgs``: Adam, then L-BFGS; every other method: unchanged).

    Args:
        method: a registry name (its default settings) or a settings record
            (``MethodSettings`` or its method's subclass).
    """
    ms = method_settings(method) if isinstance(method, str) else method
    adapt_settings = ms.adapt_settings(rc.adapt)
    if adapt_settings != rc.adapt:
        log.info("%s adapts with %d Adam steps, then %d L-BFGS iterations", ms.name,
                 adapt_settings.steps, adapt_settings.lbfgs_steps)
        rc = replace(rc, adapt=adapt_settings)
    return ms.name, rc


def _lr_scale(init_fn) -> dict | None:
    """The learned step multipliers of an :class:`Initialiser` (none for a plain dict or
    function)."""
    return init_fn.lr_scale if isinstance(init_fn, Initialiser) else None


def evaluator(rc: RunConfig, task: Task,
              forward: CompiledSolution | None = None) -> Evaluator | None:
    """Errors against the task's reference (on every ``adapt.eval_stride``-th node), or
    ``None`` where the task has none (a researcher's own data); ``forward`` computes u
    (eagerly without)."""
    if not task.u_ref.size:
        return None
    return Evaluator(rc.pde, task, rc.dtype, rc.device, rc.adapt.eval_stride, forward)


def compiled_evaluation(rc: RunConfig) -> CompiledSolution | None:
    """The compiled forward pass for the evaluators of a solve or a batch: with
    ``adapt.compile`` where a solve logs at least :data:`~metapinn.adapt.EVAL_COMPILE_FROM`
    steps, else ``None`` (eager)."""
    if rc.adapt.compile and len(rc.adapt.log_steps()) >= EVAL_COMPILE_FROM:
        return CompiledSolution()
    return None


def solve_task(rc: RunConfig, task: Task, init_fn, label: str = "",
               strict: bool = True, collocation: str = "random") -> AdaptResult:
    """Adapt the initialisation ``init_fn(task_data)`` to one task, logging errors against
    the reference (losses only where the task has none, e.g. a researcher's own data);
    ``collocation`` says where the residual is enforced (:func:`~metapinn.tasks.task_tensors`).

    Raises:
        FloatingPointError: with ``strict``, if the run diverged (a non-finite loss or
            error); the message names the step and what to change. Without ``strict`` the
            result's ``diverged_at`` says so and its log is NaN from there on.
    """
    data = task_tensors(rc.pde, task, rc.n_collocation, rc.n_boundary, rc.seed, rc.dtype,
                        rc.device, collocation=collocation)
    params0 = init_fn(data) if callable(init_fn) else init_fn
    forward = compiled_evaluation(rc)
    result = adapt(params0, lambda p: loss_parts(p, data, rc.pde, rc.weights), rc.adapt,
                   evaluate=evaluator(rc, task, forward), label=label,
                   lr_scale=_lr_scale(init_fn))
    _log_compile(rc, result, label, forward)
    if strict and result.diverged_at is not None:
        raise FloatingPointError(
            f"{label or rc.pde.name}: the loss or error became non-finite by step "
            f"{result.diverged_at} of {rc.adapt.total_steps} (adapt.optimizer="
            f"{rc.adapt.optimizer}, adapt.lr={rc.adapt.lr:g}); lower adapt.lr, or check the "
            f"initialisation and the observations")
    return result


def batched(rc: RunConfig) -> bool:
    """Whether ``adapt-tasks`` and ``tune-lr`` adapt their tasks together
    (:func:`solve_batch`): ``adapt.batch``, by default on CUDA only; never with L-BFGS."""
    if rc.adapt.lbfgs_steps:
        if rc.adapt.batch:
            log.info("adapt.batch ignored: runs with L-BFGS steps are adapted one by one")
        return False
    if rc.adapt.batch is not None:
        return rc.adapt.batch
    return torch.device(rc.device).type == "cuda"


def solve_batch(rc: RunConfig, tasks: Sequence[Task], init_fn, lrs: Sequence[float] | None = None,
                label: str = "") -> list[AdaptResult]:
    """:func:`solve_task` (without ``strict``) for many tasks at once, as one ``vmap``
    program (:func:`metapinn.adapt.adapt_batch`); ``lrs`` gives each run its own learning
    rate (default ``rc.adapt.lr``). A task may appear more than once (the tune-lr grid)."""
    datas = [task_tensors(rc.pde, t, rc.n_collocation, rc.n_boundary, rc.seed, rc.dtype,
                          rc.device) for t in tasks]
    params = [init_fn(d) if callable(init_fn) else init_fn for d in datas]
    forward = compiled_evaluation(rc)
    evaluate = [evaluator(rc, t, forward) for t in tasks]
    log.info("%s: adapting %d runs at once (adapt.batch)", label or rc.pde.name, len(tasks))
    results = adapt_batch(params, partial(loss_parts, pde=rc.pde, weights=rc.weights), datas,
                          rc.adapt, lrs=lrs, evaluate=evaluate, label=label,
                          lr_scale=_lr_scale(init_fn))
    _log_compile(rc, results[0], label, forward)
    return results


def _log_compile(rc: RunConfig, result: AdaptResult, label: str,
                 forward: CompiledSolution | None) -> None:
    # the first solve of a process compiles the step and the evaluation
    if result.compile_time > 0.1:
        log.info("%s: training step compiled in %.1f s (not counted in wall_time)",
                 label or rc.pde.name, result.compile_time)
    if forward is not None and forward.compile_time > 0.1:
        log.info("%s: evaluation compiled in %.1f s (not counted in wall_time)",
                 label or rc.pde.name, forward.compile_time)


def diverged_flags(runs: list[AdaptResult]) -> np.ndarray:
    """1 where a run diverged, else 0 (NetCDF has no booleans)."""
    return np.array([r.diverged_at is not None for r in runs], dtype=np.int8)


def task_history(rc: RunConfig, task: Task, result: AdaptResult) -> xr.Dataset:
    """The log of one solve as a Dataset with the task's identity as coordinates."""
    ds = adapt_history(result, rc.pde)
    ds = ds.expand_dims(task=[task.index])
    ds["true_coef"] = (("task", "coef"), task.coefficients[None],
                       {"long_name": "true coefficients", "units": "1"})
    ds = ds.assign_coords(split=("task", np.array([task.split], dtype=object)))
    return ds


def solve_tasks(rc: RunConfig, tasks_file: str | Path, method, out: str | Path,
                init: str | None = None, splits: tuple[str, ...] = ("test",),
                attrs: dict | None = None) -> Path:
    """Solve every task of ``splits`` in ``tasks_file`` from ``method``'s initialisation,
    with the method's inner loop (:func:`method_run_config`; ``method`` is a name or a
    settings record).

    Writes one NetCDF with dims ``(task, step, coef, coef_err)``; ``attrs`` are added to its
    attributes (e.g. the ``budget_scale`` of the initialisation).
    """
    method, rc = method_run_config(rc, method)
    ds = load_tasks(tasks_file, rc.pde.name)
    indices = split_indices(ds, splits)
    if not indices:
        raise ValueError(f"{tasks_file} has no tasks in splits {list(splits)}")
    init_fn = initialiser(rc, init, method)
    tasks = [task_from_dataset(ds, i) for i in indices]
    name = f"{rc.pde.name}/{method}/seed{rc.seed}"
    labels = [f"{name} task {i} ({n + 1}/{len(indices)})" for n, i in enumerate(indices)]

    def report(label, result):
        last = result.records[-1]
        if result.diverged_at is not None:
            log.warning("%s: DIVERGED (non-finite loss or error) by step %d; the task is "
                        "marked and the others go on", label, result.diverged_at)
        elif "u_rel_l2" in last:
            log.info("%s: u_rel_l2 %.3e, coef_rel_err %s, %.1f s", label, last["u_rel_l2"],
                     np.array2string(last["coef_rel_err"], precision=3), result.wall_time)
        return result

    if batched(rc):
        results = [report(label, r) for label, r in
                   zip(labels, solve_batch(rc, tasks, init_fn, label=name), strict=True)]
    else:
        results = [report(label, solve_task(rc, task, init_fn, label=label, strict=False))
                   for task, label in zip(tasks, labels, strict=True)]
    runs = [task_history(rc, task, r) for task, r in zip(tasks, results, strict=True)]
    out_ds = xr.concat(runs, dim="task")
    diverged = diverged_flags(results)
    out_ds["diverged"] = ("task", diverged, {"long_name": "1 if the run diverged (non-finite "
                                             "loss or error), else 0", "units": "1"})
    if diverged.any():
        log.warning("%s/%s/seed%d: %d of %d tasks diverged: %s", rc.pde.name, method, rc.seed,
                    diverged.sum(), len(indices),
                    " ".join(str(i) for i, d in zip(indices, diverged, strict=True) if d))
    out_ds.attrs.update({"pde": rc.pde.name, "method": method, "seed": rc.seed,
                         "adam_steps": rc.adapt.steps, "lbfgs_steps": rc.adapt.lbfgs_steps,
                         "lr": rc.adapt.lr,
                         "n_diverged": int(diverged.sum()), "config_digest": rc.digest,
                         **(attrs or {})})
    if rc.threshold_u is not None:  # what collect and the tables measure steps to
        out_ds.attrs.update({"threshold_u_rel_l2": rc.threshold_u,
                             "threshold_coef_rel_err": rc.threshold_coef})
    return write_netcdf(out_ds, out, title=f"adaptation of {rc.pde.name} tasks from {method}",
                        config=rc.yaml, history=f"metapinn adapt-tasks method={method}")


MAX_EXTENSIONS = 6  # grid extensions (factor 2 each) before tune-lr gives up, flagged
THRESHOLD_FACTOR = 2.0  # validation thresholds: this × scratch's median final val error


def extend_grid(score, lrs, max_extensions: int = MAX_EXTENSIONS):
    """Extend a learning-rate grid by factors of 2 until the best rate is interior.

    ``score(new_rates) -> [key, ...]`` evaluates rates (lower key is better; keys are
    comparable, e.g. tuples). While the best rate is the smallest (largest) of the grid,
    half (twice) it is added, at most ``max_extensions`` times.

    Returns:
        ``(rates, keys, best, extensions, capped)``: the grid in evaluation order, their
        keys, the best rate, how many rates were added, and whether the cap stopped it with
        the best rate still on an edge.
    """
    rates = [float(x) for x in lrs]
    keys = list(score(rates))
    extensions = 0
    while True:
        best = rates[min(range(len(rates)), key=keys.__getitem__)]
        if best == min(rates):
            new = best / 2
        elif best == max(rates):
            new = best * 2
        else:
            return rates, keys, best, extensions, False
        if extensions == max_extensions:
            return rates, keys, best, extensions, True
        rates.append(new)
        keys += list(score([new]))
        extensions += 1


def tune_scratch_lr(rc: RunConfig, tasks_file: str | Path, lrs, out: str | Path,
                    split: str = "val", max_extensions: int = MAX_EXTENSIONS,
                    method="scratch", init: str | Path | None = None) -> float:
    """The learning rate best for ``scratch`` on the ``split`` tasks, and the family's
    thresholds from those runs (docs/design.md §4). Only ``split`` tasks are read.

    With ``method`` and its ``init`` file, the same for that method's initialisation: its
    own best rate (the own-rate table), with the method's inner loop (``method`` is a name
    or a settings record, as for :func:`solve_tasks`). The thresholds recorded are then
    that method's val errors; the tables always use scratch's.

    Every candidate runs the configured inner loop from scratch on every ``split`` task;
    the best has the lowest median final ``u_rel_l2`` (ties: lower median loss). The grid
    is extended by factors of 2 while the best is on its edge (:func:`extend_grid`, at most
    ``max_extensions``; a warning and the attribute ``grid_capped`` if that stops it). The
    validation thresholds are ``THRESHOLD_FACTOR`` × the median final ``u_rel_l2`` and
    largest coefficient error of these runs at the best rate (attributes
    ``val_threshold_u_rel_l2``, ``val_threshold_coef_rel_err``, ``threshold_rule``); they
    are used wherever the configuration leaves ``pde.threshold`` unset. Writes a NetCDF
    with the grid (``lr``, sorted), the per-task final errors, each run's ``wall_time``
    and the choice (``best_lr``).
    """
    lrs = [float(x) for x in lrs]
    if not lrs or min(lrs) <= 0:
        raise ValueError(f"the learning-rate grid must be non-empty and positive, got {lrs}")
    method, rc = method_run_config(rc, method)
    # only the final errors are read: log step 0 and the last (the runs are the same)
    rc = replace(rc, adapt=replace(rc.adapt, dense_log=False,
                                   log_every=max(rc.adapt.total_steps, 1)))
    ds = load_tasks(tasks_file, rc.pde.name)
    idx = split_indices(ds, (split,))
    if not idx:
        raise ValueError(f"{tasks_file} has no {split!r} tasks to tune the learning rate on")
    init_fn = initialiser(rc, init, method)
    tasks = [task_from_dataset(ds, i) for i in idx]
    rows: dict[float, dict[str, np.ndarray]] = {}

    def score(new_rates):
        if batched(rc):  # the (new rates × task) grid as one program
            flat = solve_batch(rc, [t for _ in new_rates for t in tasks], init_fn,
                               lrs=[lr for lr in new_rates for _ in tasks],
                               label=f"{rc.pde.name} tune-lr")
            runs = [flat[a * len(tasks):(a + 1) * len(tasks)] for a in range(len(new_rates))]
        else:  # lazily, rate by rate, so that the log follows the runs
            runs = ([solve_task(replace(rc, adapt=replace(rc.adapt, lr=lr)), t, init_fn,
                                strict=False) for t in tasks] for lr in new_rates)
        keys = []
        for lr, row in zip(new_rates, runs, strict=True):
            last = [r.records[-1] for r in row]
            rows[lr] = {
                "u_rel_l2": np.array([x["u_rel_l2"] for x in last]),
                "coef_rel_err_max": np.array([np.max(x["coef_rel_err"]) for x in last]),
                "loss": np.array([x["loss"] for x in last]),
                "diverged": np.array([r.diverged_at is not None for r in row], dtype=np.int8),
                "wall_time": np.array([r.wall_time for r in row])}
            r = rows[lr]
            if r["diverged"].any():
                log.warning("%s lr %.3g: tasks %s diverged (non-finite loss or error)",
                            rc.pde.name, lr,
                            [i for i, d in zip(idx, r["diverged"], strict=True) if d])
            u = np.where(np.isfinite(r["u_rel_l2"]), r["u_rel_l2"], np.inf)
            loss = np.where(np.isfinite(r["loss"]), r["loss"], np.inf)
            keys.append((float(np.median(u)), float(np.median(loss))))
            log.info("%s lr %.3g: median final u_rel_l2 %.3e on %d %s tasks", rc.pde.name, lr,
                     keys[-1][0], len(tasks), split)
        return keys

    _, _, best, extensions, capped = extend_grid(score, lrs, max_extensions)
    if capped:
        log.warning("%s: the best learning rate %.3g is still on the edge of the grid after "
                    "%d extensions; widen experiment.lr_grid", rc.pde.name, best, extensions)
    elif extensions:
        log.info("%s: grid extended %d time(s) until the best rate (%.3g) was interior",
                 rc.pde.name, extensions, best)
    grid = sorted(rows)
    at_best = rows[best]
    eps_u = THRESHOLD_FACTOR * float(np.median(np.where(np.isfinite(at_best["u_rel_l2"]),
                                                        at_best["u_rel_l2"], np.inf)))
    eps_c = THRESHOLD_FACTOR * float(np.median(np.where(
        np.isfinite(at_best["coef_rel_err_max"]), at_best["coef_rel_err_max"], np.inf)))
    long_names = {"u_rel_l2": ("final relative L2 error of u", "1"),
                  "coef_rel_err_max": ("final largest relative coefficient error", "1"),
                  "loss": ("final task loss", "1"),
                  "diverged": ("1 if the run diverged (non-finite loss or error), else 0",
                               "1"),
                  "wall_time": ("solve time (its steps; compile and evaluations excluded)",
                                "s")}
    res = xr.Dataset(
        {k: (("lr", "task"), np.stack([rows[lr][k] for lr in grid]),
             {"long_name": ln, "units": un}) for k, (ln, un) in long_names.items()},
        coords={"lr": ("lr", np.array(grid), {"long_name": "learning rate", "units": "1"}),
                "task": ("task", np.array(idx))},
        attrs={"pde": rc.pde.name, "method": method, "best_lr": best, "split": split,
               "initial_grid": " ".join(f"{x:g}" for x in lrs),
               "grid_extensions": extensions, "grid_capped": int(capped),
               "val_threshold_u_rel_l2": eps_u, "val_threshold_coef_rel_err": eps_c,
               "threshold_rule": f"{THRESHOLD_FACTOR:g} x the median over the {split} tasks "
                                 f"of {method}'s final u_rel_l2 (and largest coefficient "
                                 f"error) at best_lr",
               "n_diverged": int(sum(r["diverged"].sum() for r in rows.values())),
               "config_digest": rc.digest},
    )
    write_netcdf(res, out, title=f"{method} learning-rate tuning on {rc.pde.name}",
                 config=rc.yaml, history=f"metapinn tune-lr method={method}")
    log.info("%s: best %s learning rate %.3g; validation thresholds u_rel_l2 %.3g, "
             "coef_rel_err %.3g", rc.pde.name, method, best, eps_u, eps_c)
    return best


def tuned_lr(path: str | Path, pde: str) -> float:
    """The ``best_lr`` of a tuning file written by :func:`tune_scratch_lr`."""
    return float(_tune_file(path, pde).attrs["best_lr"])


def validation_thresholds(path: str | Path, pde: str) -> tuple[float, float]:
    """``(u_rel_l2, coef_rel_err)`` thresholds of a tuning file (:func:`tune_scratch_lr`)."""
    ds = _tune_file(path, pde)
    missing = [a for a in ("val_threshold_u_rel_l2", "val_threshold_coef_rel_err")
               if a not in ds.attrs]
    if missing:
        raise ValueError(f"{path} has no validation thresholds ({missing[0]}): rerun "
                         f"tune-lr, or set pde.threshold.u_rel_l2 and coef_rel_err")
    return float(ds.attrs["val_threshold_u_rel_l2"]), float(ds.attrs[
        "val_threshold_coef_rel_err"])


def _tune_file(path: str | Path, pde: str) -> xr.Dataset:
    ds = read_netcdf(path, "tune-lr")
    if str(ds.attrs.get("pde")) != pde:
        raise ValueError(f"{path} tunes {ds.attrs.get('pde')!r}, not {pde!r}")
    return ds
