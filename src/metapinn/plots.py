"""Figures, read from NetCDF only. PDF + PNG, byte-identical on rerun (no timestamps)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.patches
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402

from .figures import FAMILY_FIGURES  # noqa: E402
from .ncio import atomic_write, read_netcdf  # noqa: E402
from .pdes import FAMILIES  # noqa: E402
from .registry import titles  # noqa: E402

# one colour per method, the same in every figure
from .stats import (  # noqa: E402
    METHOD_ORDER,
    amortised_cost,
    budget_table,
    classical_summary,
    meta_train_times,
    select_split,
    speedup_table,
    splits_of,
    threshold_steps,
    threshold_sweep,
)

PDE_TITLES = titles(FAMILIES)


def method_colours() -> dict[str, tuple]:
    palette = sns.color_palette("colorblind", len(METHOD_ORDER))
    return dict(zip(METHOD_ORDER, palette, strict=True))


def _save(fig, pdf: str | os.PathLike, png: str | os.PathLike):
    """PDF and PNG without timestamps (byte-identical on rerun), each written atomically."""
    atomic_write(pdf, lambda tmp: fig.savefig(tmp, metadata={
        "CreationDate": None, "ModDate": None, "Producer": None, "Creator": "metapinn"}))
    atomic_write(png, lambda tmp: fig.savefig(tmp, dpi=150, metadata={"Software": None}))
    plt.close(fig)


Y_LABELS = {
    "u_rel_l2": r"relative $L^2$ error of $u$",
    "coef_rel_err_max": "coefficient error (largest relative error;\nfield: relative $L^2$ of $a$)",
    "loss": "task loss",
}
X_LABELS = {"step": "optimiser step", "wall_time": "adaptation wall time (s)"}
THRESHOLDS = {"u_rel_l2": "threshold_u_rel_l2", "coef_rel_err_max": "threshold_coef_rel_err"}

# the registry of per-family figures lives in metapinn.figures (light: the workflow reads it)


def _ordered(methods) -> list[str]:
    return sorted((str(m) for m in methods),
                  key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else 99, m))


def _panels(n: int, width: float = 3.4, height: float = 3.0, sharey: bool = True):
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, n, figsize=(width * n + 1.6, height), layout="constrained",
                             sharey=sharey, squeeze=False)
    return fig, list(axes[0])


def _plain_log_labels(ax) -> None:
    """Label a log y axis with plain numbers (1, 2, 5 per decade) instead of 2×10⁰."""
    def label(v, _):
        mantissa = v / 10 ** np.floor(np.log10(v)) if v > 0 else 0
        return f"{v:g}" if np.isclose(mantissa, [1, 2, 5]).any() else ""

    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(label))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(label))


def _runs(values: np.ndarray) -> np.ndarray:
    """(seed, task, step) → (run, step), dropping runs that diverged (non-finite at the end)."""
    flat = values.reshape(-1, values.shape[-1])
    return flat[np.isfinite(flat[:, -1])]


def _family(conv: xr.Dataset, pde: str) -> xr.Dataset:
    if pde not in [str(p) for p in conv.pde.values]:
        raise ValueError(f"no family {pde!r} in the convergence data; present: "
                         f"{[str(p) for p in conv.pde.values]}")
    return conv.sel(pde=pde)


def curves_figure(conv: xr.Dataset, pde: str, pdf: str | os.PathLike, png: str | os.PathLike,
                  x: str = "step", y: str = "u_rel_l2") -> None:
    """One logged quantity against step or wall time: median and interquartile band over
    tasks × seeds per method, one panel per split (test, ood), the family's threshold dashed.

    Args:
        conv: the collected convergence dataset (:func:`metapinn.stats.collect`).
        pde: the family.
        pdf, png: output paths.
        x: ``step`` or ``wall_time`` (the median adaptation time at each logged step).
        y: ``u_rel_l2``, ``coef_rel_err_max`` or ``loss``.
    """
    if x not in X_LABELS or y not in Y_LABELS:
        raise ValueError(f"curves_figure: x must be one of {list(X_LABELS)} and y one of "
                         f"{list(Y_LABELS)}, got x={x!r}, y={y!r}")
    fam = _family(conv, pde)
    splits = splits_of(fam)
    colours = method_colours()
    fig, axes = _panels(len(splits))
    for ax, split in zip(axes, splits, strict=True):
        part = select_split(fam, split)
        ax.set_yscale("log")  # before plotting (docs/design.md §4)
        for method in _ordered(part.method.values):
            d = part.sel({"method": method})
            curves = _runs(d[y].values)
            if not len(curves):
                continue
            xs = (part.step.values if x == "step"
                  else np.median(_runs(d.wall_time.values), axis=0))
            q25, med, q75 = np.quantile(curves, [0.25, 0.5, 0.75], axis=0)
            c = colours.get(method, "k")
            ax.plot(xs, med, color=c, label=method, lw=1.5)
            ax.fill_between(xs, q25, q75, color=c, alpha=0.2, lw=0)
        if y in THRESHOLDS:
            ax.axhline(float(fam[THRESHOLDS[y]]), color="0.3", ls="--", lw=1,
                       label="threshold")
        ax.set_xlabel(X_LABELS[x])
        ax.set_title(f"{split} tasks (n = {part.sizes['task'] * part.sizes['seed']})")
    axes[0].set_ylabel(Y_LABELS[y])
    fig.suptitle(f"{PDE_TITLES.get(pde, pde)}: median and IQR over tasks × seeds")
    axes[-1].legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, pdf, png)


def steps_distribution_figure(conv: xr.Dataset, pde: str, pdf: str | os.PathLike,
                              png: str | os.PathLike) -> None:
    """Steps to the family's thresholds per run, one column of points per method (filled:
    reached; open triangle at the budget: censored), the median as a bar; a panel per split."""
    fam = _family(conv, pde)
    splits = splits_of(fam)
    colours = method_colours()
    methods = _ordered(fam.method.values)
    budget = float(conv.step.values[-1])
    jitter = np.random.default_rng(0)  # fixed: the figure is byte-identical on rerun
    fig, axes = _panels(len(splits), width=0.45 * len(methods) + 1.2)
    for ax, split in zip(axes, splits, strict=True):
        part = select_split(conv, split)
        for i, method in enumerate(methods):
            cross, _ = threshold_steps(part, pde, method)
            s, r = cross.steps.ravel(), cross.reached.ravel()
            xs = i + jitter.uniform(-0.18, 0.18, s.size)
            c = colours.get(method, "k")
            ax.scatter(xs[r], s[r], s=14, color=c, lw=0)
            ax.scatter(xs[~r], s[~r], s=18, marker="^", facecolors="none", edgecolors=c, lw=0.8)
            if s.size:
                ax.plot([i - 0.3, i + 0.3], [np.median(s)] * 2, color="k", lw=1.5)
        ax.axhline(budget, color="0.3", ls=":", lw=1)
        ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right")
        ax.set_ylim(-0.03 * budget, 1.08 * budget)
        ax.set_title(f"{split} tasks")
    axes[0].set_ylabel("steps to threshold\n(open △ at the budget: not reached)")
    fig.suptitle(f"{PDE_TITLES.get(pde, pde)}: steps to reach the thresholds "
                 f"(bar: median)")
    _save(fig, pdf, png)


def family_figures(convergence_nc: str | os.PathLike, pde: str,
                   out_dir: str | os.PathLike) -> list[Path]:
    """Every per-family figure of the adaptation runs (``FAMILY_FIGURES``), PDF + PNG, in
    ``out_dir``: u error and coefficient error against step, u error against wall time,
    and the distribution of steps to threshold."""
    conv = read_netcdf(convergence_nc, "collect")
    out_dir = Path(out_dir)
    written = []
    for stem, figure in FAMILY_FIGURES.items():
        pdf, png = out_dir / f"{stem}.pdf", out_dir / f"{stem}.png"
        if figure.axes is None:
            steps_distribution_figure(conv, pde, pdf, png)
        else:
            curves_figure(conv, pde, pdf, png, x=figure.axes[0], y=figure.axes[1])
        written += [pdf, png]
    return written


def meta_training_figure(history_files: Sequence[str | os.PathLike], pdf: str | os.PathLike,
                         png: str | os.PathLike) -> None:
    """Meta-training curves of one family: the meta-batch loss against outer step and the
    validation loss against meta-training time, one colour per method (mean over seeds)."""
    if not history_files:
        raise ValueError("meta_training_figure needs at least one history.nc")
    runs: dict[str, list] = {}
    pdes = set()
    for f in history_files:
        ds = read_netcdf(f, "meta-train")
        pdes.add(str(ds.attrs["pde"]))
        runs.setdefault(str(ds.attrs["method"]), []).append(ds)
    if len(pdes) != 1:
        raise ValueError(f"meta_training_figure mixes families {sorted(pdes)}")
    pde = pdes.pop()
    colours = method_colours()
    fig, (a, b) = _panels(2, sharey=False)
    for ax in (a, b):
        ax.set_yscale("log")
    for method in _ordered(runs):
        c = colours.get(method, "k")
        hist = runs[method]
        n = min(h.sizes["outer_step"] for h in hist)
        if n == 0:  # transfer: one ordinary solve, no outer loop to show
            continue
        steps = hist[0].outer_step.values[:n]
        meta = np.mean([h.meta_loss.values[:n] for h in hist], axis=0)
        a.plot(steps, meta, color=c, lw=1.2, label=f"{method} (seeds: {len(hist)})")
        val = np.mean([h.val_loss.values[:n] for h in hist], axis=0)
        time = np.mean([h.train_time.values[:n] for h in hist], axis=0)
        ok = np.isfinite(val)
        b.plot(time[ok], val[ok], "o-", color=c, ms=3, lw=1)
    a.set_xlabel("outer step")
    a.set_ylabel("meta-batch loss")
    b.set_xlabel("meta-training time (s)")
    b.set_ylabel("validation-task loss")
    for ax in (a, b):
        _plain_log_labels(ax)
    fig.suptitle(f"{PDE_TITLES.get(pde, pde)}: meta-training (mean over seeds)")
    b.legend(*a.get_legend_handles_labels(), frameon=False, loc="upper left",
             bbox_to_anchor=(1.0, 1.0))
    _save(fig, pdf, png)


def _null_band(rows) -> tuple[float, float] | None:
    """The range of the null row's speedups over the families: its intervals, or its
    per-task values where a family has too few tasks for an interval."""
    values = []
    for r in rows.itertuples():
        if np.isfinite(r.speedup_lo):
            values += [r.speedup_lo, r.speedup_hi]
        elif isinstance(r.per_task, str):
            values += [float(x) for x in r.per_task.split() if x != "–"]
    values = [v for v in values if np.isfinite(v) and v > 0]
    return (min(values), max(values)) if values else None


def speedup_overview_figure(convergence_nc: str | os.PathLike, pdf: str | os.PathLike,
                            png: str | os.PathLike) -> None:
    """Median speedup over scratch (steps to threshold) with its bootstrap 95 % interval,
    for every method (colour) and family (marker), one panel per split, log scale."""
    conv = read_netcdf(convergence_nc, "collect")
    df = speedup_table(conv)
    df = df[df.method != "scratch"]
    splits = splits_of(conv)
    pdes = [str(p) for p in conv.pde.values]
    methods = _ordered(df.method.unique())
    colours = method_colours()
    markers = dict(zip(pdes, "osD^vP*X", strict=False))
    fig, axes = _panels(len(splits), width=3.6, height=0.42 * len(methods) + 1.6)
    finite = df[["speedup_lo", "speedup_hi"]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    lo_x = min(0.8, 0.8 * finite.min()) if finite.size else 0.5
    hi_x = max(4.0, 1.3 * finite.max()) if finite.size else 10.0
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)
             if lo_x <= t <= hi_x]
    offsets = np.linspace(-0.25, 0.25, len(pdes)) if len(pdes) > 1 else [0.0]
    for ax, split in zip(axes, splits, strict=True):
        ax.set_xscale("log")
        sub = df[df.split == split]
        band = _null_band(sub[sub.method == "scratch_alt"])
        if band is not None:  # the noise floor: two scratch draws differ this much
            ax.axvspan(*band, color="0.85", lw=0, zorder=0)
        for i, method in enumerate(methods):
            for off, pde in zip(offsets, pdes, strict=True):
                r = sub[(sub.method == method) & (sub.pde == pde)]
                if r.empty or not np.isfinite(r.speedup.iloc[0]):
                    continue
                med, lo, hi = (float(r[k].iloc[0]) for k in ("speedup", "speedup_lo",
                                                             "speedup_hi"))
                if not np.isfinite(lo):  # fewer than 8 tasks: no interval
                    lo = hi = med
                ax.errorbar(med, i + off, xerr=[[med - lo], [hi - med]], fmt=markers[pde],
                            color=colours.get(method, "k"), ms=5, capsize=2, lw=1)
        ax.axvline(1.0, color="0.3", lw=1)
        ax.axvline(3.0, color="0.3", lw=1, ls="--")
        ax.set_yticks(range(len(methods)), methods)
        ax.set_ylim(len(methods) - 0.5, -0.5)
        ax.set_xlim(lo_x, hi_x)
        ax.set_xticks(ticks, [f"{t:g}×" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(f"{split} tasks")
    fig.supxlabel("median speedup over scratch in steps to threshold (log scale)")
    handles = [plt.Line2D([], [], marker=markers[p], color="0.3", ls="", label=PDE_TITLES.get(p, p))
               for p in pdes]
    handles.append(plt.Line2D([], [], color="0.3", ls="--", label="3× speedup"))
    if "scratch_alt" in df.method.values:
        handles.append(matplotlib.patches.Patch(color="0.85",
                                                label="noise floor (scratch_alt)"))
    axes[-1].legend(handles=handles, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Speedup of each initialisation over scratch (bars: hierarchical bootstrap "
                 "95 % CI, from 8 tasks on)")
    _save(fig, pdf, png)


def _split_by_family_panels(splits, pdes, height: float):
    """A row of panels per split, a column per family."""
    sns.set_theme(style="whitegrid", context="paper")
    return plt.subplots(len(splits), len(pdes), figsize=(3.2 * len(pdes), height * len(splits)),
                        layout="constrained", squeeze=False)


def _legend_right(ax) -> None:
    """The methods' legend to the right of ``ax`` (if it drew any)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def threshold_sweep_figure(convergence_nc: str | os.PathLike, pdf: str | os.PathLike,
                           png: str | os.PathLike) -> None:
    """Median speedup over scratch against the u-error threshold (the coefficient threshold
    scaled with it, ¼× to 4× the family's), one curve per method, a panel per family and
    split (log–log): whether a conclusion hinges on one threshold."""
    conv = read_netcdf(convergence_nc, "collect")
    df = threshold_sweep(conv)
    df = df[df.method != "scratch"]
    pdes, splits = [str(p) for p in conv.pde.values], splits_of(conv)
    colours = method_colours()
    fig, axes = _split_by_family_panels(splits, pdes, 2.6)
    for row, split in zip(axes, splits, strict=True):
        for ax, pde in zip(row, pdes, strict=True):
            sub = df[(df.pde == pde) & (df.split == split)]
            for method in _ordered(sub.method.unique()):
                m = sub[sub.method == method].sort_values("threshold_u_rel_l2")
                ax.plot(m.threshold_u_rel_l2, m.speedup, marker="o", ms=3, lw=1.2,
                        color=colours.get(method, "k"), label=method,
                        ls=":" if method == "scratch_alt" else "-")
            base = float(conv.threshold_u_rel_l2.sel(pde=pde))
            ax.axvline(base, color="0.5", lw=0.8, ls="--")
            ax.axhline(1.0, color="0.3", lw=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{PDE_TITLES.get(pde, pde)}, {split} tasks")
            ax.set_xlabel(r"threshold on $u$ error ($\varepsilon_\theta$ scaled alike)")
        row[0].set_ylabel("median speedup over scratch")
    _legend_right(axes[0][-1])
    fig.suptitle("Speedup against the threshold (dashed: the family's threshold)")
    _save(fig, pdf, png)


AMORTISED_N = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def amortised_cost_outputs(convergence_nc: str | os.PathLike,
                           histories: Sequence[str | os.PathLike], csv: str | os.PathLike,
                           pdf: str | os.PathLike, png: str | os.PathLike,
                           classical: Sequence[str | os.PathLike] = ()) -> pd.DataFrame:
    """Total cost of N tasks (meta-training + N × mean adaptation time to threshold) for
    every method and scratch: the table (CSV, N from 1 to 1000) and its figure, one panel
    per family (test tasks; log–log). Where a method's line crosses scratch's is its
    break-even number of tasks. With ``classical`` files (``metapinn classical``), the
    solver-in-the-loop baseline's line is added (dotted; its time is to the coefficient
    threshold alone)."""
    conv = read_netcdf(convergence_nc, "collect")
    cost = amortised_cost(speedup_table(conv, meta_train_times(histories), n_boot=0),
                          AMORTISED_N, classical_summary(classical) if classical else None)
    atomic_write(csv, lambda tmp: cost.to_csv(tmp, index=False, float_format="%.6g"))
    split = splits_of(conv)[0]
    pdes = [str(p) for p in conv.pde.values]
    colours = method_colours()
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(pdes), figsize=(3.3 * len(pdes), 2.9),
                             layout="constrained", squeeze=False)
    for ax, pde in zip(axes[0], pdes, strict=True):
        sub = cost[(cost.pde == pde) & (cost.split == split)]
        for method in _ordered(sub.method.unique()):
            m = sub[sub.method == method]
            if not np.isfinite(m.total_s).all():
                continue
            ax.plot(m.n_tasks, m.total_s, color=colours.get(method, "k"), lw=1.3,
                    ls={"scratch": "--", "classical": ":"}.get(method, "-"), label=method)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tasks solved, N")
        ax.set_title(PDE_TITLES.get(pde, pde))
    axes[0][0].set_ylabel("total wall time (s)\nmeta-training + N × mean adaptation")
    _legend_right(axes[0][-1])
    fig.suptitle(f"Amortised cost to reach the thresholds on {split} tasks "
                 "(dashed: scratch" + ("; dotted: classical, to the coefficient threshold)"
                                      if classical else ")"))
    _save(fig, pdf, png)
    return cost


