"""The ``classical`` baseline: the inverse problem solved with the reference solver in the
loop (docs/design.md §4.3).

For one task, ``scipy.optimize.least_squares`` (bounded trust region, finite-difference
Jacobian) minimises over the family's coefficients θ, in the PINN's parametrisation
(:meth:`PDEFamily.to_param`: log for positive coefficients), the misfit between the family's
reference solver, interpolated from its grid to the task's observation points, and the
task's noisy observations. It starts at the prior centre, like every PINN method without a
learned guess. It has no optimiser steps: after every solver evaluation (those of the
Jacobian included) it records the wall time, the best θ so far (lowest misfit) and that
θ's coefficient error; what it reports is the wall time until the coefficient error falls
below the family's threshold, and the final error. It is the cost any PINN method must beat
to be worth running on a family whose solver is known.

The observations of a generated task are reference-grid nodes, so on the tasks' grid the
true θ gives zero misfit up to round-off; on another solver grid (``classical.grid``) or
for observations off the grid, the misfit at the truth is the interpolation error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.interpolate import RectBivariateSpline, RegularGridInterpolator
from scipy.optimize import least_squares

from .ncio import write_netcdf
from .pdes.base import PDEFamily
from .settings import ClassicalSettings
from .tasks import Task, load_tasks, split_indices, task_from_dataset

log = logging.getLogger("metapinn")


class _Budget(Exception):
    """Raised inside the residual function when ``max_evals`` solver calls are spent."""


def bounds(pde: PDEFamily, widen: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the search in the parametrisation: per coefficient the union of the prior
    and the ood range, widened on each side by ``widen`` × its width (in log for positive
    coefficients)."""
    lo = pde.to_param([min(c.low, c.ood_low) for c in pde.coefficients])
    hi = pde.to_param([max(c.high, c.ood_high) for c in pde.coefficients])
    pad = widen * (hi - lo)
    return lo - pad, hi + pad


def forward(pde: PDEFamily, points: np.ndarray,
            interpolation: str = "cubic") -> Callable[[np.ndarray], np.ndarray]:
    """``theta -> u`` at ``points`` (shape ``(n, 2)``, in ``pde.inputs`` order): the
    family's reference solver on its grid, interpolated (``linear``, or ``cubic`` spline
    through the nodes). Points outside the grid's range take the value at its edge (cubic)
    or are extrapolated linearly (linear)."""
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"observation points must have shape (n, 2), got {points.shape}")
    g = pde.grid()
    d0, d1 = pde.grid_dims
    c0 = points[:, pde.inputs.index(d0)]
    c1 = points[:, pde.inputs.index(d1)]
    axes = (g[d0], g[d1])
    if interpolation == "cubic" and min(len(a) for a in axes) < 4:
        raise ValueError(f"cubic interpolation needs ≥ 4 grid nodes per axis, the {pde.name} "
                         f"grid has {tuple(len(a) for a in axes)}")

    def u_at(theta):
        u = pde.reference(np.asarray(theta, dtype=float))
        if interpolation == "cubic":
            return RectBivariateSpline(*axes, u, kx=3, ky=3, s=0).ev(c0, c1)
        if interpolation == "linear":
            rgi = RegularGridInterpolator(axes, u, bounds_error=False, fill_value=None)
            return rgi(np.stack([c0, c1], axis=1))
        raise ValueError(f"unknown interpolation {interpolation!r}; valid: linear, cubic")

    return u_at


