"""Convergence statistics (docs/design.md §4): collect, steps-to-threshold, speedups.

``collect`` merges the adaptation files into one dataset with dims
``(pde, method, seed, task, step)`` (with a ``split`` coordinate on ``task``);
:func:`speedup_table` turns it into one row per family × split (test, ood) × method: the
median speedup over tasks × seeds against scratch with a bootstrap 95 % interval, the
fraction of runs that reached the thresholds, steps and wall time to threshold, the error
at 10 % of the budget, final errors, and the break-even number of tasks after which
meta-training time is repaid. :mod:`metapinn.tables` formats it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .meta import METHODS
from .ncio import read_netcdf

METHOD_ORDER = tuple(METHODS)  # the registry's order: figures and tables follow it

VARIABLES = ("loss", "u_rel_l2", "wall_time")


def collect(files: Sequence[str | os.PathLike]) -> xr.Dataset:
    """Adaptation files (``adapt/<pde>/<method>/seed<s>.nc``) → one dataset with dims
    ``(pde, method, seed, task, step)``; ``coef_rel_err_max`` is the largest coefficient
    error of each entry (the steps-to-threshold criterion needs every coefficient)."""
    if not files:
        raise ValueError("collect needs at least one adaptation file")
    pieces, thresholds = [], {}
    needed_attrs = ("pde", "method", "seed", "threshold_u_rel_l2", "threshold_coef_rel_err")
    for f in files:
        ds = read_netcdf(f)
        missing = [v for v in (*VARIABLES, "coef_rel_err") if v not in ds]
        missing += [f"attribute {a}" for a in needed_attrs if a not in ds.attrs]
        if missing:
            raise ValueError(f"{f} is not an adaptation file (metapinn adapt-tasks): it lacks "
                             f"{', '.join(missing)}")
        one = ds[list(VARIABLES)].copy()
        one["coef_rel_err_max"] = ds["coef_rel_err"].max("coef_err")
        one = one.expand_dims(pde=[str(ds.attrs["pde"])], method=[str(ds.attrs["method"])],
                              seed=[int(ds.attrs["seed"])])
        thresholds[str(ds.attrs["pde"])] = (float(ds.attrs["threshold_u_rel_l2"]),
                                            float(ds.attrs["threshold_coef_rel_err"]))
        one.attrs = {}
        pieces.append(one)
    out = xr.combine_by_coords(pieces, data_vars="all", combine_attrs="drop", join="outer")
    order = [m for m in METHOD_ORDER if m in out.method.values]
    order += sorted(m for m in out.method.values if m not in METHOD_ORDER)
    out = out.sel({"method": order})
    pdes = [str(p) for p in out.pde.values]
    out["threshold_u_rel_l2"] = ("pde", [thresholds[p][0] for p in pdes])
    out["threshold_coef_rel_err"] = ("pde", [thresholds[p][1] for p in pdes])
    attrs = {
        "loss": ("total task loss", "1"), "u_rel_l2": ("relative L2 error of u", "1"),
        "wall_time": ("adaptation time", "s"),
        "coef_rel_err_max": ("largest relative coefficient error", "1"),
        "threshold_u_rel_l2": ("steps-to-threshold bound on u_rel_l2", "1"),
        "threshold_coef_rel_err": ("steps-to-threshold bound on every coefficient error", "1"),
    }
    for name, (long_name, units) in attrs.items():
        out[name].attrs = {"long_name": long_name, "units": units}
    return out


def steps_to_threshold(u: np.ndarray, coef: np.ndarray, steps: np.ndarray, eps_u: float,
                       eps_c: float) -> tuple[np.ndarray, np.ndarray]:
    """First logged step with u ≤ eps_u and coefficient error ≤ eps_c, along the last axis.

    Returns:
        ``(steps, reached)``: where not reached, the budget (a censored lower bound).
    """
    ok = (u <= eps_u) & (coef <= eps_c)
    reached = ok.any(axis=-1)
    first = np.where(reached, np.argmax(ok, axis=-1), len(steps) - 1)
    return steps[first].astype(float), reached


def bootstrap_median_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float]:
    """Median and a percentile bootstrap interval (fixed seed: reproducible)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (np.nan, np.nan, np.nan)
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(values, (n_boot, values.size), replace=True), axis=1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return float(np.median(values)), float(lo), float(hi)


SPLIT_ORDER = ("test", "ood")


def splits_of(conv: xr.Dataset) -> list[str]:
    """The task splits present in ``conv`` (``test`` first, then ``ood``, then others); a
    dataset without a ``split`` coordinate counts as one ``test`` split."""
    if "split" not in conv.coords:
        return ["test"]
    present = {str(s) for s in conv.split.values}
    return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))


def select_split(conv: xr.Dataset, split: str) -> xr.Dataset:
    """The tasks of one split (all tasks where ``conv`` has no ``split`` coordinate)."""
    if "split" not in conv.coords:
        if split != "test":
            raise ValueError(f"no split {split!r}: the dataset has no split coordinate")
        return conv
    keep = np.array([str(s) == split for s in conv.split.values])
    if not keep.any():
        raise ValueError(f"no tasks in split {split!r}; present: {splits_of(conv)}")
    return conv.isel(task=np.flatnonzero(keep))


