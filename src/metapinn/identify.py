"""A researcher's own observations → identified coefficients (``metapinn identify``).

Observation file schema (NetCDF): one dimension ``obs``; a variable per network input of
the family, named as the input (``x`` and ``t`` for burgers/cdr, ``x`` and ``y`` for darcy),
and ``u_obs``, all of dim ``obs``; the global attribute ``pde`` names the family.
``metapinn export-observations`` writes such a file from any task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .evaluate import initialiser, solve_task
from .loss import solution
from .ncio import read_netcdf, write_netcdf
from .pdes.base import PDEFamily
from .runconfig import RunConfig
from .tasks import Task

log = logging.getLogger("metapinn")


def identifiability_warnings(pde: PDEFamily, points: np.ndarray,
                             values: np.ndarray) -> list[str]:
    """Why the observations may not determine the coefficients (empty if no reason seen):
    no variation in u, or fewer distinct observation points than unknowns."""
    notes = []
    if np.ptp(values) == 0:
        notes.append(f"every observed u equals {values[0]:g}: the data carry no information "
                     f"about the coefficients, which are then set by the PDE loss and the "
                     f"initial guess alone")
    distinct = len(np.unique(points, axis=0))
    if distinct < len(pde.coefficients):
        notes.append(f"only {distinct} distinct observation point(s) for "
                     f"{len(pde.coefficients)} unknown coefficient(s): they cannot all be "
                     f"determined")
    return notes


def prior_warnings(pde: PDEFamily, theta: np.ndarray) -> list[str]:
    """One note per identified coefficient outside the family's prior (training range)."""
    return [f"{c.name} = {v:.6g} lies outside the family's prior [{c.low:g}, {c.high:g}]: "
            f"an extrapolation; check the data and compare runs from other seeds"
            for c, v in zip(pde.coefficients, theta, strict=True)
            if not c.low <= v <= c.high]


def spread_warnings(pde: PDEFamily, runs: np.ndarray, tolerance: float = 0.1) -> list[str]:
    """One note per coefficient whose runs (rows of ``runs``) differ by more than
    ``tolerance`` relative to the median: the fit is not reproducible."""
    if len(runs) < 2:
        return []
    mid = np.median(runs, axis=0)
    notes = []
    for k, c in enumerate(pde.coefficients):
        lo, hi = float(np.min(runs[:, k])), float(np.max(runs[:, k]))
        if hi - lo > tolerance * max(abs(float(mid[k])), 1e-12):
            notes.append(f"the runs disagree on {c.name}: {lo:.6g} to {hi:.6g} (median "
                         f"{float(mid[k]):.6g}); more steps or more observations may help")
    return notes


def export_observations(pde: PDEFamily, task: Task, path: str | Path, config: str = "") -> Path:
    """Write a task's (noisy) observations in the schema of the module docstring."""
    data = {name: ("obs", task.obs_points[:, k], {"long_name": f"observation {name}",
                                                  "units": "1"})
            for k, name in enumerate(pde.inputs)}
    data["u_obs"] = ("obs", task.obs_values, {"long_name": "observed u", "units": "1"})
    ds = xr.Dataset(data, attrs={"pde": pde.name, "task": task.index})
    return write_netcdf(ds, path, title=f"observations of {pde.name} task {task.index}",
                        config=config, history="metapinn export-observations")