def classical_solve(pde: PDEFamily, task: Task, settings: ClassicalSettings,
                    threshold: float | None = None) -> xr.Dataset:
    """Solve one task's inverse problem with the reference solver in the loop.

    Args:
        pde: the family whose reference solver is called (its grid is the solver's; it may
            differ from the grid the task's observations were drawn from).
        task: the task: true coefficients (for the errors only) and observations.
        settings: the solve's settings (validated by the record).
        threshold: the family's coefficient threshold; adds the time to reach it.

    Returns:
        Dims ``evaluation`` (one per solver call), ``coef`` and ``coef_err``: ``wall_time``
        (seconds from the start, the error bookkeeping excluded), ``misfit`` (relative RMS
        misfit of the evaluated θ), ``best_misfit``, ``coef_estimate`` (the best θ so far),
        ``coef_rel_err`` (its error, :meth:`PDEFamily.coef_errors`), ``coefficients``
        (true θ). Attributes: ``final_coefficients``, ``final_coef_rel_err``,
        ``n_evals``, ``status`` and ``message`` (``least_squares``'s, or the evaluation
        budget's), and with ``threshold`` also ``time_to_threshold_s``,
        ``evals_to_threshold`` and ``reached`` (:func:`time_to_threshold`).

    Raises:
        ValueError: the task belongs to another family, has no observations, or the
            solver gives non-finite values.
    """
    if task.pde != pde.name:
        raise ValueError(f"task {task.index} is a {task.pde!r} task, not {pde.name!r}")
    values = np.asarray(task.obs_values, dtype=float)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"{pde.name} task {task.index}: needs finite observations, "
                         f"got {values.size} values")
    u_at = forward(pde, task.obs_points, settings.interpolation)
    scale = float(np.linalg.norm(values)) or 1.0
    lo, hi = bounds(pde, settings.widen)
    p0 = np.clip(pde.to_param(pde.prior_centre()), lo, hi)
    true = np.asarray(task.coefficients, dtype=float)
    rec: dict[str, list] = {"wall_time": [], "misfit": [], "best_misfit": [],
                            "coef_estimate": [], "coef_rel_err": []}
    best = {"misfit": np.inf, "theta": pde.from_param(p0), "err": None}
    clock = {"start": 0.0, "excluded": 0.0}

    def residual(p):
        if len(rec["misfit"]) >= settings.max_evals:
            raise _Budget
        theta = pde.from_param(p)
        r = (u_at(theta) - values) / scale
        if not np.isfinite(r).all():
            raise ValueError(f"{pde.name} task {task.index}: the reference solver gave "
                             f"non-finite values at θ = {theta}")
        now = time.perf_counter()
        misfit = float(np.linalg.norm(r))
        if misfit < best["misfit"] or best["err"] is None:
            best.update(misfit=misfit, theta=theta,
                        err=np.asarray(pde.coef_errors(theta, true), dtype=float))
        rec["wall_time"].append(now - clock["start"] - clock["excluded"])
        rec["misfit"].append(misfit)
        rec["best_misfit"].append(best["misfit"])
        rec["coef_estimate"].append(np.array(best["theta"], dtype=float))
        rec["coef_rel_err"].append(best["err"])
        clock["excluded"] += time.perf_counter() - now
        return r

    clock["start"] = time.perf_counter()
    try:
        res = least_squares(residual, p0, bounds=(lo, hi), method=settings.method,
                            jac="2-point", diff_step=settings.diff_step, xtol=settings.xtol,
                            ftol=settings.ftol, gtol=settings.gtol, x_scale=1.0)
        status, message = int(res.status), str(res.message)
    except _Budget:
        status = 0
        message = f"stopped after classical.max_evals={settings.max_evals} solver evaluations"
    n = len(rec["misfit"])
    ds = xr.Dataset(
        {
            "wall_time": ("evaluation", np.array(rec["wall_time"]),
                          {"long_name": "solve time after the evaluation", "units": "s"}),
            "misfit": ("evaluation", np.array(rec["misfit"]),
                       {"long_name": "relative RMS misfit of the evaluated coefficients",
                        "units": "1"}),
            "best_misfit": ("evaluation", np.array(rec["best_misfit"]),
                            {"long_name": "lowest relative misfit so far", "units": "1"}),
            "coef_estimate": (("evaluation", "coef"), np.stack(rec["coef_estimate"]),
                              {"long_name": "best coefficients so far", "units": "1"}),
            "coef_rel_err": (("evaluation", "coef_err"), np.stack(rec["coef_rel_err"]),
                             {"long_name": "relative coefficient error of the best so far",
                              "units": "1"}),
            "coefficients": ("coef", true, {"long_name": "true coefficients", "units": "1"}),
        },
        coords={"evaluation": ("evaluation", np.arange(1, n + 1),
                               {"long_name": "reference-solver evaluation"}),
                "coef": ("coef", np.array(pde.coef_names, dtype=object)),
                "coef_err": ("coef_err", np.array(pde.error_names, dtype=object))},
    )
    ds.attrs.update({
        "pde": pde.name, "task": int(task.index), "split": str(task.split),
        "final_coefficients": np.array(best["theta"], dtype=float),
        "final_coef_rel_err": np.asarray(best["err"], dtype=float),
        "n_evals": n, "status": status, "message": message,
    })
    if threshold is not None:
        seconds, evals, reached = time_to_threshold(ds.wall_time.values,
                                                    ds.coef_rel_err.values, threshold)
        ds.attrs.update({"threshold_coef_rel_err": float(threshold),
                         "time_to_threshold_s": seconds, "evals_to_threshold": evals,
                         "reached": int(reached)})
    return ds


def time_to_threshold(wall_time: np.ndarray, coef_rel_err: np.ndarray,
                      threshold: float) -> tuple[float, int, bool]:
    """The wall time at the first evaluation whose largest coefficient error is at most
    ``threshold``, its 1-based number, and whether there is one. Where there is none (or
    the errors are NaN) the time is the whole solve's and the number the last evaluation's
    (censored, as the PINN runs at their budget).

    Args:
        wall_time: ``(evaluation,)`` seconds, NaN-padded at the end.
        coef_rel_err: ``(evaluation,)`` or ``(evaluation, coef_err)`` errors.
        threshold: the coefficient threshold (> 0).
    """
    if not threshold > 0:
        raise ValueError(f"the coefficient threshold must be > 0, got {threshold}")
    wall = np.asarray(wall_time, dtype=float)
    err = np.asarray(coef_rel_err, dtype=float)
    err = err.reshape(len(wall), -1).max(axis=1) if err.size else err
    valid = np.isfinite(wall)
    if not valid.any():
        raise ValueError("no solver evaluation recorded")
    with np.errstate(invalid="ignore"):
        ok = valid & (err <= threshold)
    if ok.any():
        i = int(np.argmax(ok))
        return float(wall[i]), i + 1, True
    last = int(np.flatnonzero(valid)[-1])
    return float(wall[last]), last + 1, False