BUDGET_COLUMNS = ["budget_scale", "gradient_evals", "pde", "split", "method", "speedup",
                  "speedup_lo", "speedup_hi", "speedup_bound", "per_task", "n_tasks",
                  "n_seeds", "reached", "steps_to_threshold", "u_rel_l2_final"]


def meta_budget_outputs(adapt_files: Sequence[str | os.PathLike],
                        histories: Sequence[str | os.PathLike], csv: str | os.PathLike,
                        pdf: str | os.PathLike, png: str | os.PathLike) -> pd.DataFrame:
    """Median speedup over scratch against meta-training compute (task-loss gradient
    evaluations spent; the multiples of ``experiment.meta_budget``), one line per method and
    a panel per family and split, with the hierarchical bootstrap 95 % interval where there
    are 8 tasks or more: the table (CSV, :func:`metapinn.stats.budget_table`) and its figure."""
    df = budget_table(adapt_files, histories)
    atomic_write(csv, lambda tmp: df[BUDGET_COLUMNS].to_csv(tmp, index=False,
                                                            float_format="%.6g"))
    pdes = [p for p in FAMILIES if p in set(df.pde)]
    splits = [s for s in ("test", "ood") if s in set(df.split)]
    colours = method_colours()
    fig, axes = _split_by_family_panels(splits, pdes, 2.7)
    for row, split in zip(axes, splits, strict=True):
        for ax, pde in zip(row, pdes, strict=True):
            sub = df[(df.pde == pde) & (df.split == split)]
            drawn = False
            for method in _ordered(sub.method.unique()):
                m = sub[sub.method == method].sort_values("gradient_evals")
                m = m[np.isfinite(m.speedup) & np.isfinite(m.gradient_evals)]
                if m.empty:  # no defined speedup (e.g. neither side reached the thresholds)
                    continue
                x, y = m.gradient_evals.to_numpy(float), m.speedup.to_numpy(float)
                lo = np.where(np.isfinite(m.speedup_lo), m.speedup_lo, y)
                hi = np.where(np.isfinite(m.speedup_hi), m.speedup_hi, y)
                ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", ms=3, lw=1.2, capsize=2,
                            color=colours.get(method, "k"), label=method)
                drawn = True
            ax.axhline(1.0, color="0.3", lw=1)
            if drawn:
                ax.set_xscale("log")
                ax.set_yscale("log")
            else:
                ax.text(0.5, 0.5, "no defined speedup", ha="center", va="center",
                        transform=ax.transAxes, color="0.4")
            ax.set_title(f"{PDE_TITLES.get(pde, pde)}, {split} tasks")
        row[0].set_ylabel("median speedup over scratch")
    fig.supxlabel("meta-training compute spent (task-loss gradient evaluations, log scale)")
    _legend_right(axes[0][-1])
    fig.suptitle("Speedup against meta-training compute (the budget's multiples)")
    _save(fig, pdf, png)
    return df