def threshold_steps(conv: xr.Dataset, pde: str, method: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (seed, task) of one family and method: steps to the family's thresholds, whether
    they were reached (else censored at the budget), adaptation seconds to them, and
    whether the run is valid (finite final error).

    Returns:
        ``(steps, reached, seconds, valid)``, each of shape ``(seed, task)``.
    """
    c = conv.sel(pde=pde)
    d = c.sel({"method": method})
    steps = conv.step.values
    s, r = steps_to_threshold(d.u_rel_l2.values, d.coef_rel_err_max.values, steps,
                              float(c.threshold_u_rel_l2), float(c.threshold_coef_rel_err))
    idx = np.clip(np.searchsorted(steps, s), 0, len(steps) - 1)
    t = np.take_along_axis(d.wall_time.values, idx[..., None], axis=-1)[..., 0]
    valid = np.isfinite(d.u_rel_l2.values[..., -1])
    return s, r, t, valid


def speedup_table(conv: xr.Dataset, meta_times: dict[tuple[str, str], float] | None = None,
                  n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per family × split × method (see the module docstring); test and ood tasks
    are reported separately.

    The per-task speedup is defined where scratch or the method reached the thresholds
    within the budget; a run that did not counts the budget, so the ratio is a bound:
    ``speedup_bound`` is ``lower`` where some ratios are lower bounds (scratch censored),
    ``upper`` where some are upper bounds (the method censored), ``mixed`` for both, and
    ``exact`` otherwise. Tasks that neither reached are left out (``n_undefined``); with
    none left the speedup is NaN. The break-even count divides the meta-training time by
    the median paired adaptation time saved on those tasks (NaN without a meta-training time
    or without such tasks).

    Args:
        conv: the output of :func:`collect` (must include ``scratch``).
        meta_times: meta-training seconds per (pde, method), for the break-even count.
        n_boot, seed: bootstrap resamples and their seed.
    """
    if "scratch" not in conv.method.values:
        raise ValueError("the speedup table needs the scratch runs as the reference")
    meta_times = meta_times or {}
    steps = conv.step.values
    budget = float(steps[-1])
    i10 = int(np.searchsorted(steps, 0.1 * budget))
    rows = []
    for pde in conv.pde.values:
        for split in splits_of(conv):
            part = select_split(conv, split)
            s0, r0, t0, v0 = threshold_steps(part, pde, "scratch")
            for m in conv.method.values:
                s, r, t, valid = threshold_steps(part, pde, m)
                d = part.sel(pde=pde).sel({"method": m})
                # a per-task ratio is defined where scratch or the method reached the
                # thresholds; a censored side makes it a bound (lower if scratch's is censored)
                pair = valid & v0 & (r | r0)
                if m == "scratch":
                    speed = np.where(valid, 1.0, np.nan)
                    lower = upper = 0
                else:
                    speed = np.where(pair, s0 / np.maximum(s, 1.0), np.nan)
                    lower, upper = int((pair & r & ~r0).sum()), int((pair & ~r & r0).sum())
                bound = ("mixed" if lower and upper else "lower" if lower
                         else "upper" if upper else "exact")
                med, lo, hi = bootstrap_median_ci(speed.ravel(), n_boot, seed)
                wall = np.where(pair if m != "scratch" else valid,
                                t0 / np.maximum(t, 1e-9), np.nan)
                # adaptation time saved per task, paired, over the tasks with a defined
                # ratio (a censored run counts its time to the budget)
                saved = float(np.median((t0 - t)[pair])) if pair.any() else np.nan
                meta_t = meta_times.get((str(pde), str(m)), np.nan)
                if m == "scratch" or not np.isfinite(meta_t) or not np.isfinite(saved):
                    breakeven = np.nan
                elif saved > 0:
                    breakeven = float(np.ceil(meta_t / saved))
                else:
                    breakeven = np.inf  # it saves no adaptation time: never repaid
                anyv = valid.any()
                rows.append({
                    "pde": str(pde), "split": split, "method": str(m),
                    "speedup": med, "speedup_lo": lo, "speedup_hi": hi,
                    "speedup_bound": bound,
                    "n_undefined": int((valid & v0 & ~(r | r0)).sum()) if m != "scratch" else 0,
                    "wall_speedup": (float(np.nanmedian(wall)) if np.isfinite(wall).any()
                                     else np.nan),
                    "reached": float(np.mean(r[valid])) if anyv else np.nan,
                    "scratch_reached": float(np.mean(r0)),
                    "steps_to_threshold": float(np.median(s[valid])) if anyv else np.nan,
                    "time_to_threshold_s": float(np.median(t[valid])) if anyv else np.nan,
                    "u_rel_l2_at_10pct": float(np.nanmedian(d.u_rel_l2.values[..., i10])),
                    "u_rel_l2_final": float(np.nanmedian(d.u_rel_l2.values[..., -1])),
                    "coef_rel_err_final": float(np.nanmedian(
                        d.coef_rel_err_max.values[..., -1])),
                    "meta_train_s": meta_t if m != "scratch" else 0.0,
                    "break_even_tasks": breakeven,
                    "n_runs": int(valid.sum()),
                    "budget_steps": budget,
                })
    return pd.DataFrame(rows)


def meta_train_times(paths: Sequence[str | os.PathLike]) -> dict[tuple[str, str], float]:
    """(pde, method) → meta-training seconds (mean over seeds) from ``history.nc`` files."""
    acc: dict[tuple[str, str], list[float]] = {}
    for p in paths:
        ds = read_netcdf(p)
        missing = [a for a in ("pde", "method", "total_train_time_s") if a not in ds.attrs]
        if missing:
            raise ValueError(f"{p} is not a meta-training history (no attribute {missing[0]!r})")
        key = (str(ds.attrs["pde"]), str(ds.attrs["method"]))
        acc.setdefault(key, []).append(float(ds.attrs["total_train_time_s"]))
    return {k: float(np.mean(v)) for k, v in acc.items()}
