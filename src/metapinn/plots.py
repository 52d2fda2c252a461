"""Figures, read from NetCDF only. PDF + PNG, byte-identical on rerun (no timestamps)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from .ncio import read_netcdf  # noqa: E402

# one colour per method, the same in every figure
from .stats import METHOD_ORDER  # noqa: E402

PDE_TITLES = {"burgers": "Burgers", "cdr": "Convection–diffusion–reaction", "darcy": "Darcy"}


def method_colours() -> dict[str, tuple]:
    palette = sns.color_palette("colorblind", len(METHOD_ORDER))
    return dict(zip(METHOD_ORDER, palette, strict=True))


def _save(fig, pdf: str | os.PathLike, png: str | os.PathLike):
    for path in (pdf, png):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(pdf, metadata={"CreationDate": None, "ModDate": None, "Producer": None,
                               "Creator": "metapinn"})
    fig.savefig(png, dpi=150, metadata={"Software": None})
    plt.close(fig)


def convergence_figure(files: Sequence[str | os.PathLike], pdf: str | os.PathLike,
                       png: str | os.PathLike, variable: str = "u_rel_l2") -> None:
    """u_rel_l2 (or another logged variable) against step: median and interquartile band
    over tasks (and seeds), one line per method.

    Args:
        files: adaptation NetCDFs (``adapt/<pde>/<method>/seed<s>.nc``) of one family.
        pdf, png: output paths.
        variable: the logged variable to show.
    """
    if not files:
        raise ValueError("convergence_figure needs at least one adaptation file")
    by_method: dict[str, list[np.ndarray]] = {}
    steps = None
    pdes = set()
    for f in files:
        ds = read_netcdf(f)
        if variable not in ds:
            raise ValueError(f"{f} has no variable {variable!r}")
        pdes.add(str(ds.attrs["pde"]))
        by_method.setdefault(str(ds.attrs["method"]), []).append(ds[variable].values)
        steps = ds["step"].values
    if len(pdes) != 1:
        raise ValueError(f"convergence_figure mixes families {sorted(pdes)}")
    pde = pdes.pop()
    colours = method_colours()
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(5.8, 3.2), layout="constrained")
    ax.set_yscale("log")  # before plotting (DESIGN §4.4)
    for method in sorted(by_method, key=lambda m: (METHOD_ORDER.index(m)
                                                   if m in METHOD_ORDER else 99, m)):
        curves = np.concatenate(by_method[method], axis=0)  # (tasks × seeds, step)
        q25, med, q75 = np.quantile(curves, [0.25, 0.5, 0.75], axis=0)
        c = colours.get(method, "k")
        ax.plot(steps, med, color=c, label=f"{method} (n={len(curves)})", lw=1.5)
        ax.fill_between(steps, q25, q75, color=c, alpha=0.25, lw=0)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(r"relative $L^2$ error of $u$" if variable == "u_rel_l2" else variable)
    ax.set_title(f"{PDE_TITLES.get(pde, pde)}: median and IQR over tasks")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, pdf, png)


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
