"""Equal meta-training compute: the budget in gradient evaluations → each method's steps,
what meta-training records, and the compute table on synthetic adaptation files."""

import math

import numpy as np
import pytest
import xarray as xr

from metapinn.config import ConfigError, compose, method_config, run_config
from metapinn.meta import method_settings
from metapinn.metatrain import meta_train
from metapinn.ncio import read_netcdf, write_netcdf
from metapinn.stats import budget_table
from metapinn.tasks import TaskSettings, generate_tasks, tasks_to_dataset

C = 2.5  # a second-order cost that is not the default, so that the test sees it used


def _composed(method, budget, *extra):
    return method_config(compose(["experiment=quick", f"method={method}",
                                  f"experiment.meta_budget={budget}",
                                  f"experiment.second_order_cost={C}", *extra]))


@pytest.mark.parametrize("method, evals_per_task", [
    # gradient evaluations per task and outer step, by hand from each algorithm (quick's
    # settings: Reptile/LEAP k = 30 Adam steps, (FO)MAML k = 2, batch 4; the hypernetwork
    # with k = 0 takes one first-order query gradient, with k = 1 a second-order one)
    ("reptile", 30), ("leap", 30), ("fomaml", 2 + 1), ("maml", (2 + 1) * C),
    ("hypernet", 1), ("pretrain", 1)])
def test_budget_buys_each_method_its_outer_steps(method, evals_per_task):
    budget = 7200
    ms = _composed(method, budget)
    assert ms.meta_batch == 4
    expected = math.floor(budget / (4 * evals_per_task))
    if method == "pretrain":  # at least the evaluation budget (adapt.steps = 1000)
        expected = max(expected, 1000)
    assert ms.outer_steps == expected
    # what a run spends never exceeds the budget by more than one outer step (pretrain
    # excepted: its floor is the evaluation budget)
    spent = ms.outer_steps * ms.gradient_evals_per_step(C)
    assert spent <= budget or method == "pretrain"
    assert spent > budget - ms.gradient_evals_per_step(C)


def test_the_baselines_take_the_tuned_rate_where_it_is_their_setting():
    assert method_settings("pretrain").at_tuned_rate(0.04).outer_lr == 0.04
    transfer = method_settings("transfer")
    assert transfer.at_tuned_rate(0.04) == transfer  # its solve reads adapt.lr instead


def test_hypernet_without_inner_steps_is_first_order():
    ms = method_settings("hypernet", inner_steps=0, meta_batch=2)
    assert ms.gradient_evals_per_step(C) == 2  # one query gradient per task, no Jacobian
    # with an inner step its meta-gradient is second order: (k + 1) × C per task
    assert _composed("hypernet", 7200, "method.inner_steps=1").outer_steps == math.floor(
        7200 / (4 * (1 + 1) * C))


def test_budget_scale_multiplies_and_the_command_line_wins():
    assert _composed("reptile", 7200, "budget_scale=0.25").outer_steps == 15
    assert _composed("reptile", 7200, "budget_scale=4").outer_steps == 240
    assert _composed("reptile", 7200, "method.outer_steps=7").outer_steps == 7


def test_baselines_without_an_outer_loop():
    assert _composed("scratch", 7200).outer_steps == 0
    # transfer trains at least as long as an evaluation solve (adapt.steps = 1000 in quick)
    assert _composed("transfer", 7200, "method.transfer_steps=10").transfer_steps == 10
    assert _composed("transfer", 7200, "experiment.method_overrides.transfer.transfer_steps=10"
                     ).transfer_steps == 1000
    # no budget: the method's own steps (config/method/maml.yaml keeps the default, 200)
    assert method_config(compose(["experiment=quick", "method=maml",
                                  "experiment.meta_budget=null"])).outer_steps == 200


@pytest.mark.parametrize("override, needle", [
    ("experiment.meta_budget=0", "meta_budget must be ≥ 1"),
    ("experiment.second_order_cost=0.5", "second_order_cost must be ≥ 1"),
    ("experiment.budget_scales=[0.25,4]", "include 1"),
    ("experiment.budget_scales=[1,4] experiment.meta_budget=null",
     "meta_budget, which is unset"),
    ("experiment.budget_methods=[maml,anil]",
     "budget_methods: \\['anil'\\] not among the methods"),
    ("experiment.own_lr_methods=[scratch]",
     "own_lr_methods: \\['scratch'\\] not among the methods"),
])
def test_bad_budget_settings_are_named(override, needle):
    with pytest.raises(ConfigError, match=needle):
        run_config(compose(["experiment=quick", *override.split()]))


