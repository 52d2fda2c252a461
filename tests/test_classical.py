"""The `classical` baseline: scipy least squares over θ with the reference solver in the loop.

Small grids keep every solve under a second or two (Burgers 64 × 21, CDR 64 × 21, Darcy
32 × 32); the tolerances are derived in each test from what limits the recovery there.
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from metapinn.classical import (
    bounds,
    classical_solve,
    combine,
    forward,
    solve_classical,
    time_to_threshold,
)
from metapinn.cli import main
from metapinn.ncio import read_netcdf, write_netcdf
from metapinn.pdes import get_pde
from metapinn.pdes.burgers import reference_solution
from metapinn.settings import ClassicalSettings
from metapinn.stats import amortised_cost, classical_summary
from metapinn.tables import classical_markdown
from metapinn.tasks import Task, TaskSettings, make_task, tasks_to_dataset

SMALL = {"burgers": {"nx": 64, "nt": 21}, "cdr": {"nx": 64, "nt": 21}, "darcy": {"n": 32}}
FAST = ClassicalSettings(max_evals=80)


def _family(name):
    return get_pde(name, **SMALL[name])


def _task(pde, noise, index=10, n_obs=100, seed=0):
    settings = TaskSettings(n_train=8, n_val=2, n_test=4, n_ood=1, seed=seed, n_obs=n_obs,
                            noise=noise)
    return make_task(pde, index, settings)


def _jacobian(pde, u_at, p, h=1e-5):
    """∂u(obs)/∂p by central differences in the parametrisation."""
    cols = []
    for k in range(len(p)):
        e = np.zeros(len(p))
        e[k] = h
        cols.append((u_at(pde.from_param(p + e)) - u_at(pde.from_param(p - e))) / (2 * h))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("name", ["burgers", "cdr", "darcy"])
def test_noise_free_observations_give_the_true_coefficients(name):
    """A generated task observes reference-grid nodes, and the cubic spline passes through
    the nodes, so at the true θ the misfit is round-off (checked) and the only limit on
    the recovery is least_squares' stopping tolerance (xtol = ftol = gtol = 1e-8): the
    error must be ≤ 1e-6, far below any threshold and a hundred times the tolerances."""
    pde = _family(name)
    task = _task(pde, noise=0.0)
    u_true = forward(pde, task.obs_points)(task.coefficients)
    assert np.max(np.abs(u_true - task.obs_values)) <= 1e-12 * np.max(np.abs(task.u_ref))
    ds = classical_solve(pde, task, FAST, threshold=0.01)
    assert ds.attrs["status"] > 0, ds.attrs["message"]  # converged, not out of budget
    assert np.max(ds.attrs["final_coef_rel_err"]) <= 1e-6
    assert ds.attrs["reached"] == 1
    # the record: the best misfit never increases, and the last entry is the final θ
    assert np.all(np.diff(ds.best_misfit.values) <= 0)
    np.testing.assert_allclose(ds.coef_estimate[-1], ds.attrs["final_coefficients"])
    assert np.all(np.diff(ds.wall_time.values) > 0)
    assert ds.sizes["evaluation"] == ds.attrs["n_evals"] <= FAST.max_evals


def test_off_grid_observations_are_biased_only_by_the_interpolation_error():
    """Burgers observed at scattered (x, t) off the solver's grid, exactly (Cole–Hopf at
    each point): the misfit at the true ν is the interpolation error e, and the linearised
    least-squares bias in log ν is at most ‖e‖/σ_min(J). The solve must stay within twice
    that bound (and the bound must be a real one: e is not zero)."""
    pde = _family("burgers")
    rng = np.random.default_rng(3)
    nu = 0.02
    x, t = rng.uniform(-0.95, 0.95, 80), rng.uniform(0.05, 1.0, 80)
    clean = np.diag(reference_solution(nu, x, t))  # u(x_i, t_i)
    task = Task("burgers", 0, "test", np.array([nu]), np.zeros((0, 0)),
                np.stack([x, t], axis=1), clean)
    u_at = forward(pde, task.obs_points, "cubic")
    e = u_at(task.coefficients) - clean
    assert np.linalg.norm(e) > 1e-8 * np.linalg.norm(clean)
    p_true = pde.to_param(task.coefficients)
    jac = _jacobian(pde, u_at, p_true)
    bound = np.linalg.norm(e) / np.linalg.svd(jac, compute_uv=False).min()
    ds = classical_solve(pde, task, FAST)
    p_hat = pde.to_param(ds.attrs["final_coefficients"])
    assert np.abs(p_hat - p_true).max() <= 2 * bound + 1e-7
    # linear interpolation is coarser: a larger error at the truth on the same points
    e_lin = forward(pde, task.obs_points, "linear")(task.coefficients) - clean
    assert np.linalg.norm(e_lin) > np.linalg.norm(e)


@pytest.mark.parametrize("name", ["burgers", "cdr", "darcy"])
def test_noisy_observations_stay_within_the_linearised_standard_errors(name):
    """With Gaussian noise σ = 0.01 std(u_ref), the least-squares estimate in the
    parametrisation has covariance σ² (JᵀJ)⁻¹ to first order; each coefficient must lie
    within 4 standard errors of the truth (one fixed draw: a 4σ miss has odds < 1e-4)."""
    pde = _family(name)
    task = _task(pde, noise=0.01, n_obs=200)
    sigma = 0.01 * np.std(task.u_ref)
    p_true = pde.to_param(task.coefficients)
    jac = _jacobian(pde, forward(pde, task.obs_points), p_true)
    se = sigma * np.sqrt(np.diag(np.linalg.inv(jac.T @ jac)))
    ds = classical_solve(pde, task, FAST)
    p_hat = pde.to_param(ds.attrs["final_coefficients"])
    assert np.all(np.abs(p_hat - p_true) <= 4 * se), (p_hat - p_true) / se
    assert ds.attrs["status"] > 0, ds.attrs["message"]


def test_time_to_threshold_is_the_first_evaluation_below_it():
    wall = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    err = np.array([[0.5, 0.01], [0.05, 0.2], [0.08, 0.09], [0.2, 0.01], [0.01, 0.01]])
    # every coefficient must be below: the 3rd evaluation, not the 1st or 2nd (one is)
    assert time_to_threshold(wall, err, 0.1) == (0.3, 3, True)
    assert time_to_threshold(wall, err, 0.5) == (0.1, 1, True)
    # never below: censored at the whole solve's time, NaN padding ignored
    padded_wall = np.append(wall, np.nan)
    padded_err = np.vstack([err, [np.nan, np.nan]])
    assert time_to_threshold(padded_wall, padded_err, 0.005) == (0.5, 5, False)
    with pytest.raises(ValueError, match="threshold must be > 0"):
        time_to_threshold(wall, err, 0.0)


def test_a_solve_reports_the_first_evaluation_whose_best_error_is_below_the_threshold():
    pde = _family("cdr")
    ds = classical_solve(pde, _task(pde, noise=0.01), FAST, threshold=0.05)
    worst = ds.coef_rel_err.values.max(axis=1)
    first = int(np.flatnonzero(worst <= 0.05)[0])
    assert first > 0  # the prior centre is not already within 5 %
    assert ds.attrs["evals_to_threshold"] == first + 1
    assert ds.attrs["time_to_threshold_s"] == float(ds.wall_time[first])


def test_the_evaluation_budget_stops_the_solve():
    pde = _family("burgers")
    ds = classical_solve(pde, _task(pde, noise=0.0), ClassicalSettings(max_evals=3), 1e-9)
    assert ds.attrs["n_evals"] == 3 and ds.attrs["status"] == 0
    assert "max_evals=3" in ds.attrs["message"]
    assert ds.attrs["reached"] == 0
    assert ds.attrs["time_to_threshold_s"] == float(ds.wall_time[-1])


@pytest.mark.parametrize("kwargs, needle", [
    ({"max_evals": 0}, "classical.max_evals must be ≥ 1"),
    ({"xtol": 0.0}, "classical.xtol must be > 0"),
    ({"diff_step": 2.0}, "classical.diff_step must be < 1"),
    ({"widen": -0.1}, "classical.widen must be ≥ 0"),
    ({"method": "lm"}, "unknown classical.method 'lm'; valid choices: trf, dogbox"),
    ({"interpolation": "quintic"}, "unknown classical.interpolation 'quintic'"),
    ({"splits": ["tset"]}, r"classical.splits \['tset'\]"),
])
def test_bad_settings_are_named(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        ClassicalSettings(**kwargs)


def test_bounds_hold_the_prior_and_the_ood_range():
    for name in ("burgers", "cdr", "darcy"):
        pde = _family(name)
        lo, hi = bounds(pde, 0.25)
        for c, a, b in zip(pde.coefficients, lo, hi, strict=True):
            inside = pde.to_param([[min(c.low, c.ood_low)], [max(c.high, c.ood_high)]])
            assert a < inside.min() and inside.max() < b
        assert np.all(lo < pde.to_param(pde.prior_centre())) \
            and np.all(pde.to_param(pde.prior_centre()) < hi)


def _tasks_file(path, name="burgers", n_test=2, noise=0.01):
    pde = _family(name)
    settings = TaskSettings(n_train=1, n_val=0, n_test=n_test, n_ood=1, seed=0, n_obs=60,
                            noise=noise)
    tasks = [make_task(pde, i, settings) for i in range(settings.n_tasks)]
    write_netcdf(tasks_to_dataset(pde, tasks, settings), path, title="tasks")
    return path


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classical")
    tasks = _tasks_file(folder / "tasks.nc")
    out = folder / "classical" / "burgers.nc"
    lines = []
    ds = solve_classical(_family("burgers"), tasks, FAST, out, threshold=0.05,
                         progress=lines.append)
    return ds, out, tasks, lines


def test_the_file_round_trips_with_one_entry_per_test_task(solved):
    ds, out, _, lines = solved
    back = read_netcdf(out)
    assert back.attrs["method"] == "classical" and back.attrs["pde"] == "burgers"
    assert list(back.task.values) == [1, 2] and set(back.split.values) == {"test"}
    for name in ds.data_vars:
        xr.testing.assert_equal(back[name], ds[name])
        assert {"long_name", "units"} <= set(back[name].attrs)
    # evaluations beyond a task's own count are NaN padding
    for k, n in enumerate(back.n_evals.values):
        assert np.isfinite(back.wall_time[k, :n]).all() and np.isnan(back.wall_time[k, n:]).all()
    assert len(lines) == 2 and "burgers task 1 (1/2)" in lines[0]
    assert sorted(os.listdir(out.parent)) == ["burgers.nc"]  # no temporary file left


def test_an_interrupted_write_leaves_the_old_file(solved, monkeypatch, tmp_path):
    ds, out, tasks, _ = solved
    target = tmp_path / "burgers.nc"
    target.write_bytes(out.read_bytes())

    def crash(self, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", crash)
    with pytest.raises(OSError, match="disk full"):
        solve_classical(_family("burgers"), tasks, ClassicalSettings(max_evals=2), target,
                        threshold=0.05)
    assert sorted(os.listdir(tmp_path)) == ["burgers.nc"]
    assert target.read_bytes() == out.read_bytes()


def test_solve_classical_refuses_bad_inputs_before_solving(solved, tmp_path):
    _, _, tasks, _ = solved
    out = tmp_path / "x.nc"
    with pytest.raises(ValueError, match="holds 'burgers' tasks, not 'cdr'"):
        solve_classical(_family("cdr"), tasks, FAST, out, threshold=0.05)
    with pytest.raises(ValueError, match="threshold must be > 0"):
        solve_classical(_family("burgers"), tasks, FAST, out, threshold=-1.0)
    with pytest.raises(ValueError, match=r"no tasks in classical.splits \['val'\]"):
        solve_classical(_family("burgers"), tasks, ClassicalSettings(splits=["val"]), out,
                        threshold=0.05)
    assert not out.exists()
    with pytest.raises(ValueError, match="solved without a threshold"):
        pde = _family("burgers")
        combine([classical_solve(pde, _task(pde, 0.0), ClassicalSettings(max_evals=2))])


def test_the_amortised_cost_table_gets_a_classical_row(solved):
    ds, out, _, _ = solved
    summary = classical_summary([out])
    (row,) = summary.itertuples()
    t = ds.time_to_threshold.values
    assert (row.pde, row.split, row.method, row.n_tasks) == ("burgers", "test", "classical", 2)
    assert row.n_reached == int(ds.reached.sum())
    assert row.time_to_threshold_s == pytest.approx(np.median(t))
    assert row.mean_time_to_threshold_s == pytest.approx(np.mean(t))
    pinn = pd.DataFrame([{"pde": "burgers", "split": "test", "method": "scratch",
                          "meta_train_s": 0.0, "mean_time_to_threshold_s": 10.0,
                          "time_to_threshold_s": 8.0, "break_even_tasks": np.nan,
                          "reached": 0.5, "n_runs": 4}])
    cost = amortised_cost(pinn, [1, 10], classical=summary)
    c = cost[cost.method == "classical"].set_index("n_tasks")
    assert c.total_s[10] == pytest.approx(10 * np.mean(t)) and (c.meta_train_s == 0).all()
    assert c.median_adapt_s[1] == pytest.approx(np.median(t))
    s = cost[cost.method == "scratch"].set_index("n_tasks")
    assert s.total_s[10] == 100.0 and s.n_reached[1] == 2 and s.n_runs[1] == 4
    assert len(amortised_cost(pinn, [1, 10])) == 2  # without classical: the PINN rows only
    md = classical_markdown(summary)
    assert f"| burgers | test | classical | 2 | {row.n_reached}/2 |" in md
    # a task that missed the threshold counts its whole solve and is not counted as reached
    missed = ds.copy(deep=True)
    missed["reached"][0] = 0
    missed["time_to_threshold"][0] = 99.0
    (row,) = classical_summary([missed]).itertuples()
    assert row.n_reached == int(ds.reached.sum()) - 1
    assert row.mean_time_to_threshold_s == pytest.approx((99.0 + t[1]) / 2)
    # a classical file (by its history) that lacks what one holds: named as incomplete
    with pytest.raises(ValueError, match="incomplete classical-baseline file .* it lacks "
                                         "variable reached"):
        classical_summary([read_netcdf(out).drop_vars("reached")])


def test_cli_runs_a_split_and_names_a_missing_threshold(tmp_path, capsys):
    tasks = _tasks_file(tmp_path / "tasks.nc")
    out = tmp_path / "c.nc"
    common = ["classical", "pde=burgers", "pde.grid={nx:64,nt:21}", f"tasks_file={tasks}",
              f"out={out}", "classical.max_evals=40"]
    assert main(common) == 2
    assert "classical needs the family's coefficient threshold" in capsys.readouterr().err
    assert main([*common, "classical.method=lm"]) == 2
    assert "unknown classical.method 'lm'" in capsys.readouterr().err
    assert not out.exists()
    assert main([*common, "pde.threshold={u_rel_l2:0.1,coef_rel_err:0.05}"]) == 0
    printed = capsys.readouterr().out
    assert "| burgers | test | classical | 2 |" in printed and f"wrote {out}" in printed
    ds = read_netcdf(out)
    assert ds.attrs["threshold_coef_rel_err"] == 0.05 and ds.sizes["task"] == 2
