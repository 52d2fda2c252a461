"""Figures read NetCDF only, are byte-identical when redrawn, and refuse bad input."""

import numpy as np
import pytest
import xarray as xr

from metapinn.ncio import write_netcdf
from metapinn.plots import (
    AMORTISED_N,
    FAMILY_FIGURES,
    amortised_cost_outputs,
    family_figures,
    meta_training_figure,
    speedup_overview_figure,
    taylor_figure,
    threshold_sweep_figure,
)

STEPS = np.arange(0, 501, 50)
DIMS = ("pde", "method", "seed", "task", "step")


def _convergence(path, pdes=("burgers", "darcy")):
    """Synthetic collected curves: maml converges 3× faster than scratch; 4 test + 2 ood."""
    rates = np.array([1.0, 3.0])[None, :, None, None, None] * np.linspace(0.8, 1.2, 6)[
        None, None, None, :, None]
    u = np.exp(-rates * STEPS / 100.0) * np.ones((len(pdes), 1, 1, 1, 1))
    attrs = {"long_name": "x", "units": "1"}
    ds = xr.Dataset(
        {"u_rel_l2": (DIMS, u, attrs), "coef_rel_err_max": (DIMS, u / 2, attrs),
         "loss": (DIMS, u ** 2, attrs),
         "wall_time": (DIMS, np.broadcast_to(STEPS * 0.01, u.shape).copy(), attrs),
         "threshold_u_rel_l2": ("pde", [0.05] * len(pdes), attrs),
         "threshold_coef_rel_err": ("pde", [0.05] * len(pdes), attrs)},
        coords={"pde": list(pdes), "method": ["scratch", "maml"], "seed": [0],
                "task": np.arange(6), "step": STEPS,
                "split": ("task", np.array(["test"] * 4 + ["ood"] * 2, dtype=object))})
    return write_netcdf(ds, path, title="t")


def _history(path, pde, method, n=20):
    steps = np.arange(1, n + 1)
    attrs = {"long_name": "x", "units": "1"}
    val = np.where(steps % 5 == 0, 1.0 / steps, np.nan)
    ds = xr.Dataset({"meta_loss": ("outer_step", 1.0 / steps, attrs),
                     "val_loss": ("outer_step", val, attrs),
                     "train_time": ("outer_step", 0.1 * steps, {"long_name": "t", "units": "s"})},
                    coords={"outer_step": steps},
                    attrs={"pde": pde, "method": method, "seed": 0, "total_train_time_s": 2.0})
    return write_netcdf(ds, path, title="t")


def test_family_figures_are_valid_and_byte_identical_on_rerun(tmp_path):
    conv = _convergence(tmp_path / "conv.nc")
    a = family_figures(conv, "burgers", tmp_path / "a")
    b = family_figures(conv, "burgers", tmp_path / "b")
    assert len(a) == 2 * len(FAMILY_FIGURES) == 8
    for fa, fb in zip(a, b, strict=True):
        data = fa.read_bytes()
        assert data == fb.read_bytes() and len(data) > 2000
        assert data.startswith(b"%PDF" if fa.suffix == ".pdf" else b"\x89PNG")
    with pytest.raises(ValueError, match="no family 'cdr'"):
        family_figures(conv, "cdr", tmp_path / "c")


def test_meta_training_and_overview_figures(tmp_path):
    hist = [_history(tmp_path / f"{m}.nc", "burgers", m) for m in ("maml", "reptile")]
    for run in ("a", "b"):
        meta_training_figure(hist, tmp_path / f"m{run}.pdf", tmp_path / f"m{run}.png")
    assert (tmp_path / "ma.png").read_bytes() == (tmp_path / "mb.png").read_bytes()
    other = _history(tmp_path / "cdr.nc", "cdr", "maml")
    with pytest.raises(ValueError, match="mixes families"):
        meta_training_figure([*hist, other], tmp_path / "x.pdf", tmp_path / "x.png")
    with pytest.raises(ValueError, match="not a meta-training history"):
        meta_training_figure([_convergence(tmp_path / "c.nc")], tmp_path / "x.pdf",
                             tmp_path / "x.png")
    conv = _convergence(tmp_path / "conv.nc")
    for run in ("a", "b"):
        speedup_overview_figure(conv, tmp_path / f"o{run}.pdf", tmp_path / f"o{run}.png")
    assert (tmp_path / "oa.pdf").read_bytes() == (tmp_path / "ob.pdf").read_bytes()
    assert (tmp_path / "oa.pdf").read_bytes().startswith(b"%PDF")


def test_taylor_figure_is_reproducible(tmp_path):
    alpha = np.logspace(-4, -2, 5)
    err = np.stack([c * alpha ** 2 for c in (1.0, 0.5, 0.2)])
    ds = xr.Dataset({"rel_error": (("method", "alpha"), err, {"long_name": "e", "units": "1"})},
                    coords={"method": ["maml", "fomaml", "reptile"], "alpha": alpha},
                    attrs={"pde": "cdr", "k": 3})
    nc = write_netcdf(ds, tmp_path / "taylor.nc", title="t")
    taylor_figure(nc, tmp_path / "t1.pdf", tmp_path / "t1.png")
    taylor_figure(nc, tmp_path / "t2.pdf", tmp_path / "t2.png")
    assert (tmp_path / "t1.pdf").read_bytes() == (tmp_path / "t2.pdf").read_bytes()


def test_threshold_sweep_and_amortised_cost_outputs(tmp_path):
    """Both read NetCDF only and are byte-identical when redrawn; the cost table has a row
    per family × split × method × N, and maml (3× faster) gains on scratch with N."""
    conv = _convergence(tmp_path / "conv.nc")
    hist = [_history(tmp_path / f"h_{p}.nc", p, "maml") for p in ("burgers", "darcy")]
    for run in ("a", "b"):
        threshold_sweep_figure(conv, tmp_path / f"s{run}.pdf", tmp_path / f"s{run}.png")
        cost = amortised_cost_outputs(conv, hist, tmp_path / f"c{run}.csv",
                                      tmp_path / f"c{run}.pdf", tmp_path / f"c{run}.png")
    for name in ("s", "c"):
        assert (tmp_path / f"{name}a.png").read_bytes() == (tmp_path / f"{name}b.png").read_bytes()
    assert len(cost) == 2 * 2 * 2 * len(AMORTISED_N)
    test = cost[(cost.pde == "burgers") & (cost.split == "test")]
    maml = test[test.method == "maml"].set_index("n_tasks")
    scratch = test[test.method == "scratch"].set_index("n_tasks").total_s
    # 2 s of meta-training (the history), then N × the mean time to threshold
    assert maml.total_s[1] == pytest.approx(2.0 + maml.mean_adapt_s[1])
    assert (maml.total_s - scratch).is_monotonic_decreasing and maml.total_s[1000] < scratch[1000]