def read_observations(path: str | Path, pde: PDEFamily) -> tuple[np.ndarray, np.ndarray]:
    """Validated observation points ``(n, 2)`` and values ``(n,)`` of ``path``."""
    ds = read_netcdf(path)
    if "pde" in ds.attrs and str(ds.attrs["pde"]) != pde.name:
        raise ValueError(f"{path} holds observations of {ds.attrs['pde']!r}, not {pde.name!r}")
    missing = [v for v in (*pde.inputs, "u_obs") if v not in ds]
    if missing:
        raise ValueError(f"{path} lacks variable(s) {missing}; a {pde.name} observation file "
                         f"needs {list(pde.inputs)} and 'u_obs' along dimension 'obs'")
    cols = []
    for k, name in enumerate(pde.inputs):
        v = ds[name].values.astype(float)
        if v.ndim != 1:
            raise ValueError(f"{path}: variable {name!r} must be 1-D (dimension 'obs')")
        lo, hi = pde.bounds[k]
        bad = np.flatnonzero(~np.isfinite(v) | (v < lo) | (v > hi))
        if bad.size:
            raise ValueError(f"{path}: {bad.size} value(s) of {name!r} are NaN or outside the "
                             f"domain [{lo:g}, {hi:g}] (first at obs={int(bad[0])}: {v[bad[0]]})")
        cols.append(v)
    u = ds["u_obs"].values.astype(float)
    if u.shape != cols[0].shape:
        raise ValueError(f"{path}: 'u_obs' and the coordinates differ in length")
    if not np.isfinite(u).all():
        raise ValueError(f"{path}: 'u_obs' has {int((~np.isfinite(u)).sum())} NaN/inf value(s)")
    if u.size < 1:
        raise ValueError(f"{path} holds no observations")
    return np.stack(cols, axis=1), u


# identify's λ_r relative to ``pde.weights.residual`` where the residual is enforced at the
# observation points alone (dense data) and ``identify.residual_weight`` is null
DENSE_RESIDUAL_FACTOR = 0.1


def residual_weight(setting: float | None, collocation: str, family_weight: float) -> float:
    """The residual weight of identify's runs: ``setting`` where given, else
    :data:`DENSE_RESIDUAL_FACTOR` × the family's weight with the residual at the observation
    points alone, else the family's weight."""
    if setting is not None:
        if not 0 < setting < float("inf"):
            raise ValueError(f"the residual weight must be finite and > 0, got {setting}")
        return setting
    return (DENSE_RESIDUAL_FACTOR * family_weight if collocation == "observations"
            else family_weight)


def auto_collocation(n_obs: int, n_collocation: int) -> str:
    """Where ``identify`` enforces the residual by default: at the observation points alone
    when they are dense (at least ``n_collocation``), else at them and at random points."""
    return "observations" if n_obs >= n_collocation else "both"


