"""Adaptation runs: solve held-out tasks from a method's initialisation (DESIGN §4.4).

Every method's initialisation is adapted with the same :class:`AdaptSettings`; the log of
each task (loss parts, ``u_rel_l2``, ``coef_rel_err``, ``wall_time`` every ``log_every``
steps) is gathered into ``results/<exp>/adapt/<pde>/<method>/seed<s>.nc``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .adapt import AdaptResult, Evaluator, adapt, history_dataset
from .config import RunConfig
from .loss import loss_parts
from .ncio import read_netcdf, write_netcdf
from .nets import Params, init_mlp
from .tasks import Task, load_tasks, split_indices, task_from_dataset, task_tensors

log = logging.getLogger("metapinn")

TORCH_SEED_OFFSET = 7919  # separates the network-init stream from numpy's task streams


def scratch_params(rc: RunConfig, seed: int) -> Params:
    """Glorot network from ``seed`` and the prior-centre coefficient guess (DESIGN §4.2)."""
    gen = torch.Generator().manual_seed(TORCH_SEED_OFFSET + seed)
    params = init_mlp(rc.widths, gen, rc.dtype, rc.device)
    params["coef"] = torch.as_tensor(rc.pde.to_param(rc.pde.prior_centre()), dtype=rc.dtype,
                                     device=rc.device)
    return params


def load_init(path: str | Path, rc: RunConfig):
    """Load an ``init.pt`` written by meta-training, checking it fits this run.

    Returns:
        A function ``task_data -> params`` giving each task's initialisation (the
        hypernetwork's depends on the task's observations; the others' do not).
    """
    from .meta import Context, MetaSettings, get_method

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no initialisation file {path}")
    blob = torch.load(path, map_location=rc.device, weights_only=True)
    if blob.get("pde") != rc.pde.name:
        raise ValueError(f"{path} was trained for pde {blob.get('pde')!r}, not {rc.pde.name!r}")
    if list(blob.get("hidden", [])) != list(rc.hidden):
        raise ValueError(f"{path} has hidden layers {blob.get('hidden')}, but this run has "
                         f"model.hidden={list(rc.hidden)}")
    method = get_method(blob["method"])
    meta = {k: v.to(dtype=rc.dtype, device=rc.device) for k, v in blob["meta"].items()}
    ctx = Context(rc, MetaSettings(name=blob["method"]), rc.seed)
    return lambda data: method.initialisation(meta, data, ctx)


def initialiser(rc: RunConfig, method: str, seed: int, init: str | Path | None = None):
    """``task_data -> params`` for ``method``: scratch needs no file, the others ``init``."""
    if init is None:
        if method != "scratch":
            raise ValueError(f"method {method!r} needs an init= file (only scratch has none)")
        params = scratch_params(rc, seed)
        return lambda data: {k: v.clone() for k, v in params.items()}
    return load_init(init, rc)


def solve_task(rc: RunConfig, task: Task, init_fn, label: str = "") -> AdaptResult:
    """Adapt the initialisation ``init_fn(task_data)`` to one task, logging errors against
    the reference (losses only where the task has none, e.g. a researcher's own data)."""
    data = task_tensors(rc.pde, task, rc.n_collocation, rc.n_boundary, rc.seed, rc.dtype,
                        rc.device)
    params0 = init_fn(data) if callable(init_fn) else init_fn
    evaluate = Evaluator(rc.pde, task, rc.dtype, rc.device) if task.u_ref.size else None
    return adapt(params0, lambda p: loss_parts(p, data, rc.pde, rc.weights), rc.adapt,
                 evaluate=evaluate, label=label)


def task_history(rc: RunConfig, task: Task, result: AdaptResult) -> xr.Dataset:
    """The log of one solve as a Dataset with the task's identity as coordinates."""
    ds = history_dataset(result, rc.pde)
    ds = ds.expand_dims(task=[task.index])
    ds["true_coef"] = (("task", "coef"), task.coefficients[None],
                       {"long_name": "true coefficients", "units": "1"})
    ds = ds.assign_coords(split=("task", np.array([task.split], dtype=object)))
    return ds


def solve_tasks(rc: RunConfig, tasks_file: str | Path, method: str, out: str | Path,
                init: str | None = None, splits: tuple[str, ...] = ("test",)) -> Path:
    """Solve every task of ``splits`` in ``tasks_file`` from ``method``'s initialisation.

    Writes one NetCDF with dims ``(task, step, coef, coef_err)``.
    """
    ds = load_tasks(tasks_file, rc.pde.name)
    indices = split_indices(ds, splits)
    if not indices:
        raise ValueError(f"{tasks_file} has no tasks in splits {list(splits)}")
    init_fn = initialiser(rc, method, rc.seed, init)
    runs = []
    for n, i in enumerate(indices):
        task = task_from_dataset(ds, i)
        label = f"{rc.pde.name}/{method}/seed{rc.seed} task {i} ({n + 1}/{len(indices)})"
        result = solve_task(rc, task, init_fn, label=label)
        last = result.records[-1]
        log.info("%s: u_rel_l2 %.3e, coef_rel_err %s, %.1f s", label, last["u_rel_l2"],
                 np.array2string(last["coef_rel_err"], precision=3), result.wall_time)
        runs.append(task_history(rc, task, result))
    out_ds = xr.concat(runs, dim="task")
    out_ds.attrs.update({"pde": rc.pde.name, "method": method, "seed": rc.seed,
                         "threshold_u_rel_l2": rc.threshold_u,
                         "threshold_coef_rel_err": rc.threshold_coef})
    return write_netcdf(out_ds, out, title=f"adaptation of {rc.pde.name} tasks from {method}",
                        config=rc.yaml, history=f"metapinn adapt-tasks method={method}")


def tune_scratch_lr(rc: RunConfig, tasks_file: str | Path, lrs, out: str | Path,
                    split: str = "val") -> float:
    """The learning rate best for ``scratch`` on the ``split`` tasks (DESIGN §4.4).

    Every candidate runs the configured inner loop from scratch on every ``split`` task;
    the best has the lowest median final ``u_rel_l2`` (ties: lower median loss). Writes
    a NetCDF with the grid (``lr``), the per-task errors and the choice (attribute
    ``best_lr``) — the rate every method is then adapted with.
    """
    from dataclasses import replace

    lrs = [float(x) for x in lrs]
    if not lrs or min(lrs) <= 0:
        raise ValueError(f"the learning-rate grid must be non-empty and positive, got {lrs}")
    ds = load_tasks(tasks_file, rc.pde.name)
    idx = split_indices(ds, (split,))
    if not idx:
        raise ValueError(f"{tasks_file} has no {split!r} tasks to tune the learning rate on")
    u = np.full((len(lrs), len(idx)), np.nan)
    loss = np.full_like(u, np.nan)
    init_fn = initialiser(rc, "scratch", rc.seed)
    for a, lr in enumerate(lrs):
        rc_lr = replace(rc, adapt=replace(rc.adapt, lr=lr))
        for b, i in enumerate(idx):
            last = solve_task(rc_lr, task_from_dataset(ds, i), init_fn).records[-1]
            u[a, b], loss[a, b] = last["u_rel_l2"], last["loss"]
        log.info("%s lr %.3g: median u_rel_l2 %.3e", rc.pde.name, lr, np.nanmedian(u[a]))
    score = np.where(np.isfinite(u), u, np.inf)
    order = np.lexsort((np.median(np.where(np.isfinite(loss), loss, np.inf), axis=1),
                        np.median(score, axis=1)))
    best = lrs[int(order[0])]
    res = xr.Dataset(
        {"u_rel_l2": (("lr", "task"), u, {"long_name": "final relative L2 error of u",
                                          "units": "1"}),
         "loss": (("lr", "task"), loss, {"long_name": "final task loss", "units": "1"})},
        coords={"lr": ("lr", np.array(lrs), {"long_name": "learning rate", "units": "1"}),
                "task": ("task", np.array(idx))},
        attrs={"pde": rc.pde.name, "best_lr": best, "split": split},
    )
    write_netcdf(res, out, title=f"scratch learning-rate tuning on {rc.pde.name}",
                 config=rc.yaml, history="metapinn tune-lr")
    return best


def tuned_lr(path: str | Path, pde: str) -> float:
    """The ``best_lr`` of a tuning file written by :func:`tune_scratch_lr`."""
    ds = read_netcdf(path)
    if str(ds.attrs.get("pde")) != pde:
        raise ValueError(f"{path} tunes {ds.attrs.get('pde')!r}, not {pde!r}")
    return float(ds.attrs["best_lr"])
