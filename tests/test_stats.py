"""Steps-to-threshold, bootstrap intervals and speedups on synthetic convergence curves."""

import numpy as np
import pytest
import xarray as xr

from metapinn.ncio import write_netcdf
from metapinn.stats import (
    bootstrap_median_ci,
    meta_train_times,
    speedup_table,
    steps_to_threshold,
)
from metapinn.tables import write_tables

STEPS = np.arange(0, 1001, 10)


def test_steps_to_threshold_needs_both_criteria_and_censors():
    u = np.array([[1.0, 0.5, 0.01, 0.01, 0.01], [1.0, 1.0, 1.0, 1.0, 1.0]])
    c = np.array([[1.0, 0.01, 0.5, 0.01, 0.01], [0.0, 0.0, 0.0, 0.0, 0.0]])
    s, r = steps_to_threshold(u, c, np.array([0, 1, 2, 3, 4]), 0.05, 0.05)
    assert list(s) == [3, 4] and list(r) == [True, False]


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
    """A collected dataset of one family ("toy") with scratch and one other method;
    wall time 10 ms per step; ``split``: per-task split names (none: no coordinate)."""
    u = np.stack([scratch, other])[None, :, None]  # pde, method, seed, task, step
    dims = ("pde", "method", "seed", "task", "step")
    coords = {"pde": ["toy"], "method": ["scratch", name], "seed": [0],
              "task": np.arange(scratch.shape[0]), "step": STEPS}
    if split is not None:
        coords["split"] = ("task", split)
    return xr.Dataset(
        {"u_rel_l2": (dims, u), "coef_rel_err_max": (dims, u * coef_factor),
         "wall_time": (dims, np.broadcast_to(STEPS * 0.01, u.shape).copy()),
         "threshold_u_rel_l2": ("pde", [threshold]),
         "threshold_coef_rel_err": ("pde", [threshold])},
        coords=coords)


def test_speedup_of_a_method_that_converges_four_times_faster():
    conv = _toy(_curves(1.0), _curves(4.0), "fast", coef_factor=0.5)
    df = speedup_table(conv, {("toy", "fast"): 3.0}).set_index("method")
    # exp(−k s/100) ≤ 1e-3 at s = 690.8/k: scratch ≈ 700 steps, fast ≈ 180 steps (log grid 10)
    assert df.loc["fast", "speedup"] == pytest.approx(4.0, rel=0.05)
    assert df.loc["fast", "speedup_lo"] <= 4.0 <= df.loc["fast", "speedup_hi"] + 0.1
    assert df.loc["scratch", "speedup"] == 1.0 and df.loc["fast", "reached"] == 1.0
    # 5.2 s saved per task (700 vs 180 steps at 10 ms) repays 3 s of meta-training at once
    assert df.loc["fast", "break_even_tasks"] == 1.0
    assert df.loc["fast", "wall_speedup"] == pytest.approx(4.0, rel=0.05)


def test_tables_have_a_row_per_family_and_method(tmp_path):
    conv = _toy(_curves(1.0), _curves(2.0), "maml", threshold=1e-2)
    df = speedup_table(conv)
    write_tables(df, tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "s.tex")
    md = (tmp_path / "s.md").read_text().splitlines()
    assert len(md) == 2 + 2 and md[3].startswith("| toy | test | maml | 2.00")
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
    assert md[3].startswith("| toy | test | fast | ≥5.")  # 1000 / 180 steps, censored
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
    assert "| toy | test | m | ≤0.7" in (tmp_path / "s.md").read_text()
    # neither reaches 1e-3 within the budget: the speedup is undefined, not 1
    df = speedup_table(_toy(_curves(0.1), _curves(0.2))).set_index("method")
    assert np.isnan(df.loc["m", "speedup"]) and df.loc["m", "n_undefined"] == 5
    assert df.loc["scratch", "speedup"] == 1.0
    write_tables(df.reset_index(), tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "s.tex")
    assert "| toy | test | m | – |" in (tmp_path / "s.md").read_text()


def test_break_even_uses_the_paired_time_saved_and_needs_a_meta_training_time():
    # per task the method saves 1 s on four tasks and loses 3 s on one: median saving 1 s
    scratch = _curves(1.0)
    other = scratch.copy()
    conv = _toy(scratch, other)
    wt = conv.wall_time.values.copy()
    wt[0, 1, 0, :4] = np.maximum(wt[0, 1, 0, :4] - 1.0, 0.0)
    wt[0, 1, 0, 4] += 3.0
    conv["wall_time"] = (conv.wall_time.dims, wt)
    df = speedup_table(conv, {("toy", "m"): 10.0}).set_index("method")
    assert df.loc["m", "break_even_tasks"] == 10.0
    assert np.isnan(speedup_table(conv).set_index("method").loc["m", "break_even_tasks"])
    conv["wall_time"] = (conv.wall_time.dims, wt + 5.0 * (np.arange(2) == 1)[None, :, None,
                                                                            None, None])
    assert speedup_table(conv, {("toy", "m"): 10.0}).set_index("method").loc[
        "m", "break_even_tasks"] == np.inf
