"""Steps-to-threshold, bootstrap intervals and speedups on synthetic convergence curves."""

import numpy as np
import pytest
import xarray as xr

from metapinn.ncio import write_netcdf
from metapinn.stats import (
    amortised_cost,
    bootstrap_median_ci,
    meta_train_times,
    speedup_table,
    steps_to_threshold,
    threshold_sweep,
)
from metapinn.tables import write_tables

STEPS = np.arange(0, 1001, 10)


def test_steps_to_threshold_needs_both_criteria_and_censors():
    u = np.array([[1.0, 0.5, 0.01, 0.01, 0.01], [1.0, 1.0, 1.0, 1.0, 1.0]])
    c = np.array([[1.0, 0.01, 0.5, 0.01, 0.01], [0.0, 0.0, 0.0, 0.0, 0.0]])
    x = steps_to_threshold(u, c, np.array([0, 1, 2, 3, 4]), 0.05, 0.05)
    assert list(x.steps) == [3, 4] and list(x.reached) == [True, False]


def test_steps_to_threshold_means_staying_below_and_keeps_the_first_hit():
    """A dip below the threshold that does not last is a first hit, not "reached"; a run
    that meets the thresholds from step 0 on is "at init"; a non-finite error is a diverged
    run, not reached (censored at the budget) even if it dipped below before."""
    steps = np.array([0, 10, 20, 30, 40])
    u = np.array([[1.0, 0.01, 0.5, 0.01, 0.01],      # dips at 10, stays from 30
                  [1.0, 0.01, 0.5, 0.5, 0.5],        # dips at 10, never stays
                  [0.01, 0.01, 0.01, 0.01, 0.01],    # at init
                  [1.0, 0.01, np.nan, np.nan, np.nan]])  # dips, then diverges
    x = steps_to_threshold(u, np.zeros_like(u), steps, 0.05, 0.05)
    assert list(x.steps) == [30, 40, 0, 40] and list(x.reached) == [True, False, True, False]
    assert list(x.first) == [10, 10, 0, 40]
    assert list(x.first_reached) == [True, True, True, False]
    assert list(x.diverged) == [False, False, False, True]
    assert list(x.at_init) == [False, False, True, False]


def test_bootstrap_interval_is_reproducible_and_covers_the_median():
    v = np.random.default_rng(1).lognormal(size=50)
    a, b = bootstrap_median_ci(v, seed=3), bootstrap_median_ci(v, seed=3)
    assert a == b and a[1] <= a[0] <= a[2] and a[0] == pytest.approx(np.median(v))
    assert np.isnan(bootstrap_median_ci(np.array([np.nan]))[0])


def _curves(rate, n_tasks=5):
    """u(step) = exp(−rate·step/100) per task, rates spread by ±10 %."""
    rates = rate * np.linspace(0.9, 1.1, n_tasks)[:, None]
    return np.exp(-rates * STEPS[None] / 100.0)


def _toy(scratch, other, name="m", coef_factor=1.0, threshold=1e-3, split=None):
    """A collected dataset of one family ("toy") with scratch and one other method, from
    curves of shape (task, step) (one seed) or (seed, task, step); wall time 10 ms per
    step; ``split``: per-task split names (none: no coordinate)."""
    scratch, other = np.asarray(scratch), np.asarray(other)
    if scratch.ndim == 2:
        scratch, other = scratch[None], other[None]
    u = np.stack([scratch, other])[None]  # pde, method, seed, task, step
    dims = ("pde", "method", "seed", "task", "step")
    coords = {"pde": ["toy"], "method": ["scratch", name], "seed": np.arange(u.shape[2]),
              "task": np.arange(u.shape[3]), "step": STEPS}
    if split is not None:
        coords["split"] = ("task", split)
    return xr.Dataset(
        {"u_rel_l2": (dims, u), "coef_rel_err_max": (dims, u * coef_factor),
         "wall_time": (dims, np.broadcast_to(STEPS * 0.01, u.shape).copy()),
         "threshold_u_rel_l2": ("pde", [threshold]),
         "threshold_coef_rel_err": ("pde", [threshold])},
        coords=coords)