def test_meta_training_records_the_compute_it_spent(tmp_path):
    cfg = compose(["pde=cdr", "model.hidden=[8,8]", "pde.n_collocation=64",
                   "pde.n_boundary=16", "pde.n_obs=20", "tasks.n_train=3", "tasks.n_val=1",
                   "method=reptile", "method.meta_batch=2", "method.inner_steps=3",
                   "experiment.meta_budget=40", f"experiment.second_order_cost={C}",
                   "budget_scale=0.5"])
    rc, ms = run_config(cfg), method_config(cfg)
    assert ms.outer_steps == 3  # floor(0.5 × 40 / (2 tasks × 3 steps))
    ts = TaskSettings(n_train=3, n_val=1, n_test=0, n_ood=0, n_obs=20)
    tasks = write_netcdf(tasks_to_dataset(rc.pde, generate_tasks(rc.pde, ts), ts),
                         tmp_path / "tasks.nc", title="t")
    meta_train(rc, ms, tasks, tmp_path, second_order_cost=C, meta_budget=20.0,
               budget_scale=0.5)
    hist = read_netcdf(tmp_path / "history.nc")
    assert hist.attrs["gradient_evals_per_outer_step"] == 6
    assert hist.attrs["gradient_evals_spent"] == 18
    assert hist.attrs["meta_budget"] == 20.0 and hist.attrs["budget_scale"] == 0.5
    assert hist.attrs["second_order_cost"] == C
    assert list(hist.gradient_evals.values) == [6, 12, 18]


def _adapt_file(path, method, scale, steps_to_reach, pde="cdr", n_tasks=3):
    """An adaptation file whose u error halves every 10 steps from 1, reaching the 0.1
    threshold at ``steps_to_reach`` for every task (the coefficient error stays tiny)."""
    steps = np.arange(0, 201, 10)
    u = np.where(steps[None, :] >= steps_to_reach, 0.05, 1.0).repeat(n_tasks, 0)
    ds = xr.Dataset({
        "loss": (("task", "step"), u), "u_rel_l2": (("task", "step"), u),
        "wall_time": (("task", "step"), np.tile(steps * 0.01, (n_tasks, 1))),
        "coef_rel_err": (("task", "step", "coef_err"), np.full((n_tasks, len(steps), 1), 1e-3)),
    }, coords={"task": np.arange(n_tasks), "step": steps,
               "split": ("task", ["test"] * n_tasks)})
    ds.attrs.update({"pde": pde, "method": method, "seed": 0, "budget_scale": scale,
                     "threshold_u_rel_l2": 0.1, "threshold_coef_rel_err": 0.1})
    ds.to_netcdf(path)
    return path


def _history(path, method, scale, spent, pde="cdr"):
    ds = xr.Dataset({"meta_loss": ("outer_step", [1.0])}, coords={"outer_step": [1]})
    ds.attrs.update({"pde": pde, "method": method, "seed": 0, "budget_scale": scale,
                     "gradient_evals_spent": spent, "total_train_time_s": 1.0})
    ds.to_netcdf(path)
    return path


def test_budget_table_pairs_every_scale_with_the_same_scratch(tmp_path):
    files = [_adapt_file(tmp_path / "s.nc", "scratch", 1.0, 160),
             _adapt_file(tmp_path / "r1.nc", "reptile", 1.0, 40),     # 4×
             _adapt_file(tmp_path / "r4.nc", "reptile", 4.0, 20),     # 8×
             _adapt_file(tmp_path / "r025.nc", "reptile", 0.25, 80)]  # 2×
    hist = [_history(tmp_path / f"h{s}.nc", "reptile", s, 100 * s) for s in (0.25, 1.0, 4.0)]
    df = budget_table(files, hist, n_boot=0)
    assert list(df.budget_scale) == [0.25, 1.0, 4.0]
    assert list(df.method) == ["reptile"] * 3
    assert list(df.speedup) == [2.0, 4.0, 8.0]
    assert list(df.gradient_evals) == [25.0, 100.0, 400.0]
    with pytest.raises(ValueError, match="scratch"):
        budget_table(files[1:], hist)
