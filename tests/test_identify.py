"""`metapinn identify` on a researcher's observation file, and its input checks."""

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from metapinn.cli import main
from metapinn.ncio import read_netcdf, write_netcdf

FAST = ["model.hidden=[32,32,32]", "pde.n_collocation=1000", "threads=2", "adapt.compile=false"]


def test_identify_recovers_the_coefficient_of_an_exported_task(tmp_path, capsys):
    obs, out = tmp_path / "obs.nc", tmp_path / "id.nc"
    assert main(["export-observations", "pde=burgers", "coefficients={nu:0.05}",
                 f"out={obs}"]) == 0
    ds = read_netcdf(obs)
    assert set(ds.data_vars) == {"x", "t", "u_obs"} and ds.attrs["pde"] == "burgers"
    assert main(["identify", "pde=burgers", f"observations={obs}", "identify.steps=1500",
                 "identify.lbfgs_steps=0", "identify.seeds=[0]", "identify.dtype=float32",
                 f"out={out}", *FAST]) == 0
    assert "nu = " in capsys.readouterr().out
    res = read_netcdf(out)
    nu = float(res.coefficients.sel(coef="nu"))
    assert abs(nu - 0.05) / 0.05 < 0.1
    assert res.coefficients_run.shape == (1, 1) and res.attrs["dtype"] == "float32"
    assert res.u.dims == ("t", "x") and res.attrs["init"] == "scratch"
    config = yaml.safe_load(res.attrs["config"])  # the resolved configuration it ran with
    assert config["pde"]["name"] == "burgers" and config["identify"]["steps"] == 1500
    # 200 observations, fewer than the 1,000 collocation points: the residual at both sets
    assert res.attrs["collocation"] == "both" and res.attrs["residual_weight"] == 1.0
    # the initial guess (prior centre, 0.0316) was 37 % off: identification did the work
    assert abs(np.sqrt(0.01 * 0.1) - 0.05) / 0.05 > 0.3


def _write(path, **variables):
    ds = xr.Dataset({k: ("obs", np.asarray(v, float), {"long_name": k, "units": "1"})
                     for k, v in variables.items()}, attrs={"pde": "burgers"})
    write_netcdf(ds, path, title="obs")


@pytest.mark.parametrize("variables,needle", [
    ({"x": [0.1, 0.2], "u_obs": [0.0, 0.1]}, "lacks variable(s) ['t']"),
    ({"x": [0.1, 2.0], "t": [0.1, 0.2], "u_obs": [0.0, 0.1]}, "outside the domain [-1, 1]"),
    ({"x": [0.1, 0.2], "t": [0.1, np.nan], "u_obs": [0.0, 0.1]}, "NaN or outside"),
    ({"x": [0.1, 0.2], "t": [0.1, 0.2], "u_obs": [0.0, np.nan]}, "'u_obs' has 1 NaN"),
])
def test_bad_observation_files_are_named(tmp_path, capsys, variables, needle):
    _write(tmp_path / "bad.nc", **variables)
    assert main(["identify", "pde=burgers", f"observations={tmp_path / 'bad.nc'}"]) == 2
    assert needle in capsys.readouterr().err


def test_observations_or_init_of_another_family_are_refused(tmp_path, capsys):
    obs = tmp_path / "obs.nc"
    assert main(["export-observations", "pde=burgers", f"out={obs}"]) == 0
    assert main(["identify", "pde=cdr", f"observations={obs}"]) == 2
    assert "holds observations of 'burgers', not 'cdr'" in capsys.readouterr().err
    init = tmp_path / "init.pt"
    torch.save({"format": 1, "pde": "cdr", "method": "maml", "hidden": [50, 50, 50, 50],
                "meta": {}}, init)
    assert main(["identify", "pde=burgers", f"observations={obs}", f"init={init}"]) == 2
    assert "was trained for pde 'cdr', not 'burgers'" in capsys.readouterr().err
    assert main(["identify", "pde=burgers"]) == 2
    assert "identify needs observations=PATH" in capsys.readouterr().err