def solve_classical(pde: PDEFamily, tasks_file: str | Path, settings: ClassicalSettings,
                    out: str | Path, threshold: float, config: str = "",
                    progress: Callable[[str], None] | None = None) -> xr.Dataset:
    """Every task of ``settings.splits`` in a family's task file, solved by
    :func:`classical_solve`, written atomically to ``out`` (NetCDF).

    Args:
        pde: the solver's family (the tasks must be of the same family).
        tasks_file: ``tasks/<pde>.nc``.
        settings: the solve's settings.
        out: the output file.
        threshold: the family's coefficient threshold (the tune file's, or
            ``pde.threshold.coef_rel_err``).
        config: the resolved configuration as YAML (global attribute).
        progress: called with one line per solved task.

    Returns:
        The written dataset: :func:`classical_solve`'s variables with a leading ``task``
        dim (``evaluation`` NaN-padded), per-task ``n_evals``, ``time_to_threshold``,
        ``evals_to_threshold``, ``reached``, ``final_coef_rel_err``, ``status``,
        ``message``, and a ``split`` coordinate.
    """
    if not threshold > 0:
        raise ValueError(f"the coefficient threshold must be > 0, got {threshold}")
    ds = load_tasks(tasks_file, pde.name)
    indices = split_indices(ds, settings.splits)
    if not indices:
        raise ValueError(f"{tasks_file} has no tasks in classical.splits "
                         f"{list(settings.splits)}")
    runs = []
    for k, i in enumerate(indices):
        r = classical_solve(pde, task_from_dataset(ds, i), settings, threshold)
        runs.append(r)
        if progress:
            progress(f"{pde.name} task {i} ({k + 1}/{len(indices)}): {r.attrs['n_evals']} "
                     f"solver calls, {float(r.wall_time[-1]):.2f} s, coefficient error "
                     f"{float(np.max(r.attrs['final_coef_rel_err'])):.2e}, threshold "
                     + (f"reached after {r.attrs['time_to_threshold_s']:.2f} s"
                        if r.attrs["reached"] else "not reached"))
    result = combine(runs)
    result.attrs.update({"pde": pde.name, "method": "classical",
                         "threshold_coef_rel_err": float(threshold),
                         "splits": " ".join(settings.splits)})
    write_netcdf(result, out, title=f"classical inverse solves of {pde.name} tasks",
                 config=config, history="metapinn classical")
    return result


def combine(runs: Sequence[xr.Dataset]) -> xr.Dataset:
    """:func:`classical_solve` results of several tasks (with thresholds) → one dataset
    with a ``task`` dim; per-task attributes become variables."""
    if not runs:
        raise ValueError("combine needs at least one solve")
    per_task = []
    for r in runs:
        a = r.attrs
        if "time_to_threshold_s" not in a:
            raise ValueError(f"task {a.get('task')}: solved without a threshold")
        one = r.drop_vars("coefficients").expand_dims(task=[int(a["task"])])
        one["coefficients"] = r["coefficients"].expand_dims(task=[int(a["task"])])
        scalars = {
            "n_evals": (a["n_evals"], "reference-solver evaluations", "1"),
            "time_to_threshold": (a["time_to_threshold_s"],
                                  "wall time to the coefficient threshold (censored: the "
                                  "whole solve)", "s"),
            "evals_to_threshold": (a["evals_to_threshold"],
                                   "solver evaluations to the coefficient threshold", "1"),
            "reached": (a["reached"], "coefficient threshold reached (1) or not (0)", "1"),
            "status": (a["status"], "least_squares status (0: evaluation budget spent)", "1"),
        }
        for name, (value, long_name, units) in scalars.items():
            one[name] = ("task", [value], {"long_name": long_name, "units": units})
        one["final_coef_rel_err"] = (("task", "coef_err"), [a["final_coef_rel_err"]],
                                     {"long_name": "final relative coefficient error",
                                      "units": "1"})
        one["message"] = ("task", np.array([a["message"]], dtype=object),
                          {"long_name": "how the solve stopped", "units": "1"})
        one = one.assign_coords(split=("task", np.array([a["split"]], dtype=object)))
        one.attrs = {}
        per_task.append(one)
    out = xr.concat(per_task, dim="task", join="outer", data_vars="all",
                    combine_attrs="override")  # the variables keep their CF attributes
    out.attrs = {}
    return out
