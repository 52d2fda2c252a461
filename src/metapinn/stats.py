"""Convergence statistics (DESIGN §4.4): collect, steps-to-threshold, speedups.

``collect`` merges the adaptation files into one dataset with dims
``(pde, method, seed, task, step)``; :func:`speedup_table` turns it into one row per
family × method: the median speedup over tasks × seeds against scratch with a bootstrap
95 % interval, the fraction of tasks that reached the thresholds, steps and wall time to
threshold, final errors, and the break-even number of tasks after which meta-training
time is repaid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import xarray as xr

from .ncio import read_netcdf

METHOD_ORDER = ("scratch", "transfer", "pretrain", "maml", "fomaml", "reptile", "leap",
                "hypernet")

VARIABLES = ("loss", "u_rel_l2", "wall_time")


def collect(files: Sequence[str | os.PathLike]) -> xr.Dataset:
    """Adaptation files (``adapt/<pde>/<method>/seed<s>.nc``) → one dataset with dims
    ``(pde, method, seed, task, step)``; ``coef_rel_err_max`` is the largest coefficient
    error of each entry (the steps-to-threshold criterion needs every coefficient)."""
    if not files:
        raise ValueError("collect needs at least one adaptation file")
    pieces, thresholds = [], {}
    for f in files:
        ds = read_netcdf(f)
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


def speedup_table(conv: xr.Dataset, meta_times: dict[tuple[str, str], float] | None = None,
                  n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per family × method (see the module docstring).

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
    rows = []
    for pde in conv.pde.values:
        c = conv.sel(pde=pde)
        eps_u = float(c.threshold_u_rel_l2)
        eps_c = float(c.threshold_coef_rel_err)

        def per_method(m, c=c, eps_u=eps_u, eps_c=eps_c):
            d = c.sel({"method": m})
            s, r = steps_to_threshold(d.u_rel_l2.values, d.coef_rel_err_max.values, steps,
                                      eps_u, eps_c)
            idx = np.clip(np.searchsorted(steps, s), 0, len(steps) - 1)
            t = np.take_along_axis(d.wall_time.values, idx[..., None], axis=-1)[..., 0]
            return s, r, t, d

        s0, r0, t0, _ = per_method("scratch")
        for m in conv.method.values:
            s, r, t, d = per_method(m)
            valid = np.isfinite(d.u_rel_l2.values[..., -1])
            speed = np.where(valid, s0 / np.maximum(s, 1.0), np.nan)
            med, lo, hi = bootstrap_median_ci(speed.ravel(), n_boot, seed)
            wall = np.where(valid, t0 / np.maximum(t, 1e-9), np.nan)
            saved = np.nanmedian(t0) - np.nanmedian(t)
            meta_t = meta_times.get((str(pde), str(m)), 0.0)
            if m == "scratch":
                breakeven = np.nan
            elif saved > 0:
                breakeven = float(np.ceil(meta_t / saved))
            else:
                breakeven = np.inf
            i10 = int(np.searchsorted(steps, 0.1 * budget))
            rows.append({
                "pde": str(pde), "method": str(m),
                "speedup": med, "speedup_lo": lo, "speedup_hi": hi,
                "wall_speedup": float(np.nanmedian(wall)),
                "reached": float(np.mean(r[valid])) if valid.any() else np.nan,
                "steps_to_threshold": float(np.median(s[valid])) if valid.any() else np.nan,
                "time_to_threshold_s": float(np.median(t[valid])) if valid.any() else np.nan,
                "u_rel_l2_at_10pct": float(np.nanmedian(d.u_rel_l2.values[..., i10])),
                "u_rel_l2_final": float(np.nanmedian(d.u_rel_l2.values[..., -1])),
                "coef_rel_err_final": float(np.nanmedian(d.coef_rel_err_max.values[..., -1])),
                "meta_train_s": meta_t,
                "break_even_tasks": breakeven,
                "budget_steps": budget,
            })
    return pd.DataFrame(rows)


def meta_train_times(paths: Sequence[str | os.PathLike]) -> dict[tuple[str, str], float]:
    """(pde, method) → meta-training seconds (summed over seeds' mean) from ``init.pt`` files."""
    acc: dict[tuple[str, str], list[float]] = {}
    for p in paths:
        blob = torch.load(p, map_location="cpu", weights_only=True)
        acc.setdefault((blob["pde"], blob["method"]), []).append(float(blob["train_time"]))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def _fmt(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    if np.isinf(x):
        return "∞"
    return f"{x:.{digits}g}" if abs(x) < 1e-2 or abs(x) >= 1e4 else f"{x:.{digits}f}"


def write_tables(df: pd.DataFrame, csv: str | os.PathLike, md: str | os.PathLike,
                 tex: str | os.PathLike) -> None:
    """The speedup table as CSV (all columns), Markdown and LaTeX (booktabs)."""
    df.to_csv(csv, index=False, float_format="%.6g")
    head = ["family", "method", "speedup [95 % CI]", "reached", "steps", "time (s)",
            "u err final", "coef err final", "break-even tasks"]
    lines = []
    for r in df.itertuples():
        ci = f"{_fmt(r.speedup)} [{_fmt(r.speedup_lo)}, {_fmt(r.speedup_hi)}]"
        lines.append([r.pde, r.method, ci, f"{r.reached:.0%}", f"{r.steps_to_threshold:.0f}",
                      _fmt(r.time_to_threshold_s), f"{r.u_rel_l2_final:.2e}",
                      f"{r.coef_rel_err_final:.2e}",
                      _fmt(r.break_even_tasks) if not np.isfinite(r.break_even_tasks)
                      else f"{r.break_even_tasks:.0f}"])
    with open(md, "w") as f:
        f.write("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
        for row in lines:
            f.write("| " + " | ".join(row) + " |\n")
    with open(tex, "w") as f:
        f.write("\\begin{tabular}{ll" + "r" * (len(head) - 2) + "}\n\\toprule\n")
        f.write(" & ".join(h.replace("%", "\\%") for h in head) + " \\\\\n\\midrule\n")
        for row in lines:
            cells = [c.replace("%", "\\%").replace("∞", "$\\infty$").replace("–", "--")
                     for c in row]
            f.write(" & ".join(cells) + " \\\\\n")
        f.write("\\bottomrule\n\\end{tabular}\n")