def test_identify_runs_one_fit_per_seed_and_reports_their_spread(tmp_path, capsys):
    """Two seeds, a few Adam steps then L-BFGS in float64: the median and the standard
    deviation over the two runs are those of the per-run values."""
    obs, out = tmp_path / "obs.nc", tmp_path / "id.nc"
    assert main(["export-observations", "pde=burgers", "coefficients={nu:0.05}",
                 f"out={obs}"]) == 0
    assert main(["identify", "pde=burgers", f"observations={obs}", "identify.steps=20",
                 "identify.lbfgs_steps=20", "identify.seeds=[3,4]", "model.hidden=[16,16]",
                 "pde.n_collocation=256", "adapt.compile=false", f"out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "median of 2 runs" in printed and "20 L-BFGS iterations, float64" in printed
    res = read_netcdf(out)
    runs = res.coefficients_run.sel(coef="nu").values
    assert list(res.seed.values) == [3, 4] and runs[0] != runs[1]
    assert float(res.coefficients.sel(coef="nu")) == pytest.approx(runs.mean())
    assert float(res.coefficients_std.sel(coef="nu")) == pytest.approx(np.std(runs, ddof=1))
    assert res.attrs["best_seed"] == [3, 4][int(np.argmin(res.loss.values))]


def test_auto_collocation_uses_dense_observations_alone():
    from metapinn.identify import auto_collocation

    assert auto_collocation(2000, 2000) == "observations"
    assert auto_collocation(25600, 2000) == "observations"
    assert auto_collocation(1999, 2000) == "both"


def test_residual_weight_is_lowered_for_dense_observations_only(tmp_path):
    """identify.residual_weight null: 0.1 × the family's weight where the residual is
    enforced at the observation points alone, the family's weight otherwise; a given weight
    is used as given. The run
    records the weight it used, and its loss is the loss of that weight."""
    from metapinn.identify import residual_weight

    assert residual_weight(None, "observations", 1.0) == 0.1
    assert residual_weight(None, "observations", 2.0) == pytest.approx(0.2)  # relative
    assert residual_weight(None, "both", 2.0) == residual_weight(None, "random", 2.0) == 2.0
    assert residual_weight(0.5, "observations", 1.0) == 0.5
    with pytest.raises(ValueError, match="finite and > 0"):
        residual_weight(-1.0, "observations", 1.0)
    obs = tmp_path / "obs.nc"
    assert main(["export-observations", "pde=burgers", "pde.n_obs=300", f"out={obs}"]) == 0
    small = ["identify.steps=1", "identify.lbfgs_steps=0", "identify.seeds=[0]",
             "model.hidden=[8]", "pde.n_collocation=300", "adapt.compile=false"]
    losses = {}
    for given, used in [(None, 0.1), (1.0, 1.0), (4.0, 4.0)]:
        out = tmp_path / f"id{given}.nc"
        extra = [] if given is None else [f"identify.residual_weight={given}"]
        assert main(["identify", "pde=burgers", f"observations={obs}", f"out={out}", *small,
                     *extra]) == 0
        res = read_netcdf(out)
        assert res.attrs["collocation"] == "observations"
        assert res.attrs["residual_weight"] == used
        losses[used] = float(res.loss.values[0])
    # one step from the same start: the loss grows with the residual's weight
    assert losses[0.1] < losses[1.0] < losses[4.0]


def test_spread_and_prior_warnings():
    from metapinn.identify import prior_warnings, spread_warnings
    from metapinn.pdes import get_pde

    pde = get_pde("burgers")
    assert spread_warnings(pde, np.array([[0.020], [0.021], [0.0205]])) == []
    note, = spread_warnings(pde, np.array([[0.020], [0.030], [0.021]]))
    assert "the runs disagree on nu: 0.02 to 0.03" in note
    assert spread_warnings(pde, np.array([[0.02]])) == []
    note, = prior_warnings(pde, np.array([0.01 / np.pi]))
    assert "outside the family's prior [0.01, 0.1]" in note


def test_bad_identify_settings_are_named(tmp_path, capsys):
    for arg, needle in [("identify.seeds=[1,1]", "identify.seeds must be distinct"),
                        ("identify.dtype=float16", "unknown identify.dtype 'float16'"),
                        ("identify.collocation=grid", "unknown identify.collocation 'grid'"),
                        ("identify.residual_weight=0",
                         "identify.residual_weight must be finite and > 0"),
                        ("identify.residual_weight=inf", "must be finite and > 0")]:
        assert main(["identify", "pde=burgers", "observations=x.nc", arg]) == 2
        assert needle in capsys.readouterr().err
