"""A researcher's own observations → identified coefficients (``metapinn identify``).

Observation file schema (NetCDF): one dimension ``obs``; a variable per network input of
the family, named as the input (``x`` and ``t`` for burgers/cdr, ``x`` and ``y`` for darcy),
and ``u_obs``, all of dim ``obs``; the global attribute ``pde`` names the family.
``metapinn export-observations`` writes such a file from any task.
"""

from __future__ import annotations

import logging
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


def identify(rc: RunConfig, observations: str | Path, init: str | Path | None = None,
             out: str | Path | None = None, label: str = "identify") -> xr.Dataset:
    """Adapt from ``init`` (or scratch) to the observations; identified coefficients and the
    reconstructed u (and field a) on the family's reference grid."""
    pde = rc.pde
    points, values = read_observations(observations, pde)
    notes = identifiability_warnings(pde, points, values)
    n_coef = len(pde.coefficients)
    task = Task(pde.name, 0, "user", np.full(n_coef, np.nan), np.zeros(0), points, values)
    result = solve_task(rc, task, initialiser(rc, init), label=label)
    theta = pde.from_param(result.params["coef"].detach().double().cpu().numpy())
    notes += prior_warnings(pde, theta)
    for note in notes:
        log.warning("identify: %s", note)
    grid = pde.grid()
    d0, d1 = pde.grid_dims
    with torch.no_grad():
        pts = torch.as_tensor(pde.grid_points(), dtype=rc.dtype, device=rc.device)
        u = solution(result.params, pts, pde).double().cpu().numpy()
    u = u.reshape(len(grid[d0]), len(grid[d1]))
    ds = xr.Dataset(
        {"coefficients": ("coef", theta, {"long_name": "identified coefficients",
                                          "units": "1"}),
         "u": ((d0, d1), u, {"long_name": "reconstructed solution u", "units": "1"}),
         "loss": ((), result.records[-1]["loss"], {"long_name": "final task loss",
                                                    "units": "1"})},
        coords={"coef": ("coef", np.array(pde.coef_names, dtype=object)),
                d0: (d0, grid[d0], {"long_name": d0, "units": "1"}),
                d1: (d1, grid[d1], {"long_name": d1, "units": "1"})},
        attrs={"pde": pde.name, "observations": str(observations),
               "init": str(init) if init else "scratch", "steps": rc.adapt.total_steps,
               "warnings": " | ".join(notes)},
    )
    if pde.field:
        ds["a"] = ((d0, d1), pde.field_ref(theta), {"long_name": "identified field a",
                                                    "units": "1"})
    if out is not None:
        write_netcdf(ds, out, title=f"{pde.name} coefficients identified from {observations}",
                     config=rc.yaml, history="metapinn identify")
    return ds
