"""Task distributions, observations and the tasks NetCDF round trip."""

import numpy as np
import pytest
import torch

from metapinn.ncio import read_netcdf, write_netcdf
from metapinn.pdes import get_pde
from metapinn.tasks import (
    TaskSettings,
    generate_tasks,
    make_task,
    task_from_dataset,
    task_tensors,
    tasks_to_dataset,
)

SMALL = TaskSettings(n_train=2, n_val=1, n_test=2, n_ood=1, n_obs=50, noise=0.01, seed=3)


def test_splits_in_order_and_bad_index():
    s = SMALL
    assert [s.split_of(i) for i in range(s.n_tasks)] == \
        ["train", "train", "val", "test", "test", "ood"]
    with pytest.raises(ValueError, match="outside"):
        s.split_of(6)
    with pytest.raises(ValueError, match="n_obs"):
        TaskSettings(n_obs=0)
    with pytest.raises(ValueError, match="noise"):
        TaskSettings(noise=-1)


def test_task_depends_only_on_seed_and_index():
    pde = get_pde("burgers")
    a = make_task(pde, 4, SMALL)
    b = generate_tasks(pde, SMALL)[4]
    assert np.array_equal(a.coefficients, b.coefficients)
    assert np.array_equal(a.obs_values, b.obs_values)
    c = make_task(pde, 4, TaskSettings(**{**SMALL.__dict__, "seed": 4}))
    assert not np.array_equal(a.coefficients, c.coefficients)


def test_ood_tasks_come_from_outside_the_prior():
    pde = get_pde("burgers")
    tasks = generate_tasks(pde, TaskSettings(n_train=5, n_val=0, n_test=0, n_ood=5, n_obs=10))
    c = pde.coefficients[0]
    for t in tasks:
        nu = t.coefficients[0]
        if t.split == "ood":
            assert c.ood_low <= nu < c.ood_high
        else:
            assert c.low <= nu <= c.high


def test_observations_are_reference_values_plus_relative_noise():
    pde = get_pde("burgers")
    s = TaskSettings(n_train=1, n_val=0, n_test=0, n_ood=0, n_obs=20000, noise=0.05, seed=0)
    t = make_task(pde, 0, s, coefficients=np.array([0.03]))
    pts = pde.grid_points()
    # each observation point is a distinct grid node; the noise has the requested relative std
    node = {tuple(p): k for k, p in enumerate(pts)}
    idx = [node[tuple(p)] for p in t.obs_points]
    resid = t.obs_values - t.u_ref.ravel()[idx]
    assert len(set(idx)) == len(idx)
    assert np.std(resid) == pytest.approx(0.05 * np.std(t.u_ref), rel=0.03)
    assert abs(np.mean(resid)) < 4 * 0.05 * np.std(t.u_ref) / np.sqrt(len(resid))


@pytest.mark.parametrize("name", ["burgers", "cdr", "darcy"])
def test_dataset_netcdf_round_trip(tmp_path, name):
    pde = get_pde(name)
    tasks = generate_tasks(pde, SMALL)
    ds = tasks_to_dataset(pde, tasks, SMALL)
    path = write_netcdf(ds, tmp_path / f"{name}.nc", title="t", config="a: 1\n")
    back = read_netcdf(path)
    for var in ds.data_vars:
        if ds[var].dtype.kind == "f":
            np.testing.assert_array_equal(back[var].values, ds[var].values)
        else:
            assert list(back[var].values) == list(ds[var].values)
        for att in ("long_name", "units"):
            assert back[var].attrs[att] == ds[var].attrs[att]
    assert list(back["coef"].values) == list(pde.coef_names)
    assert back["u_ref"].dims == ("task", *pde.grid_dims)
    for att in ("title", "history", "source", "config", "created"):
        assert isinstance(back.attrs[att], str) and back.attrs[att]
    assert back.attrs["config"] == "a: 1\n"
    assert ("a_ref" in back) == pde.field
    t = task_from_dataset(back, 4)
    np.testing.assert_array_equal(t.obs_values, tasks[4].obs_values)
    np.testing.assert_array_equal(t.obs_points, tasks[4].obs_points)
    assert t.split == "test"


def test_write_netcdf_rejects_missing_units_and_bool_attrs(tmp_path):
    pde = get_pde("burgers")
    ds = tasks_to_dataset(pde, generate_tasks(pde, SMALL), SMALL)
    bad = ds.copy()
    del bad["u_ref"].attrs["units"]
    with pytest.raises(ValueError, match="units"):
        write_netcdf(bad, tmp_path / "x.nc", title="t")
    bad = ds.copy()
    bad.attrs["flag"] = True
    with pytest.raises(TypeError, match="flag"):
        write_netcdf(bad, tmp_path / "x.nc", title="t")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_atomic_writes_keep_the_usual_permissions_and_leave_nothing_on_failure(tmp_path):
    import os

    from metapinn.ncio import atomic_write

    mask = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("x"))
        assert path.read_text() == "x" and (path.stat().st_mode & 0o777) == 0o644
        with pytest.raises(RuntimeError):
            atomic_write(tmp_path / "b.txt", lambda tmp: (_ for _ in ()).throw(RuntimeError()))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    finally:
        os.umask(mask)


def test_collocation_at_the_observations():
    """``collocation``: the residual's points are the observation points (or both sets);
    the boundary points stay those of the random draw."""
    pde = get_pde("burgers")
    t = make_task(pde, 0, SMALL)
    rand = task_tensors(pde, t, 300, 40, seed=0)
    obs = task_tensors(pde, t, 300, 40, seed=0, collocation="observations")
    both = task_tensors(pde, t, 300, 40, seed=0, collocation="both")
    assert torch.equal(obs["colloc"], obs["obs_points"]) and obs["colloc"].shape == (50, 2)
    assert torch.equal(both["colloc"], torch.cat([rand["colloc"], rand["obs_points"]]))
    for d in (obs, both):
        assert torch.equal(d["bc_points"], rand["bc_points"])
    with pytest.raises(ValueError, match="unknown collocation 'grid'; valid choices: random"):
        task_tensors(pde, t, 300, 40, seed=0, collocation="grid")


def test_task_tensors_shapes_and_conditions():
    for name in ("burgers", "cdr", "darcy"):
        pde = get_pde(name)
        t = make_task(pde, 0, SMALL)
        d = task_tensors(pde, t, 300, 40, seed=0)
        assert d["colloc"].shape == (300, 2)
        lo = np.array([b[0] for b in pde.bounds])
        hi = np.array([b[1] for b in pde.bounds])
        c = d["colloc"].numpy()
        assert (c >= lo).all() and (c <= hi).all()
        assert d["obs_points"].shape == (50, 2)
        assert d["pair_a"].shape == d["pair_b"].shape
        if name == "cdr":  # periodic pairs at x = 0 and 2π, same t
            assert d["pair_a"].shape[0] > 0
            assert np.allclose(d["pair_a"][:, 1], d["pair_b"][:, 1])
        if name == "burgers":  # u(x, 0) = −sin πx and u(±1, t) = 0
            p, v = d["bc_points"].numpy(), d["bc_values"].numpy()
            ic = p[:, 1] == 0
            assert np.allclose(v[ic], -np.sin(np.pi * p[ic, 0]), atol=1e-6)
            assert np.allclose(v[~ic], 0) and np.allclose(np.abs(p[~ic, 0]), 1)