def test_speedup_of_a_method_that_converges_four_times_faster():
    conv = _toy(_curves(1.0, 8), _curves(4.0, 8), "fast", coef_factor=0.5)
    df = speedup_table(conv, {("toy", "fast"): 3.0}).set_index("method")
    # exp(−k s/100) ≤ 1e-3 at s = 690.8/k: scratch ≈ 700 steps, fast ≈ 180 steps (log grid 10)
    assert df.loc["fast", "speedup"] == pytest.approx(4.0, rel=0.05)
    assert df.loc["fast", "speedup_lo"] <= 4.0 <= df.loc["fast", "speedup_hi"] + 0.1
    assert df.loc["scratch", "speedup"] == 1.0 and df.loc["fast", "reached"] == 1.0
    # 5.2 s saved per task (700 vs 180 steps at 10 ms) repays 3 s of meta-training at once
    assert df.loc["fast", "break_even_tasks"] == 1.0
    assert df.loc["fast", "wall_speedup"] == pytest.approx(4.0, rel=0.05)
    # the coefficient error before any step: u = 1 at step 0, coef error = u × 0.5 (the
    # final one is far below)
    assert df.loc["fast", "coef_rel_err_init"] == pytest.approx(0.5)
    assert df.loc["scratch", "coef_rel_err_init"] == pytest.approx(0.5)
    assert df.loc["fast", "coef_rel_err_final"] < 0.01