def taylor_figure(taylor_nc: str | os.PathLike, pdf: str | os.PathLike,
                  png: str | os.PathLike) -> None:
    """Relative error of the O(α) Taylor expansion of the MAML, FOMAML and Reptile
    meta-gradients against α, log–log, with a slope-2 reference line."""
    ds = read_netcdf(taylor_nc)
    colours = method_colours()
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(4.5, 3.2), layout="constrained")
    ax.set_xscale("log")
    ax.set_yscale("log")
    alpha = ds["alpha"].values
    for m in ds["method"].values:
        ax.plot(alpha, ds["rel_error"].sel({"method": m}).values, "o-", color=colours[str(m)],
                label=str(m), ms=3)
    top = float(ds["rel_error"].values[:, 0].max())
    ax.plot(alpha, top * (alpha / alpha[0]) ** 2, "k--", lw=1, label="slope 2")
    ax.set_xlabel(r"inner learning rate $\alpha$")
    ax.set_ylabel("relative error of the Taylor expansion")
    ax.set_title(f"{PDE_TITLES.get(str(ds.attrs.get('pde')), ds.attrs.get('pde'))}: "
                 f"meta-gradients, k = {int(ds.attrs['k'])}")
    ax.legend(frameon=False)
    _save(fig, pdf, png)