def identify(rc: RunConfig, observations: str | Path, init: str | Path | None = None,
             out: str | Path | None = None, label: str = "identify",
             seeds: Sequence[int] | None = None,
             collocation: str = "auto", weight: float | None = None,
             method: str | None = None) -> xr.Dataset:
    """Adapt from ``init`` (or, without it, the initialisation ``method`` makes from the
    seed: scratch by default, :func:`~metapinn.evaluate.initialiser`; with both, ``init``
    is checked to come from ``method``) to the observations, once per seed (default: the one
    of ``rc``); the median of the identified coefficients over the runs, their spread, and
    the reconstructed u (and field a) of the run with the lowest final loss on the family's
    reference grid. ``collocation``: where the residual is enforced
    (:func:`~metapinn.tasks.task_tensors`); ``auto`` (:func:`auto_collocation`): at the
    observation points when there are at least ``rc.n_collocation`` of them, else at them
    and at random points. ``weight``: the residual weight (:func:`residual_weight`)."""
    pde = rc.pde
    points, values = read_observations(observations, pde)
    notes = identifiability_warnings(pde, points, values)
    n_coef = len(pde.coefficients)
    task = Task(pde.name, 0, "user", np.full(n_coef, np.nan), np.zeros(0), points, values)
    if collocation == "auto":
        collocation = auto_collocation(len(values), rc.n_collocation)
    log.info("%s: the residual at %s", label, {
        "observations": f"the {len(values)} observation points",
        "random": f"{rc.n_collocation} random points",
        "both": f"the {len(values)} observation points and {rc.n_collocation} random "
                f"points"}[collocation])
    lam = residual_weight(weight, collocation, rc.weights.residual)
    if lam != rc.weights.residual:
        log.info("%s: residual weight %g (pde.weights.residual %g; set "
                 "identify.residual_weight to choose it)", label, lam, rc.weights.residual)
        rc = replace(rc, weights=replace(rc.weights, residual=lam))
    seeds = [rc.seed] if seeds is None else list(seeds)
    thetas, losses, times, params = [], [], [], []
    for k, seed in enumerate(seeds):
        rc_k = replace(rc, seed=seed)
        tag = f"{label} seed {seed} ({k + 1}/{len(seeds)})" if len(seeds) > 1 else label
        result = solve_task(rc_k, task, initialiser(rc_k, init, method), label=tag,
                            collocation=collocation)
        thetas.append(pde.from_param(result.params["coef"].detach().double().cpu().numpy()))
        losses.append(float(result.records[-1]["loss"]))
        times.append(result.wall_time)
        params.append(result.params)
        log.info("%s: %s, final loss %.3e, %.1f s", tag, ", ".join(
            f"{n} = {v:.6g}" for n, v in zip(pde.coef_names, thetas[-1], strict=True)),
            losses[-1], times[-1])
    runs = np.array(thetas)
    theta = np.median(runs, axis=0)
    best = int(np.nanargmin(losses)) if np.isfinite(losses).any() else 0
    notes += prior_warnings(pde, theta) + spread_warnings(pde, runs)
    for note in notes:
        log.warning("identify: %s", note)
    grid = pde.grid()
    d0, d1 = pde.grid_dims
    with torch.no_grad():
        pts = torch.as_tensor(pde.grid_points(), dtype=rc.dtype, device=rc.device)
        u = solution(params[best], pts, pde).double().cpu().numpy()
    u = u.reshape(len(grid[d0]), len(grid[d1]))
    ds = xr.Dataset(
        {"coefficients": ("coef", theta, {"long_name": "identified coefficients (median "
                                                       "over the runs)", "units": "1"}),
         "coefficients_run": (("seed", "coef"), runs,
                              {"long_name": "identified coefficients of each run",
                               "units": "1"}),
         "coefficients_std": ("coef", runs.std(axis=0, ddof=1) if len(seeds) > 1
                              else np.full(n_coef, np.nan),
                              {"long_name": "standard deviation over the runs (optimisation "
                                            "spread, not a posterior)", "units": "1"}),
         "u": ((d0, d1), u, {"long_name": "reconstructed solution u (run of lowest loss)",
                             "units": "1"}),
         "loss": ("seed", np.array(losses), {"long_name": "final task loss", "units": "1"}),
         "wall_time": ("seed", np.array(times), {"long_name": "optimisation time of the run",
                                                 "units": "s"})},
        coords={"coef": ("coef", np.array(pde.coef_names, dtype=object)),
                "seed": ("seed", np.array(seeds), {"long_name": "seed of the run",
                                                   "units": "1"}),
                d0: (d0, grid[d0], {"long_name": d0, "units": "1"}),
                d1: (d1, grid[d1], {"long_name": d1, "units": "1"})},
        attrs={"pde": pde.name, "observations": str(observations),
               "init": str(init) if init else method or "scratch", "steps": rc.adapt.steps,
               "lbfgs_steps": rc.adapt.lbfgs_steps, "collocation": collocation,
               "residual_weight": rc.weights.residual,
               "dtype": str(rc.dtype).removeprefix("torch."), "best_seed": seeds[best],
               "warnings": " | ".join(notes)},
    )
    if pde.field:
        ds["a"] = ((d0, d1), pde.field_ref(theta), {"long_name": "identified field a "
                                                                 "(median coefficients)",
                                                    "units": "1"})
    if out is not None:
        write_netcdf(ds, out, title=f"{pde.name} coefficients identified from {observations}",
                     config=rc.yaml, history="metapinn identify")
    return ds