def test_tables_have_a_row_per_family_and_method(tmp_path):
    conv = _toy(_curves(1.0), _curves(2.0), "maml", threshold=1e-2)
    df = speedup_table(conv)
    write_tables(df, tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "s.tex")
    md = (tmp_path / "s.md").read_text().splitlines()
    # 5 tasks: each task's speedup, no interval
    assert len(md) == 2 + 2 and md[3].startswith("| toy | test | maml | 5 × 1 | 2.00 (2.")
    tex = (tmp_path / "s.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and tex.count("\\\\\n") == 3
    with pytest.raises(ValueError, match="scratch"):
        speedup_table(conv.sel({"method": ["maml"]}))


def test_test_and_ood_splits_are_reported_separately():
    """The method is 4× faster on the test tasks but no faster on the ood tasks."""
    scratch = _curves(1.0, 6)
    fast = np.concatenate([_curves(4.0, 4), scratch[4:]])
    conv = _toy(scratch, fast, "fast", coef_factor=0.5, split=["test"] * 4 + ["ood"] * 2)
    df = speedup_table(conv).set_index(["split", "method"])
    assert list(df.index.get_level_values(0).unique()) == ["test", "ood"]
    assert df.loc[("test", "fast"), "speedup"] == pytest.approx(4.0, rel=0.05)
    assert df.loc[("ood", "fast"), "speedup"] == 1.0
    assert df.loc[("test", "fast"), "n_runs"] == 4 and df.loc[("ood", "fast"), "n_runs"] == 2


def test_censored_scratch_marks_the_speedup_as_a_lower_bound(tmp_path):
    conv = _toy(_curves(0.1), _curves(4.0), "fast")  # scratch never reaches 1e-3
    df = speedup_table(conv)
    assert df.set_index("method").loc["scratch", "reached"] == 0.0
    write_tables(df, tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "s.tex")
    md = (tmp_path / "s.md").read_text().splitlines()
    assert md[3].startswith("| toy | test | fast | 5 × 1 | ≥5.")  # 1000 / 180, censored
    assert "$\\geq$" in (tmp_path / "s.tex").read_text()


def test_meta_train_times_read_the_histories(tmp_path):
    attrs = {"long_name": "x", "units": "1"}
    paths = []
    for seed, t in ((0, 10.0), (1, 20.0)):
        ds = xr.Dataset({"meta_loss": ("outer_step", [1.0, 0.5], attrs)},
                        coords={"outer_step": [1, 2]},
                        attrs={"pde": "cdr", "method": "leap", "seed": seed,
                               "total_train_time_s": t})
        paths.append(write_netcdf(ds, tmp_path / f"h{seed}.nc", title="t"))
    assert meta_train_times(paths) == {("cdr", "leap"): 15.0}
    ds = xr.Dataset({"u": ("x", [1.0], attrs)})
    bad = write_netcdf(ds, tmp_path / "bad.nc", title="t")
    with pytest.raises(ValueError, match="not a meta-training history"):
        meta_train_times([bad])


def test_a_censored_method_gives_an_upper_bound_and_neither_reaching_no_speedup(tmp_path):
    df = speedup_table(_toy(_curves(1.0), _curves(0.1))).set_index("method")
    assert df.loc["m", "speedup_bound"] == "upper" and df.loc["m", "speedup"] < 1
    write_tables(df.reset_index(), tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "s.tex")
    assert "| toy | test | m | 5 × 1 | ≤0.7" in (tmp_path / "s.md").read_text()
    # neither reaches 1e-3 within the budget: the speedup is undefined, not 1
    df = speedup_table(_toy(_curves(0.1), _curves(0.2))).set_index("method")
    assert np.isnan(df.loc["m", "speedup"]) and df.loc["m", "n_undefined"] == 5
    assert df.loc["scratch", "speedup"] == 1.0
    write_tables(df.reset_index(), tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "s.tex")
    assert "| toy | test | m | 5 × 1 | – |" in (tmp_path / "s.md").read_text()


def test_break_even_uses_the_mean_time_saved_and_needs_a_meta_training_time():
    # per task the method saves 1 s on four tasks and loses 3 s on one: mean saving 0.2 s
    # (the median, 1 s, would claim 5× too early a break-even: total cost adds up means)
    scratch = _curves(1.0)
    other = scratch.copy()
    conv = _toy(scratch, other)
    wt = conv.wall_time.values.copy()
    wt[0, 1, 0, :4] = np.maximum(wt[0, 1, 0, :4] - 1.0, 0.0)
    wt[0, 1, 0, 4] += 3.0
    conv["wall_time"] = (conv.wall_time.dims, wt)
    df = speedup_table(conv, {("toy", "m"): 10.0}).set_index("method")
    assert df.loc["m", "break_even_tasks"] == 50.0
    assert np.isnan(speedup_table(conv).set_index("method").loc["m", "break_even_tasks"])
    conv["wall_time"] = (conv.wall_time.dims, wt + 5.0 * (np.arange(2) == 1)[None, :, None,
                                                                            None, None])
    assert speedup_table(conv, {("toy", "m"): 10.0}).set_index("method").loc[
        "m", "break_even_tasks"] == np.inf


def test_a_faster_method_that_oscillates_around_the_threshold():
    """The method's error falls 4× faster, but then oscillates ±50 % around the threshold
    until step 400: its first hit comes about 4× earlier than scratch's, yet it stays below
    only from step 400, so the reported speedup is about 700/400, the first-hit one ≈ 4."""
    fast = np.maximum(_curves(4.0, 8), 1e-3 * (1 + 0.5 * np.sin(STEPS / 20.0)))
    fast[:, STEPS >= 400] = 5e-4
    df = speedup_table(_toy(_curves(1.0, 8), fast, "wobbly")).set_index("method")
    assert df.loc["wobbly", "speedup"] == pytest.approx(700 / 400, rel=0.1)
    assert df.loc["wobbly", "first_hit_speedup"] > 3.0
    assert df.loc["wobbly", "reached"] == 1.0


def test_diverged_and_at_init_runs_are_counted_not_dropped():
    """A diverged run is "not reached", censored at the budget (so scratch's ratio against
    it is an upper bound), and counted; a run that meets the thresholds at step 0 gives no
    ratio and is counted as at init."""
    scratch, fast = _curves(1.0), _curves(4.0)
    fast[0, 30:] = np.nan                      # task 0 diverges at step 300
    fast[1] = 1e-4                             # task 1 meets the thresholds at step 0
    df = speedup_table(_toy(scratch, fast, "m", coef_factor=0.5)).set_index("method")
    row = df.loc["m"]
    assert row.n_diverged == 1 and row.n_at_init == 1 and row.n_runs == 5
    assert row.reached == pytest.approx(4 / 5)  # the diverged run did not reach
    assert row.speedup_bound == "upper"         # its steps are censored at the budget
    per_task = row.per_task.split()
    # task 0: scratch (rate 0.9) stays below 1e-3 from step 770; the method is censored
    assert per_task[1] == "–" and float(per_task[0]) == pytest.approx(770 / 1000, abs=0.006)
    assert float(per_task[2]) == pytest.approx(4.0, rel=0.05)


def test_hierarchical_interval_covers_the_median_when_seeds_of_a_task_are_correlated():
    """16 tasks × 5 seeds whose values share a large task effect (sd 1; seed noise 0.05),
    drawn 200 times: the interval that resamples tasks, then seeds, covers the true median
    (0) about 95 % of the time; the flat bootstrap, which takes the 80 runs as
    independent, is too narrow and covers it far less often (measured: 0.93 and 0.56)."""
    rng = np.random.default_rng(0)
    covered = {"hierarchical": 0, "flat": 0}
    for i in range(200):
        v = rng.normal(0.0, 1.0, 16)[None, :] + rng.normal(0.0, 0.05, (5, 16))
        for name, values in (("hierarchical", v), ("flat", v.ravel())):
            _, lo, hi = bootstrap_median_ci(values, n_boot=500, seed=i)
            covered[name] += lo <= 0.0 <= hi
    assert covered["hierarchical"] / 200 >= 0.88
    assert covered["flat"] / 200 <= 0.75
    # with independent seeds the two intervals have about the same width
    independent = rng.normal(0.0, 1.0, (5, 16))
    lo_h, hi_h = bootstrap_median_ci(independent, seed=1)[1:]
    lo_f, hi_f = bootstrap_median_ci(independent.ravel(), seed=1)[1:]
    assert 0.6 < (hi_h - lo_h) / (hi_f - lo_f) < 1.6


def test_fewer_than_eight_tasks_give_per_task_values_not_an_interval():
    df = speedup_table(_toy(_curves(1.0, 7), _curves(2.0, 7))).set_index("method")
    assert np.isnan(df.loc["m", "speedup_lo"]) and len(df.loc["m", "per_task"].split()) == 7
    df = speedup_table(_toy(_curves(1.0, 8), _curves(2.0, 8))).set_index("method")
    r = df.loc["m"]
    assert r.speedup_lo <= r.speedup <= r.speedup_hi and r.speedup == pytest.approx(2, rel=0.05)
    assert r.per_task == "" and r.n_tasks == 8


def test_two_draws_of_the_same_process_give_a_null_interval_that_covers_one():
    """scratch_alt is scratch from another seed: the same process. On synthetic curves
    whose decay rates vary by task (shared by both draws) and by draw, its speedup over
    scratch has an interval that covers 1 — the noise floor a real speedup must clear."""
    rng = np.random.default_rng(3)
    task_rate = rng.lognormal(0.0, 0.5, 16)

    def draw():  # 3 seeds × 16 tasks
        rates = task_rate[None, :] * rng.lognormal(0.0, 0.2, (3, 16))
        return np.exp(-rates[..., None] * STEPS / 100.0)

    df = speedup_table(_toy(draw(), draw(), "scratch_alt")).set_index("method")
    row = df.loc["scratch_alt"]
    assert row.n_tasks == 16 and row.n_seeds == 3
    assert row.speedup_lo < 1.0 < row.speedup_hi
    assert row.speedup_hi / row.speedup_lo > 1.02  # a real band, not a point


def test_threshold_sweep_separates_a_faster_rate_from_a_head_start():
    """A method with a 4× faster decay is 4× faster at every threshold; one that starts
    10× lower but decays at scratch's rate saves a fixed number of steps, so its speedup
    grows as the threshold loosens. Thresholds scale by the factors given."""
    faster = threshold_sweep(_toy(_curves(1.0, 8), _curves(4.0, 8), "f", coef_factor=0.5,
                                  threshold=1e-2), factors=(0.25, 1.0, 4.0))
    f = faster[faster.method == "f"].set_index("factor")
    assert f.speedup.values == pytest.approx([4.0] * 3, rel=0.1)
    assert f.threshold_u_rel_l2.values == pytest.approx([2.5e-3, 1e-2, 4e-2])
    head = threshold_sweep(_toy(_curves(1.0, 8), 0.1 * _curves(1.0, 8), "h", threshold=1e-2),
                           factors=(0.25, 1.0, 4.0))
    h = head[head.method == "h"].set_index("factor").speedup
    assert h[0.25] < h[1.0] < h[4.0]
    with pytest.raises(ValueError, match="positive"):
        threshold_sweep(_toy(_curves(1.0), _curves(2.0)), factors=(0.0,))


def test_amortised_cost_crosses_scratch_at_the_break_even_count():
    conv = _toy(_curves(1.0, 8), _curves(4.0, 8), "fast", coef_factor=0.5)
    table = speedup_table(conv, {("toy", "fast"): 30.0})
    cost = amortised_cost(table, range(1, 21))
    s = cost[cost.method == "scratch"].set_index("n_tasks").total_s
    f = cost[cost.method == "fast"].set_index("n_tasks")
    be = int(f.break_even_tasks.iloc[0])
    assert (f.total_s < s).idxmax() == be  # the first N where the method is cheaper in all
    assert f.total_s[1] == pytest.approx(30.0 + f.mean_adapt_s.iloc[0])
    assert cost[cost.method == "scratch"].meta_train_s.eq(0).all()
