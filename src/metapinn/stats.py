"""Convergence statistics (docs/design.md §4): collect, steps-to-threshold, speedups.

``collect`` merges the adaptation files into one dataset with dims
``(pde, method, seed, task, step)`` (with a ``split`` coordinate on ``task``);
:func:`speedup_table` turns it into one row per family × split (test, ood) × method: the
median speedup over tasks × seeds against scratch, in steps until the errors stay below
the thresholds, with a hierarchical bootstrap 95 % interval (per-task values with fewer
than 8 tasks), the first-hit speedup, counts of runs met at init, diverged or undefined,
the fraction of runs that reached the thresholds, steps and wall time to threshold, the
error at 10 % of the budget, final errors, and the break-even number of tasks after which
meta-training time is repaid by the mean time saved. :mod:`metapinn.tables` formats it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from .meta import METHODS
from .ncio import check_kind, read_netcdf

METHOD_ORDER = tuple(METHODS)  # the registry's order: figures and tables follow it

VARIABLES = ("loss", "u_rel_l2", "wall_time")


def collect(files: Sequence[str | os.PathLike]) -> xr.Dataset:
    """Adaptation files (``adapt/<pde>/<method>/seed<s>.nc``) → one dataset with dims
    ``(pde, method, seed, task, step)``; ``coef_rel_err_max`` is the largest coefficient
    error of each entry (the steps-to-threshold criterion needs every coefficient)."""
    if not files:
        raise ValueError("collect needs at least one adaptation file")
    pieces, thresholds, sources = [], {}, []
    for f in files:
        ds = read_netcdf(f, "adapt-tasks")
        sources.append({"file": str(f), **{a: _plain(ds.attrs[a]) for a in
                                           ("pde", "method", "seed", "config_digest")
                                           if a in ds.attrs}})
        if "threshold_u_rel_l2" not in ds.attrs or "threshold_coef_rel_err" not in ds.attrs:
            raise ValueError(f"{f} records no thresholds: adapt its tasks with lr_file= (the "
                             f"validation thresholds of tune-lr) or with pde.threshold set")
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
    out.attrs["config"] = collect_config(sources)
    return out


def _plain(value):
    """A NetCDF attribute value as plain Python data (for YAML)."""
    return value.item() if isinstance(value, np.generic) else value


def collect_config(sources: Sequence[dict]) -> str:
    """The ``config`` attribute of a ``collect`` output, as YAML: collect has no
    configuration of its own, so it names its inputs (file, pde, method, seed and the
    ``config_digest`` of each), whose own ``config`` attribute holds the resolved
    configuration they were made with."""
    import yaml

    return yaml.safe_dump({"command": "metapinn collect",
                           "note": "merged from the adaptation files below; each holds its "
                                   "resolved configuration in its attribute config",
                           "inputs": list(sources)}, sort_keys=False, width=100)


@dataclass(frozen=True)
class Crossing:
    """When runs meet the thresholds, from their logged errors (arrays over the runs).

    Attributes:
        steps: the first logged step from which u_rel_l2 and every coefficient error stay
            below their thresholds to the end of the budget; the budget where they never do
            (censored).
        reached: whether they do.
        first: the first logged step at which both are below (a transient dip counts); the
            budget where never.
        first_reached: whether there is such a step.
        diverged: a non-finite error at some logged step (counts as not reached).
    """

    steps: np.ndarray
    reached: np.ndarray
    first: np.ndarray
    first_reached: np.ndarray
    diverged: np.ndarray

    @property
    def at_init(self) -> np.ndarray:
        """The thresholds hold from step 0 on: reported as "at init", not as a ratio."""
        return self.reached & (self.steps == 0)


def steps_to_threshold(u: np.ndarray, coef: np.ndarray, steps: np.ndarray, eps_u: float,
                       eps_c: float) -> Crossing:
    """Steps to threshold along the last axis (the logged ``steps``) of ``u`` and ``coef``
    (the largest coefficient error): see :class:`Crossing`."""
    u, coef = np.asarray(u, dtype=float), np.asarray(coef, dtype=float)
    diverged = ~(np.isfinite(u).all(axis=-1) & np.isfinite(coef).all(axis=-1))
    with np.errstate(invalid="ignore"):
        ok = (u <= eps_u) & (coef <= eps_c)  # NaN compares False
    # below from step i to the end: a running AND from the last step backwards
    stays = np.flip(np.logical_and.accumulate(np.flip(ok, axis=-1), axis=-1), axis=-1)
    reached = stays[..., -1] & ~diverged
    first_reached = ok.any(axis=-1) & ~diverged
    last = len(steps) - 1
    at = np.where(reached, np.argmax(stays, axis=-1), last)
    first = np.where(first_reached, np.argmax(ok, axis=-1), last)
    return Crossing(steps[at].astype(float), reached, steps[first].astype(float),
                    first_reached, diverged)


def bootstrap_median_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float]:
    """Median of ``values`` (shape ``(seed, task)``; NaN = undefined, left out) and a
    hierarchical percentile bootstrap interval: each resample draws the tasks with
    replacement, then the seeds within each drawn task with replacement, so that runs of
    one task (correlated) are not counted as independent tasks. A 1-d array is one seed
    per task. Fixed ``seed``: reproducible."""
    v = np.asarray(values, dtype=float)
    v = v[None] if v.ndim == 1 else v
    v = v[:, np.isfinite(v).any(axis=0)]  # tasks with at least one defined value
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    n_seed, n_task = v.shape
    rng = np.random.default_rng(seed)
    tasks = rng.integers(0, n_task, (n_boot, n_task))
    seeds = rng.integers(0, n_seed, (n_boot, n_task, n_seed))
    draws = v[seeds, tasks[..., None]].reshape(n_boot, -1)
    with warnings.catch_warnings():  # a resample of only undefined values: NaN, left out
        warnings.simplefilter("ignore", RuntimeWarning)
        boots = np.nanmedian(draws, axis=1)
    lo, hi = np.nanquantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return float(np.nanmedian(v)), float(lo), float(hi)


MIN_TASKS_FOR_CI = 8  # fewer tasks: per-task values instead of an interval


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


def threshold_steps(conv: xr.Dataset, pde: str, method: str) -> tuple[Crossing, np.ndarray]:
    """Per (seed, task) of one family and method: when the runs meet the family's
    thresholds (:class:`Crossing`), and the adaptation seconds to that step (to the budget
    where censored). Each array has shape ``(seed, task)``."""
    c = conv.sel(pde=pde)
    d = c.sel({"method": method})
    steps = conv.step.values
    cross = steps_to_threshold(d.u_rel_l2.values, d.coef_rel_err_max.values, steps,
                               float(c.threshold_u_rel_l2), float(c.threshold_coef_rel_err))
    idx = np.clip(np.searchsorted(steps, cross.steps), 0, len(steps) - 1)
    wall = d.wall_time.values
    # a diverged run's wall time stops where it stopped: its last finite entry
    wall = np.where(np.isfinite(wall), wall, np.nan)
    wall = np.fmax.accumulate(np.nan_to_num(wall, nan=0.0), axis=-1)
    seconds = np.take_along_axis(wall, idx[..., None], axis=-1)[..., 0]
    return cross, seconds


def _ratios(s0: np.ndarray, s: np.ndarray, ok: np.ndarray) -> np.ndarray:
    return np.where(ok, s0 / np.where(ok, s, 1.0), np.nan)


def speedup_table(conv: xr.Dataset, meta_times: dict[tuple[str, str], float] | None = None,
                  n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per family × split × method (see the module docstring); test and ood tasks
    are reported separately.

    Per run (seed, task), paired with scratch's run of the same seed and task, the speedup
    is steps_scratch / steps_method, with steps to threshold in the "stays below" sense
    (:class:`Crossing`). It is defined where scratch or the method reached the thresholds
    and neither met them at step 0; a side that did not reach them (or diverged) counts
    the budget, so the ratio is a bound: ``speedup_bound`` is ``lower`` where some ratios
    are lower bounds (scratch censored), ``upper`` where some are upper bounds (the method
    censored), ``mixed`` for both, and ``exact`` otherwise. Runs that neither reached are
    counted in ``n_undefined``, runs that met the thresholds at step 0 in ``n_at_init``
    and diverged runs in ``n_diverged``.

    The median speedup has a hierarchical bootstrap 95 % interval (tasks, then seeds within
    a task: :func:`bootstrap_median_ci`) from ``MIN_TASKS_FOR_CI`` tasks on; with fewer,
    ``per_task`` lists each task's median over seeds instead. ``first_hit_speedup`` is the
    same median with first-hit steps. The break-even count divides the meta-training time
    by the mean adaptation time saved per task (every run counts its time to threshold,
    or to the budget where censored); NaN without a meta-training time.

    Args:
        conv: the output of :func:`collect` (must include ``scratch``).
        meta_times: meta-training seconds per (pde, method), for the break-even count.
        n_boot, seed: bootstrap resamples (0: medians only, no interval) and their seed.
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
            ref, t0 = threshold_steps(part, pde, "scratch")
            for m in conv.method.values:
                cross, t = threshold_steps(part, pde, m)
                d = part.sel(pde=pde).sel({"method": m})
                r, r0 = cross.reached, ref.reached
                init = cross.at_init | ref.at_init
                pair = (r | r0) & ~init
                if m == "scratch":  # the reference: 1 by definition
                    pair = ~init
                speed = _ratios(ref.steps, cross.steps, pair)
                first = _ratios(ref.first, cross.first,
                                (cross.first_reached | ref.first_reached)
                                & (cross.first > 0) & (ref.first > 0))
                lower = int((pair & r & ~r0).sum())
                upper = int((pair & ~r & r0).sum())
                bound = ("mixed" if lower and upper else "lower" if lower
                         else "upper" if upper else "exact")
                n_seed, n_task = speed.shape
                if n_boot:
                    med, lo, hi = bootstrap_median_ci(speed, n_boot, seed)
                else:  # medians only
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        med, lo, hi = float(np.nanmedian(speed)), np.nan, np.nan
                per_task = ""
                if n_task < MIN_TASKS_FOR_CI:
                    lo = hi = np.nan
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        per_task = " ".join(f"{x:.2f}" if np.isfinite(x) else "–"
                                            for x in np.nanmedian(speed, axis=0))
                wall = _ratios(t0, np.maximum(t, 1e-9), pair)
                saved = float(np.mean(t0 - t))  # every run: to threshold or to the budget
                meta_t = meta_times.get((str(pde), str(m)), np.nan)
                if m == "scratch" or not np.isfinite(meta_t):
                    breakeven = np.nan
                elif saved > 0:
                    breakeven = float(np.ceil(round(meta_t / saved, 9)))  # no round-off step
                else:
                    breakeven = np.inf  # it saves no adaptation time: never repaid
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    rows.append({
                        "pde": str(pde), "split": split, "method": str(m),
                        "speedup": med, "speedup_lo": lo, "speedup_hi": hi,
                        "speedup_bound": bound, "per_task": per_task,
                        "first_hit_speedup": float(np.nanmedian(first)),
                        "n_tasks": n_task, "n_seeds": n_seed,
                        "n_undefined": int((~(r | r0) & ~init).sum()) if m != "scratch" else 0,
                        "n_at_init": int(cross.at_init.sum()),
                        "n_diverged": int(cross.diverged.sum()),
                        "wall_speedup": float(np.nanmedian(wall)),
                        "reached": float(np.mean(r)),
                        "scratch_reached": float(np.mean(r0)),
                        "steps_to_threshold": float(np.median(cross.steps)),
                        "time_to_threshold_s": float(np.median(t)),
                        "mean_time_to_threshold_s": float(np.mean(t)),
                        "u_rel_l2_at_10pct": float(np.nanmedian(d.u_rel_l2.values[..., i10])),
                        "u_rel_l2_final": float(np.nanmedian(d.u_rel_l2.values[..., -1])),
                        "coef_rel_err_init": float(np.nanmedian(
                            d.coef_rel_err_max.values[..., 0])),
                        "coef_rel_err_final": float(np.nanmedian(
                            d.coef_rel_err_max.values[..., -1])),
                        "meta_train_s": meta_t if m != "scratch" else 0.0,
                        "break_even_tasks": breakeven,
                        "n_runs": int(r.size),
                        "budget_steps": budget,
                    })
    return pd.DataFrame(rows)


def amortised_cost(table: pd.DataFrame, n_tasks: Sequence[int],
                   classical: pd.DataFrame | None = None) -> pd.DataFrame:
    """Total wall time to solve N tasks to the thresholds, per family × split × method:
    meta-training + N × the mean adaptation time to threshold (censored runs at the
    budget), from :func:`speedup_table`'s rows. Scratch pays no meta-training.

    With ``classical`` (:func:`classical_summary`), its rows are added as the method
    ``classical`` (no meta-training; its time is to the coefficient threshold alone). Every
    row also gives the median time to threshold (``median_adapt_s``) and how many runs
    reached the thresholds (``n_reached`` of ``n_runs``)."""
    rows = []
    for r in table.itertuples():
        meta = 0.0 if r.method == "scratch" else r.meta_train_s
        for n in n_tasks:
            rows.append({"pde": r.pde, "split": r.split, "method": r.method, "n_tasks": int(n),
                         "meta_train_s": meta, "mean_adapt_s": r.mean_time_to_threshold_s,
                         "total_s": meta + n * r.mean_time_to_threshold_s,
                         "break_even_tasks": r.break_even_tasks,
                         "median_adapt_s": r.time_to_threshold_s,
                         "n_reached": int(round(r.reached * r.n_runs)), "n_runs": r.n_runs})
    for r in (classical.itertuples() if classical is not None else ()):
        for n in n_tasks:
            rows.append({"pde": r.pde, "split": r.split, "method": "classical",
                         "n_tasks": int(n), "meta_train_s": 0.0,
                         "mean_adapt_s": r.mean_time_to_threshold_s,
                         "total_s": n * r.mean_time_to_threshold_s,
                         "break_even_tasks": np.nan,
                         "median_adapt_s": r.time_to_threshold_s,
                         "n_reached": r.n_reached, "n_runs": r.n_tasks})
    return pd.DataFrame(rows)


def classical_summary(sources: Sequence[str | os.PathLike | xr.Dataset]) -> pd.DataFrame:
    """The ``classical`` baseline per family × split, from its files
    (:func:`metapinn.classical.solve_classical`, ``classical/<pde>.nc``) or datasets: tasks
    solved, how many reached the coefficient threshold, the median and mean wall time to it
    (censored solves count their whole time), the median solver calls and the median
    final (largest) coefficient error."""
    rows = []
    for src in sources:
        name = "dataset" if isinstance(src, xr.Dataset) else src
        ds = check_kind(src if isinstance(src, xr.Dataset) else read_netcdf(src), "classical",
                        name)
        if ds.attrs["method"] != "classical":
            raise ValueError(f"{name} is not a classical-baseline file (written by metapinn "
                             f"classical): its attribute method is {ds.attrs['method']!r}")
        for split in splits_of(ds):
            d = select_split(ds, split)
            t = d.time_to_threshold.values.astype(float)
            rows.append({
                "pde": str(ds.attrs["pde"]), "split": split, "method": "classical",
                "n_tasks": int(t.size), "n_reached": int(d.reached.values.sum()),
                "reached": float(d.reached.values.mean()),
                "time_to_threshold_s": float(np.median(t)),
                "mean_time_to_threshold_s": float(np.mean(t)),
                "solver_calls": float(np.median(d.n_evals.values)),
                "coef_rel_err_final": float(np.median(
                    d.final_coef_rel_err.values.max(axis=-1))),
                "threshold_coef_rel_err": float(ds.attrs["threshold_coef_rel_err"]),
            })
    return pd.DataFrame(rows)


SWEEP_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


def threshold_sweep(conv: xr.Dataset, factors: Sequence[float] = SWEEP_FACTORS,
                    n_boot: int = 0, seed: int = 0) -> pd.DataFrame:
    """:func:`speedup_table` with both thresholds of every family scaled by each factor
    (ε_u → f ε_u, ε_θ → f ε_θ): one row per factor × family × split × method, with the
    factor and the scaled ``threshold_u_rel_l2``. Shows whether a conclusion hinges on one
    threshold. Medians only unless ``n_boot`` asks for intervals."""
    if not factors or min(factors) <= 0:
        raise ValueError(f"threshold factors must be positive, got {list(factors)}")
    frames = []
    for f in factors:
        scaled = conv.assign(threshold_u_rel_l2=conv.threshold_u_rel_l2 * f,
                             threshold_coef_rel_err=conv.threshold_coef_rel_err * f)
        df = speedup_table(scaled, n_boot=n_boot, seed=seed)
        df.insert(0, "factor", float(f))
        df.insert(1, "threshold_u_rel_l2", df.pde.map(
            {str(p): float(v) for p, v in zip(conv.pde.values,
                                              scaled.threshold_u_rel_l2.values, strict=True)}))
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def budget_table(adapt_files: Sequence[str | os.PathLike],
                 histories: Sequence[str | os.PathLike] = (), n_boot: int = 2000,
                 seed: int = 0) -> pd.DataFrame:
    """Speedup against meta-training compute: :func:`speedup_table`'s rows (scratch left out)
    for every multiple of the meta-training budget, with columns ``budget_scale`` (from the
    adaptation files' attribute of that name; 1 where absent) and ``gradient_evals`` (the
    mean over seeds of the task-loss gradient evaluations spent, from the ``history.nc``
    files' ``gradient_evals_spent``; NaN where no history is given). Every scale is compared
    with the same scratch runs (``method == "scratch"`` among ``adapt_files``)."""
    scratch, by_scale = [], {}
    for f in adapt_files:
        attrs = read_netcdf(f, "adapt-tasks").attrs
        if attrs["method"] == "scratch":
            scratch.append(f)
        else:
            by_scale.setdefault(float(attrs.get("budget_scale", 1.0)), []).append(f)
    if not scratch or not by_scale:
        raise ValueError("the compute table needs scratch's adaptation files and at least "
                         "one meta-trained method's")
    spent: dict[tuple[str, str, float], list[float]] = {}
    for p in histories:
        a = read_netcdf(p, "meta-train").attrs
        if "gradient_evals_spent" in a:
            key = (str(a["pde"]), str(a["method"]), float(a.get("budget_scale", 1.0)))
            spent.setdefault(key, []).append(float(a["gradient_evals_spent"]))
    frames = []
    for scale, files in sorted(by_scale.items()):
        df = speedup_table(collect(scratch + files), n_boot=n_boot, seed=seed)
        df = df[df.method != "scratch"].copy()
        df.insert(0, "budget_scale", scale)
        df["gradient_evals"] = [float(np.mean(spent.get((r.pde, r.method, scale), [np.nan])))
                                for r in df.itertuples()]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def meta_train_times(paths: Sequence[str | os.PathLike]) -> dict[tuple[str, str], float]:
    """(pde, method) → meta-training seconds (mean over seeds) from ``history.nc`` files."""
    acc: dict[tuple[str, str], list[float]] = {}
    for p in paths:
        ds = read_netcdf(p, "meta-train")
        key = (str(ds.attrs["pde"]), str(ds.attrs["method"]))
        acc.setdefault(key, []).append(float(ds.attrs["total_train_time_s"]))
    return {k: float(np.mean(v)) for k, v in acc.items()}
