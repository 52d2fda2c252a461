"""Figures read NetCDF only and are byte-identical when redrawn."""

import numpy as np
import xarray as xr

from metapinn.ncio import write_netcdf
from metapinn.plots import convergence_figure, taylor_figure


def _adapt_file(path, method, rate):
    steps = np.arange(0, 501, 50)
    u = np.exp(-rate * np.linspace(0.8, 1.2, 4)[:, None] * steps[None] / 100)
    ds = xr.Dataset({"u_rel_l2": (("task", "step"), u, {"long_name": "u error", "units": "1"})},
                    coords={"task": np.arange(4), "step": steps},
                    attrs={"pde": "burgers", "method": method, "seed": 0})
    return write_netcdf(ds, path, title="t")


def test_convergence_and_taylor_figures_are_reproducible(tmp_path):
    files = [_adapt_file(tmp_path / f"{m}.nc", m, r) for m, r in (("scratch", 1), ("maml", 3))]
    for run in ("a", "b"):
        convergence_figure(files, tmp_path / f"{run}.pdf", tmp_path / f"{run}.png")
    for ext in ("pdf", "png"):
        a, b = (tmp_path / f"a.{ext}").read_bytes(), (tmp_path / f"b.{ext}").read_bytes()
        assert a == b and len(a) > 2000
    alpha = np.logspace(-4, -2, 5)
    err = np.stack([c * alpha ** 2 for c in (1.0, 0.5, 0.2)])
    ds = xr.Dataset({"rel_error": (("method", "alpha"), err, {"long_name": "e", "units": "1"})},
                    coords={"method": ["maml", "fomaml", "reptile"], "alpha": alpha},
                    attrs={"pde": "cdr", "k": 3})
    nc = write_netcdf(ds, tmp_path / "taylor.nc", title="t")
    taylor_figure(nc, tmp_path / "t1.pdf", tmp_path / "t1.png")
    taylor_figure(nc, tmp_path / "t2.pdf", tmp_path / "t2.png")
    assert (tmp_path / "t1.pdf").read_bytes() == (tmp_path / "t2.pdf").read_bytes()


def test_convergence_figure_rejects_mixed_families(tmp_path):
    import pytest

    a = _adapt_file(tmp_path / "a.nc", "scratch", 1)
    ds = xr.open_dataset(a).load()
    ds.attrs["pde"] = "cdr"
    b = write_netcdf(ds, tmp_path / "b.nc", title="t")
    with pytest.raises(ValueError, match="mixes families"):
        convergence_figure([a, b], tmp_path / "x.pdf", tmp_path / "x.png")
