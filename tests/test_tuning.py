"""Validation decides: the learning-rate grid grows until its best rate is interior, and
the rate and the thresholds come from the val tasks only."""

import numpy as np
import pytest

from metapinn.config import compose, run_config
from metapinn.evaluate import (
    THRESHOLD_FACTOR,
    extend_grid,
    tune_scratch_lr,
    tuned_lr,
    validation_thresholds,
)
from metapinn.ncio import read_netcdf, write_netcdf
from metapinn.tasks import TaskSettings, generate_tasks, tasks_to_dataset


def _bowl(optimum):
    """A synthetic error-vs-rate curve with its minimum at ``optimum`` (log scale)."""
    calls = []

    def score(rates):
        calls.append(list(rates))
        return [(float(np.log(r / optimum) ** 2), 0.0) for r in rates]

    return score, calls


def test_grid_extends_by_factors_of_two_until_the_best_rate_is_interior():
    score, calls = _bowl(0.07)
    rates, keys, best, extensions, capped = extend_grid(score, [0.001, 0.002, 0.005])
    # 0.005 → 0.01 → 0.02 → 0.04 → 0.08 (nearest 0.07) → 0.16 (worse): 0.08 is interior
    assert best == pytest.approx(0.08) and not capped and extensions == 5
    assert rates[3:] == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16])
    assert calls[0] == [0.001, 0.002, 0.005] and all(len(c) == 1 for c in calls[1:])
    # downwards as well
    rates, _, best, extensions, _ = extend_grid(_bowl(1e-4)[0], [0.001, 0.002])
    assert best == pytest.approx(1.25e-4) and extensions == 4
    # an interior best: nothing is added
    assert extend_grid(_bowl(0.002)[0], [0.001, 0.002, 0.005])[3] == 0


def test_grid_extension_stops_at_the_cap_and_says_so():
    rates, _, best, extensions, capped = extend_grid(_bowl(10.0)[0], [0.001, 0.002],
                                                     max_extensions=6)
    assert capped and extensions == 6 and best == pytest.approx(0.002 * 2 ** 6)


SMALL = ["pde=cdr", "model.hidden=[16,16]", "pde.n_collocation=200", "pde.n_boundary=40",
         "pde.n_obs=50", "adapt.steps=30", "adapt.log_every=10", "dtype=float64",
         "adapt.compile=false"]


def test_rate_and_thresholds_come_from_val_tasks_only(tmp_path):
    """Replacing every test task's observations by noise moves neither the tuned rate nor
    the thresholds; the thresholds follow the stated rule on the val runs."""
    rc = run_config(compose(SMALL))
    ts = TaskSettings(n_train=0, n_val=2, n_test=2, n_ood=0, n_obs=50, seed=0)
    ds = tasks_to_dataset(rc.pde, generate_tasks(rc.pde, ts), ts)
    a = write_netcdf(ds, tmp_path / "a.nc", title="tasks")
    edited = ds.copy(deep=True)
    test = edited.split.values == "test"
    values = edited["obs_u"].values
    values[test] = np.random.default_rng(0).normal(size=values[test].shape)
    b = write_netcdf(edited, tmp_path / "b.nc", title="tasks, test tasks replaced")
    out = {}
    for name, path in (("a", a), ("b", b)):
        tune_scratch_lr(rc, path, [0.002, 0.004], tmp_path / f"tune_{name}.nc")
        out[name] = (tuned_lr(tmp_path / f"tune_{name}.nc", "cdr"),
                     validation_thresholds(tmp_path / f"tune_{name}.nc", "cdr"))
    assert out["a"] == out["b"]
    t = read_netcdf(tmp_path / "tune_a.nc")
    best = float(t.attrs["best_lr"])
    lrs = t.lr.values
    assert lrs.min() < best < lrs.max() or t.attrs["grid_capped"] == 1
    assert list(t.task.values) == [0, 1]  # the val tasks (indices 0, 1), nothing else
    row = t.sel(lr=best)
    assert out["a"][1][0] == pytest.approx(THRESHOLD_FACTOR * float(np.median(row.u_rel_l2)))
    assert out["a"][1][1] == pytest.approx(
        THRESHOLD_FACTOR * float(np.median(row.coef_rel_err_max)))
    assert "median" in t.attrs["threshold_rule"]
    # every run's solve time, as adapt files record it (steps only)
    assert t.wall_time.dims == ("lr", "task") and (t.wall_time.values > 0).all()
    assert t.wall_time.attrs["units"] == "s"


def test_tuning_logs_only_what_it_reads_and_gets_the_dense_runs_final_errors(tmp_path):
    """tune-lr evaluates at step 0 and the last step only (it reads final errors); the
    evaluation does not touch training, so its final errors are those of the same solve
    logged densely, to the last bit."""
    from dataclasses import replace

    from metapinn.evaluate import initialiser, solve_task
    from metapinn.tasks import task_from_dataset

    rc = run_config(compose(SMALL))
    assert len(rc.adapt.log_steps()) > 2  # the experiment logs densely
    ts = TaskSettings(n_train=0, n_val=1, n_test=0, n_ood=0, n_obs=50, seed=0)
    ds = tasks_to_dataset(rc.pde, generate_tasks(rc.pde, ts), ts)
    path = write_netcdf(ds, tmp_path / "tasks.nc", title="tasks")
    best = tune_scratch_lr(rc, path, [0.002, 0.004], tmp_path / "tune.nc")
    dense = solve_task(replace(rc, adapt=replace(rc.adapt, lr=best)),
                       task_from_dataset(ds, 0), initialiser(rc))
    assert len(dense.records) == len(rc.adapt.log_steps())
    t = read_netcdf(tmp_path / "tune.nc").sel(lr=best)
    assert float(t.u_rel_l2[0]) == dense.records[-1]["u_rel_l2"]
    assert float(t.loss[0]) == dense.records[-1]["loss"]
    sparse = replace(rc.adapt, dense_log=False, log_every=rc.adapt.steps)
    assert sparse.log_steps() == (0, rc.adapt.steps)
